"""D&R -- Diagnosing & Re-learning (Wei, Li, Feng, Hu; ECCV 2024; arXiv 2407.09705).

Every ``H`` epochs, each modality's *learning state* is diagnosed from the separability of its encoder's
representation space: k-means (k = number of classes) on the pooled features of the training set and
of the held-out validation set, clustering purity on each, and the gap ``g_k = |P_train - P_val|``.
A large gap (well learnt / over-fitted) leads to a strong *soft re-initialisation* of that encoder
towards its own initial weights, ``theta <- (1 - alpha_k) theta + alpha_k theta_init`` with
``alpha_k = tanh(lambda * g_k)``; a scarcely informative modality (low purity on both sets, small gap)
is barely touched, so it is not forced to memorise noise. Training itself is plain joint training
(cross-entropy on the fused logits, like ``joint``); the method only acts at epoch ends, so it stacks
with ``+`` on any loss- or gradient-level method (``joint-aux+diagnose-relearn``,
``ogm-ge+diagnose-relearn``).

Spec: ``shared/spec/methods.md`` section 1. Tags: [PAPER] the paper, [CODE] the official release
(GeWu-Lab/Diagnosing_Relearning_ECCV2024), [RECON] our choice where neither says.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..diagnostics.purity import BACKENDS, clustering_purity, resolve_backend
from ..engine.options import option
from ..engine.plugin import Plugin
from ..registry import METHODS

if TYPE_CHECKING:
    from ..engine.trainer import Trainer


EMBEDDINGS_FILE = "diagnose_relearn_embeddings.npz"


# ====================================================================== the math, as plain functions
def reinit_strength(gap: float, lambda_: float) -> float:
    """``alpha = tanh(lambda * gap)`` [PAPER]; in [0, 1) for gap >= 0."""
    return math.tanh(float(lambda_) * float(gap))


def purity_gap(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor,
               val_labels: torch.Tensor, num_classes: int, lambda_: float, n_init: int = 10, seed: int = 0,
               scale: bool = True, backend: str = "auto", max_iter: int = 300) -> Dict[str, float]:
    """The diagnosis of one modality [PAPER]: k-means purity (k = ``num_classes``) of its encoder features on
    the training set and on the held-out set, their gap ``g = |P_train - P_val|`` and the re-initialisation
    strength ``alpha = tanh(lambda * g)``. Returns ``{purity_train, purity_val, gap, alpha}``.

    k-means as in :func:`~mmbalance.diagnostics.purity.clustering_purity` (``scale``: min-max to [-1, 1] per
    set first [CODE]; ``backend``: torch on the features' device, scikit-learn, or auto)."""
    p = [clustering_purity(f, y, k=num_classes, n_init=n_init, seed=seed, scale=scale, backend=backend,
                           max_iter=max_iter)
         for f, y in ((train_features, train_labels), (val_features, val_labels))]
    gap = abs(p[0] - p[1])
    return {"purity_train": p[0], "purity_val": p[1], "gap": gap, "alpha": reinit_strength(gap, lambda_)}


def encoder_init_params(initial_state: Dict[str, torch.Tensor], encoder: nn.Module,
                        modality: str) -> Dict[str, torch.Tensor]:
    """The initial value of every *parameter* of ``encoder`` (no buffers), from a full-model state dict
    whose encoder entries are named ``encoders.<modality>.<name>``; CPU copies."""
    prefix = f"encoders.{modality}."
    params = {}
    for name, p in encoder.named_parameters():
        key = prefix + name
        if key not in initial_state:
            raise KeyError(f"diagnose-relearn: the initial model state has no entry {key!r}; the encoder of "
                           f"modality {modality!r} was changed after the model was built")
        v = initial_state[key]
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"diagnose-relearn: initial {key!r} has shape {tuple(v.shape)}, the encoder "
                             f"parameter has {tuple(p.shape)}")
        params[name] = v.detach().to("cpu", copy=True)
    return params


@torch.no_grad()
def soft_reinit_(encoder: nn.Module, init_params: Dict[str, torch.Tensor], alpha: float,
                 optimizer: Optional[torch.optim.Optimizer] = None, reset_optimizer_state: bool = False) -> int:
    """In place: every parameter ``w`` of ``encoder`` becomes ``(1 - alpha) * w + alpha * w_init`` [PAPER].

    Buffers (BN running statistics) are left alone [CODE]. With ``reset_optimizer_state`` the optimizer
    state of each re-initialised tensor (SGD momentum, Adam moments and step) is dropped, so the
    optimizer treats it as new [RECON]. Returns the number of tensors changed.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"diagnose-relearn: re-initialisation strength must be in [0, 1], got {alpha}")
    changed = 0
    for name, p in encoder.named_parameters():
        if name not in init_params:
            raise KeyError(f"diagnose-relearn: no initial value stored for encoder parameter {name!r}")
        if alpha == 0.0:
            continue
        p.mul_(1.0 - alpha).add_(init_params[name].to(device=p.device, dtype=p.dtype), alpha=alpha)
        changed += 1
        if reset_optimizer_state and optimizer is not None:
            optimizer.state.pop(p, None)
    return changed


# ====================================================================== the plug-in
@METHODS.register("diagnose-relearn")
class DiagnoseRelearn(Plugin):
    """D&R: diagnose each modality by its train/val clustering-purity gap, softly re-initialise its encoder.

    Diagnosis runs in ``on_epoch_end`` after epoch index ``e`` (0-based) when ``e > 0`` and
    ``e % reinit_every == 0``, at most ``max_reinit`` times [CODE] (defaults: after epochs 20, 40, 60).
    The validation split V is the run's own ``val`` split (``data.val_fraction``), which is also the
    split the best checkpoint is selected on. Training uses the fused cross-entropy only (as ``joint``).

    Logged at each diagnosis (``metrics.jsonl`` ``plugins`` and TensorBoard), per modality ``m``:
    ``diagnose-relearn/<m>/purity_train``, ``diagnose-relearn/<m>/purity_val``, ``diagnose-relearn/<m>/gap``,
    ``diagnose-relearn/<m>/alpha`` (the strength
    applied, or that would be applied on a monitoring-only epoch); plus ``diagnose-relearn/reinit`` (1 if the encoders
    were re-initialised this epoch), ``diagnose-relearn/n_reinit`` and ``diagnose-relearn/diagnose_time_s``.
    """

    @dataclass
    class Options:
        lambda_: float = option(3.0, "slope lambda in alpha_k = tanh(lambda * g_k): larger = stronger "
                                "re-initialisation for the same purity gap", "[CODE --move_lambda 3; BB]", ge=0)
        reinit_every: int = option(20, "H, epochs between diagnoses (BalanceBenchmark: 15)",
                                   "[CODE --reinit_epoch 20]", ge=1)
        max_reinit: int = option(3, "cap on re-initialisations (0: diagnose never re-initialises; BB: 2)",
                                 "[CODE --reinit_num 3]", ge=0)
        n_init: int = option(10, "k-means restarts (best inertia kept): scikit-learn's default before 1.4, which "
                             "the release relied on", "[RECON]", ge=1)
        kmeans_seed: int = option(0, "k-means seed (random_state)", "[CODE]")
        kmeans_max_iter: int = option(300, "Lloyd iterations per restart", "[CODE: scikit-learn default]", ge=1)
        scale: bool = option(True, "min-max scale every feature dimension to [-1, 1] before k-means, fitted per set "
                             "and modality", "[CODE MinMaxScaler(feature_range=(-1, 1))]")
        kmeans_backend: str = option("auto", "auto (torch k-means on a CUDA device, scikit-learn on CPU), torch or "
                                     "sklearn (the release)", "[RECON]", choices=BACKENDS)
        reset_optimizer_state: bool = option(False, "also drop the optimizer state (momentum, Adam moments) of "
                                             "re-initialised tensors (the release keeps momentum)", "[CODE]")
        monitor_every: int = option(0, "also diagnose without re-initialising after every epoch e with "
                                    "e % monitor_every == 0 (the purity-gap curve of the paper's Fig. 3); 0 = only "
                                    "at re-initialisation epochs. Diagnosis never touches the run's RNG", "[RECON]",
                                    ge=0)
        embedding_samples: int = option(500, "validation samples (fixed, seeded subset) stored before/after each "
                                        "re-initialisation and at the end for the embedding plot; 0 disables",
                                        "[RECON]", ge=0)
        fixed_alpha: Optional[float] = option(None, "ablation only: re-initialise every modality with this strength "
                                              "instead of its diagnosed alpha", "[RECON]", ge=0, le=1)

    priority = 80  # at epoch end, after plug-ins that read the trained weights

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # state (saved in checkpoints)
        self.n_reinit = 0
        self.init_params: Optional[Dict[str, Dict[str, torch.Tensor]]] = None
        self.history: List[Dict[str, Any]] = []
        # not state: rebuilt from the run folder on resume
        self._embeddings: Dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ schedule
    def reinit_due(self, epoch: int) -> bool:
        return epoch > 0 and epoch % self.reinit_every == 0 and self.n_reinit < self.max_reinit

    def monitor_due(self, epoch: int) -> bool:
        return self.monitor_every > 0 and epoch % self.monitor_every == 0

    # ------------------------------------------------------------------ events
    def on_fit_start(self, trainer: Trainer) -> None:
        mods = self._modalities(trainer)
        if self.init_params is None:
            self.init_params = {m: encoder_init_params(trainer.initial_state, trainer.model.encoders[m], m)
                                for m in mods}
        else:  # restored from a checkpoint: must still match the model
            for m in mods:
                if m not in self.init_params:
                    raise ValueError(f"diagnose-relearn: the checkpoint has no initial weights for modality {m!r}")
                names = {n for n, _ in trainer.model.encoders[m].named_parameters()}
                if names != set(self.init_params[m]):
                    raise ValueError(f"diagnose-relearn: stored initial weights of modality {m!r} do not match "
                                     f"its encoder's parameters")
        k = trainer.num_classes
        for split in ("train", "val"):
            n = len(trainer.splits[split])
            if n < k:
                raise ValueError(f"diagnose-relearn: the {split} split has {n} samples, fewer than the {k} "
                                 f"k-means clusters; raise data.val_fraction (D&R needs a held-out val split)")
        self._embeddings = {}
        if trainer.resumed and trainer.out is not None and (trainer.out / EMBEDDINGS_FILE).exists():
            with np.load(trainer.out / EMBEDDINGS_FILE) as z:
                # a previous fit's "final" snapshot and anything after the checkpoint's epoch are stale
                self._embeddings = {key: z[key] for key in z.files
                                    if "__final__" not in key and _snapshot_epoch(key) < trainer.epoch}

    def on_epoch_end(self, trainer, epoch: int, record: Dict[str, Any]) -> None:
        reinit = self.reinit_due(epoch)
        if not (reinit or self.monitor_due(epoch)):
            return
        t0 = time.time()
        # Feature extraction creates DataLoader iterators, which draw from the global RNG: a side pass, so
        # that diagnosing leaves the training trajectory exactly as it would be without it.
        with trainer.side_pass(train=True):
            stats, val_feats = self.diagnose(trainer)
            if reinit:
                self.relearn(trainer, {m: s["alpha"] for m, s in stats.items()})
                self.n_reinit += 1
                if self._embedding_on(trainer):
                    self._snapshot(trainer, "before", epoch, val_feats)
                    after, _ = trainer.extract_features("val", modalities=list(stats))
                    self._snapshot(trainer, "after", epoch, after)
                    self._write_embeddings(trainer)
        dt = time.time() - t0
        for m, s in stats.items():
            for key in ("purity_train", "purity_val", "gap", "alpha"):
                self.log(f"{m}/{key}", s[key])
        self.log("reinit", 1.0 if reinit else 0.0)
        self.log("n_reinit", float(self.n_reinit))
        self.log("diagnose_time_s", dt)
        self.history.append({"epoch": epoch, "reinit": reinit, "modalities": stats})

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._embedding_on(trainer) and self._embeddings:
            with trainer.side_pass(train=True):
                feats, _ = trainer.extract_features("val", modalities=self._modalities(trainer))
            self._snapshot(trainer, "final", trainer.epoch - 1, feats)
            self._write_embeddings(trainer)

    # ------------------------------------------------------------------ diagnose + re-learn
    def diagnose(self, trainer):
        """Purity of each modality's train and val features, gap and alpha. Returns (stats, val features)."""
        mods = self._modalities(trainer)
        tr, y_tr = trainer.extract_features("train", modalities=mods)
        va, y_va = trainer.extract_features("val", modalities=mods)
        backend = resolve_backend(self.kmeans_backend, trainer.device)
        dev = trainer.device if backend == "torch" else torch.device("cpu")
        stats = {}
        for m in mods:
            stats[m] = purity_gap(tr[m].to(dev), y_tr, va[m].to(dev), y_va, trainer.num_classes, self.lambda_,
                                  self.n_init, self.kmeans_seed, self.scale, backend, self.kmeans_max_iter)
            if self.fixed_alpha is not None:
                stats[m]["alpha"] = self.fixed_alpha
        return stats, va

    def relearn(self, trainer, alphas: Dict[str, float]) -> None:
        """Softly re-initialise each modality's encoder with its own strength."""
        if self.init_params is None:
            raise RuntimeError("diagnose-relearn: relearn() before on_fit_start(): no initial weights stored")
        for m, a in alphas.items():
            soft_reinit_(trainer.model.encoders[m], self.init_params[m], a, trainer.optimizer,
                         self.reset_optimizer_state)

    # ------------------------------------------------------------------ embeddings for the plot
    def _embedding_on(self, trainer) -> bool:
        return self.embedding_samples > 0 and trainer.out is not None and getattr(trainer, "is_main", True)

    def _subset(self, trainer) -> np.ndarray:
        n = len(trainer.splits.val)
        g = torch.Generator().manual_seed(self.kmeans_seed)
        return torch.randperm(n, generator=g)[: min(n, self.embedding_samples)].sort().values.numpy()

    def _snapshot(self, trainer, when: str, epoch: int, feats: Dict[str, torch.Tensor]) -> None:
        idx = self._subset(trainer)
        if "indices" not in self._embeddings:
            self._embeddings["indices"] = idx
            self._embeddings["labels"] = trainer.splits.val.labels[torch.as_tensor(idx)].numpy()
        for m, f in feats.items():
            self._embeddings[f"{m}__{when}__e{epoch}"] = f[torch.as_tensor(idx)].float().cpu().numpy()

    def _write_embeddings(self, trainer) -> None:
        from ..engine.checkpoint import atomic_write_bytes

        # typed Any: a str -> ndarray dict unpacked as keywords could, for mypy, also fill savez's allow_pickle
        arrays: Dict[str, Any] = dict(self._embeddings)
        atomic_write_bytes(Path(trainer.out) / EMBEDDINGS_FILE, lambda f: np.savez(f, **arrays))

    # ------------------------------------------------------------------ helpers / state
    @staticmethod
    def _modalities(trainer) -> List[str]:
        return [m for m in trainer.active_modalities if m in trainer.model.encoders]

    def state_dict(self) -> Dict[str, Any]:
        return {"n_reinit": self.n_reinit, "history": list(self.history),
                "init_params": None if self.init_params is None else
                {m: {k: v.clone() for k, v in d.items()} for m, d in self.init_params.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.n_reinit = int(state["n_reinit"])
        self.history = list(state.get("history", []))
        ip = state.get("init_params")
        self.init_params = None if ip is None else {m: {k: v.detach().cpu().clone() for k, v in d.items()}
                                                    for m, d in ip.items()}


def _snapshot_epoch(key: str) -> int:
    """Epoch of an embeddings-file key ``<m>__<when>__e<epoch>``; -1 for the shared arrays."""
    if "__e" not in key:
        return -1
    try:
        return int(key.rsplit("__e", 1)[1])
    except ValueError:
        return -1


__all__ = ["DiagnoseRelearn", "purity_gap", "reinit_strength", "soft_reinit_", "encoder_init_params",
           "EMBEDDINGS_FILE"]
