"""The report page: provenance block, config diff between methods, imbalance panel, points + 95 % CI, captions,
one colour per modality on every figure of a page, sweep folders, and method signals read through one helper."""
import json
import math
import re
import sys

import pytest

from mmbalance.cli import main

BASE = ["--dataset", "synthetic", "--epochs", "2", "--no-progress", "--threads", "1", "log.tensorboard=false",
        "data.options.n=240"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "grid"
    argv = ["compare", "--methods", "joint,joint-aux,ogm-ge+dus-h", "--seeds", "0,1", "--out", str(out)] + BASE + \
        ["method_args.dus-h.gamma=2"]
    saved = sys.argv
    sys.argv = ["/venv/bin/mmbalance"] + argv  # as the console script sees it: recorded as the command
    try:
        assert main(argv) == 0
    finally:
        sys.argv = saved
    return out


def test_grid_report_has_provenance_config_diff_imbalance_and_captions(grid, tmp_path):
    assert main(["report", str(grid), "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    md = (tmp_path / "r" / "report.md").read_text()
    import mmbalance

    # provenance: the grid's command, the code version, the data fingerprint, package versions, the config
    assert "<h2>Provenance</h2>" in page and "mmbalance compare --methods joint,joint-aux,ogm-ge+dus-h" in page
    summary = json.loads((grid / "joint" / "seed0" / "summary.json").read_text())
    fingerprint = summary["provenance"]["data"]["fingerprint"]
    assert fingerprint.startswith("sha256:")
    assert f"<dd>{fingerprint}</dd>" in page and f"<dd>{mmbalance.__version__}</dd>" in page
    assert "<td>torch</td>" in page and "resolved config of joint" in page and "```yaml" in md
    # config diff: the only difference beyond the method itself is DUS's option, which joint and joint-aux lack
    diff = md.split("### Config differences between the methods")[1].split("##")[0]
    assert "| method_args.dus-h.gamma | — | — | 2 |" in diff and diff.count("\n| ") == 2  # the header and one row
    # figures with real captions: points + CI, the imbalance panel
    for name in ("test_acc.png", "imbalance.png", "modality_curves.png", "probes.png"):
        assert (tmp_path / "r" / name).read_bytes()[:4] == b"\x89PNG", name
    assert "95 % confidence interval" in page and "Half-width of the interval with n = 2: ± 8.98 std" in page
    assert "share of the fused head" in page and "probe" in page
    # the honest leaderboard: intervals against joint and joint-aux, Holm-adjusted p, the paper-protocol column
    board = md.split("### Honest leaderboard")[1].split("\n## ")[0]
    assert "joint-aux" in board and "Holm" in board and "best-on-test" in board.lower(), board
    assert "<h3>Honest leaderboard</h3>" in page
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) >= 6 and all(len(c) > 60 for c in captions), captions  # sentences, not file names


def test_t_interval_by_hand():
    from mmbalance.report.plots import t_interval

    mean, half = t_interval([80.0, 82.0, 87.0])
    assert mean == pytest.approx(83.0)
    assert half == pytest.approx(4.302653 * math.sqrt(13.0) / math.sqrt(3.0), rel=1e-6)  # t(0.975, 2) s / sqrt(n)
    assert math.isnan(t_interval([50.0])[1])


def test_each_modality_has_one_colour_on_every_figure_of_a_page(grid, tmp_path, monkeypatch):
    """Every line/marker labelled with a modality name gets that modality's page colour, in the generic plots
    and in each method's plot module alike (the old code coloured by position, so colours flipped)."""
    from matplotlib.axes import Axes
    from matplotlib.colors import to_hex

    from mmbalance.report import style
    from mmbalance.report.html import build_report

    seen = []
    for name in ("plot", "errorbar", "step"):
        real = getattr(Axes, name)

        def wrapped(self, *a, _real=real, **kw):
            out = _real(self, *a, **kw)
            if kw.get("label") and kw.get("color") is not None:
                seen.append((str(kw["label"]), to_hex(kw["color"])))
            return out

        monkeypatch.setattr(Axes, name, wrapped)
    build_report(grid, tmp_path / "r")
    build_report(grid / "ogm-ge__dus-h" / "seed0", tmp_path / "run")
    with style.page_modalities(["a", "b"]):
        palette = {m: to_hex(c) for m, c in style.modality_colors(["a", "b"]).items()}
    assert palette["a"] != palette["b"]
    checked = 0
    for label, color in seen:
        words = set(re.split(r"[\s(),/]+", label))
        mods = [m for m in ("a", "b") if m in words]
        if len(mods) == 1:
            assert color == palette[mods[0]], (label, color)
            checked += 1
    assert checked >= 10, seen  # run curves, imbalance panel, DUS batch sizes and scores, OGM-GE signals


def test_page_colours_hold_for_a_plot_showing_a_subset():
    from mmbalance.report.style import modality_colors, page_modalities

    with page_modalities(["video", "audio", "text"]):
        full = modality_colors(["video", "audio", "text"])
        assert modality_colors(["video"]) == {"video": full["video"]}
    assert modality_colors(["b", "a"]) == modality_colors(["a", "b"])  # order does not matter


def test_report_on_a_sweep_folder(tmp_path):
    out = tmp_path / "sw"
    assert main(["sweep", "--method", "joint-aux", "--seeds", "0", "--batch-sizes", "16,32", "--lrs", "0.05",
                 "--out", str(out)] + BASE) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "report.html").read_text()
    assert "Sweep folder" in page and "N_B=16 lr=0.05" in page and "N_B=32 lr=0.05" in page
    assert "Best cell on validation" in page and (out / "report" / "sweep_heatmap.png").is_file()
    diff = (out / "report" / "report.md").read_text().split("### Config differences between the cells")[1]
    assert "| train.batch_size | 16 | 32 |" in diff
    (out / "sweep.json").unlink()  # the run folders alone are enough
    assert main(["report", str(out), "--out", str(tmp_path / "r2")]) == 0
    assert "N_B=32 lr=0.05" in (tmp_path / "r2" / "report.html").read_text()


def test_plot_modules_read_signals_under_the_registered_name_through_one_helper(tmp_path, monkeypatch):
    """Plot modules read a method's signals under its registered name (dus-h/...), through report/logkeys.py;
    one entry there maps a method to another prefix (e.g. runs logged before the plug-ins were renamed)."""
    from mmbalance.report import logkeys, plots_dus

    def run_with(prefix, name):
        recs = [{"epoch": e, "train": {}, "val": {"acc": 0.5, "modality_acc": {"a": 0.4, "b": 0.3}},
                 "plugins": {f"{prefix}/rho/a": 1.1, f"{prefix}/rho/b": 0.9},
                 "steps": {f"{prefix}/n/a": [30, 32], f"{prefix}/n/b": [34, 32], f"{prefix}/s_hat/a": [0.1, 0.2],
                           f"{prefix}/s_hat/b": [0.1, 0.15]}} for e in range(3)]
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        (run / "config.yaml").write_text("method: dus-h\n")
        return run, recs

    new, recs = run_with("dus-h", "new")
    old, _ = run_with("dus", "old")
    assert [p.name for p in plots_dus.plot(new, tmp_path / "p1")] == ["dus_batch_sizes.png", "dus_scores.png"]
    assert logkeys.signals(recs[0], "dus-h") == {"rho/a": 1.1, "rho/b": 0.9}
    assert plots_dus.plot(old, tmp_path / "p2") == []  # old key names are not guessed ...
    monkeypatch.setattr(logkeys, "LEGACY_PREFIX", {"dus-h": "dus"})  # ... one mapping reads them
    assert [p.name for p in plots_dus.plot(old, tmp_path / "p3")] == ["dus_batch_sizes.png", "dus_scores.png"]


def test_a_report_that_fails_while_writing_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    import os

    from mmbalance.report.page import Page

    page = Page("first", tmp_path)
    first = page.write()
    before = {k: first[k].read_text() for k in ("html", "markdown")}

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        Page("second", tmp_path).write()
    assert {k: first[k].read_text() for k in ("html", "markdown")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
