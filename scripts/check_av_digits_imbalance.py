#!/usr/bin/env python
"""Measure the modality imbalance of the embedded AV-digits presets (a standalone sanity check).

Independent of the training engine on purpose: plain torch + scikit-learn, so that it checks the *data*.

Protocol (per preset and seed): stratified 70/15/15 split; encoders flatten -> Linear(d, 128) -> ReLU ->
Linear(128, 64) -> ReLU; the joint model concatenates both 64-d features into one linear head; SGD lr 0.05,
momentum 0.9, batch 64, 20 epochs, cross-entropy on the fused logits (plus, for ``joint_aux``, one
cross-entropy per modality on its own linear head). Reported on the test split:

* joint accuracy; joint accuracy with per-modality auxiliary heads and losses (``joint_aux``);
  the accuracy of each modality's slice of the fused head (``W[:, slice] f_m + b``);
* unimodal accuracy (the same encoder + its own linear head trained alone);
* linear-probe accuracy (multinomial logistic regression, fit on train features) of each encoder
  trained alone / inside the joint model / untrained (the random-encoder floor).

Usage: python scripts/check_av_digits_imbalance.py [--presets clean,hard] [--seeds 0,1,2] [--path FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.data.embedded import load_av_digits_arrays  # noqa: E402

MODALITIES = ("image", "audio")
EPOCHS, BATCH, LR, MOMENTUM, HIDDEN, FEAT = 20, 64, 0.05, 0.9, 128, 64


def encoder(in_dim: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, FEAT), nn.ReLU())


class Joint(nn.Module):
    def __init__(self, dims: dict[str, int], n_classes: int, aux: bool = False):
        super().__init__()
        self.mods = list(dims)
        self.enc = nn.ModuleDict({m: encoder(d) for m, d in dims.items()})
        self.head = nn.Linear(FEAT * len(dims), n_classes)
        # optional per-modality auxiliary heads (the "joint-aux" baseline); used only in the loss
        self.aux = nn.ModuleDict({m: nn.Linear(FEAT, n_classes) for m in dims}) if aux else None

    def features(self, xs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.enc[m](xs[m]) for m in self.mods}

    def forward(self, xs):
        return self.head(torch.cat([self.features(xs)[m] for m in self.mods], dim=1))

    def loss(self, xs, y):
        feats = self.features(xs)
        loss = nn.functional.cross_entropy(self.head(torch.cat([feats[m] for m in self.mods], dim=1)), y)
        if self.aux is not None:
            loss = loss + sum(nn.functional.cross_entropy(self.aux[m](feats[m]), y) for m in self.mods)
        return loss

    def slice_logits(self, feats, m):
        i = self.mods.index(m)
        return feats[m] @ self.head.weight[:, i * FEAT:(i + 1) * FEAT].T + self.head.bias


def train(model: nn.Module, xs: dict[str, torch.Tensor], y: torch.Tensor, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), BATCH):
            idx = perm[start:start + BATCH]
            opt.zero_grad()
            model.loss({m: x[idx] for m, x in xs.items()}, y[idx]).backward()
            opt.step()
    model.eval()


def probe(f_train, y_train, f_test, y_test) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(f_train, y_train)
    return float(clf.score(f_test, y_test))


def acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def run(preset: str, seed: int, path: str | None) -> dict[str, float]:
    data = load_av_digits_arrays(preset, path=path)
    x_all = {m: torch.from_numpy(data["inputs"][m]) for m in MODALITIES}
    y_all = torch.from_numpy(data["labels"])
    idx = np.arange(len(y_all))
    tr, rest = train_test_split(idx, train_size=0.70, stratify=data["labels"], random_state=seed)
    _, te = train_test_split(rest, train_size=0.5, stratify=data["labels"][rest], random_state=seed)
    tr, te = torch.from_numpy(tr), torch.from_numpy(te)
    x_tr, x_te = {m: x[tr] for m, x in x_all.items()}, {m: x[te] for m, x in x_all.items()}
    y_tr, y_te = y_all[tr], y_all[te]
    dims = {m: int(np.prod(x.shape[1:])) for m, x in x_all.items()}
    out: dict[str, float] = {}

    torch.manual_seed(seed)
    untrained = Joint(dims, 10)
    torch.manual_seed(seed)
    joint = Joint(dims, 10)
    train(joint, x_tr, y_tr, seed)
    with torch.no_grad():
        f_tr, f_te = joint.features(x_tr), joint.features(x_te)
        r_tr, r_te = untrained.features(x_tr), untrained.features(x_te)
        out["joint"] = acc(joint(x_te), y_te)
        for m in MODALITIES:
            out[f"{m}_head_slice"] = acc(joint.slice_logits(f_te, m), y_te)
            out[f"{m}_probe_joint"] = probe(f_tr[m].numpy(), y_tr.numpy(), f_te[m].numpy(), y_te.numpy())
            out[f"{m}_probe_random"] = probe(r_tr[m].numpy(), y_tr.numpy(), r_te[m].numpy(), y_te.numpy())
    torch.manual_seed(seed)
    joint_aux = Joint(dims, 10, aux=True)
    train(joint_aux, x_tr, y_tr, seed)
    with torch.no_grad():
        out["joint_aux"] = acc(joint_aux(x_te), y_te)
    for m in MODALITIES:
        torch.manual_seed(seed)
        uni = Joint({m: dims[m]}, 10)
        train(uni, {m: x_tr[m]}, y_tr, seed)
        with torch.no_grad():
            out[f"{m}_alone"] = acc(uni({m: x_te[m]}), y_te)
            g_tr, g_te = uni.features({m: x_tr[m]})[m], uni.features({m: x_te[m]})[m]
            out[f"{m}_probe_alone"] = probe(g_tr.numpy(), y_tr.numpy(), g_te.numpy(), y_te.numpy())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="AV-digits imbalance check")
    parser.add_argument("--presets", default="clean,hard")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--path", default=None, help="alternative av_digits.npz (checked against SHA256SUMS)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for preset in args.presets.split(","):
        t0 = time.time()
        runs = [run(preset, s, args.path) for s in seeds]
        print(f"\n== preset {preset}: {len(seeds)} seeds, {time.time() - t0:.1f} s (test accuracy %, mean +- std)")
        for key in runs[0]:
            vals = 100 * np.array([r[key] for r in runs])
            print(f"  {key:22s} {vals.mean():5.1f} +- {vals.std():4.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
