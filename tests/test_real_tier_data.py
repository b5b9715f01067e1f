"""The real-data second tier: HTAD (read from the installed multiviewstacking wheel) and Emoji-9 (embedded)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmbalance import Config
from mmbalance.data import DataError, build_splits
from mmbalance.data.embedded import FILES_DIR, EmbeddedDataError, load_emoji9_arrays
from mmbalance.data.embedded.emoji9 import EMOJI9_FILE, tfidf
from mmbalance.data.htad import HTAD_SHA256, INSTALL_HINT, htad_csv_path, load_htad_arrays

ROOT = Path(__file__).resolve().parents[1]
HTAD_CLASSES = {"eat_chips": 282, "watch_tv": 206, "mop_floor": 181, "wash_hands": 180, "brush_teeth": 180,
                "type_on_keyboard": 179, "sweep": 178}  # the counts the dataset's authors state
EMOJI_GROUPS = {"People & Body": 363, "Flags": 269, "Objects": 261, "Symbols": 223, "Travel & Places": 218,
                "Smileys & Emotion": 166, "Animals & Nature": 152, "Food & Drink": 133, "Activities": 85}


# ---------------------------------------------------------------------------------------------------- HTAD
def test_htad_shapes_classes_and_raw_values():
    d = load_htad_arrays()
    assert d["inputs"]["audio"].shape == (1386, 36) and d["inputs"]["accel"].shape == (1386, 16)
    assert d["inputs"]["audio"].dtype == np.float32 and d["labels"].dtype == np.int64
    assert d["class_names"] == sorted(HTAD_CLASSES)
    counts = dict(zip(d["class_names"], np.bincount(d["labels"]).tolist()))
    assert counts == HTAD_CLASSES
    # first data row of the CSV (watch_tv): v1_mfcc1 = 120.0788862, v2_meanX = -0.340983072
    assert d["class_names"][d["labels"][0]] == "watch_tv"
    assert d["inputs"]["audio"][0, 0] == pytest.approx(120.0788862, rel=1e-6)
    assert d["inputs"]["accel"][0, 0] == pytest.approx(-0.340983072, rel=1e-6)
    assert "Garcia-Ceja" in d["meta"]["citation"]


def test_htad_missing_package_is_one_line_naming_the_pip_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(DataError) as err:
        htad_csv_path()
    msg = str(err.value)
    assert "\n" not in msg and INSTALL_HINT in msg and "multiviewstacking==0.7.5" in msg
    # the CLI turns it into one error line before anything is written
    from mmbalance.cli import main

    with pytest.raises(DataError, match=re.escape(INSTALL_HINT)):
        build_splits(Config().override(["data.name=htad"]).data)
    assert main(["train", "--dataset", "htad", "--epochs", "1", "--out", "/nonexistent/never-written"]) != 0


def test_htad_edited_copy_is_rejected(tmp_path):
    copy = tmp_path / "htad.csv"
    text = htad_csv_path().read_text()
    copy.write_text(text.replace("watch_tv", "watch_TV", 1))
    with pytest.raises(DataError, match="SHA-256 differs") as err:
        load_htad_arrays(copy)
    assert str(copy) in str(err.value)
    # without the checksum the edit is read as an eighth class
    assert len(load_htad_arrays(copy, verify=False)["class_names"]) == 8
    copy.write_text(text.replace("120.0788862", "12x", 1))
    with pytest.raises(DataError, match="non-numeric"):
        load_htad_arrays(copy, verify=False)


def test_shipped_htad_checksum_is_the_installed_file():
    import hashlib

    assert hashlib.sha256(htad_csv_path().read_bytes()).hexdigest() == HTAD_SHA256


def test_htad_file_is_not_in_the_repository():
    """Its terms forbid redistribution: no copy of the CSV (or its rows) anywhere in the source tree."""
    first_row = htad_csv_path().read_text().splitlines()[1][:60]
    for path in [*ROOT.glob("src/**/*"), *ROOT.glob("tests/**/*"), *ROOT.glob("scripts/**/*")]:
        if path.is_file() and path.suffix in {".csv", ".npz", ".txt", ".py", ".json"}:
            assert "htad.csv" != path.name
            if path.suffix != ".npz":
                assert first_row not in path.read_text(errors="ignore"), path


# ------------------------------------------------------------------------------------------------- Emoji-9
@pytest.fixture(scope="module")
def emoji():
    return load_emoji9_arrays()


def test_emoji9_shapes_and_groups(emoji):
    image, text = emoji["inputs"]["image"], emoji["inputs"]["text"]
    assert image.shape == (1870, 3, 32, 32) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert text.shape[0] == 1870 and text.dtype == np.float32
    counts = dict(zip(emoji["class_names"], np.bincount(emoji["labels"]).tolist()))
    assert counts == EMOJI_GROUPS
    # row norms of TF-IDF are 1, or 0 for a name none of whose words occurs in a second name
    norms = np.linalg.norm(text, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    assert not any("skin tone" in n for n in emoji["meta"]["names"])
    assert emoji["meta"]["names"][0] == "grinning face" and emoji["meta"]["codepoints"][0] == "1F600"


def test_emoji9_text_comes_from_the_name_only(emoji):
    """No leakage: each sample's word counts are those of its CLDR name, with neither group nor sub-group."""
    vocab = list(emoji["meta"]["vocabulary"])
    counts = emoji["meta"]["text_counts"]
    for i in range(0, 1870, 37):
        words = re.findall(r"\b\w\w+\b", emoji["meta"]["names"][i].lower())
        expected = np.zeros(len(vocab), dtype=int)
        for w in words:
            if w in vocab:
                expected[vocab.index(w)] += 1
        np.testing.assert_array_equal(counts[i], expected)
    # the sub-group determines the group (so it must not be a feature): check that claim on the data
    groups_per_subgroup = {}
    for sub, y in zip(emoji["meta"]["subgroups"], emoji["labels"]):
        groups_per_subgroup.setdefault(sub, set()).add(int(y))
    assert all(len(g) == 1 for g in groups_per_subgroup.values())
    np.testing.assert_allclose(tfidf(counts), emoji["inputs"]["text"], rtol=1e-6)


def test_emoji9_glyphs_differ_by_emoji(emoji):
    image = emoji["inputs"]["image"].reshape(1870, -1)
    assert len(np.unique(image.round(3), axis=0)) > 1800  # (a few emoji share a glyph design)
    assert image.mean() > 0.5  # glyphs on a white background


def test_emoji9_corrupt_copy_is_rejected(tmp_path):
    bad = tmp_path / EMOJI9_FILE
    shutil.copyfile(FILES_DIR / EMOJI9_FILE, bad)
    with open(bad, "r+b") as fh:
        fh.truncate(bad.stat().st_size - 10)
    with pytest.raises(EmbeddedDataError, match="truncated or corrupt"):
        load_emoji9_arrays(bad)


@pytest.mark.skipif(not (Path("/usr/share/unicode/emoji/emoji-test.txt").is_file()
                         and Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf").is_file()),
                    reason="Debian packages unicode-data and fonts-noto-color-emoji are not installed")
def test_build_emoji9_recreates_the_shipped_file_byte_for_byte():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_emoji9.py"), "--check"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: rebuild matches" in r.stdout


# ------------------------------------------------------------------------------------------ both, as datasets
@pytest.mark.parametrize("name,mods,n", [("htad", ["audio", "accel"], 1386), ("emoji-9", ["image", "text"], 1870)])
def test_fixed_stratified_standardised_splits(name, mods, n):
    cfg = Config().override([f"data.name={name}"]).data
    a, b = build_splits(cfg), build_splits(cfg)
    assert a.train.modalities == mods
    sizes = [len(s.labels) for s in (a.train, a.val, a.test)]
    assert sum(sizes) == n and sizes[1] == round(0.15 * n) == sizes[2]
    for part_a, part_b in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        np.testing.assert_array_equal(part_a.labels.numpy(), part_b.labels.numpy())
        for m in mods:
            np.testing.assert_array_equal(part_a.inputs[m].numpy(), part_b.inputs[m].numpy())
    whole = np.bincount(np.concatenate([a.train.labels.numpy(), a.val.labels.numpy(), a.test.labels.numpy()]))
    test_share = np.bincount(a.test.labels.numpy(), minlength=len(whole)) / whole
    assert np.all(np.abs(test_share - 0.15) < 0.03)  # stratified
    x = np.concatenate([a.train.inputs[mods[0]].numpy(), a.val.inputs[mods[0]].numpy(),
                        a.test.inputs[mods[0]].numpy()]).reshape(n, -1)
    assert np.allclose(x.mean(0), 0, atol=1e-3)  # whole-set standardisation (label-free)
    other = build_splits(Config().override([f"data.name={name}", "data.split_seed=1"]).data)
    assert not np.array_equal(other.test.labels.numpy(), a.test.labels.numpy()) or \
        not np.array_equal(other.test.inputs[mods[0]].numpy(), a.test.inputs[mods[0]].numpy())


def test_list_names_both(capsys):
    from mmbalance.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+htad\s+HTAD", out, re.M) and re.search(r"^\s+emoji-9\s+Emoji-9", out, re.M)
