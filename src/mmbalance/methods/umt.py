"""UMT — Uni-Modal Teacher (Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, *On Uni-Modal Feature Learning in
Supervised Multi-Modal Learning*, ICML 2023; first as *Improving Multi-Modal Learning with Uni-Modal Teachers*,
arXiv 2106.11059).

First one unimodal model per modality (a teacher: the run's encoder architecture + a linear head, trained on its
own cross-entropy) is trained; then the multimodal model trains on ``CE(fused) + scaling · Σ_m MSE(f_m, t_m)``,
distilling each frozen teacher's encoder feature ``t_m`` into the student's encoder feature ``f_m``. No official
code was found; BalanceBenchmark (``UMT_trainer.py``) trains the teachers as separate ``unimodal`` runs, loads
their best checkpoints and adds ``scaling · MSELoss(teacher feature, student feature)`` (``scaling = 10``) per
modality inside its modulation window. Here the teachers train in a pre-training *stage* of the same run
(``Plugin.stages``), owned by the plug-in with their own optimiser (the run's ``optim`` settings), checkpointed
and resumed after every teacher epoch, each kept at its best validation accuracy (``teacher_select``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
from torch import nn

from ..data.base import sample_shape
from ..engine.metrics import accuracy
from ..engine.optim import build_optimizer, build_scheduler
from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..functional.common import tensor_sum
from ..engine.stages import Stage
from ..models import MultimodalNet, build_model
from ..registry import METHODS
from .common import check_window, encoder_modalities, in_window

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models import ModelOutput


def feature_distillation(student: torch.Tensor, teacher: torch.Tensor, world_size: int = 1,
                         global_count: Optional[int] = None) -> torch.Tensor:
    """``mean((f − t)²)`` over rows and channels [BB ``nn.MSELoss()``]; under DDP weighted so that the gradient
    average over ranks is the global batch's mean (as ``Trainer.cross_entropy``)."""
    sq = (student.float() - teacher.float()).pow(2)
    if world_size == 1 or global_count is None:
        return sq.mean()
    return sq.sum() * (world_size / max(global_count * sq.shape[1], 1))


def _cpu(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@METHODS.register("umt")
class UMT(Plugin):
    """UMT: unimodal teachers trained in a first stage, distilled into the multimodal encoders (feature MSE).

    A teacher stage (``umt-teachers``: one unimodal model per modality, own optimiser), then the fused CE
    plus ``scaling ·`` the MSE between each student encoder feature and its frozen teacher's. Logged: stage
    records ``umt/teacher/<m>/loss`` and ``umt/teacher/<m>/val_acc``; main epochs ``umt/distill/<m>``."""

    @dataclass
    class Options:
        scaling: float = option(10.0, "weight of each modality's feature-distillation MSE", "[BB trainer_config]",
                                ge=0)
        teacher_epochs: Optional[int] = option(None, "epochs of the teacher stage; null = train.epochs (the "
                                               "unimodal runs use the same epoch budget)", "[BB]", ge=1)
        teacher_select: str = option("best_val", "keep each teacher at its best validation accuracy (best_val, "
                                     "BalanceBenchmark loads the best unimodal checkpoint) or its last epoch", "[BB]",
                                     choices=("best_val", "last"))
        teacher_mode: str = option("eval", "mode of the frozen teacher's forward during distillation: eval, or train "
                                   "(BalanceBenchmark never switches the loaded teachers to eval: batch-norm batch "
                                   "statistics, dropout on)", "[RECON]", choices=("eval", "train"))
        teacher_lr: Optional[float] = option(None, "teachers' learning rate; null = optim.lr", "[BB]", gt=0)
        modulation_starts: int = option(0, "first epoch (0-based) with the distillation term", "[BB]", ge=0)
        modulation_ends: int = option(80, "last epoch with the distillation term, inclusive", "[BB]", ge=0)

    needs_default_step = True  # adds its loss term in the default step

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._teachers: Optional[MultimodalNet] = None  # encoder m + head m = modality m's teacher; no fusion head
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._scheduler: Any = None
        self._best: Dict[str, Dict[str, Any]] = {}

    def validate(self) -> None:
        check_window(self)

    @property
    def teachers(self) -> MultimodalNet:
        """The teachers (one network holding every modality's unimodal model), built in ``configure_model``."""
        if self._teachers is None:
            raise RuntimeError("umt: the teachers are built when the model is configured")
        return self._teachers

    def _teacher_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            raise RuntimeError("umt: the teachers' optimiser is built when the model is configured")
        return self._optimizer

    # ------------------------------------------------------------------ teachers
    def configure_model(self, trainer: "Trainer", model: MultimodalNet) -> None:
        self._mods = encoder_modalities(trainer, self)
        cfg = trainer.cfg
        shapes = {m: sample_shape(trainer.splits.train, m) for m in model.modalities}
        with torch.random.fork_rng(devices=[]):  # the student keeps joint's initialisation and random stream
            torch.manual_seed(cfg.train.seed + 7177)
            teachers = build_model(cfg.model, shapes, trainer.num_classes)
        teachers.fusion = None  # one unimodal model per modality: nothing is shared between them
        self._teachers = teachers.to(trainer.device)
        self._epochs = int(self.teacher_epochs or cfg.train.epochs)
        self._optimizer = build_optimizer(cfg.optim, list(teachers.parameters()), self.teacher_lr)
        self._scheduler = build_scheduler(cfg.optim, self._optimizer, self._epochs)

    def stages(self, trainer: "Trainer") -> List[Stage]:
        return [Stage("umt-teachers", self._epochs, self._teacher_step, self._mods, self._teacher_epoch_end)]

    def _teacher_step(self, trainer: "Trainer", batch: "Batch") -> Losses:
        self.teachers.train()
        with trainer.autocast():
            logits = self.teachers({m: batch.inputs[m] for m in self._mods}, fuse=False).logits
        losses: Losses = {f"teacher_{m}": trainer.cross_entropy(logits[m], batch.labels(m), batch.global_count(m))
                          for m in self._mods}
        optimizer = self._teacher_optimizer()
        optimizer.zero_grad(set_to_none=True)
        tensor_sum(losses.values()).backward()
        grads = [p.grad for p in self.teachers.parameters() if p.grad is not None]
        if trainer.world_size > 1:  # the teachers are outside DDP: average their gradients by hand
            for g in grads:
                g.copy_(trainer.all_reduce(g, "mean"))
        if trainer.cfg.optim.grad_clip:
            params = [p for p in self.teachers.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, trainer.cfg.optim.grad_clip)
        optimizer.step()
        trainer.count(forwards=1, backwards=1)
        for m in self._mods:
            self.log_mean(f"teacher/{m}/loss", losses[f"teacher_{m}"].detach())
        return losses

    @torch.no_grad()
    def _teacher_val_accuracy(self, trainer: "Trainer") -> Dict[str, float]:
        logits: Dict[str, List[torch.Tensor]] = {m: [] for m in self._mods}
        ys: List[torch.Tensor] = []
        with trainer.side_pass(train=False):
            self.teachers.eval()
            for batch in trainer.data.iter_batches("val", train=False, modalities=self._mods):
                ys.append(batch.y)
                with trainer.autocast():
                    out = self.teachers({m: batch.inputs[m] for m in self._mods}, fuse=False)
                for m in self._mods:
                    logits[m].append(out.logits[m].float())
        y = torch.cat(ys)
        return {m: accuracy(torch.cat(z), y) for m, z in logits.items()}

    def _teacher_epoch_end(self, trainer: "Trainer", epoch: int) -> None:
        if self._scheduler is not None:
            self._scheduler.step()
        acc = self._teacher_val_accuracy(trainer)
        for m in self._mods:
            self.log(f"teacher/{m}/val_acc", acc[m])
            if self.teacher_select == "best_val" and acc[m] > self._best.get(m, {}).get("acc", -1.0):
                self._best[m] = {"acc": acc[m], "epoch": epoch, "encoder": _cpu(self.teachers.encoders[m]),
                                 "head": _cpu(self.teachers.heads[m])}
        if epoch == self._epochs - 1 and self.teacher_select == "best_val":
            for m, best in self._best.items():  # distil from each teacher's best validation epoch
                self.teachers.encoders[m].load_state_dict(best["encoder"])
                self.teachers.heads[m].load_state_dict(best["head"])
                self.log(f"teacher/{m}/best_epoch", best["epoch"])

    # ------------------------------------------------------------------ distillation
    def compute_loss(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput", losses: Losses) -> None:
        if not in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            return
        self.teachers.train(self.teacher_mode == "train")
        for m in self._mods:
            if m not in out.features:
                continue
            with torch.no_grad(), trainer.autocast():
                t = self.teachers.encoders[m](batch.inputs[m])
            d = feature_distillation(out.features[m], t, trainer.world_size, batch.global_count(m))
            losses[f"umt_distill_{m}"] = self.scaling * d
            self.log_mean(f"distill/{m}", d.detach())
        trainer.count(forwards=1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"teachers": None if self._teachers is None else _cpu(self._teachers),
                "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
                "scheduler": None if self._scheduler is None else self._scheduler.state_dict(),
                "best": {m: dict(b) for m, b in self._best.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if self._teachers is not None and state.get("teachers") is not None:
            self._teachers.load_state_dict(state["teachers"])
        if self._optimizer is not None and state.get("optimizer") is not None:
            self._optimizer.load_state_dict(state["optimizer"])
        if self._scheduler is not None and state.get("scheduler") is not None:
            self._scheduler.load_state_dict(state["scheduler"])
        self._best = {m: dict(b) for m, b in state.get("best", {}).items()}


__all__ = ["UMT", "feature_distillation"]
