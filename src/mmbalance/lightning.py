"""mmbalance's methods inside your own PyTorch Lightning module (``pip install lightning``; ``docs/lightning.md``).

The plug-ins talk to a :class:`~mmbalance.engine.Trainer` (contract v2). :class:`LightningHost` is that Trainer with
its loop taken away: the step primitives (``forward``, ``backward`` + ``after_backward``, ``optimizer_step``), the
default step, evaluation, ``side_pass``, ``data.iter_batches``, ``extract_features`` and the plug-in events are
the Trainer's own code; Lightning runs the epochs, owns the optimizer (``configure_optimizers``), the device and
the checkpoints. :class:`BalanceMixin` wires the two: manual optimisation (a step may take several optimiser
steps: MLA, ReconBoost; gradient methods act between backward and step: OGM-GE, AGM, MMPareto), the training
batches composed by the plug-ins (BSS's orders, DUS's per-modality sizes), the epoch events, and the plug-ins'
state in Lightning's checkpoints.

Batches: Lightning fetches a batch ahead of the step that uses it, but DUS decides the sizes of step t+1 after
step t. So Lightning's training DataLoader is only a clock (:class:`StepClock`: empty tickets, harmless to
prefetch); each step's real batch is drawn from the plug-ins' plan in ``on_train_batch_start``, after the previous
step, exactly as the Trainer's loop draws it, and ``on_train_batch_start`` ends the epoch (returns -1) when the plan
is exhausted. Random streams: the global one is set, at each epoch start, to where it was when the module was set
up (epoch 0) or at the end of the previous epoch, so Lightning's own draws in between do not shift the run, and a
resumed fit continues it exactly::

    class MyModule(BalanceMixin, L.LightningModule):
        def __init__(self, splits):
            super().__init__()
            self.model = build_model(ModelConfig(), shapes, num_classes)      # any MultimodalNet
            self.setup_balance(self.model, splits, "ogm-ge+dus-h", overrides=["train.batch_size=64"])

        def configure_optimizers(self):
            return torch.optim.SGD(self.balance_param_groups(), lr=0.05, momentum=0.9)

    L.Trainer(max_epochs=20, limit_val_batches=0).fit(MyModule(splits))

Limits (refused with a message, not silently wrong): one process (no DDP), Lightning precision ``32-true`` (set
``train.precision=bf16`` instead), one optimizer, no methods with pre-training stages (``stages``) or that add
modules during training (``on_load``), resume from end-of-epoch checkpoints only.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset

from .config import Config
from .data import Splits
from .data.fit_checks import check_fit_settings
from .data.batch import Batch
from .engine.checkpoint import rng_state, set_rng_state
from .engine.compat import check_plugins
from .engine.epoch_log import EpochLog
from .engine.losses import nonfinite_error
from .engine.pipeline import DataPipeline
from .engine.plugin import EVENTS, Losses, Plugin, Record, implements
from .engine.runtime import model_calls
from .engine.samplers import EpochBatchSampler, FixedBatcher, RandomOrder
from .engine.trainer import Trainer

if TYPE_CHECKING:
    from .models import MultimodalNet

STATE_FORMAT = 1  #: layout of ``checkpoint["mmbalance"]``


class LightningHost(Trainer):
    """The Trainer services and events for plug-ins, driven by a Lightning loop (see the module docstring)."""

    def __init__(self, module: Any, model: "MultimodalNet", cfg: Config, splits: Splits,
                 plugins: Sequence[Plugin]):  # Trainer.__init__ would build a model, optimizer and run folder
        cfg.validate()
        refused = [p.name for p in plugins if implements(p, "on_load")]
        if refused:
            raise ValueError(f"mmbalance.lightning: {refused[0]!r} adds modules during training, which the Lightning "
                             f"adapter does not support (Lightning creates the optimizer); use mmbalance's Trainer")
        check_plugins(list(plugins))
        check_fit_settings(cfg, splits)
        self.cfg, self.splits, self.module, self.model = cfg, splits, module, model
        self.out, self.rank, self.world_size, self.is_main = None, 0, 1, True
        self.device, self.resident = torch.device("cpu"), False
        self.modalities: List[str] = list(splits.train.modalities)
        self.active_modalities: List[str] = list(self.modalities)
        self.num_classes = int(splits.train.num_classes)
        order = {id(p): i for i, p in enumerate(plugins)}
        self.plugins = sorted(plugins, key=lambda p: (p.priority, order[id(p)]))
        self._hooks = {e: [p for p in self.plugins if implements(p, e)] for e in EVENTS}
        self.epoch_log = EpochLog()
        for p in self.plugins:
            p.attach(self)
        self.call("configure_model", model)
        self.initial_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        uni = cfg.train.unimodal_loss_weight
        self.unimodal_loss_weight = float(uni) if uni is not None else (
            1.0 if any(p.wants_unimodal_loss for p in plugins) else 0.0)
        self.fused_loss_weight = float(cfg.train.fused_loss_weight)
        self.default_order = RandomOrder(len(splits.train), cfg.train.seed)
        self.default_batcher = FixedBatcher(cfg.train.batch_size, cfg.train.drop_last)
        self.train_order, self.batcher = self.default_order, self.default_batcher
        self.sampler: Optional[EpochBatchSampler] = None
        self._step_owner = next((p for p in plugins if "training_step" in p.provides()), None)
        self.optimizer: Any = None
        self.scheduler = None  # the user's schedulers are Lightning's (BalanceMixin steps them)
        self.epoch, self.global_step, self.wall_time = 0, 0, 0.0
        self.history: List[Record] = []
        self.stage_history, self.stage_epochs = [], {}
        self.resumed, self.stop_training, self.summary = False, False, {}
        self._batch: Optional[Batch] = None
        self._cost = {"forwards": 0, "backwards": 0}
        self.check_finite_every_step = True  # set for the device in start(), as the Trainer does
        self._epoch_open = False
        self._batches: Optional[Iterator[Batch]] = None  # this epoch's planned batches, drawn one step at a time
        self._pending: Optional[Batch] = None
        # random states to apply at the next epoch start (rng) and at fit start (aug_rng); the run starts here
        self._stash: Dict[str, Any] = {"rng": rng_state()}

    # ------------------------------------------------------------------ Lightning's fit start
    def start(self, trainer: Any) -> None:
        """Bind to the running Lightning trainer: device, optimizer, data pipeline; fire ``on_fit_start``."""
        if trainer.world_size > 1:
            raise RuntimeError("mmbalance.lightning runs on one process: under DDP the plug-ins' statistics and "
                               "batch plans would not be synchronised; use `mmbalance train --devices N`")
        if str(trainer.precision) not in ("32-true", "32"):
            raise ValueError(f"mmbalance.lightning needs Lightning precision '32-true' (got {trainer.precision!r}); "
                             f"set train.precision=bf16 in the overrides for bf16 autocast")
        opts = self.module.optimizers()
        if isinstance(opts, (list, tuple)):
            raise ValueError("mmbalance.lightning supports one optimizer (configure_optimizers returned several)")
        stages = [p.name for p in self.plugins if p.stages(self)]
        if stages:
            raise ValueError(f"mmbalance.lightning: {stages[0]!r} runs pre-training stages, which the adapter does "
                             f"not support; use mmbalance's Trainer")
        self.optimizer = opts  # Lightning's wrapper: its step() counts Lightning's global step
        self.device = self.module.device
        check = self.cfg.train.check_finite  # a host sync per step only where it is cheap (CPU), as the Trainer
        self.check_finite_every_step = check == "step" or (check == "auto" and self.device.type == "cpu")
        self._model_call, self._eval_call = model_calls(self.model, self.device, 1, self.cfg.train.compile)
        self.aug_generator = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 12345)
        if "aug_rng" in self._stash:
            self.aug_generator.set_state(self._stash.pop("aug_rng"))
        self.data = DataPipeline(self.cfg, self.splits, self.device, False, self.aug_generator,
                                 lambda: self.active_modalities)
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            self.cfg.train.epochs = int(trainer.max_epochs)  # DUS plans with the run's length
        self._t0 = time.time() - self.wall_time
        self.call("on_fit_start")

    # ------------------------------------------------------------------ an epoch, as the Trainer runs it
    def open_epoch(self) -> None:
        """``on_epoch_start``, the epoch's order and batcher and its batch iterator (once per epoch)."""
        if self._epoch_open:
            return
        if "rng" in self._stash:  # the random state at the end of the previous epoch: Lightning's own draws
            set_rng_state(self._stash.pop("rng"))  # in between (DataLoader start-up) cannot shift the run
        epoch = self.epoch
        self.call("on_epoch_start", epoch)
        self._lr = self.optimizer.param_groups[0]["lr"]
        order, batcher = self.one_answer("epoch_order", epoch), self.one_answer("batcher", epoch)
        self.train_order = self.default_order if order is None else order
        self.batcher = self.default_batcher if batcher is None else batcher
        self.sampler = EpochBatchSampler(self.train_order, self.batcher)
        self.sampler.set_epoch(epoch)
        self.model.train()
        self.data.set_split_mode("train", True)
        self._batches = iter(self.data.loader("train", self.sampler))
        self._sums: Dict[str, torch.Tensor] = {}
        self._steps = self._samples = 0
        self._cost = {"forwards": 0, "backwards": 0}
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self._epoch_open = True

    def draw(self) -> bool:
        """Compose the next step's batch from the plan, now (after the previous step); False when the epoch's
        plan is exhausted."""
        self.open_epoch()
        assert self._batches is not None
        batch = next(self._batches, None)
        self._pending = None if batch is None else self.data.to_device(batch)
        return self._pending is not None

    def step(self) -> Losses:
        """One training step on the drawn batch (the default step or the step strategy), counted like the
        Trainer's."""
        batch, self._pending = self._pending, None
        if batch is None:
            raise RuntimeError("mmbalance.lightning: a training step without a drawn batch (on_train_batch_start "
                               "of BalanceMixin did not run: call super().on_train_batch_start in your override)")
        losses = self.training_step(batch)
        for k, v in losses.items():
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._steps += 1
        self._samples += len(batch)
        self.global_step += 1
        return losses

    def close_epoch(self) -> Record:
        """Evaluation and the epoch-end events; returns the epoch's record (also in ``history``)."""
        epoch, steps = self.epoch, max(self._steps, 1)
        if not self.check_finite_every_step and bool(self._nonfinite):
            raise nonfinite_error(self, f"epoch {epoch} (checked per epoch)",
                                  {k: v / steps for k, v in self._sums.items()})
        train: Dict[str, Any] = {("loss" if k == "total" else f"loss_{k}"): float(v) / steps
                                 for k, v in self._sums.items()}
        train.update(steps=self._steps, samples=self._samples,
                     cost={f"{k}_per_step": v / steps for k, v in self._cost.items()})
        record: Record = {"epoch": epoch, "lr": self._lr, "train": train}
        for split in ("val", "test"):
            if len(self.splits[split]):
                record[split] = self.evaluate(split)
        self.call("after_evaluate", epoch, record)
        self.call("on_epoch_end", epoch, record)
        record["plugins"], series = self.epoch_log.flush()
        if series:
            record["steps"] = series
        self.history.append(record)
        self.epoch, self._epoch_open, self._batches = epoch + 1, False, None
        self.wall_time = time.time() - self._t0
        self.call("on_record", record)
        self._stash["rng"] = rng_state()
        return record

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """What a resumed fit needs besides Lightning's own state (tensors and plain containers only)."""
        return {"format": STATE_FORMAT, "method": self.cfg.method, "mid_epoch": self._epoch_open,
                "epoch": self.epoch, "global_step": self.global_step, "history": self.history,
                "plugins": {p.name: p.state_dict() for p in self.plugins}, "initial_model": self.initial_state,
                "rng": self._stash.get("rng") or rng_state(), "aug_rng": self.aug_generator.get_state(),
                "wall_time": self.wall_time}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT or state.get("method") != self.cfg.method:
            raise ValueError(f"the checkpoint's mmbalance state is for method {state.get('method')!r} (format "
                             f"{state.get('format')}), not {self.cfg.method!r} (format {STATE_FORMAT})")
        if state["mid_epoch"]:
            raise ValueError("the checkpoint was saved in the middle of an epoch; mmbalance.lightning resumes "
                             "exactly only from end-of-epoch checkpoints (ModelCheckpoint's default)")
        missing = [p.name for p in self.plugins if p.name not in state["plugins"]]
        if missing:
            raise ValueError(f"the checkpoint has no state for plug-in {missing[0]!r}")
        for p in self.plugins:
            p.load_state_dict(state["plugins"][p.name])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.wall_time = float(state["wall_time"])
        self.history, self.initial_state = list(state["history"]), state["initial_model"]
        self._stash = {"rng": state["rng"], "aug_rng": state["aug_rng"]}
        self.resumed = True


class StepClock(IterableDataset):
    """Lightning's training "data": endless empty tickets, one per step. The real batch of a step is drawn from
    the plug-ins' plan when the step starts (see the module docstring); the epoch ends when the plan does."""

    def __iter__(self) -> Iterator[int]:
        step = 0
        while True:
            yield step
            step += 1


class BalanceMixin:
    """Mix into a ``LightningModule`` (before it: ``class M(BalanceMixin, L.LightningModule)``) and call
    :meth:`setup_balance` in ``__init__``. Provides ``training_step`` (manual optimisation), ``train_dataloader``,
    the epoch hooks and the checkpoint hooks; overriding one of them, call ``super()``."""

    balance: LightningHost

    def setup_balance(self, model: "MultimodalNet", splits: Splits, method: str = "joint",
                      method_args: Optional[Mapping[str, Mapping[str, Any]]] = None, overrides: Sequence[str] = (),
                      plugins: Optional[Sequence[Plugin]] = None) -> LightningHost:
        """Run ``method`` (``a+b`` stacks; or ready ``plugins``) on ``model`` (a ``MultimodalNet``: encoders, heads,
        fusion) with ``splits`` (train for training; val and test are evaluated after every epoch). ``overrides``
        are config keys as on the command line (``train.batch_size=32``, ``train.seed=1``, ``optim.grad_clip=5``)."""
        from .methods import build_plugins

        cfg = Config().override([f"method={method}", *overrides])
        for name, args in (method_args or {}).items():
            cfg.method_args[name] = {**cfg.method_args.get(name, {}), **dict(args)}
        self.automatic_optimization = False
        # a plain attribute, not a submodule: the model is registered by the module itself
        object.__setattr__(self, "balance", LightningHost(self, model, cfg, splits,
                                                          list(plugins) if plugins is not None else build_plugins(cfg)))
        return self.balance

    def balance_param_groups(self) -> List[Any]:
        """What ``configure_optimizers`` should optimise: a method's parameter groups (MSLR), else every
        trainable parameter of the model."""
        groups = self.balance.one_answer("optimizer_groups", self.balance.model)
        return groups if groups is not None else [p for p in self.balance.model.parameters() if p.requires_grad]

    def train_dataloader(self) -> DataLoader:
        """The step clock (the batches themselves come from the plug-ins' plan, drawn at each step's start)."""
        # its own generator: starting its iterator (every epoch) then draws nothing from the global stream
        return DataLoader(StepClock(), batch_size=None, generator=torch.Generator().manual_seed(0))

    def on_fit_start(self) -> None:
        super().on_fit_start()  # type: ignore[misc]
        self.balance.start(self.trainer)  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()  # type: ignore[misc]
        self.balance.open_epoch()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        super().on_train_batch_start(batch, batch_idx)  # type: ignore[misc]
        return None if self.balance.draw() else -1  # -1: Lightning ends the epoch

    def training_step(self, ticket: int, batch_idx: int) -> None:
        losses = self.balance.step()
        self.log("train/loss", losses["total"], on_step=False, on_epoch=True, batch_size=1)  # type: ignore

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()  # type: ignore[misc]
        record = self.balance.close_epoch()
        scalars = {f"{s}/{k}": record[s][k] for s in ("val", "test") if s in record for k in ("acc", "macro_f1")}
        scalars.update({k: float(v) for k, v in record["plugins"].items() if isinstance(v, (int, float))})
        if scalars:
            self.log_dict(scalars, on_step=False, on_epoch=True, batch_size=1)  # type: ignore[attr-defined]
        schedulers = self.lr_schedulers()  # type: ignore[attr-defined]
        for s in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers is not None else []:
            s.step()  # manual optimisation: after the epoch's events, as the Trainer does

    def on_train_end(self) -> None:
        super().on_train_end()  # type: ignore[misc]
        self.balance.call("on_fit_end")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint["mmbalance"] = self.balance.state_dict()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        if "mmbalance" not in checkpoint:
            raise ValueError("the checkpoint has no mmbalance state (it was not written by a BalanceMixin module)")
        self.balance.load_state(checkpoint["mmbalance"])


__all__ = ["BalanceMixin", "LightningHost", "StepClock"]
