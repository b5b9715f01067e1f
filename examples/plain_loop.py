"""OGM-GE and D&R in a plain PyTorch training loop, with ``mmbalance.functional`` and no mmbalance Trainer.

    python examples/plain_loop.py --epochs 20 --reinit-every 5

The same two methods on mmbalance's own loop are ``mmbalance train --method ogm-ge+diagnose-relearn``; a test
(``tests/test_plain_loop.py``) checks that this loop's per-epoch test accuracies and final weights equal the
Trainer's on the same seed and data (with ``method_args.ogm-ge.ge=false``: this loop adds no gradient noise, and
``train.monitor_heads=false``: it trains no monitor heads). Bring your own model: all the loop needs from it is
each modality's encoder, a fused head, and each modality's share of the fused logits (concat and sum fusions
have ``modality_logits``).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from mmbalance.config import DataConfig, ModelConfig
from mmbalance.data import build_splits
from mmbalance.engine.checkpoint import seed_everything
from mmbalance.engine.samplers import RandomOrder
from mmbalance.functional.diagnose_relearn import encoder_init_params, purity_gap, soft_reinit_
from mmbalance.functional.ogm_ge import fusion_shares, modulate_, ogm_coefficients, ogm_scores, select_params
from mmbalance.models import MultimodalNet, build_model

Tensors = Tuple[Dict[str, torch.Tensor], torch.Tensor]


def tensors(split) -> Tensors:
    """An in-memory split as plain tensors: ``({modality: float32 [N, ...]}, labels [N])``."""
    return {m: split.inputs[m].float() for m in split.modalities}, split.labels


@torch.no_grad()
def encoder_features(model: MultimodalNet, x: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    model.eval()
    return {m: model.encoders[m](v) for m, v in x.items()}


@torch.no_grad()
def accuracy(model: MultimodalNet, data: Tensors) -> float:
    model.eval()
    return float((model(data[0]).fused.argmax(1) == data[1]).float().mean())


def train(dataset: str = "av-digits", preset: str = "hard", epochs: int = 20, seed: int = 0, batch_size: int = 64,
          lr: float = 0.05, alpha: float = 0.8, reinit_every: int = 20, max_reinit: int = 3,
          lambda_: float = 3.0) -> Tuple[MultimodalNet, List[float]]:
    """Train; returns the model and its test accuracy after every epoch."""
    splits = build_splits(DataConfig(name=dataset, preset=preset))
    train_set, val_set, test_set = tensors(splits.train), tensors(splits.val), tensors(splits.test)
    (x_tr, y_tr), mods, classes = train_set, list(train_set[0]), splits.train.num_classes
    seed_everything(seed)  # the model's initial weights
    model = build_model(ModelConfig(), {m: tuple(x_tr[m].shape[1:]) for m in mods}, classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    modulated = {m: select_params(model.encoders[m], "weights") for m in mods}  # OGM-GE: encoder weights
    init = {m: encoder_init_params(model.state_dict(), model.encoders[m], m) for m in mods}  # D&R's anchor
    test_acc, n_reinit = [], 0
    for epoch in range(epochs):
        model.train()
        for idx in RandomOrder(len(y_tr), seed).indices(epoch).split(batch_size):
            out, y = model({m: x_tr[m][idx] for m in mods}), y_tr[idx]
            loss = F.cross_entropy(out.fused, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            shares = fusion_shares(model.fusion.modality_logits, out.features)  # OGM-GE, between backward and step
            _, coeff = ogm_coefficients(ogm_scores(shares, y, mods), alpha)
            if epoch <= 50:  # the official modulation window
                for i, m in enumerate(mods):
                    modulate_(modulated[m], coeff[i], noise=False)
            opt.step()
        test_acc.append(accuracy(model, test_set))
        if epoch > 0 and epoch % reinit_every == 0 and n_reinit < max_reinit:  # D&R, after the evaluation
            f_tr, f_va = encoder_features(model, x_tr), encoder_features(model, val_set[0])
            for m in mods:
                gap = purity_gap(f_tr[m], y_tr, f_va[m], val_set[1], classes, lambda_)
                soft_reinit_(model.encoders[m], init[m], gap["alpha"])
            n_reinit += 1
    return model, test_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="av-digits")
    ap.add_argument("--preset", default="hard")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reinit-every", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, acc = train(args.dataset, args.preset, args.epochs, args.seed, reinit_every=args.reinit_every)
    print("test accuracy per epoch:", " ".join(f"{a:.4f}" for a in acc))


if __name__ == "__main__":
    main()
