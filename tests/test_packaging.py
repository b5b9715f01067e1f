"""The package as a pip user gets it: a wheel built from this tree (no network: ``--no-build-isolation``),
checked for what it must carry, installed non-editable into a fresh virtual environment (dependencies reused
from the current environment, nothing downloaded) and used from another directory: ``--version``, ``prepare``,
``train --config cremad-gewu`` by name, ``eval``."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from test_paper_datasets import make_cremad_raw

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the tree (the build writes egg-info/build folders next to the sources)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src-tree"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "-w", str(base / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = list((base / "dist").glob("mmbalance-*.whl"))
    assert len(wheels) == 1
    return wheels[0], out.stdout + out.stderr


def test_wheel_carries_configs_types_data_and_licences(wheel):
    path, log = wheel
    assert "deprecat" not in log.lower(), log  # e.g. the licence-table deprecation setuptools printed 3 times
    names = set(zipfile.ZipFile(path).namelist())
    from mmbalance import configs

    for name in configs.names():
        assert f"mmbalance/configs/{name}.yaml" in names
    assert "cremad-gewu" in configs.names()
    for f in ("mmbalance/py.typed", "mmbalance/data/embedded/files/av_digits.npz",
              "mmbalance/data/embedded/files/mfeat.npz", "mmbalance/data/embedded/files/SHA256SUMS",
              "mmbalance/data/embedded/ATTRIBUTION.md"):
        assert f in names, f
    dist = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist}/licenses/LICENSE" in names
    meta = zipfile.ZipFile(path).read(f"{dist}/METADATA").decode()
    import mmbalance

    assert f"Version: {mmbalance.__version__}" in meta and "License-Expression: MIT AND CC-BY-4.0" in meta
    assert "License-File: LICENSE" in meta


def test_installed_wheel_trains_by_config_name_from_another_directory(wheel, tmp_path):
    path, _ = wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # torch & co. from this environment, as a plain path: .pth files there (an editable mmbalance) are not run
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                        str(path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}")

    def mmb(*args):
        res = subprocess.run([str(bindir / "mmbalance"), *args], cwd=work, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, f"mmbalance {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
        return res.stdout

    import mmbalance

    assert (site / "mmbalance" / "configs" / "cremad-gewu.yaml").is_file()
    # the installed copy answers: this source tree is a git checkout and would add "(git <commit>)"
    assert mmb("--version").strip() == f"mmbalance {mmbalance.__version__}"
    make_cremad_raw(work / "raw")
    mmb("prepare", "cremad", "--raw", "raw", "--out", "data", "--no-progress")
    # the protocol config by name; small encoders and images keep this to seconds
    out = mmb("train", "--config", "cremad-gewu", "--root", "data", "--out", "run", "--epochs", "1", "--threads", "1",
              "--no-progress", "model.encoder=cnn", "model.encoder_args={width: 4}", "model.feature_dim=8",
              "data.options.image_size=16", "data.options.val_size=6", "train.batch_size=8", "eval.probe=false",
              "log.tensorboard=false")
    assert "joint on cremad" in out
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["dataset"] == "cremad" and summary["provenance"]["git"] is None
    assert summary["provenance"]["config"]["optim"]["scheduler"] == "step"  # from the packaged cremad-gewu.yaml
    assert "split" in mmb("eval", "run", "--threads", "1").splitlines()[0]
