"""Names read from data files cannot reach outside their folder: one test per preparer and loader.

Every crafted entry (``..``, ``../x``, ``/etc/hostname``, ``0/../../../x``) must be refused with one line
naming the data file, the entry and the folder, before anything is read or written; the tree around the
dataset must be byte-for-byte unchanged (``verify`` and the Twitter2015 index case are in test_bad_input.py).
"""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from mmbalance import Config
from mmbalance.cli import main
from mmbalance.data import build_splits
from mmbalance.data.base import DataError
from mmbalance.data.paths import contained

from test_paper_datasets import clip_frames, gray_frame, tone


def tree(folder: Path):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def refused_prepare(capsys, tmp_path, dataset, *extra, source, entry):
    """``prepare`` must fail with one line naming ``source`` and ``entry`` and write nothing anywhere."""
    before = tree(tmp_path)
    rc = main(["prepare", dataset, "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--no-progress",
               *map(str, extra)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(source) in lines[0] and f"entry '{entry}" in lines[0] and "refused" in lines[0], lines[0]
    assert tree(tmp_path) == before  # not even OUT was created


def refused_load(tmp_path, dataset, *options, source, entry):
    before = tree(tmp_path)
    with pytest.raises(DataError) as e:
        build_splits(Config().override([f"data.name={dataset}", f"data.root={tmp_path / 'out'}", *options]).data)
    assert str(source) in str(e.value) and f"entry '{entry}" in str(e.value) and "refused" in str(e.value), e.value
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------------------------- the helper
@pytest.mark.parametrize("entry", ["..", "../x", "/etc/hostname", "0/../../../x", "a/../..", "", ".", "a\x00b"])
def test_contained_refuses_names_that_leave_the_root(tmp_path, entry):
    with pytest.raises(DataError, match="refused") as e:
        contained(tmp_path / "root", entry, "list.csv")
    assert str(e.value).startswith("list.csv: entry ")


@pytest.mark.parametrize("entry", ["x", "a/b.jpg", "a/../b", "v_x.avi"])
def test_contained_keeps_legitimate_names_as_written(tmp_path, entry):
    assert contained(tmp_path / "root", entry, "list.csv") == tmp_path / "root" / entry


def test_contained_is_lexical_so_symlinked_folders_keep_working(tmp_path):
    (tmp_path / "disk" / "clip").mkdir(parents=True)
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path / "disk", tmp_path / "root" / "visual")  # the user's own layout choice
    assert contained(tmp_path / "root", "visual/clip", "list.csv").is_dir()


# ---------------------------------------------------------------------------------------------- audio-visual
def cremad_raw(raw: Path, bad: str):
    rows = {"train": [], "test": []}
    for k, e in enumerate(["NEU", "HAP"]):
        for a in range(4):
            name = f"10{a:02d}_DFA_{e}_XX"
            rows["test" if a == 3 else "train"].append(f"{name},{e}\n")
            clip_frames(raw / "Image-01-FPS" / name, 2)
            tone(raw / "AudioWAV" / f"{name}.wav", 200 + 40 * k + a)
    rows["train"].append(f"{bad},ANG\n")
    for s, r in rows.items():
        (raw / f"{s}.csv").write_text("".join(r))


def test_cremad_prepare_and_loader(tmp_path, capsys):
    cremad_raw(tmp_path / "raw", "..")
    refused_prepare(capsys, tmp_path, "cremad", source=tmp_path / "raw" / "train.csv", entry="..")
    clip_frames(tmp_path / "out" / "visual" / "1000_DFA_NEU_XX", 1)  # the good clip is there: the layout resolves
    tone(tmp_path / "out" / "audio" / "1000_DFA_NEU_XX.wav", 200)
    (tmp_path / "out" / "train.csv").write_text("1000_DFA_NEU_XX,NEU\n..,ANG\n")
    (tmp_path / "out" / "test.csv").write_text("1001_DFA_NEU_XX,NEU\n")
    refused_load(tmp_path, "cremad", source=tmp_path / "out" / "train.csv", entry="..")


def test_kinetics_sounds_prepare(tmp_path, capsys):
    raw = tmp_path / "raw"
    rows = []
    for c in range(2):
        for i in range(3):
            name = f"yt{c}{i}_000000_000010"
            rows.append(f"{name},10,{c}\n")
            clip_frames(raw / "visual" / name, 2)
            (raw / "fbank").mkdir(parents=True, exist_ok=True)
            np.save(raw / "fbank" / f"{name}.npy", np.zeros((8, 4), dtype=np.float32))
    (raw / "my_train.txt").write_text("".join(rows) + "..,10,1\n")
    (raw / "my_test.txt").write_text("".join(rows[:2]))
    (raw / "classes.txt").write_text("a\nb\n")
    refused_prepare(capsys, tmp_path, "kinetics-sounds", source=raw / "my_train.txt", entry="..")


def vggsound_csv(path: Path, bad_ytid: str):
    lines = [f"v{c}{i},{10 * i},\"class {c}\",{'test' if i == 2 else 'train'}\n" for c in range(2) for i in range(3)]
    lines.append(f"{bad_ytid},0,\"class 1\",train\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))


@pytest.mark.parametrize("ytid", ["../../x", "/etc/hostname"])
def test_vggsound_prepare_and_loader(tmp_path, capsys, ytid):
    raw = tmp_path / "raw"
    vggsound_csv(raw / "vggsound.csv", ytid)
    for c in range(2):
        for i in range(3):
            clip_frames(raw / "frames" / f"v{c}{i}_{10 * i}", 1)
            tone(raw / "wav" / f"v{c}{i}_{10 * i}.wav", 300 + c, sr=8000, seconds=0.1)
    refused_prepare(capsys, tmp_path, "vggsound", source=raw / "vggsound.csv", entry=f"{ytid}_0")
    vggsound_csv(tmp_path / "out" / "vggsound.csv", ytid)
    refused_load(tmp_path, "vggsound", source=tmp_path / "out" / "vggsound.csv", entry=f"{ytid}_0")


# ---------------------------------------------------------------------------------------------- frames + flow
def test_nvgesture_prepare_list_folder_and_loader(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "outside").mkdir(parents=True)
    lines = []
    for s in range(2):
        name = f"class_01_subject{s}_r0"
        lines.append(f"path:./Video_data/class_01/subject{s}_r0 depth:sk_depth:0:8 color:sk_color:0:8 label:1\n")
        clip_frames(raw / "rgb" / name, 2)
        clip_frames(raw / "depth" / name, 2, mode="L")
    # a list line whose video folder climbs out of RAW
    (raw / "nvgesture_train_correct_cvpr2016_v2.lst").write_text(
        "".join(lines) + "path:./Video_data/../../../secret depth:sk_depth:0:8 color:sk_color:0:8 label:2\n")
    (raw / "nvgesture_test_correct_cvpr2016_v2.lst").write_text(lines[0])
    refused_prepare(capsys, tmp_path, "nvgesture", source=raw / "nvgesture_train_correct_cvpr2016_v2.lst",
                    entry="Video_data/../../../secret")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train.csv").write_text("class_01_subject0_r0,0\n..,1\n")
    (tmp_path / "out" / "test.csv").write_text("class_01_subject1_r0,0\n")
    refused_load(tmp_path, "nvgesture", source=tmp_path / "out" / "train.csv", entry="..")


def test_ucf101_prepare_and_loader(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "ucfTrainTestlist").mkdir(parents=True)
    (raw / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n2 B\n")
    train = []
    for c, cls in enumerate("AB"):
        for g in range(2):
            name = f"v_{cls}_g{g:02d}_c01"
            train.append(f"{cls}/{name}.avi {c + 1}")
            clip_frames(raw / "jpegs_256" / name, 2)
    (raw / "ucfTrainTestlist" / "trainlist01.txt").write_text("\n".join(train + ["B/.. 2"]) + "\n")
    (raw / "ucfTrainTestlist" / "testlist01.txt").write_text("A/v_A_g00_c01.avi\n")
    refused_prepare(capsys, tmp_path, "ucf101", source=raw / "ucfTrainTestlist" / "trainlist01.txt", entry="..")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "out" / "train.txt").write_text("A/v_A_g00_c01.avi 1\nB/.. 2\n")
    (tmp_path / "out" / "test.txt").write_text("A/v_A_g01_c01.avi 1\n")
    refused_load(tmp_path, "ucf101", source=tmp_path / "out" / "train.txt", entry="..")


def test_copy_flow_keeps_names_inside_both_folders(tmp_path):
    from mmbalance.data.papers.preprocess import copy_flow

    clip_frames(tmp_path / "secret" / "u", 1, mode="L")
    (tmp_path / "flow").mkdir()
    with pytest.raises(DataError, match=r"list.txt: entry '\.\./secret' .*refused"):
        copy_flow(tmp_path / "flow", "../secret", tmp_path / "out", source="list.txt")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- image + text
def test_sarcasm_prepare(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "text").mkdir(parents=True)
    for split, fname in (("train", "train.txt"), ("val", "valid2.txt"), ("test", "test2.txt")):
        lines = []
        for i in range(2):
            sid = f"{split}{i}"
            gray_frame(raw / "dataset_image" / f"{sid}.jpg", 10 * i)
            lines.append(repr([sid, "text", i % 2]))
        if split == "train":
            lines.append(repr(["../../etc/x", "text", 1]))
        (raw / "text" / fname).write_text("\n".join(lines) + "\n")
    (tmp_path / "feats").mkdir()
    refused_prepare(capsys, tmp_path, "sarcasm", "--text-features", tmp_path / "feats",
                    source=f"{raw / 'text' / 'train.txt'} line 3", entry="../../etc/x.jpg")


@pytest.mark.parametrize("field,entry", [("index", "0/../../../x"), ("image", "/etc/hostname")])
def test_twitter2015_prepare_index_and_image_id(tmp_path, capsys, field, entry):
    """The issue's case: an index like 0/../../../x wrote a .npy outside --out; an image id read any file."""
    raw = tmp_path / "raw"
    (raw / "twitter2015_images").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        rows = ["index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"]
        for i in range(2):
            gray_frame(raw / "twitter2015_images" / f"{split}{i}.jpg", 10)
            idx, image = str(i), f"{split}{i}.jpg"
            if (split, i) == ("test", 1):
                idx, image = (entry, image) if field == "index" else (idx, entry)
            rows.append(f"{idx}\t{i}\t{image}\t$T$ ok\tT")
        (raw / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "feats").mkdir()
    shown = f"test_{entry}.npy" if field == "index" else entry
    refused_prepare(capsys, tmp_path, "twitter2015", "--text-features", tmp_path / "feats",
                    source=f"{raw / 'test.tsv'} line 3", entry=shown)
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("column,entry", [("image", "../../x.jpg"), ("id", "../x")])
def test_image_text_loader_columns(tmp_path, column, entry):
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "text").mkdir()
    gray_frame(out / "images" / "a.jpg", 10)
    np.save(out / "text" / "a.npy", np.zeros(4, dtype=np.float32))
    row = {"id": "a", "image": "a.jpg", "label": "negative"}
    bad = dict(row, **{column: entry})
    (out / "train.csv").write_text("id,image,label\n" + ",".join(row.values()) + "\n" + ",".join(bad.values()) + "\n")
    (out / "test.csv").write_text("id,image,label\n" + ",".join(row.values()) + "\n")
    shown = entry if column == "image" else f"{entry}.npy"
    refused_load(tmp_path, "twitter2015", source=f"{out / 'train.csv'} line 3", entry=shown)
