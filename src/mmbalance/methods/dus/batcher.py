"""Nested (or independent) per-modality batches whose sizes DUS decides at every step."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch

from ...data.base import IndexBatch
from ...engine.samplers import Batcher
from .allocation import allocate_sizes


class DUSBatcher(Batcher):
    """Nested per-modality batches whose sizes are asked of the plug-in *at every step* (lazily).

    * Each step draws ``n_max = max_j n_j`` consecutive indices from the epoch's order stream
      (whatever the order layer produced: random, or BSS's curriculum / biased order), and
      modality ``m`` uses the first ``n_m`` of them; the first ``min_j n_j`` are the paired part.
    * An epoch is a fixed budget of *modality-samples*: ``M · budget``, where ``budget`` defaults to
      the length of the epoch's order (what plain training consumes per modality), so DUS runs stay
      comparable with plain runs and, with budget preservation, have the same number of steps.
      Because ``n_max > N_B`` in general, the stream wraps around: it is re-read from its start
      (the order layer's ordering is kept rather than re-shuffled, so BSS curricula stay intact).
    * The last step is scaled down to the remaining budget (or dropped with ``drop_last``).

    With DataLoader workers the sampler runs ahead of training (``prefetch_factor · num_workers``
    batches), so the sizes then lag the plug-in's state by that many steps; with ``num_workers=0``
    (the default) the sizes of step t+1 are decided after step t.
    """

    def __init__(self, sizes_fn, modalities: Sequence[str], base_batch: int, budget: Optional[int] = None,
                 drop_last: bool = False, pairing: str = "nested"):
        self.pairing = pairing
        self.sizes_fn = sizes_fn
        self.modalities = list(modalities)
        self.base_batch = int(base_batch)
        self.budget = budget
        self.drop_last = drop_last

    def _budget(self, n_order: int) -> int:
        return int(self.budget) if self.budget is not None else int(n_order)

    def batches(self, order: torch.Tensor, epoch: int) -> Iterator[IndexBatch]:
        n_order = len(order)
        if n_order == 0:
            return
        order_list = order.tolist()
        m = len(self.modalities)
        left = m * self._budget(n_order)  # modality-samples still to consume this epoch
        cursor = 0
        while left > 0:
            sizes = [int(v) for v in self.sizes_fn()]
            total = sum(sizes)
            last = total >= left
            if total > left:
                if self.drop_last:
                    return
                # the epoch's last step: same proportions, scaled to what is left of the budget (at least
                # two samples per modality where possible: BatchNorm cannot train on a single sample)
                lo = 2 if left >= 2 * m else 1
                sizes = (allocate_sizes([n * left / total for n in sizes], lo, max(sizes), left) if left >= m
                         else [1] * m)
            sizes = [min(n, n_order) for n in sizes]
            left -= sum(sizes)
            if self.pairing == "independent":
                # paired part (min_j n_j) shared by all modalities, then each modality's own extra samples,
                # all consecutive draws from the order stream
                n_pair = min(sizes)
                take = n_pair + sum(n - n_pair for n in sizes)
                drawn = [order_list[(cursor + k) % n_order] for k in range(take)]
                cursor = (cursor + take) % n_order
                paired, pos, per_mod = drawn[:n_pair], n_pair, {}
                for mod, n in zip(self.modalities, sizes):
                    per_mod[mod] = paired + drawn[pos:pos + n - n_pair]
                    pos += n - n_pair
                yield IndexBatch(paired, per_modality=per_mod)
            else:
                n_max = max(sizes)
                end = cursor + n_max
                idx = order_list[cursor:end] + (order_list[: end - n_order] if end > n_order else [])
                cursor = end % n_order
                yield IndexBatch(idx, dict(zip(self.modalities, sizes)))
            if last:
                return

    def num_batches(self, num_indices: int) -> int:
        b = self._budget(num_indices)
        return b // self.base_batch if self.drop_last else -(-b // self.base_batch)
