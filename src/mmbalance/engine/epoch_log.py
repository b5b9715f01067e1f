"""What plug-ins log during an epoch: last-value scalars, per-step series and per-step means."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch


class EpochLog:
    """Collects one epoch's plug-in signals without a host synchronisation per step; :meth:`flush` turns
    them into the record's ``plugins`` (scalars and epoch means) and ``steps`` (series)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.scalars: Dict[str, Any] = {}
        self.series: Dict[str, List[Any]] = {}
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}

    def log(self, key: str, value: Any) -> None:
        self.scalars[key] = value

    def log_step(self, key: str, value: Any) -> None:
        self.series.setdefault(key, []).append(value.detach() if torch.is_tensor(value) else value)

    def log_mean(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().float()
        self.sums[key] = self.sums[key] + v if key in self.sums else v.clone()
        self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self) -> Tuple[Dict[str, Any], Dict[str, list]]:
        """``(scalars, series)`` of the epoch (means read back in one transfer), and start afresh."""
        scalars = dict(self.scalars)
        if self.sums:
            keys = list(self.sums)
            totals = torch.stack([self.sums[k].reshape(()) for k in keys]).cpu().tolist()
            scalars.update({k: t / self.counts[k] for k, t in zip(keys, totals)})
        series = {k: _to_list(v) for k, v in self.series.items()}
        self._reset()
        return scalars, series


def _to_list(values: list) -> list:
    if values and torch.is_tensor(values[0]):
        return torch.stack([v.float().cpu() for v in values]).tolist()
    return [float(v) if isinstance(v, (int, float)) else v for v in values]
