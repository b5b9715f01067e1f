"""The one training loop. Methods are plug-ins (:mod:`.plugin`) that hook its typed events; the loop's own
bookkeeping (selection, metric files, checkpoints, summary, progress) are plug-ins too (:mod:`.bookkeeping`)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, cast

import torch
from torch import Tensor, nn

from ..config import Config
from ..data import Splits, build_splits
from ..data.base import sample_shape
from ..data.batch import Batch
from ..functional.common import tensor_sum
from ..models import FeatureRoutes, ModelOutput, build_model
from ..data.fingerprint import data_fingerprint
from ..data.fit_checks import check_fit_settings
from . import bookkeeping, evaluation, run_folder, state
from .checkpoint import seed_everything
from .compat import check_plugins
from .runtime import Clock, all_reduce, init_distributed, model_calls, resolve_device, rng_devices, set_determinism
from .epoch_log import EpochLog
from .losses import accumulate_, base_losses, cross_entropy, nonfinite_error
from .optim import build_optimizer, build_scheduler
from .plugin import EVENTS, Losses, Plugin, Record, implements
from .residency import make_resident
from .pipeline import DataPipeline
from .samplers import EpochBatchSampler, FixedBatcher, RandomOrder
from .stages import run_stage


class Trainer:
    """Owns the model, optimizer, data order and plug-ins; runs epochs, evaluates, checkpoints.

    ``Trainer(cfg).fit()`` trains and returns the run summary (also written to ``summary.json``).
    Pass ``splits`` to train on your own :class:`~mmbalance.data.Splits`, ``plugins`` to bypass the method
    registry, and ``on_epoch`` to be called with every epoch's final record.
    """

    #: whether any step's total was non-finite this epoch (set by ``run_epoch``; read at its end unless
    #: ``check_finite_every_step``)
    _nonfinite: Tensor

    def __init__(self, cfg: Config, splits: Optional[Splits] = None, plugins: Optional[List[Plugin]] = None,
                 on_epoch: Optional[Callable[[Record], None]] = None):
        from ..extensions import import_extensions
        from ..methods import build_plugins  # late import: methods import the engine

        import_extensions(cfg.plugins)  # the user's own methods, encoders, datasets (before anything is built)
        cfg.validate()  # attributes may have been changed after the Config was built
        self.cfg = cfg
        self.out = Path(cfg.out) if cfg.out else None
        self.rank, self.world_size, local_rank = init_distributed(cfg.train.device)
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.train.device, local_rank, self.world_size)
        set_determinism(cfg.train.deterministic)
        seed_everything(cfg.train.seed)
        self.splits = splits if splits is not None else build_splits(cfg.data)
        self.splits_from_python = splits is not None  # then cfg.data was not used (provenance.dataset_label)
        check_fit_settings(cfg, self.splits)  # a batch larger than the training split, classes never seen, ...
        #: whether the splits really live on the device (data.resident=true and they fit)
        self.resident = bool(cfg.data.resident) and make_resident(self.splits, self.device)
        train = self.splits.train
        self.modalities: List[str] = list(train.modalities)
        self.active_modalities: List[str] = list(self.modalities)
        self.num_classes = int(train.num_classes)
        methods = list(plugins) if plugins is not None else build_plugins(cfg)
        check_plugins(methods)
        self.selection = bookkeeping.Selection()
        own: List[Plugin] = [self.selection, bookkeeping.MetricsWriter(), bookkeeping.LastCheckpoint(),
                             bookkeeping.Summary()]
        if cfg.train.early_stop_patience is not None:
            own.append(bookkeeping.EarlyStopping())
        kinds = [k for k in cfg.log.loggers if k != "tensorboard" or cfg.log.tensorboard]
        if kinds:
            own.append(bookkeeping.Loggers(kinds))
        if on_epoch is not None:
            own.append(bookkeeping.EpochCallback(on_epoch))
        if cfg.train.progress and self.is_main:
            own.append(bookkeeping.Progress())
        order = {id(p): i for i, p in enumerate(methods + own)}
        self.plugins: List[Plugin] = sorted(methods + own, key=lambda p: (p.priority, order[id(p)]))
        self._hooks = {e: [p for p in self.plugins if implements(p, e)] for e in EVENTS}
        self.epoch_log = EpochLog()
        for p in self.plugins:
            p.attach(self)

        shapes = {m: sample_shape(train, m) for m in self.modalities}
        self.model = build_model(cfg.model, shapes, self.num_classes)
        self.call("configure_model", self.model)
        self.model.to(self.device)
        if cfg.train.channels_last and self.device.type == "cuda":
            cast(Any, self.model).to(memory_format=torch.channels_last)  # torch's stub of Module.to lacks it
        self.initial_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self._model_call, self._eval_call = model_calls(self.model, self.device, self.world_size, cfg.train.compile)
        self.aug_generator = torch.Generator(device=self.device).manual_seed(cfg.train.seed + 12345)
        self.data = DataPipeline(cfg, self.splits, self.device, self.resident, self.aug_generator,
                                 lambda: self.active_modalities)

        uni = cfg.train.unimodal_loss_weight
        self.unimodal_loss_weight = float(uni) if uni is not None else (
            1.0 if any(p.wants_unimodal_loss for p in methods) else 0.0)
        self.fused_loss_weight = float(cfg.train.fused_loss_weight)
        groups = self.one_answer("optimizer_groups", self.model)
        self.optimizer = build_optimizer(cfg.optim, groups if groups is not None else
                                         [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, cfg.train.epochs)
        self.default_order = RandomOrder(len(train), cfg.train.seed)
        self.default_batcher = FixedBatcher(cfg.train.batch_size, cfg.train.drop_last)
        self.train_order, self.batcher = self.default_order, self.default_batcher
        self.sampler: Optional[EpochBatchSampler] = None
        self._step_owner = next((p for p in methods if "training_step" in p.provides()), None)

        self.epoch = 0  # next main epoch to run
        self.global_step = 0
        self.history: List[Record] = []
        self.stage_history: List[Record] = []
        self.stage_epochs: Dict[str, int] = {}  # epochs done per stage
        self.resumed = False
        self.wall_time = 0.0
        self.stop_training = False  #: set by a plug-in (early stopping) to end training after this epoch
        self.replaces: Optional[Path] = None  #: the run folder an --overwrite run replaces when it finishes
        self.summary: Dict[str, Any] = {}
        self._batch: Optional[Batch] = None  # the batch of the step in flight (for transform_features)
        self._cost = {"forwards": 0, "backwards": 0}
        check = cfg.train.check_finite
        if check not in ("auto", "step", "epoch"):
            raise ValueError(f"train.check_finite must be auto, step or epoch, got {check!r}")
        self.check_finite_every_step = check == "step" or (check == "auto" and self.device.type == "cpu")

    # ================================================================== plug-in dispatch
    def call(self, event: str, *args: Any) -> None:
        """Fire ``event`` on every plug-in that implements it, in priority order."""
        for p in self._hooks[event]:
            getattr(p, event)(self, *args)

    def one_answer(self, hook: str, *args: Any) -> Any:
        """The answer of the one plug-in that provides ``hook`` (None if none does)."""
        answers = [(p.name, a) for p in self._hooks[hook] if hook in p.provides()
                   for a in [getattr(p, hook)(self, *args)] if a is not None]
        if len(answers) > 1:
            raise RuntimeError(f"{answers[0][0]!r} and {answers[1][0]!r} both answered {hook}; only one may")
        return answers[0][1] if answers else None

    def plugin(self, name: str) -> Optional[Plugin]:
        return next((p for p in self.plugins if p.name == name), None)

    # ================================================================== services for plug-ins
    def autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.cfg.train.precision != "fp32":
            raise ValueError(f"train.precision must be fp32 or bf16, got {self.cfg.train.precision!r}")
        return contextlib.nullcontext()

    def all_reduce(self, tensor: Tensor, op: str = "mean") -> Tensor:
        """Sum or mean over DDP ranks (identity in one process): statistics that steer training (scores,
        ratios, batch sizes) must be the same on every rank."""
        return all_reduce(tensor, self.world_size, op)

    @contextlib.contextmanager
    def side_pass(self, train: bool = False, fork_rng: bool = True) -> Iterator[None]:
        """A pass that must not disturb training (scoring, prototypes, probes, diagnosis): the model runs in
        train or eval mode as asked, and afterwards the model's mode, the splits' transforms and, with
        ``fork_rng``, every random stream of the run are as they were."""
        was, splits = self.model.training, dict(self.data.split_train)
        aug = self.aug_generator.get_state() if fork_rng else None
        self.model.train(train)
        try:
            with torch.random.fork_rng(devices=rng_devices(self.device)) if fork_rng else contextlib.nullcontext():
                yield
        finally:
            self.model.train(was)
            for split, mode in splits.items():
                self.data.set_split_mode(split, mode)
            if aug is not None:
                self.aug_generator.set_state(aug)

    def count(self, forwards: int = 0, backwards: int = 0) -> None:
        """Count passes a plug-in runs outside ``forward``/``backward`` (cost accounting per step)."""
        self._cost["forwards"] += forwards
        self._cost["backwards"] += backwards

    def add_module(self, name: str, module: nn.Module, **group: Any) -> nn.Module:
        """Add ``module`` to the model during training (``model.extras[name]``: saved and moved with it) and
        its parameters to the optimizer as a new group (``group``: e.g. ``lr``; default the current rate).
        On resume the plug-in calls this again from ``on_load``, before the weights are restored."""
        if name in self.model.extras:
            raise ValueError(f"add_module: the model already has a module {name!r}")
        module.to(self.device)
        self.model.extras[name] = module
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            group = {"lr": self.optimizer.param_groups[0]["lr"], **group, "params": params}
            group.setdefault("initial_lr", group["lr"])
            self.optimizer.add_param_group(group)
            for sched in getattr(self.scheduler, "_schedulers", [self.scheduler]):  # SequentialLR: each child
                if sched is not None and hasattr(sched, "base_lrs"):
                    sched.base_lrs.append(group["initial_lr"])
        return module

    # ================================================================== primitives of a step
    def forward(self, inputs: Dict[str, Any], fuse: bool = True,
                transform: Optional[Callable[[FeatureRoutes], None]] = None) -> ModelOutput:
        """The model on ``inputs`` (active modalities only) under the run's precision. Training forwards go
        through DDP; evaluation and plug-in passes use the plain model (no collectives)."""
        self._cost["forwards"] += 1
        call = self._model_call if self.model.training else self._eval_call
        with self.autocast():
            return call({m: x for m, x in inputs.items() if m in self.active_modalities}, fuse=fuse,
                        transform=transform)

    def backward(self, loss: Tensor, batch: Batch, out: Optional[ModelOutput]) -> None:
        """Zero the gradients, backpropagate ``loss`` and fire ``after_backward``."""
        self._cost["backwards"] += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.call("after_backward", batch, out)

    def optimizer_step(self) -> None:
        """Clip the gradient norm (``optim.grad_clip``) and take the optimizer step."""
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()

    def compute_losses(self, batch: Batch, out: ModelOutput) -> Losses:
        """The base objective (fused CE on the paired rows + per-modality CE); plug-ins change it in
        ``compute_loss``."""
        return base_losses(self, batch, out)

    def cross_entropy(self, logits: Tensor, y: Tensor, global_count: Optional[int] = None) -> Tensor:
        """Mean cross-entropy, weighted so that DDP's gradient average is the global batch's."""
        return cross_entropy(logits, y, self.world_size, global_count)

    def _transform(self, routes: FeatureRoutes) -> None:
        self.call("transform_features", self._batch, routes)

    def default_step(self, batch: Batch) -> Losses:
        self.call("before_forward", batch)
        out = self.forward(batch.inputs, transform=self._transform if self._hooks["transform_features"] else None)
        self.call("after_forward", batch, out)
        losses = self.compute_losses(batch, out)
        self.call("compute_loss", batch, out, losses)
        if not losses:
            raise RuntimeError("no loss terms: the method combination produced an empty objective")
        total = tensor_sum(losses.values())
        self._check_finite(total, losses)
        self.backward(total, batch, out)
        self.optimizer_step()
        self.call("after_step", batch, out)
        result = {k: v.detach() for k, v in losses.items()}
        result["total"] = total.detach()
        return result

    def training_step(self, batch: Batch) -> Losses:
        self._batch = batch
        if self._step_owner is None:
            return self.default_step(batch)
        losses = self._step_owner.training_step(self, batch)
        self._check_finite(losses["total"] if "total" in losses else tensor_sum(losses.values()), losses)
        self.call("after_step", batch, None)
        return {k: v.detach() for k, v in losses.items()}

    def _check_finite(self, total: Tensor, losses: Losses) -> None:
        if self.check_finite_every_step:  # else accumulated on the device and checked once at epoch end
            if not bool(torch.isfinite(total)):
                raise nonfinite_error(self, f"epoch {self.epoch} step {self._steps}", losses)
        else:
            self._nonfinite = self._nonfinite | ~torch.isfinite(total.detach())

    # ================================================================== epochs
    def run_epoch(self, epoch: int, step: Callable[[Batch], Losses], order, batcher,
                  modalities: Optional[List[str]] = None) -> Dict[str, Any]:
        """One pass of ``step`` over the training batches of ``order`` cut by ``batcher``."""
        self.model.train()
        self.data.set_split_mode("train", True)
        self.sampler = EpochBatchSampler(order, batcher, self.rank, self.world_size)
        self.sampler.set_epoch(epoch)
        sums: Dict[str, Tensor] = {}
        self._steps = samples = 0
        self._cost = {"forwards": 0, "backwards": 0}
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        for batch in self.data.loader("train", self.sampler, modalities):
            batch = self.data.to_device(batch)
            accumulate_(sums, step(batch))
            self._steps += 1
            samples += len(batch)
            self.global_step += 1
        steps = self._steps
        if not self.check_finite_every_step and bool(self._nonfinite):
            raise nonfinite_error(self, f"epoch {epoch} (checked per epoch)",
                                  {k: v / max(steps, 1) for k, v in sums.items()})
        if self.world_size > 1 and sums:
            keys = sorted(sums)
            sums = dict(zip(keys, self.all_reduce(torch.stack([sums[k].float() for k in keys]))))
        stats: Dict[str, Any] = {f"loss_{k}" if k != "total" else "loss": float(v) / max(steps, 1)
                                 for k, v in sums.items()}
        if self.world_size > 1:  # shards may be uneven: count what every rank saw
            samples = int(self.all_reduce(torch.tensor(float(samples), device=self.device), "sum"))
        stats.update(steps=steps, samples=samples)
        stats["cost"] = {f"{k}_per_step": v / max(steps, 1) for k, v in self._cost.items()}
        stats["cost"]["added_parameters"] = sum(p.numel() for p in self.model.extras.parameters())
        return stats

    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        order, batcher = self.one_answer("epoch_order", epoch), self.one_answer("batcher", epoch)
        self.train_order = self.default_order if order is None else order
        self.batcher = self.default_batcher if batcher is None else batcher
        return self.run_epoch(epoch, self.training_step, self.train_order, self.batcher)

    def collect(self, split: str, features: bool = False, modalities: Optional[List[str]] = None) -> Dict[str, Any]:
        return evaluation.collect(self, split, features, modalities)

    def evaluate(self, split: str) -> Dict[str, Any]:
        return evaluation.evaluate(self, split)

    def predict(self, out: ModelOutput) -> Tensor:
        """The evaluation logits of a model output (the one plug-in's ``predict`` rule, else ``eval.predict``)."""
        return evaluation.predict(self, out)

    def extract_features(self, split: str, modalities: Optional[List[str]] = None):
        """Pooled encoder features of a split in order: ``({modality: [N, d]}, labels [N])``."""
        r = self.collect(split, features=True, modalities=modalities)
        return r["features"], r["y"]

    # ================================================================== fit
    def fit(self, resume: bool = False, overwrite: bool = False, allow_change: Sequence[str] = ()) -> Dict[str, Any]:
        """Run the stages and ``train.epochs`` epochs (continuing from ``last.pt`` if ``resume``), then
        summarise the checkpoint selected on validation. ``overwrite`` replaces another run in the folder (the new
        run is prepared aside and swapped in when it finishes); ``allow_change`` lists config keys a resume may
        change (engine/run_folder.py)."""
        self.begin(resume, overwrite, allow_change)
        while self.epoch < self.cfg.train.epochs and not self.stop_training:
            self.fit_epoch()
        return self.end()

    def begin(self, resume: bool = False, overwrite: bool = False, allow_change: Sequence[str] = ()) -> None:
        """Everything before the first main epoch: the run folder's guards, resume, ``on_fit_start``, stages."""
        self.data_fingerprint = data_fingerprint(self.splits)
        if self.out is not None:
            run_folder.enter(self, resume, overwrite, allow_change)  # the guards, then resume if asked
        self._t0 = time.time() - self.wall_time
        self.call("on_fit_start")
        for p in self.plugins:
            for stage in p.stages(self):
                run_stage(self, stage)

    def fit_epoch(self) -> Record:
        """One main epoch (``self.epoch``): training, evaluation, the epoch-end events, the final record."""
        epoch = self.epoch
        clock = Clock(self.device)
        self.call("on_epoch_start", epoch)
        record: Record = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        t_start = clock.lap()
        record["train"] = self.train_epoch(epoch)
        record["train"]["time_s"] = t_train = clock.lap()
        record["val"] = self.evaluate("val")
        record["test"] = self.evaluate("test")
        self.call("after_evaluate", epoch, record)  # selection, before any plug-in changes weights (D&R)
        t_eval = clock.lap()
        self.call("on_epoch_end", epoch, record)
        record["time"] = {"epoch_start": t_start, "train": t_train, "eval": t_eval, "epoch_end": clock.lap()}
        record["plugins"], steps = self.epoch_log.flush()
        if steps:
            record["steps"] = steps
        if self.scheduler is not None:
            self.scheduler.step()
        self.history.append(record)
        self.epoch = epoch + 1
        self.wall_time = time.time() - self._t0
        self.call("on_record", record)
        return record

    def end(self) -> Dict[str, Any]:
        """After the last epoch: ``on_fit_end`` (the summary of the selected checkpoint) and the summary."""
        self.wall_time = time.time() - self._t0
        self.call("on_fit_end")
        if self.replaces is not None and self.is_main and self.out is not None:
            run_folder.swap_in(self.out, self.replaces)
            self.out, self.replaces = self.replaces, None
        return self.summary

    # ================================================================== state / resume
    def state_dict(self) -> Dict[str, Any]:
        """Everything a resumed run needs (``last.pt``)."""
        return state.capture(self)

    def load_state(self, ckpt: Dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` exactly."""
        state.restore(self, ckpt)

    def load_weights(self, ckpt: Dict[str, Any]) -> None:
        """Load a model checkpoint (``best.pt``), modules that plug-ins added included."""
        state.load_weights(self, ckpt)
