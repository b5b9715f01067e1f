"""A decision's device values on their way to the host without blocking it (DUS ``decision_lag=1``).

With ``decision_lag=0`` a DUS decision reads ŝ and the window's fused score back with ``.cpu()``: on a GPU
the host then waits until the step that produced them has finished, once per decision, and cannot queue the
next step meanwhile. :class:`ScoreReadback` instead starts a non-blocking copy into pinned host memory and
records a CUDA event behind it; the decision is taken one step later, when the device has long finished the
copy (the event wait then returns at once, and only ever waits for that older step, never for the one
queued after it). On the CPU the copy is immediate and the values are the same.
"""
from __future__ import annotations

from typing import List, Optional

import torch


class ScoreReadback:
    """The values of one decision (a 1-D float tensor), copied to the host asynchronously."""

    def __init__(self, values: torch.Tensor):
        values = values.detach()
        self._event: Optional[torch.cuda.Event] = None
        if values.is_cuda:
            self.host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self.host.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self.host = values.cpu().clone()

    @classmethod
    def restored(cls, host: torch.Tensor) -> "ScoreReadback":
        """From a checkpoint: values already on the host."""
        return cls(host.cpu())

    def host_values(self) -> torch.Tensor:
        """The values as a CPU tensor (waits for the copy if it is still under way)."""
        if self._event is not None:
            self._event.synchronize()
        return self.host

    def values(self) -> List[float]:
        return self.host_values().tolist()
