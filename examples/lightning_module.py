"""mmbalance's methods in your own PyTorch Lightning module (``pip install lightning``).

    python examples/lightning_module.py --method ogm-ge+dus-h --epochs 20

Your module keeps its model, its optimizer and Lightning's trainer, callbacks and checkpoints; ``BalanceMixin``
runs the method's plug-ins (their steps, batches and epoch events) inside it. A test (``tests/test_lightning.py``)
checks that this module trains exactly like mmbalance's own Trainer (OGM-GE, D&R, BSS-L, DUS-H, MLA) and resumes
exactly from Lightning's checkpoints. Details and limits: ``docs/lightning.md``.
"""
from __future__ import annotations

import argparse
from typing import Any, Mapping, Optional, Sequence

import lightning as L
import torch

from mmbalance.config import DataConfig, ModelConfig
from mmbalance.data import Splits, build_splits
from mmbalance.engine.checkpoint import seed_everything
from mmbalance.lightning import BalanceMixin
from mmbalance.models import build_model


class BalancedClassifier(BalanceMixin, L.LightningModule):
    """A multimodal classifier (any ``MultimodalNet``: here mmbalance's MLP encoders and concat fusion) trained
    with an mmbalance method."""

    def __init__(self, splits: Splits, method: str, method_args: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 overrides: Sequence[str] = (), lr: float = 0.05, seed: int = 0):
        super().__init__()
        seed_everything(seed)  # the initial weights
        shapes = {m: tuple(splits.train.inputs[m].shape[1:]) for m in splits.train.modalities}
        self.model = build_model(ModelConfig(), shapes, splits.train.num_classes)
        self.lr = lr
        self.setup_balance(self.model, splits, method, method_args, [f"train.seed={seed}", *overrides])

    def configure_optimizers(self):
        return torch.optim.SGD(self.balance_param_groups(), lr=self.lr, momentum=0.9, weight_decay=1e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="ogm-ge+dus-h")
    ap.add_argument("--dataset", default="av-digits")
    ap.add_argument("--preset", default="hard")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="runs/lightning")
    args = ap.parse_args()
    torch.set_num_threads(1)
    module = BalancedClassifier(build_splits(DataConfig(name=args.dataset, preset=args.preset)), args.method)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, limit_val_batches=0,
                        num_sanity_val_steps=0, default_root_dir=args.out)
    trainer.fit(module)
    print("test accuracy per epoch:", " ".join(f"{r['test']['acc']:.4f}" for r in module.balance.history))


if __name__ == "__main__":
    main()
