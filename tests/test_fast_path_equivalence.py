"""The fast data path (frame cache + resident batches + batched augmentation) gives the plain path's accuracy.

Runs the core of ``benchmarks/check_fast_path.py`` with tiny sizes on CPU: both paths must learn (well above
the 1/6 chance level) and agree within the check's tolerance, and a deliberately broken fast path (cached
training rows shuffled against their labels) must be reported as different, so that the check can fail.
The tolerance floor is 0.1 here (not the script's 0.05): the tiny test split has 30 clips, one clip is 3.3
accuracy points.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

SEEDS = (0, 1)
FLOOR = 0.1


def load_check():
    """benchmarks/check_fast_path.py as a module (registered: its dataclass needs a module to resolve in)."""
    if "check_fast_path" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "check_fast_path.py"
        spec = importlib.util.spec_from_file_location("check_fast_path", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["check_fast_path"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["check_fast_path"]


@pytest.fixture(scope="module")
def fast_path_check():
    return load_check()


@pytest.fixture(scope="module")
def prepared(fast_path_check, tmp_path_factory):
    work = tmp_path_factory.mktemp("fast_path")
    # less confusion than the script's default so that tiny runs learn clearly (about 0.9 test accuracy)
    counts = fast_path_check.make_learnable_tree(work / "raw", 120, frame_hw=(32, 42), confuse=(0.1, 0.2))
    fast_path_check.prepare_cremad(work / "raw", work / "prep")
    settings = fast_path_check.CheckSettings(epochs=6, batch=16, image_size=16, audio_frames=48, cache_size=32,
                                             device="cpu")
    return work / "prep", settings, counts


@pytest.fixture(scope="module")
def result(fast_path_check, prepared):
    root, settings, _ = prepared
    return fast_path_check.check(root, SEEDS, settings, floor=FLOOR)


def test_both_paths_learn_and_agree(result, prepared):
    assert prepared[2] == {"train": 90, "test": 30}
    for p in ("plain", "fast"):
        accs = [r["test_acc"] for r in result[p]["runs"]]
        assert len(accs) == len(SEEDS)
        assert min(accs) > 0.6, (p, accs)  # chance is 1/6
        assert result[p]["train_s_per_epoch"] > 0
    assert result["agree"], result
    assert abs(result["diff"]) <= result["tolerance"]
    assert result["tolerance"] >= FLOOR


def test_a_broken_fast_path_is_detected(fast_path_check, prepared, result):
    root, settings, _ = prepared
    broken = fast_path_check.check(root, SEEDS, settings, floor=FLOOR, fast_variant="shuffled-cache",
                                   plain=result["plain"])
    assert broken["fast"]["variant"] == "shuffled-cache"
    assert not broken["agree"], broken
    assert broken["diff"] < -broken["tolerance"]
    assert "DIFFER" in fast_path_check.report(broken)


def test_comparison_rule():
    mod = load_check()
    same = mod.compare([0.60, 0.64, 0.62], [0.61, 0.63, 0.65], floor=0.05)
    assert same["agree"] and same["tolerance"] == pytest.approx(0.05)  # 2 * pooled std (0.04) < floor
    noisy = mod.compare([0.50, 0.70, 0.60], [0.62, 0.82, 0.72], floor=0.05)
    assert noisy["pooled_std"] == pytest.approx(0.1) and noisy["agree"]  # diff 0.12 <= 2 * 0.1
    assert not mod.compare([0.60, 0.62, 0.61], [0.50, 0.52, 0.51], floor=0.05)["agree"]


def test_fast_path_run_resumes_exactly(prepared, tmp_path):
    """The fast path's randomness (random frame per segment, batched crop/flip drawn from the run's augmentation
    generator) is part of the checkpoint: an interrupted cached + resident run resumes to the same records.
    (Textured frames: on uniform frames a crop or a flip would change nothing and prove nothing.)"""
    from conftest import assert_resume_is_exact

    root = prepared[0]
    assert_resume_is_exact(tmp_path, [
        "data.name=cremad", f"data.root={root}", "data.options.val_size=12", "data.options.image_size=16",
        "data.options.audio_frames=48", "data.options.cache=true", f"data.options.cache_dir={tmp_path / 'cache'}",
        "data.options.cache_size=32", "data.resident=true", "model.encoder=cnn", "model.encoder_args={width: 4}",
        "model.feature_dim=8", "train.batch_size=16", "method=joint-aux"], crash_at=2, epochs=3)
