"""Evaluation passes over a split: predictions, metrics, per-modality accuracies and features."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..functional.common import tensor_sum
from ..models import ModelOutput
from .metrics import accuracy, classification_metrics

if TYPE_CHECKING:
    from .trainer import Trainer


@torch.no_grad()
def collect(trainer: "Trainer", split: str, features: bool = False,
            modalities: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the model over a split in order with evaluation transforms. Returns ``y``, ``logits`` (per
    modality), ``fused``, ``pred`` (the evaluation prediction), ``shares`` (each modality's additive share
    of the fused logits, when the fusion has ``modality_logits``: concat, sum) and, if ``features``,
    ``features``. The model's train/eval mode is restored afterwards."""
    was_training = trainer.model.training
    trainer.model.eval()
    trainer.data.set_split_mode(split, False)
    ys: List[torch.Tensor] = []
    fused: List[torch.Tensor] = []
    preds: List[torch.Tensor] = []
    logits: Dict[str, List[torch.Tensor]] = {}
    feats: Dict[str, List[torch.Tensor]] = {}
    shares: Dict[str, List[torch.Tensor]] = {}
    share_fn = getattr(trainer.model.fusion, "modality_logits", None)
    for batch in trainer.data.eval_loader(split, modalities):
        batch = trainer.data.to_device(batch, split, train=False)
        out = trainer.forward(batch.inputs)
        ys.append(batch.y)
        if out.fused is not None:
            fused.append(out.fused.float())
            if share_fn is not None:
                with trainer.autocast():
                    for m, z in share_fn(out.paired_features()).items():
                        shares.setdefault(m, []).append(z.float())
        preds.append(predict(trainer, out).float())
        for m, z in out.logits.items():
            logits.setdefault(m, []).append(z.float())
            if features:
                feats.setdefault(m, []).append(out.features[m].float())
    trainer.model.train(was_training)  # train_epoch switches the train source back to training transforms
    res = {"y": torch.cat(ys).cpu(), "logits": {m: torch.cat(v).cpu() for m, v in logits.items()},
           "fused": torch.cat(fused).cpu() if fused else None, "pred": torch.cat(preds).cpu(),
           "shares": {m: torch.cat(v).cpu() for m, v in shares.items()}}
    if features:
        res["features"] = {m: torch.cat(v).cpu() for m, v in feats.items()}
    return res


def predict(trainer: "Trainer", out: ModelOutput) -> torch.Tensor:
    """The evaluation logits: the one plug-in that provides ``predict``, else ``eval.predict``."""
    rule = trainer.one_answer("predict", out)
    if rule is not None:
        return rule
    mode = trainer.cfg.eval.predict
    heads = tensor_sum(out.logits.values())
    if mode == "fused":
        return out.fused if out.fused is not None else heads
    if mode == "sum_of_heads":
        return heads + out.fused if out.fused is not None else heads
    if mode == "heads_only":
        return heads
    raise ValueError(f"eval.predict must be fused, sum_of_heads or heads_only, got {mode!r}")


def evaluate(trainer: "Trainer", split: str) -> Dict[str, Any]:
    """Metrics of the evaluation prediction on ``split`` plus per-modality head and share accuracies."""
    r = collect(trainer, split)
    m: Dict[str, Any] = classification_metrics(r["pred"], r["y"], trainer.num_classes)
    m["loss"] = float(F.cross_entropy(r["pred"], r["y"])) if len(r["y"]) else float("nan")
    m["modality_acc"] = {k: accuracy(z, r["y"]) for k, z in r["logits"].items()}
    # accuracy of each modality's share of the fused head (OGM-GE's per-modality measure; concat/sum)
    m["share_acc"] = {k: accuracy(z, r["y"]) for k, z in r["shares"].items()}
    return m


def public_metrics(m: Dict[str, Any]) -> Dict[str, Any]:
    """The metrics that summary.json reports for a split."""
    return {k: m[k] for k in ("acc", "macro_f1", "map", "modality_acc", "share_acc", "loss")}
