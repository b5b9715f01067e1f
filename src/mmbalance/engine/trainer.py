"""The one training loop. Methods are plug-ins (:mod:`.plugin`) that hook its named events."""
from __future__ import annotations

import contextlib
import json
import math
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..config import Config
from ..data import BatchDataset, Splits, build_splits
from ..data.base import passthrough_collate, sample_shape
from ..models import ModelOutput, build_model
from ..provenance import collect as collect_provenance, config_yaml, dataset_label
from .checkpoint import (atomic_torch_save, atomic_write_json, atomic_write_text, load_checkpoint, rng_state,
                         seed_everything, set_rng_state)
from .metrics import accuracy, classification_metrics
from .plugin import Plugin, check_plugins
from .samplers import EpochBatchSampler, FixedBatcher, IndexListOrder, RandomOrder, SequentialOrder


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


class Trainer:
    """Owns the model, optimizer, data order and plug-ins; runs epochs, evaluates, checkpoints.

    ``Trainer(cfg).fit()`` trains and returns the run summary (also written to ``summary.json``).
    Pass ``splits`` to train on your own :class:`~mmbalance.data.Splits` and ``plugins`` to bypass the
    method registry.
    """

    def __init__(self, cfg: Config, splits: Optional[Splits] = None, plugins: Optional[List[Plugin]] = None,
                 on_epoch=None):
        from ..methods import build_plugins  # late import: methods import the engine

        self.cfg = cfg
        self.out = Path(cfg.out) if cfg.out else None
        #: called with each epoch's record after it is written (progress displays, early stopping, ...)
        self.on_epoch = on_epoch
        self.rank, self.world_size, local_rank = _init_distributed(cfg.train.device)
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.train.device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        self._set_determinism()
        seed_everything(cfg.train.seed)
        self.splits = splits if splits is not None else build_splits(cfg.data)
        self.splits_from_python = splits is not None  # then cfg.data was not used (provenance.dataset_label)
        #: whether the splits really live on the device (data.resident=true and they fit)
        self.resident = bool(cfg.data.resident) and self._make_resident()
        train = self.splits.train
        self.modalities: List[str] = list(train.modalities)
        self.active_modalities: List[str] = list(self.modalities)
        self.num_classes = int(train.num_classes)
        self.plugins: List[Plugin] = list(plugins) if plugins is not None else build_plugins(cfg)
        check_plugins(self.plugins)
        order = {id(p): i for i, p in enumerate(self.plugins)}
        self.plugins.sort(key=lambda p: (p.priority, order[id(p)]))

        shapes = {m: sample_shape(train, m) for m in self.modalities}
        self.model = build_model(cfg.model, shapes, self.num_classes)
        for p in self.plugins:
            p.configure_model(self, self.model)
        self.model.to(self.device)
        if cfg.train.channels_last and self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.initial_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self._model_call = self._eval_call = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # unused parameters occur legitimately (a modality with no samples on a rank, unimodal runs)
            ddp = DistributedDataParallel(
                _DictOutput(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
            self._model_call = lambda inputs, fuse=True: ModelOutput(**ddp(inputs, fuse=fuse))
        if cfg.train.compile != "none":
            mode = None if cfg.train.compile == "default" else cfg.train.compile
            # Some plug-ins backpropagate through one forward more than once (MMPareto's per-loss gradients use
            # retain_graph); a compiled backward that donates its buffers refuses that. Off for every compiled
            # run, not only those: dynamo shares compiled graphs between identical models in one process.
            from torch._functorch import config as functorch_config

            functorch_config.donated_buffer = False
            self._model_call = torch.compile(self._model_call, mode=mode)
            self._eval_call = torch.compile(self.model, mode=mode) if self.world_size > 1 else self._model_call
        # per-sample randomness of batch transforms (GPU augmentation), seeded and saved for exact resume
        self.aug_generator = torch.Generator(device=self.device).manual_seed(cfg.train.seed + 12345)

        uni = cfg.train.unimodal_loss_weight
        self.unimodal_loss_weight = float(uni) if uni is not None else (
            1.0 if any(p.wants_unimodal_loss for p in self.plugins) else 0.0)
        self.fused_loss_weight = float(cfg.train.fused_loss_weight)

        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.train_order = RandomOrder(len(train), cfg.train.seed)
        self.batcher = FixedBatcher(cfg.train.batch_size, cfg.train.drop_last)
        self.sampler: Optional[EpochBatchSampler] = None
        self._step_plugin = next((p for p in self.plugins if p.overrides_step), None)

        self.epoch = 0  # next epoch to run
        self.global_step = 0
        self.history: List[Dict[str, Any]] = []
        self.best = {"epoch": -1, "score": -math.inf}
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.resumed = False
        self.wall_time = 0.0
        self._epoch_scalars: Dict[str, float] = {}
        self._epoch_series: Dict[str, list] = {}
        self._bad_step: Optional[str] = None
        self._writer = None
        check = cfg.train.check_finite
        if check not in ("auto", "step", "epoch"):
            raise ValueError(f"train.check_finite must be auto, step or epoch, got {check!r}")
        self.check_finite_every_step = check == "step" or (check == "auto" and self.device.type == "cpu")

    # ================================================================== setup helpers
    def _make_resident(self) -> bool:
        """``data.resident``: move the splits onto the training device if they fit in its free memory (on CUDA,
        at most ``RESIDENT_FRACTION`` of it, the rest is left for training); otherwise warn and keep them in host
        memory (batches then go through pinned memory). Returns whether they were moved."""
        srcs = {name: self.splits[name] for name in ("train", "val", "test")}
        for name, src in srcs.items():
            if not hasattr(src, "to"):
                raise ValueError(f"data.resident=true but the {name} source ({type(src).__name__}) cannot "
                                 f"be moved to a device; use a cached/in-memory dataset")
        if self.device.type == "cuda":
            need = tensor_bytes(list(srcs.values()))
            free, _total = torch.cuda.mem_get_info(self.device)
            ok, why = resident_fits(need, free)
            if not ok:
                warnings.warn(f"data.resident=true: {why}; keeping the data in host memory", stacklevel=3)
                return False
        for src in srcs.values():
            src.to(self.device)
        return True

    def _set_determinism(self):
        if self.cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:  # process-wide switches: undo what an earlier deterministic Trainer in this process set
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.benchmark = True

    def _build_optimizer(self):
        o = self.cfg.optim
        groups = None
        for p in self.plugins:
            g = p.configure_optimizer(self, self.model)
            if g is not None:
                if groups is not None:
                    raise ValueError(f"two methods set optimizer parameter groups ({p.name!r} is the second)")
                groups = g
        params = groups if groups is not None else [p for p in self.model.parameters() if p.requires_grad]
        name = o.name.lower()
        if name == "sgd":
            return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        if name == "adam":
            return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        raise ValueError(f"optim.name={o.name!r} is not one of sgd, adam, adamw")

    def _build_scheduler(self):
        o = self.cfg.optim
        if o.scheduler == "none":
            return None
        if o.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, o.step_size, o.gamma)
        if o.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max(1, self.cfg.train.epochs))
        raise ValueError(f"optim.scheduler={o.scheduler!r} is not one of none, step, cosine")

    # ================================================================== plug-in dispatch and logging
    def call(self, event: str, *args) -> None:
        for p in self.plugins:
            getattr(p, event)(self, *args)

    def plugin(self, name: str) -> Optional[Plugin]:
        return next((p for p in self.plugins if p.name == name), None)

    def log(self, key: str, value) -> None:
        """Record a scalar for the current epoch (last value wins); lands in metrics.jsonl and TensorBoard."""
        self._epoch_scalars[key] = value

    def log_step(self, key: str, value) -> None:
        """Append a per-step value (a tensor is fine: converted once at epoch end, no sync per step)."""
        self._epoch_series.setdefault(key, []).append(value.detach() if torch.is_tensor(value) else value)

    # ================================================================== forward / loss / step
    def autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.cfg.train.precision != "fp32":
            raise ValueError(f"train.precision must be fp32 or bf16, got {self.cfg.train.precision!r}")
        return contextlib.nullcontext()

    def forward(self, inputs: Dict[str, torch.Tensor], fuse: bool = True) -> ModelOutput:
        # evaluation bypasses DDP: no collectives, so any rank (or rank 0 alone) may evaluate
        call = self._model_call if self.model.training else self._eval_call
        with self.autocast():
            return call({m: x for m, x in inputs.items() if m in self.active_modalities}, fuse=fuse)

    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """Sum or mean of ``tensor`` over DDP ranks (identity in a single process). Plug-ins use it so that
        statistics that steer training (scores, ratios, batch sizes) are the same on every rank."""
        if self.world_size == 1:
            return tensor
        t = tensor.detach().clone()
        torch.distributed.all_reduce(t)
        return t / self.world_size if op == "mean" else t

    def compute_losses(self, batch, out: ModelOutput) -> Dict[str, torch.Tensor]:
        """The base objective: fused CE on the paired part + (optionally) per-modality CE on each
        modality's own samples. Plug-ins add or replace terms in ``compute_loss``."""
        y = batch["y"]
        gs = batch.get("global_sizes")
        g_pair = batch.get("global_n_pair")
        losses: Dict[str, torch.Tensor] = {}
        if out.fused is not None and self.fused_loss_weight > 0:
            losses["fused"] = self.fused_loss_weight * self.cross_entropy(out.fused, y[: out.n_pair], g_pair)
        if self.unimodal_loss_weight > 0:
            for m, z in out.logits.items():
                losses[f"uni_{m}"] = self.unimodal_loss_weight * self.cross_entropy(
                    z, self.targets(batch, m, z.shape[0]), gs[m] if gs else None)
        elif self.cfg.train.monitor_heads:
            for m, f in out.features.items():
                with self.autocast():
                    z = self.model.heads[m](f.detach())
                losses[f"monitor_{m}"] = self.cross_entropy(z, self.targets(batch, m, z.shape[0]),
                                                            gs[m] if gs else None)
        return losses

    @staticmethod
    def targets(batch, modality: str, n: int) -> torch.Tensor:
        """Labels of modality ``modality``'s ``n`` rows: its own list in an independent batch, else the first
        ``n`` labels (nested or paired batch). Plug-ins use this for per-modality losses and scores."""
        y_mod = batch.get("y_mod")
        if y_mod is not None and modality in y_mod:
            return y_mod[modality][:n]
        return batch["y"][:n]

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor, global_count: Optional[int] = None):
        """Mean cross-entropy; under DDP, the sum over this rank's samples divided by the global count
        times the world size, so that DDP's gradient average is the gradient of the global-batch mean
        even when shards differ in size (nested DUS batches)."""
        if self.world_size == 1 or global_count is None:
            return F.cross_entropy(logits.float(), y)
        return F.cross_entropy(logits.float(), y, reduction="sum") * (self.world_size / max(global_count, 1))

    def backward_and_step(self, total: torch.Tensor, batch=None, out=None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.call("after_backward", batch, out)
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()

    def check_finite(self, total: torch.Tensor, losses: Dict[str, torch.Tensor], step: int) -> None:
        if self.check_finite_every_step:
            if not bool(torch.isfinite(total)):
                self._raise_nonfinite(f"epoch {self.epoch} step {step}", losses)
        else:  # accumulate on the device; checked once at epoch end
            self._nonfinite = self._nonfinite | ~torch.isfinite(total.detach())

    def _raise_nonfinite(self, where: str, losses) -> None:
        terms = ", ".join(f"{k}={float(v.detach() if torch.is_tensor(v) else v):.4g}" for k, v in losses.items()) if losses else "?"
        keep = (f" The last good checkpoint is kept: {self.out / 'last.pt'} (after epoch {self.epoch - 1})."
                if self.out and (self.out / "last.pt").exists() else " No checkpoint had been written yet.")
        raise NonFiniteLossError(
            f"non-finite training loss at {where} ({terms}). Lower optim.lr, set optim.grad_clip, or check the "
            f"inputs.{keep}")

    def training_step(self, batch, step: int) -> Dict[str, torch.Tensor]:
        if self._step_plugin is not None:
            losses = self._step_plugin.training_step(self, batch)
            total = losses.get("total", sum(v for k, v in losses.items()))
            self.check_finite(total, losses, step)
            self.call("after_step", batch, None)
            return {k: v.detach() for k, v in losses.items()}
        out = self.forward(batch["inputs"])
        self.call("after_forward", batch, out)
        losses = self.compute_losses(batch, out)
        self.call("compute_loss", batch, out, losses)
        if not losses:
            raise RuntimeError("no loss terms: the method combination produced an empty objective")
        total = sum(losses.values())
        self.check_finite(total, losses, step)
        self.backward_and_step(total, batch, out)
        self.call("after_step", batch, out)
        result = {k: v.detach() for k, v in losses.items()}
        result["total"] = total.detach()
        return result

    # ================================================================== data
    def loader(self, split: str, batch_sampler, modalities: Optional[List[str]] = None) -> DataLoader:
        source = self.splits[split]
        return DataLoader(BatchDataset(source, modalities or self.active_modalities), batch_sampler=batch_sampler,
                          collate_fn=passthrough_collate, num_workers=self.cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda" and not self.resident)

    def eval_loader(self, split: str, modalities: Optional[List[str]] = None) -> DataLoader:
        n = len(self.splits[split])
        sampler = EpochBatchSampler(SequentialOrder(n), FixedBatcher(self.cfg.eval.batch_size))
        return self.loader(split, sampler, modalities)

    def iter_batches(self, split: str, indices=None, train: bool = False, modalities: Optional[List[str]] = None,
                     batch_size: Optional[int] = None, shuffle: bool = False, epoch: int = 0, salt: int = 0):
        """Device batches of ``split`` (optionally restricted to ``indices``), with training or evaluation
        transforms; a seeded shuffle if ``shuffle``. For plug-ins' own passes (scoring, prototypes, probes)."""
        self.set_split_mode(split, train)
        if indices is None:
            indices = torch.arange(len(self.splits[split]))
        order = IndexListOrder(indices, self.cfg.train.seed, shuffle=shuffle, salt=salt)
        bs = int(batch_size or (self.cfg.train.batch_size if train else self.cfg.eval.batch_size))
        sampler = EpochBatchSampler(order, FixedBatcher(bs))
        sampler.set_epoch(epoch)
        for batch in self.loader(split, sampler, modalities):
            yield self.to_device(batch, split, train=train)

    def to_device(self, batch, split: str = "train", train: bool = True):
        """Move a batch to the device and apply the source's batch transform (e.g. GPU augmentation)."""
        nb = self.device.type == "cuda"
        cl = self.cfg.train.channels_last and self.device.type == "cuda"
        inputs = {}
        for m, x in batch["inputs"].items():
            if x is None:
                inputs[m] = None
                continue
            x = x.to(self.device, non_blocking=nb)
            transform = getattr(self.splits[split], "batch_transform", None)
            if transform is not None:
                x = transform(m, x, train, self.aug_generator)
            if cl and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            inputs[m] = x
        moved = {**batch, "inputs": inputs, "y": batch["y"].to(self.device, non_blocking=nb),
                 "index": batch["index"].to(self.device, non_blocking=nb)}
        for key in ("y_mod", "index_mod"):  # independent batches: per-modality labels and indices
            if key in batch:
                moved[key] = {m: v.to(self.device, non_blocking=nb) for m, v in batch[key].items()}
        return moved

    def set_split_mode(self, split: str, train: bool):
        """Switch a split's source between training and evaluation transforms (if it has them)."""
        src = self.splits[split]
        if hasattr(src, "set_train"):
            src.set_train(train)

    # ================================================================== epochs
    def train_epoch(self, epoch: int) -> Dict[str, Any]:
        self.model.train()
        self.set_split_mode("train", True)
        self.sampler = EpochBatchSampler(self.train_order, self.batcher, self.rank, self.world_size)
        self.sampler.set_epoch(epoch)
        sums: Dict[str, torch.Tensor] = {}
        steps = samples = 0
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        for batch in self.loader("train", self.sampler):
            batch = self.to_device(batch)
            losses = self.training_step(batch, steps)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            steps += 1
            samples += len(batch["index"])
            self.global_step += 1
        if not self.check_finite_every_step and bool(self._nonfinite):
            self._raise_nonfinite(f"epoch {epoch} (checked per epoch)", {k: v / max(steps, 1) for k, v in sums.items()})
        if self.world_size > 1 and sums:
            keys = sorted(sums)
            reduced = self.all_reduce(torch.stack([sums[k].float() for k in keys]))
            sums = dict(zip(keys, reduced))
        stats = {f"loss_{k}" if k != "total" else "loss": float(v) / max(steps, 1) for k, v in sums.items()}
        if self.world_size > 1:  # shards may be uneven: count what every rank saw
            samples = int(self.all_reduce(torch.tensor(float(samples), device=self.device), "sum"))
        stats.update(steps=steps, samples=samples)
        return stats

    @torch.no_grad()
    def collect(self, split: str, features: bool = False, modalities: Optional[List[str]] = None):
        """Run the model over a split in order (evaluation transforms). Returns a dict with ``y``,
        ``logits`` (per modality), ``fused``, ``shares`` (each modality's additive share of the fused
        logits, when the fusion has ``modality_logits``: concat, sum) and, if ``features``, ``features``."""
        was_training = self.model.training
        self.model.eval()
        self.set_split_mode(split, False)
        ys, fused, logits, feats, preds, shares = [], [], {}, {}, [], {}
        share_fn = getattr(self.model.fusion, "modality_logits", None)
        for batch in self.eval_loader(split, modalities):
            batch = self.to_device(batch, split, train=False)
            out = self.forward(batch["inputs"])
            ys.append(batch["y"])
            if out.fused is not None:
                fused.append(out.fused.float())
                if share_fn is not None:
                    with self.autocast():
                        for m, z in share_fn(out.paired_features()).items():
                            shares.setdefault(m, []).append(z.float())
            preds.append(self.predict(out).float())
            for m, z in out.logits.items():
                logits.setdefault(m, []).append(z.float())
                if features:
                    feats.setdefault(m, []).append(out.features[m].float())
        self.model.train(was_training)  # train_epoch switches the train source back to training transforms
        res = {"y": torch.cat(ys).cpu(), "logits": {m: torch.cat(v).cpu() for m, v in logits.items()},
               "fused": torch.cat(fused).cpu() if fused else None, "pred": torch.cat(preds).cpu(),
               "shares": {m: torch.cat(v).cpu() for m, v in shares.items()}}
        if features:
            res["features"] = {m: torch.cat(v).cpu() for m, v in feats.items()}
        return res

    def predict(self, out: ModelOutput) -> torch.Tensor:
        for p in self.plugins:
            r = p.predict(self, out)
            if r is not None:
                return r
        mode = self.cfg.eval.predict
        heads = sum(out.logits.values())
        if mode == "fused":
            return out.fused if out.fused is not None else heads
        if mode == "sum_of_heads":
            return heads + out.fused if out.fused is not None else heads
        if mode == "heads_only":
            return heads
        raise ValueError(f"eval.predict must be fused, sum_of_heads or heads_only, got {mode!r}")

    def evaluate(self, split: str) -> Dict[str, Any]:
        r = self.collect(split)
        m = classification_metrics(r["pred"], r["y"], self.num_classes)
        m["loss"] = float(F.cross_entropy(r["pred"], r["y"])) if len(r["y"]) else float("nan")
        m["modality_acc"] = {k: accuracy(z, r["y"]) for k, z in r["logits"].items()}
        # accuracy of each modality's share of the fused head (OGM-GE's per-modality measure; concat/sum)
        m["share_acc"] = {k: accuracy(z, r["y"]) for k, z in r["shares"].items()}
        return m

    def extract_features(self, split: str, modalities: Optional[List[str]] = None):
        """Pooled encoder features of a split in order: ``({modality: [N, d]}, labels [N])``."""
        r = self.collect(split, features=True, modalities=modalities)
        return r["features"], r["y"]

    # ================================================================== fit
    def fit(self, resume: bool = False) -> Dict[str, Any]:
        """Train for ``train.epochs`` epochs (continuing from ``last.pt`` if ``resume``) and summarise."""
        if self.out is not None:
            if resume and (self.out / "last.pt").exists():  # every rank loads the same state
                self.load_state(load_checkpoint(self.out / "last.pt"))
                self.resumed = True
            if self.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.out / "config.yaml", config_yaml(self.cfg, self.splits, self.splits_from_python))
                self._rewrite_jsonl()
        t0 = time.time() - self.wall_time
        self.call("on_fit_start")
        epochs = self.cfg.train.epochs
        bar = _progress(range(self.epoch, epochs), self.cfg.train.progress and self.is_main,
                        desc=f"{self.cfg.method} seed {self.cfg.train.seed}", initial=self.epoch, total=epochs)
        for epoch in bar:
            self.epoch = epoch
            clock = _Clock(self.device)
            self.call("on_epoch_start", epoch)
            record: Dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            t_start = clock.lap()
            record["train"] = self.train_epoch(epoch)
            t_train = clock.lap()
            record["train"]["time_s"] = t_train
            record["val"] = self.evaluate("val")
            record["test"] = self.evaluate("test")
            self._select(epoch, record)  # before on_epoch_end: a plug-in may change weights there (D&R)
            t_eval = clock.lap()
            self.call("on_epoch_end", epoch, record)
            record["time"] = {"epoch_start": t_start, "train": t_train, "eval": t_eval, "epoch_end": clock.lap()}
            record["plugins"] = dict(self._epoch_scalars)
            if self._epoch_series:
                record["steps"] = {k: _to_list(v) for k, v in self._epoch_series.items()}
            self._epoch_scalars, self._epoch_series = {}, {}
            if self.scheduler is not None:
                self.scheduler.step()
            self.history.append(record)
            self.epoch = epoch + 1
            self.wall_time = time.time() - t0
            self._write_epoch(record)
            if self.on_epoch is not None:
                self.on_epoch(record)
            if self.out is not None and self.is_main and (
                    self.epoch % self.cfg.train.checkpoint_every == 0 or self.epoch == epochs):
                atomic_torch_save(self.state_dict(), self.out / "last.pt")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(val=f"{record['val']['acc']:.3f}", **{
                    m: f"{a:.2f}" for m, a in record["val"]["modality_acc"].items()})
        self.call("on_fit_end")
        self.wall_time = time.time() - t0
        if not self.is_main:  # rank 0 evaluates the best checkpoint and writes the summary
            return {}
        summary = self.summarize()
        if self._writer is not None:
            self._writer.close()
        return summary

    def _select(self, epoch: int, record: Dict[str, Any]) -> None:
        split = self.cfg.eval.select_on
        if split not in ("val", "test"):
            raise ValueError(f"eval.select_on must be val or test, got {split!r}")
        score = record[split]["acc"]
        if score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score}
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if self.out is not None:
                if self.is_main:
                    atomic_torch_save({"model": state, "epoch": epoch, "score": score, "select_on": split},
                                      self.out / "best.pt")
            else:
                self.best_state = state

    def summarize(self) -> Dict[str, Any]:
        """Load the best-on-validation weights, evaluate val and test, probe encoders, write summary.json."""
        if self.best["epoch"] >= 0:
            state = self.best_state
            if state is None and self.out is not None:
                state = load_checkpoint(self.out / "best.pt")["model"]
            if state is not None:
                self.model.load_state_dict(state)
        val, test = self.evaluate("val"), self.evaluate("test")
        summary = {
            "method": self.cfg.method,
            "dataset": dataset_label(self.cfg, self.splits, self.splits_from_python),
            "modalities": self.active_modalities,
            "seed": self.cfg.train.seed,
            "epochs": self.epoch,
            "best_epoch": self.best["epoch"],
            "select_on": self.cfg.eval.select_on,
            "val": _public(val),
            "test": _public(test),
            "probe": self.probe() if self.cfg.eval.probe else {},
            # how the per-modality heads behind modality_acc were trained
            "heads": ("trained" if self.unimodal_loss_weight > 0 else
                      "monitor" if self.cfg.train.monitor_heads else "untrained"),
            "wall_time_s": round(self.wall_time, 3),
            "device": str(self.device),
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "provenance": collect_provenance(self.cfg, self.splits, from_python=self.splits_from_python),
        }
        if self.out is not None and self.is_main:
            atomic_write_json(self.out / "summary.json", summary)
        return summary

    def probe(self) -> Dict[str, Dict[str, float]]:
        """Linear-probe test accuracy of each frozen encoder, next to the same probe on its untrained init."""
        from ..diagnostics.probe import linear_probe_accuracy

        tr_f, tr_y = self.extract_features("train")
        te_f, te_y = self.extract_features("test")
        trained_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.initial_state)
        tr0, _ = self.extract_features("train")
        te0, _ = self.extract_features("test")
        self.model.load_state_dict(trained_state)
        seed = self.cfg.train.seed
        return {m: {"trained": linear_probe_accuracy(tr_f[m], tr_y, te_f[m], te_y, seed),
                    "floor": linear_probe_accuracy(tr0[m], tr_y, te0[m], te_y, seed)} for m in tr_f}

    # ================================================================== state / resume
    def state_dict(self) -> Dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "initial_model": self.initial_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state(),
            "aug_rng": self.aug_generator.get_state(),
            "train_order": {"class": type(self.train_order).__name__, "state": self.train_order.state_dict()},
            "batcher": {"class": type(self.batcher).__name__, "state": self.batcher.state_dict()},
            "plugins": {p.name: p.state_dict() for p in self.plugins},
            "best": dict(self.best),
            "best_state": self.best_state,
            "history": self.history,
            "wall_time": self.wall_time,
            "method": self.cfg.method,
        }

    def load_state(self, state: Dict[str, Any]) -> None:
        if state.get("method") != self.cfg.method:
            raise ValueError(f"checkpoint was written by method {state.get('method')!r}, not {self.cfg.method!r}")
        self.model.load_state_dict(state["model"])
        self.initial_state = state["initial_model"]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        missing = [p.name for p in self.plugins if p.name not in state["plugins"]]
        if missing:
            raise ValueError(f"checkpoint has no state for plug-in {missing[0]!r}")
        for p in self.plugins:
            p.load_state_dict(state["plugins"][p.name])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.best, self.best_state = state["best"], state.get("best_state")
        self.history = state["history"]
        self.wall_time = state["wall_time"]
        # A plug-in that replaced the order/batcher re-installs it in on_epoch_start; restore default ones here.
        if type(self.train_order).__name__ == state["train_order"]["class"]:
            self.train_order.load_state_dict(state["train_order"]["state"])
        if type(self.batcher).__name__ == state["batcher"]["class"]:
            self.batcher.load_state_dict(state["batcher"]["state"])
        set_rng_state(state["rng"])
        if "aug_rng" in state:
            self.aug_generator.set_state(state["aug_rng"])

    # ================================================================== outputs
    def _rewrite_jsonl(self):
        if self.cfg.log.jsonl:
            atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def _write_epoch(self, record: Dict[str, Any]) -> None:
        if self.out is None or not self.is_main:
            return
        if self.cfg.log.jsonl:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.cfg.log.tensorboard:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.out / "tb"))
            for k, v in _flatten(record).items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._writer.add_scalar(k, v, record["epoch"])
            self._writer.flush()


RESIDENT_FRACTION = 0.7  #: largest share of the free device memory that data.resident may take


def tensor_bytes(objs) -> int:
    """Bytes of the distinct tensor storages held (directly or in dicts/lists) by the attributes of ``objs``."""
    seen, total = set(), 0

    def visit(v):
        nonlocal total
        if torch.is_tensor(v):
            key = (v.device, v.untyped_storage().data_ptr())
            if key not in seen:
                seen.add(key)
                total += v.untyped_storage().nbytes()
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    for o in objs:
        for v in vars(o).values():
            visit(v)
    return total


def resident_fits(need: int, free: int, fraction: float = RESIDENT_FRACTION):
    """Whether ``need`` bytes of data may live on a device with ``free`` bytes free: ``(ok, reason)``."""
    if need <= fraction * free:
        return True, ""
    return False, (f"the data needs {need / 2**30:.2f} GiB but only {fraction:.0%} of the {free / 2**30:.2f} GiB "
                   f"free on the device may be used for it")


class _Clock:
    """Wall-clock laps that include queued GPU work (synchronises only at lap boundaries, once per phase)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.t = self._now()

    def _now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        dt, self.t = now - self.t, now
        return dt


class _DictOutput(torch.nn.Module):
    """DDP finds the tensors of a forward's output only in dicts/lists: return ModelOutput as a dict."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, fuse=True):
        out = self.model(inputs, fuse=fuse)
        return {"features": out.features, "logits": out.logits, "fused": out.fused, "n_pair": out.n_pair}


def _public(m: Dict[str, Any]) -> Dict[str, Any]:
    return {k: m[k] for k in ("acc", "macro_f1", "map", "modality_acc", "share_acc", "loss")}


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _to_list(values: list) -> list:
    if values and torch.is_tensor(values[0]):
        return torch.stack([v.float().cpu() for v in values]).tolist()
    return [float(v) if isinstance(v, (int, float)) else v for v in values]


def _init_distributed(device: str):
    """(rank, world_size, local_rank); initialises the process group under ``torchrun`` if needed."""
    import os

    dist = torch.distributed
    if not dist.is_available():
        return 0, 1, 0
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        use_nccl = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_nccl else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return 0, 1, 0


def _progress(it, enabled: bool, **kw):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, unit="epoch", dynamic_ncols=True, leave=True, **kw)
