"""MLA — Multimodal Learning with Alternating unimodal adaptation (Zhang, Yoon, Bansal, Yao, CVPR 2024).

Joint training becomes alternating *unimodal* training: at every step each modality in turn takes its own
optimiser step on ``CE(shared_head(h_m), y)``, where one linear head is shared by all modalities. The
shared head is what carries cross-modal knowledge; to keep one modality's steps from erasing what the
head learned from the others, its weight gradient is projected (OWM, Zeng et al. 2019) onto the
orthogonal complement of the feature directions already seen. At test time the unimodal outputs of the
shared head are fused with per-sample weights from their prediction entropy [PAPER, CODE].

Projector (exact form implemented). ``P`` is a ``d × d`` matrix, ``P_0 = I``. For a modality step with
batch features ``H`` (``n × d``) and head-weight gradient ``G`` (``C × d``):

* ``r = mean_i H_i`` (``1 × d``), ``k = P rᵀ`` (``d × 1``), ``P ← P − k kᵀ / (α + r k)`` (recursive
  least-squares / OWM update; ``P`` stays symmetric PSD with eigenvalues in (0, 1]);
* ``G ← G P`` (``projection="replace"``; the head's weight update then has (almost) no component along
  the stored mean-feature directions, so the head's response to earlier features barely changes).

Default order (``update_first=False``): project with ``P`` built from all *earlier* steps (previous
modalities, and earlier batches), then add the current modality's mean feature to ``P`` — i.e. a modality's
update is orthogonal to the previous modalities' feature subspace, as the paper describes [PAPER]. The
official code updates ``P`` with the current batch first and then projects, and skips the very first step
(``update_first=True``) [CODE ``utils.GSPlugin.before_update``]; it also divides ``P`` by its Frobenius
norm after each update (``normalize_projector=True``) [CODE] and anneals ``α = 0.1^(1 + b/B)`` over the
batches b of an epoch of B batches [CODE]. Two facts about the released code worth knowing: in the
official repository the name test ``n == "module.weight"`` never matches a bare ``nn.Linear`` (whose
parameters are ``weight``/``bias``), so the projection is never applied there; BalanceBenchmark fixes the
name but *adds* the projected gradient (``G ← G + G Pᵀ``, ``projection="add"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record
from ..functional.common import tensor_sum
from ..registry import METHODS
from .common import feature_sizes

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


# =============================================================================== pure math (tested by hand)
def owm_update(P: torch.Tensor, r: torch.Tensor, alpha: float, normalize: bool = False) -> torch.Tensor:
    """One OWM/RLS step: ``P − (P rᵀ)(P rᵀ)ᵀ / (α + r P rᵀ)`` for a feature row ``r`` (``[d]`` or ``[1, d]``)."""
    r = r.reshape(1, -1).to(P.dtype)
    k = P @ r.t()
    P = P - (k @ k.t()) / (alpha + r @ k)  # a 0-d tensor: no host sync per step
    if normalize:
        P = P / torch.linalg.norm(P)
    return P


def project_gradient(grad: torch.Tensor, P: torch.Tensor, mode: str = "replace") -> torch.Tensor:
    """``G P`` (``replace``, OWM and the official code) or ``G + G Pᵀ`` (``add``, BalanceBenchmark)."""
    if mode == "replace":
        return grad @ P
    if mode == "add":
        return grad + grad @ P.t()
    raise ValueError(f"mla: projection must be 'replace' or 'add', got {mode!r}")


def entropy_weights(logits: Sequence[torch.Tensor], scope: str = "sample") -> torch.Tensor:
    """Fusion weights from prediction entropies: ``w_m = exp(max_k e_k − e_m) / Σ_j exp(max_k e_k − e_j)``.

    ``scope="sample"``: one entropy per sample and modality, ``e = −Σ_c p_c log p_c`` with
    ``p = softmax(z)`` over classes; returns ``[n, M]`` [PAPER]. ``scope="batch_code"``: the official code's
    ``calculate_entropy``: softmax over the *batch* dimension and one entropy summed over the whole
    batch, giving one weight per modality for the batch; returns ``[1, M]`` [CODE].
    """
    if scope == "sample":
        e = torch.stack([-(F.softmax(z.float(), 1) * F.log_softmax(z.float(), 1)).sum(1) for z in logits], 1)
    elif scope == "batch_code":
        e = torch.stack([-(F.softmax(z.float(), 0) * F.log_softmax(z.float(), 0)).sum() for z in logits]).unsqueeze(0)
    else:
        raise ValueError(f"mla: entropy_scope must be 'sample' or 'batch_code', got {scope!r}")
    # exp(max − e_m) normalised is softmax(−e); the max only guards the exponent
    return F.softmax(-e, dim=1)


def code_alpha(batch_index: int, num_batches: int) -> float:
    """The official ``α = 1.0 · 0.1^(b/B + 1)``: 0.1 at the first batch of an epoch, → 0.01 at its end."""
    return 0.1 ** (batch_index / max(num_batches, 1) + 1.0)


# =============================================================================== the plug-in
@METHODS.register("mla")
class MLA(Plugin):
    """MLA: alternating unimodal steps through one shared head with OWM gradient projection; entropy fusion.

    The model is changed in ``configure_model``: every ``model.heads[m]`` becomes the *same* ``nn.Linear``
    (so per-modality accuracies report the shared head on each modality) and the fusion head is removed.
    Requires every encoder to output the same feature size (``model.feature_dim``).
    Logged: ``mla/projector_trace`` (trace of P / d: 1 at the start, shrinking as directions are stored).
    """

    @dataclass
    class Options:
        gradient_modification: bool = option(True, "project the shared head's weight gradient with the OWM "
                                             "projector (the paper's gs component)", "[PAPER; CODE --gs_flag]")
        alpha: Optional[float] = option(None, "OWM regulariser; null = the official schedule 0.1^(1 + b/B) over "
                                        "the b-th of B batches of an epoch [CODE]; a number = constant [RECON]",
                                        "[CODE]", gt=0)
        update_first: bool = option(False, "false: project with the projector of all earlier steps, then add the "
                                    "current mean feature [PAPER]; true: add the current batch first, then project, "
                                    "and skip the very first step [CODE]", "[PAPER]")
        normalize_projector: bool = option(False, "divide P by its Frobenius norm after every update (true: the "
                                           "official code)", "[PAPER/OWM]")
        projection: str = option("replace", "replace: G <- G P (OWM, official code); add: G <- G + G P^T "
                                 "(BalanceBenchmark MLA_trainer.py)", "[CODE]", choices=("replace", "add"))
        fusion: str = option("entropy", "test-time fusion of the unimodal outputs: entropy (dynamic, per-sample "
                             "weights) [PAPER; CODE --dynamic] or fixed (fusion_weights)", "[PAPER]",
                             choices=("entropy", "fixed"))
        fusion_weights: Any = option(None, "per-modality weights for fusion=fixed (a list in modality order or a "
                                     "mapping); null = equal weights (CODE av_alpha 0.5; 0.35/0.25/0.4 a/v/t)",
                                     "[CODE]")
        entropy_scope: str = option("sample", "sample: per-sample entropies over classes [PAPER]; batch_code: the "
                                    "official code's softmax over the batch dimension", "[PAPER]",
                                    choices=("sample", "batch_code"))
        modality_order: Optional[List[str]] = option(None, "order of the unimodal steps inside a training step; "
                                                     "null = dataset order", "[CODE]")

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.fusion_weights_arg = self.fusion_weights
        self.modality_order_arg = self.modality_order
        self.P: Optional[torch.Tensor] = None
        self.updates = 0  # projector updates so far (the official ``exp_count``)
        self._batch_index = 0
        self._num_batches = 1

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        mods = list(trainer.active_modalities)
        if len(mods) < 2:
            raise ValueError(f"mla needs at least two modalities, got {mods}")
        dims = feature_sizes(model, mods)
        if len(set(dims.values())) != 1:
            raise ValueError(
                "mla shares one head across modalities, so every encoder must output the same feature size; got "
                + ", ".join(f"{m}={d}" for m, d in dims.items())
                + ". Set model.feature_dim (and use encoders that honour it) so the sizes match.")
        self.dim = next(iter(dims.values()))
        shared = nn.Linear(self.dim, model.num_classes)
        for m in model.modalities:
            model.heads[m] = shared  # one module under every key: heads[m](h) is the shared head
        model.fusion = None
        self.modalities = [m for m in (self.modality_order_arg or mods)]
        unknown = [m for m in self.modalities if m not in mods]
        if unknown or sorted(self.modalities) != sorted(mods):
            raise ValueError(f"mla: modality_order={self.modality_order_arg} must be a permutation of {mods}")
        fw = self.fusion_weights_arg
        if fw is None:
            fw = [1.0 / len(mods)] * len(mods)
        elif isinstance(fw, dict):
            missing = [m for m in mods if m not in fw]
            if missing:
                raise ValueError(f"mla: fusion_weights has no weight for modality {missing[0]!r}")
            fw = [float(fw[m]) for m in mods]
        if len(fw) != len(mods):
            raise ValueError(f"mla: fusion_weights needs {len(mods)} values (one per modality {mods}), got {fw}")
        self.fixed_weights = {m: float(w) for m, w in zip(mods, fw)}
        self.eval_modalities = mods

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.P is None:
            self.P = torch.eye(self.dim, device=trainer.device)
        else:
            self.P = self.P.to(trainer.device)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._batch_index = 0

    # ------------------------------------------------------------------ the alternating step
    def _alpha(self) -> float:
        return self.alpha if self.alpha is not None else code_alpha(self._batch_index, self._num_batches)

    @torch.no_grad()
    def _modify_head_gradient(self, head: nn.Linear, features: torch.Tensor) -> None:
        P, grad = self.P, head.weight.grad
        assert P is not None and grad is not None, "on_fit_start creates P; the caller checks the gradient"
        r = features.detach().float().mean(0)
        alpha = self._alpha()
        if self.update_first:
            if self.updates > 0:  # the official code leaves the very first step alone
                P = owm_update(P, r, alpha, self.normalize_projector)
                grad.copy_(project_gradient(grad.float(), P, self.projection))
        else:
            if self.updates > 0:
                grad.copy_(project_gradient(grad.float(), P, self.projection))
            P = owm_update(P, r, alpha, self.normalize_projector)
        self.P = P
        self.updates += 1

    def training_step(self, trainer: Trainer, batch: Batch) -> Losses:
        """A step strategy: one unimodal step per modality, each on the trainer's primitives."""
        if self._batch_index == 0:  # B of the official α schedule: this epoch's number of batches
            self._num_batches = max(1, len(trainer.sampler)) if trainer.sampler is not None else 1
        losses: Dict[str, torch.Tensor] = {}
        for m in self.modalities:
            out = trainer.forward({m: batch.inputs[m]}, fuse=False)
            loss = F.cross_entropy(out.logits[m].float(), batch.labels(m))
            trainer.backward(loss, batch, out)
            if self.gradient_modification:
                head = trainer.model.heads[m]
                assert isinstance(head, nn.Linear)  # configure_model put the shared nn.Linear under every key
                if head.weight.grad is not None:
                    self._modify_head_gradient(head, out.features[m])
            trainer.optimizer_step()
            losses[f"uni_{m}"] = loss.detach()
        trainer.optimizer.zero_grad(set_to_none=True)
        self._batch_index += 1
        losses["total"] = tensor_sum(losses.values()) / len(self.modalities)
        return losses

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        if self.P is not None:
            self.log("projector_trace", float(torch.trace(self.P)) / self.dim)
            self.log("updates", self.updates)

    # ------------------------------------------------------------------ test-time fusion
    def predict(self, trainer: Trainer, out: ModelOutput) -> Optional[torch.Tensor]:
        mods = [m for m in self.eval_modalities if m in out.logits]
        logits = [out.logits[m].float() for m in mods]
        if not logits:
            return None
        if self.fusion == "fixed":
            return tensor_sum(self.fixed_weights[m] * z for m, z in zip(mods, logits))
        w = entropy_weights(logits, self.entropy_scope)
        return tensor_sum(w[:, j:j + 1] * z for j, z in enumerate(logits))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"P": None if self.P is None else self.P.detach().cpu().clone(), "updates": self.updates}

    def load_state_dict(self, state):
        self.P = None if state.get("P") is None else state["P"].clone()
        self.updates = int(state.get("updates", 0))
