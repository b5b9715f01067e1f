"""DUS — Data-aware Unimodal Sampling (Jiang et al., arXiv 2503.03792, 2025), **reconstructed**.

The paper's method section and code are not public. What is known for certain (spec §3.1) is only the
per-modality score ``s_t^(j) = mean_i y_i^T p_i^(j)``, its cumulative running mean ``ŝ_t^(j)``, that a
*heuristic* and a *REINFORCE* strategy choose each modality's batch size at every iteration, and that
DUS is a plug-in for other balancing methods. Everything else here follows the reconstruction of spec
§3.3 [RECON] and is configurable; each choice is explained in the class docstrings.

Data path (nested batches, spec §3.3): at every step :class:`DUSBatcher` draws ``n_max = max_j n_j``
indices from the epoch's order stream and yields ``IndexBatch(indices, sizes={m: n_m})``. The core's
``BatchDataset`` then really loads only the first ``n_m`` samples for modality ``m``, the model encodes
only those, per-modality heads see ``n_m`` rows, and the fused head sees the first ``n_pair = min_j n_j``
(complete) rows. The trainer's base loss already takes ``y[:n_m]`` for the unimodal terms and
``y[:n_pair]`` for the fused term, so the host method's loss runs on the paired part.

Host synchronisation: the sizes of step t+1 must be Python integers when the batcher yields, so the
plug-in reads its (device) scores back to the host once per *decision* (``update_every`` steps; 1 by
default). Scores are otherwise updated and logged as device tensors (no ``.item()`` per step).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from ..data.base import IndexBatch
from ..engine.plugin import IncompatiblePluginsError, Plugin
from ..engine.samplers import Batcher
from ..registry import METHODS

DEFAULT_ACTIONS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


# =============================================================================== pure math (tested by hand)
def update_running_score(s_hat: Optional[torch.Tensor], s: torch.Tensor, t: int,
                         ema_momentum: Optional[float] = None) -> torch.Tensor:
    """One step of the cumulative modality score.

    ``t`` is the 1-based iteration count. Cumulative (paper, [SEC]): ``ŝ_1 = s_1``,
    ``ŝ_t = (t-1)/t · ŝ_{t-1} + 1/t · s_t``. EMA option [RECON]: ``ŝ_t = μ ŝ_{t-1} + (1-μ) s_t``
    (``ŝ_1 = s_1``). Out-of-place, so earlier values logged with ``log_step`` are never overwritten.
    """
    if s_hat is None or t <= 1:
        return s.detach().clone()
    if ema_momentum is None:
        return s_hat * ((t - 1) / t) + s.detach() * (1.0 / t)
    return s_hat * ema_momentum + s.detach() * (1.0 - ema_momentum)


def discrepancy(s_hat: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``ρ^(j) = ŝ^(j) / mean_{k≠j} ŝ^(k)`` for every modality (``ρ > 1``: modality j dominates)."""
    m = s_hat.shape[-1]
    if m < 2:
        raise ValueError("discrepancy needs at least two modalities")
    others = (s_hat.sum(-1, keepdim=True) - s_hat) / (m - 1)
    return s_hat / others.clamp_min(eps)


def imbalance(s_hat: Sequence[float], kind: str = "maxmin") -> float:
    """Spread of the modality scores. ``maxmin`` equals ``|ŝ^(1) - ŝ^(2)|`` for two modalities;
    ``std`` is the population standard deviation (= ``|ŝ^(1) - ŝ^(2)| / 2`` for two)."""
    v = [float(x) for x in s_hat]
    if kind == "maxmin":
        return max(v) - min(v)
    if kind == "std":
        mu = sum(v) / len(v)
        return math.sqrt(sum((x - mu) ** 2 for x in v) / len(v))
    raise ValueError(f"imbalance must be 'maxmin' or 'std', got {kind!r}")


def allocate_sizes(raw: Sequence[float], n_lo: int, n_hi: int, total: Optional[int] = None,
                   multiple: int = 1) -> List[int]:
    """Turn real-valued wishes into integer batch sizes within ``[n_lo, n_hi]``.

    ``multiple`` > 1 quantises every size to a multiple of it (size buckets, so that a compiled model
    meets a bounded set of batch shapes): the allocation below runs in units of ``multiple`` with bounds
    ``[ceil(n_lo/q), floor(n_hi/q)]`` and budget ``total/q`` (which must then be an integer).

    Without ``total``: ``clip(round_half_up(raw_j), n_lo, n_hi)``.
    With ``total`` (budget preservation): the sizes are ``clip(c·raw_j, n_lo, n_hi)`` with the one scale
    ``c`` that makes them sum to ``total`` (a proportional rescale that respects the bounds, found
    exactly from the kinks of the piecewise-linear sum), then integerised by largest remainder so the
    sum is exactly ``total``.
    """
    if n_lo < 1 or n_hi < n_lo:
        raise ValueError(f"batch-size bounds must satisfy 1 <= n_lo <= n_hi, got [{n_lo}, {n_hi}]")
    q = int(multiple)
    if q < 1:
        raise ValueError(f"the size multiple must be >= 1, got {multiple}")
    if q > 1:
        lo_u, hi_u = -(-int(n_lo) // q), int(n_hi) // q
        if hi_u < lo_u:
            raise ValueError(f"no multiple of {q} lies within the batch-size bounds [{n_lo}, {n_hi}]")
        if total is not None and int(total) % q:
            raise ValueError(f"budget {total} is not a multiple of the size multiple {q}")
        units = allocate_sizes([float(r) / q for r in raw], lo_u, hi_u, None if total is None else int(total) // q)
        return [u * q for u in units]
    raw = [max(float(r), 0.0) for r in raw]
    if total is None:
        return [min(max(int(math.floor(r + 0.5)), n_lo), n_hi) for r in raw]
    m = len(raw)
    total = int(total)
    if not m * n_lo <= total <= m * n_hi:
        raise ValueError(f"budget {total} cannot be split into {m} sizes within [{n_lo}, {n_hi}]")
    if sum(raw) <= 0:
        raw = [1.0] * m
    raw = [max(r, 1e-12) for r in raw]  # a zero wish still gets n_lo and, if needed, more

    def filled(c):
        return [min(max(c * r, n_lo), n_hi) for r in raw]

    # Σ_j clip(c·raw_j) is piecewise linear and non-decreasing in c with kinks at n_lo/raw_j, n_hi/raw_j:
    # find the segment where it reaches the budget and interpolate (exact, O(M^2) for M modalities).
    prev_c, prev_f = 0.0, float(m * n_lo)
    c = 0.0
    for bp in sorted({b / r for r in raw for b in (n_lo, n_hi)}):
        f = sum(filled(bp))
        if f >= total:
            c = prev_c if f == prev_f else prev_c + (total - prev_f) * (bp - prev_c) / (f - prev_f)
            break
        prev_c, prev_f = bp, f
    x = filled(c)
    n = [min(max(int(math.floor(v + 1e-9)), n_lo), n_hi) for v in x]
    frac = [v - k for v, k in zip(x, n)]
    while sum(n) < total:  # hand out the rounding remainder, largest fraction first (ties: lower index)
        j = max((j for j in range(m) if n[j] < n_hi), key=lambda j: (frac[j], -j))
        n[j] += 1
        frac[j] = -1.0
    while sum(n) > total:
        j = min((j for j in range(m) if n[j] > n_lo), key=lambda j: (frac[j], j))
        n[j] -= 1
        frac[j] = 2.0
    return n


def heuristic_sizes(rho: Sequence[float], base: int, gamma: float, n_lo: int, n_hi: int,
                    preserve_budget: bool = True, multiple: int = 1) -> List[int]:
    """DUS-H [RECON]: ``n^(j) = clip(round(N_B · (ρ^(j))^(-γ)), n_lo, n_hi)``; with ``preserve_budget``
    rescaled (within the bounds) so that ``Σ_j n^(j) = M · N_B``; quantised to ``multiple``."""
    raw = [base * max(float(r), 1e-8) ** (-gamma) for r in rho]
    return allocate_sizes(raw, n_lo, n_hi, len(raw) * base if preserve_budget else None, multiple)


def discounted_returns(rewards: Sequence[float], gamma: float) -> List[float]:
    """``G_i = Σ_{k>=i} γ^{k-i} r_k`` within the episode (truncated at its end)."""
    out, g = [0.0] * len(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        g = float(rewards[i]) + gamma * g
        out[i] = g
    return out


# =============================================================================== REINFORCE
class FactorisedPolicy(nn.Module):
    """``π(a|o) = Π_j Cat(a^(j) | softmax(MLP(o))_j)``: one categorical over the actions per modality.

    ``layers`` hidden layers of ``hidden`` units with tanh; the output layer starts at zero so the
    first policy is uniform over the actions (unbiased exploration).
    """

    def __init__(self, state_dim: int, num_modalities: int, num_actions: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        dims = [state_dim] + [hidden] * layers
        mods: List[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.Tanh()]
        out = nn.Linear(dims[-1], num_modalities * num_actions)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*mods, out)
        self.num_modalities, self.num_actions = num_modalities, num_actions

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., M, |A|]``."""
        return self.net(obs).reshape(*obs.shape[:-1], self.num_modalities, self.num_actions)


class Reinforce:
    """REINFORCE with discounted returns, an EMA baseline, an entropy bonus and Adam.

    Transitions ``(obs, action, reward)`` are buffered; :meth:`update` is called every ``K`` of them.
    Log-probabilities are recomputed at update time from the stored observations (the policy has not
    changed since they were collected), so the buffer holds plain tensors and checkpoints exactly.
    Sampling uses its own seeded generator: it never touches the global RNG of the training run.
    """

    def __init__(self, state_dim: int, num_modalities: int, num_actions: int, hidden: int = 64, layers: int = 2,
                 lr: float = 1e-3, gamma: float = 0.9, entropy_coef: float = 0.01, baseline_momentum: float = 0.9,
                 seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.policy = FactorisedPolicy(state_dim, num_modalities, num_actions, hidden, layers)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.gamma, self.entropy_coef, self.baseline_momentum = gamma, entropy_coef, baseline_momentum
        self.generator = torch.Generator().manual_seed(int(seed) + 17)
        self.baseline: Optional[float] = None
        self.obs: List[torch.Tensor] = []
        self.actions: List[torch.Tensor] = []
        self.rewards: List[float] = []
        self.updates = 0
        self.last_stats: Dict[str, float] = {}

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Sample one action index per modality (LongTensor ``[M]``)."""
        probs = torch.softmax(self.policy(obs.float()), -1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    @torch.no_grad()
    def probs(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.policy(obs.float()), -1)

    def record(self, obs: torch.Tensor, action: torch.Tensor, reward: float) -> None:
        self.obs.append(obs.detach().float().cpu())
        self.actions.append(action.detach().long().cpu())
        self.rewards.append(float(reward))

    def __len__(self) -> int:
        return len(self.rewards)

    def update(self) -> Dict[str, float]:
        """One policy-gradient step on the buffered episode, then clear it."""
        if not self.rewards:
            return {}
        returns = torch.tensor(discounted_returns(self.rewards, self.gamma))
        if self.baseline is None:  # first episode: centre on its own mean instead of an arbitrary 0
            self.baseline = float(returns.mean())
        adv = returns - self.baseline
        obs, act = torch.stack(self.obs), torch.stack(self.actions)
        logp_all = torch.log_softmax(self.policy(obs), -1)  # [T, M, A]
        logp = logp_all.gather(-1, act.unsqueeze(-1)).squeeze(-1).sum(-1)  # factorised: sum over modalities
        entropy = -(logp_all.exp() * logp_all).sum(-1).sum(-1)
        loss = -(adv * logp).mean() - self.entropy_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_momentum * self.baseline + (1 - self.baseline_momentum) * float(returns.mean())
        self.updates += 1
        self.last_stats = {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean()),
                           "return": float(returns.mean()), "baseline": self.baseline}
        self.obs, self.actions, self.rewards = [], [], []
        return self.last_stats

    def state_dict(self) -> Dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline,
                "obs": [o.clone() for o in self.obs], "actions": [a.clone() for a in self.actions],
                "rewards": list(self.rewards), "updates": self.updates}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.policy.load_state_dict(s["policy"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.generator.set_state(s["generator"])
        self.baseline = s["baseline"]
        self.obs, self.actions = list(s["obs"]), list(s["actions"])
        self.rewards, self.updates = list(s["rewards"]), int(s["updates"])


# =============================================================================== the batcher
class DUSBatcher(Batcher):
    """Nested per-modality batches whose sizes are asked of the plug-in *at every step* (lazily).

    * Each step draws ``n_max = max_j n_j`` consecutive indices from the epoch's order stream
      (whatever ``trainer.train_order`` produced: random, or BSS's curriculum / biased order), and
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


# =============================================================================== the plug-ins
class _DUSBase(Plugin):
    """Monitoring, batching, logging and state shared by DUS-H and DUS-RL (see their docstrings)."""

    wants_unimodal_loss = True
    replaces = "batcher"
    priority = 40  # score update before other plug-ins' after_forward; the order is otherwise irrelevant

    def _init_common(self, base_batch, min_scale, max_scale, gamma, preserve_budget, ema_momentum,
                     update_every, epoch_budget, pairing, size_multiple=1):
        if pairing not in ("nested", "independent"):
            raise ValueError(f"{self._label}: pairing must be 'nested' or 'independent', got {pairing!r}")
        if not 0 < min_scale <= 1 <= max_scale:
            raise ValueError(f"{self._label}: need 0 < min_scale <= 1 <= max_scale, got {min_scale}, {max_scale}")
        if ema_momentum is not None and not 0 <= ema_momentum < 1:
            raise ValueError(f"{self._label}: ema_momentum must be in [0, 1) or None, got {ema_momentum}")
        if int(update_every) < 1:
            raise ValueError(f"{self._label}: update_every must be >= 1, got {update_every}")
        if base_batch is not None and int(base_batch) < 1:
            raise ValueError(f"{self._label}: base_batch must be >= 1, got {base_batch}")
        if isinstance(size_multiple, bool) or not isinstance(size_multiple, int) or size_multiple < 1:
            raise ValueError(f"{self._label}: method_args.{self._label}.size_multiple must be an integer >= 1, "
                             f"got {size_multiple!r}")
        self.size_multiple = size_multiple
        self.base_batch_arg = base_batch
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.gamma = float(gamma)
        self.preserve_budget = bool(preserve_budget)
        self.ema_momentum = ema_momentum
        self.update_every = int(update_every)
        self.epoch_budget = epoch_budget
        self.pairing = pairing
        # state
        self.t = 0  # monitored iterations
        self.s_hat: Optional[torch.Tensor] = None
        self.sizes: Optional[List[int]] = None
        self._since_decision = 0
        self._mm_sum: Optional[torch.Tensor] = None
        self._mm_count = 0
        self._seen_forward = False
        self._epoch_sizes: List[List[int]] = []

    _label = "dus"

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer, model):
        self.modalities = list(trainer.active_modalities)
        if len(self.modalities) < 2:
            raise ValueError(f"{self.name}: DUS balances modalities and needs at least two; got {self.modalities}")
        self.N_B = int(self.base_batch_arg or trainer.cfg.train.batch_size)
        self.n_lo = max(1, int(math.ceil(self.min_scale * self.N_B - 1e-9)))
        self.n_hi = max(self.n_lo, int(math.floor(self.max_scale * self.N_B + 1e-9)))
        try:  # fail at start-up, not at the first decision: the plain-training sizes through the same allocation
            self._allocate([self.N_B] * len(self.modalities))
        except ValueError as e:
            raise ValueError(f"{self._label}: method_args.{self._label}.size_multiple={self.size_multiple} does not "
                             f"fit N_B={self.N_B} with bounds [{self.n_lo}, {self.n_hi}]: {e}") from None
        if self.sizes is None:
            self.sizes = [self.N_B] * len(self.modalities)

    # methods that only read the paired rows or use the trainer's own per-modality losses (which take each
    # modality's own labels); the others index per-modality rows with the paired labels
    INDEPENDENT_SAFE = ("joint", "joint-aux", "diagnose-relearn", "ogm-ge", "agm", "mmpareto", "mslr",
                        "bss-h", "bss-l")

    def check_compatible(self, plugins):
        for p in plugins:
            # registered methods only: a custom plug-in is the user's to check (it can use trainer.targets)
            if self.pairing == "independent" and p.name in METHODS and p.name not in self.INDEPENDENT_SAFE:
                raise IncompatiblePluginsError(
                    f"{self.name!r} with pairing='independent' gives each modality samples of its own, but "
                    f"{p.name!r} reads per-modality rows with the paired labels; use pairing='nested' or stack "
                    f"with one of {', '.join(self.INDEPENDENT_SAFE)}")

    def on_fit_start(self, trainer):
        if trainer.cfg.train.compile == "reduce-overhead" and self.size_multiple == 1:
            warnings.warn(f"{self._label} with train.compile=reduce-overhead: a CUDA graph is recorded for every new "
                          f"combination of per-modality batch sizes; set method_args.{self._label}.size_multiple=8 to bound them (sizes in "
                          f"steps of 8)", stacklevel=2)
        n = len(trainer.splits.train)
        budget = int(self.epoch_budget) if self.epoch_budget is not None else n
        self.total_steps = max(1, trainer.cfg.train.epochs * -(-budget // self.N_B))

    def on_epoch_start(self, trainer, epoch):
        trainer.batcher = DUSBatcher(self._next_sizes, self.modalities, self.N_B, self.epoch_budget,
                                     trainer.cfg.train.drop_last, self.pairing)
        self._epoch_sizes = []

    def _next_sizes(self) -> List[int]:
        return list(self.sizes)

    # ------------------------------------------------------------------ monitoring
    @torch.no_grad()
    def _batch_scores(self, trainer, batch, out):
        y = batch["y"]
        if trainer.world_size == 1:
            s = torch.stack([torch.softmax(out.logits[m].float(), -1)
                             .gather(1, trainer.targets(batch, m, out.logits[m].shape[0]).unsqueeze(1)).mean()
                             for m in self.modalities])
            if out.n_pair > 0:
                z = out.fused if out.fused is not None else sum(out.logits[m][: out.n_pair] for m in self.modalities)
                mm = torch.softmax(z.float(), -1).gather(1, y[: out.n_pair].unsqueeze(1)).mean()
            else:
                mm = torch.zeros((), device=y.device)
            return s, mm
        # DDP: means over the *global* batch (sums and counts all-reduced), so that every rank holds the same
        # ŝ and therefore decides the same sizes for the next global batch
        sums, counts = [], []
        for m in self.modalities:
            z = out.logits[m].float()
            sums.append(torch.softmax(z, -1).gather(1, trainer.targets(batch, m, z.shape[0]).unsqueeze(1)).sum())
            counts.append(torch.tensor(float(z.shape[0]), device=y.device))
        if out.n_pair > 0:
            z = out.fused if out.fused is not None else sum(out.logits[m][: out.n_pair] for m in self.modalities)
            sums.append(torch.softmax(z.float(), -1).gather(1, y[: out.n_pair].unsqueeze(1)).sum())
        else:
            sums.append(torch.zeros((), device=y.device))
        counts.append(torch.tensor(float(out.n_pair), device=y.device))
        tot = trainer.all_reduce(torch.stack(sums + counts), "sum")
        k = len(self.modalities) + 1
        means = tot[:k] / tot[k:].clamp_min(1)
        return means[:-1], means[-1]

    def after_forward(self, trainer, batch, out):
        self._observe(trainer, batch, out)

    def _observe(self, trainer, batch, out):
        s, mm = self._batch_scores(trainer, batch, out)
        self.t += 1
        if self.s_hat is not None and self.s_hat.device != s.device:
            self.s_hat = self.s_hat.to(s.device)
        self.s_hat = update_running_score(self.s_hat, s, self.t, self.ema_momentum)
        self._mm_sum = mm if self._mm_sum is None else self._mm_sum.to(mm.device) + mm
        self._mm_count += 1
        self._seen_forward = True
        sizes = batch.get("sizes") or {}
        for j, m in enumerate(self.modalities):
            trainer.log_step(f"dus/n/{m}", int(sizes.get(m, len(batch["index"]))))
            trainer.log_step(f"dus/s_hat/{m}", self.s_hat[j])
        self._epoch_sizes.append([int(sizes.get(m, len(batch["index"]))) for m in self.modalities])

    @torch.no_grad()
    def _score_without_forward(self, trainer, batch):
        # A step-replacing plug-in (MLA, ReconBoost) fired no after_forward: score the batch with an extra
        # forward in eval mode, so dropout and BatchNorm statistics are not disturbed.
        was = trainer.model.training
        trainer.model.eval()
        try:
            out = trainer.forward(batch["inputs"])
        finally:
            trainer.model.train(was)
        self._observe(trainer, batch, out)

    def after_step(self, trainer, batch, out):
        if not self._seen_forward:
            self._score_without_forward(trainer, batch)
        self._seen_forward = False
        self._since_decision += 1
        if self._since_decision >= self.update_every:
            self._since_decision = 0
            # the one host sync of a decision: ŝ and the window's mean fused score, as Python floats
            mm = self._mm_sum / max(self._mm_count, 1)
            vals = torch.cat([self.s_hat.float(), mm.float().reshape(1)]).cpu().tolist()
            self._mm_sum, self._mm_count = None, 0
            s_hat, mm_mean = vals[:-1], vals[-1]
            rho = discrepancy(torch.tensor(s_hat, dtype=torch.float64)).tolist()
            self.sizes = self._decide(trainer, s_hat, rho, mm_mean)

    def _decide(self, trainer, s_hat, rho, mm_mean) -> List[int]:
        raise NotImplementedError

    def _allocate(self, raw: Sequence[float]) -> List[int]:
        """Wished sizes -> integer sizes: the bounds, budget preservation and size buckets of this plug-in."""
        total = len(raw) * self.N_B if self.preserve_budget else None
        return allocate_sizes(raw, self.n_lo, self.n_hi, total, self.size_multiple)

    def _heuristic(self, rho) -> List[int]:
        return heuristic_sizes(rho, self.N_B, self.gamma, self.n_lo, self.n_hi, self.preserve_budget,
                               self.size_multiple)

    # ------------------------------------------------------------------ logging
    def on_epoch_end(self, trainer, epoch, record):
        if self._epoch_sizes:
            sz = torch.tensor(self._epoch_sizes, dtype=torch.float64)
            for j, m in enumerate(self.modalities):
                trainer.log(f"dus/mean_n/{m}", float(sz[:, j].mean()))
        if self.s_hat is not None:
            sh = self.s_hat.float().cpu()
            rho = discrepancy(sh.double())
            for j, m in enumerate(self.modalities):
                trainer.log(f"dus/s_hat/{m}", float(sh[j]))
                trainer.log(f"dus/rho/{m}", float(rho[j]))

    # ------------------------------------------------------------------ state
    def _common_state(self) -> Dict[str, Any]:
        return {"t": self.t, "s_hat": None if self.s_hat is None else self.s_hat.detach().cpu().clone(),
                "sizes": list(self.sizes) if self.sizes is not None else None,
                "since_decision": self._since_decision,
                "mm_sum": None if self._mm_sum is None else self._mm_sum.detach().cpu().clone(),
                "mm_count": self._mm_count}

    def _load_common(self, s: Dict[str, Any]) -> None:
        self.t = int(s["t"])
        self.s_hat = s["s_hat"]
        self.sizes = list(s["sizes"]) if s["sizes"] is not None else None
        self._since_decision = int(s["since_decision"])
        self._mm_sum, self._mm_count = s["mm_sum"], int(s["mm_count"])

    def state_dict(self):
        return self._common_state()

    def load_state_dict(self, state):
        self._load_common(state)


_COMMON_DOC = """
    Shared hyper-parameters (all [RECON] unless noted):
        base_batch (int | None = None): N_B, the base per-modality batch size; ``None`` uses
            ``train.batch_size`` (spec §3.3 defaults: 64 CREMA-D/KS, 32 Twitter/Sarcasm).
        min_scale, max_scale (float = 0.5, 2.0): bounds ``[n_min, n_max] = [ceil(min_scale·N_B),
            floor(max_scale·N_B)]`` (spec default ``[N_B/2, 2·N_B]``).
        gamma (float = 1.0): exponent of the heuristic ``N_B·ρ^(-γ)`` (DUS-H; DUS-RL uses it only
            during warm-up).
        preserve_budget (bool = True): rescale the sizes within the bounds so ``Σ_j n_j = M·N_B``
            (same compute and steps per epoch as plain training; spec default on).
        ema_momentum (float | None = None): ``None`` keeps the paper's cumulative running mean
            ``ŝ_t = (t-1)/t·ŝ_{t-1} + s_t/t`` [SEC]; a value μ uses ``ŝ_t = μ·ŝ_{t-1} + (1-μ)·s_t``
            instead (reacts to late changes; the cumulative mean moves by O(1/t)).
        update_every (int = 1): decide new sizes every K steps. Each decision reads the scores back to
            the host once (an unavoidable sync: the next batch's sizes are Python integers when the
            sampler yields). K > 1 amortises that sync on a GPU; between decisions the sizes are kept.
        epoch_budget (int | None = None): samples per modality per epoch; ``None`` = length of the
            epoch's order (``n_train``, or BSS's subset), i.e. what plain training consumes.
        pairing (str = "nested"): how the modalities' samples relate. ``nested`` (spec §3.3): one draw
            of ``n_max`` indices, modality j uses the first ``n_j``, the paired part is the first
            ``min_j n_j``. ``independent`` [RECON]: a paired part of ``min_j n_j`` samples shared by all
            modalities, then each modality draws its *own* ``n_j - min_j n_j`` further samples (distinct
            from the others' extras), so modalities see different unpaired data. Stacks only with
            methods that read the paired part or use the trainer's own losses (see ``check_compatible``).
        size_multiple (int = 1): quantise every decided size to a multiple of this (size buckets). With
            ``train.compile=reduce-overhead`` one CUDA graph is recorded per distinct combination of sizes
            (dynamo itself recompiles only once, to a dynamic batch dimension); ``size_multiple=8`` with N_B = 64
            and the default bounds leaves 9 combinations for two modalities instead of up to 65. It
            coarsens the method's decisions (steps of 8 samples), so the default 1 keeps them exact. The
            epoch's last, budget-trimmed step is not quantised. Must divide ``M·N_B`` with
            ``preserve_budget``.

    Scores: ``s_t^(j)`` is the batch mean softmax probability of the true class from modality j's own
    head on its own ``n_j`` samples (no grad) [SEC]; ``ρ^(j) = ŝ^(j) / mean_{k≠j} ŝ^(k)`` [RECON,
    mirrors OGM-GE's ratio]. Logged per step: ``dus/n/<m>`` (batch size) and ``dus/s_hat/<m>``;
    per epoch: ``dus/mean_n/<m>``, ``dus/s_hat/<m>``, ``dus/rho/<m>``.

    Stacking: ``wants_unimodal_loss`` (each modality's CE on its own samples; the fused CE and the host
    method's loss run on the paired part); ``replaces = "batcher"`` so methods needing strictly paired
    batches are refused at start-up. Under DDP the batch scores are means over the global batch
    (all-reduced sums and counts), so every rank holds the same ŝ and decides the same sizes.
    With a step-replacing method (MLA, ReconBoost) the scores come from an extra no-grad forward in
    eval mode after its step.
"""


@METHODS.register("dus-h")
class DUSHeuristic(_DUSBase):
    """DUS-H (reconstructed): per-modality batch sizes from the cumulative discrepancy, ``N_B·ρ^(-γ)``.

    After each decision point (every ``update_every`` steps) the next sizes are
    ``n^(j) = clip(round(N_B·(ρ^(j))^(-γ)), n_min, n_max)``, rescaled within the bounds to sum to
    ``M·N_B`` when ``preserve_budget``. The dominant modality (ρ > 1) gets fewer samples, the lagging
    one more; ρ = 1 gives plain training. Rule, bounds and γ are [RECON] (spec §3.3): the paper says
    only that a heuristic maps the discrepancy to batch sizes.
    """

    _label = "dus-h"

    def __init__(self, base_batch: Optional[int] = None, min_scale: float = 0.5, max_scale: float = 2.0,
                 gamma: float = 1.0, preserve_budget: bool = True, ema_momentum: Optional[float] = None,
                 update_every: int = 1, epoch_budget: Optional[int] = None, pairing: str = "nested",
                 size_multiple: int = 1):
        self._init_common(base_batch, min_scale, max_scale, gamma, preserve_budget, ema_momentum, update_every,
                          epoch_budget, pairing, size_multiple)

    def _decide(self, trainer, s_hat, rho, mm_mean):
        return self._heuristic(rho)


DUSHeuristic.__doc__ += _COMMON_DOC


@METHODS.register("dus-rl")
class DUSRL(_DUSBase):
    """DUS-RL (reconstructed): a REINFORCE policy picks a batch-size multiplier per modality.

    Every decision (``update_every`` steps) the policy observes ``o = [ŝ^(1..M), ρ^(1..M), n^(1..M)/N_B,
    t/T]`` (T = planned steps of the run) and samples, per modality, a multiplier ``a_j`` from
    ``actions``; the sizes are ``N_B·a_j`` through the same bounds and budget preservation as DUS-H
    (with preservation only the ratios matter). The reward of an action, measured at the next decision,
    is ``r = -spread(ŝ) + η·(s̄_mm,new - s̄_mm,old)``, where spread is ``max-min`` (= ``|ŝ^(1)-ŝ^(2)|``
    for two modalities) or ``std``, and ``s̄_mm`` is the mean probability of the true class from the
    fused head (sum of heads if there is no fused output) over the decision's window. Every
    ``policy_update_every`` transitions, REINFORCE: ``loss = -mean_i (G_i - b)·log π(a_i|o_i)
    - β·mean_i H(π(·|o_i))`` (the mean instead of the spec's sum only rescales the Adam step), with
    discounted returns ``G_i`` (γ_RL), EMA baseline ``b`` (initialised to the first episode's mean
    return), Adam. The policy runs on the CPU on the floats already read back for the decision (no
    extra sync). All of this is [RECON] (spec §3.3); the paper only says REINFORCE is used.

    Warm-up: for the first ``warmup_epochs`` epochs the sizes come from DUS-H and no transitions are
    recorded (REINFORCE is on-policy, so heuristic actions cannot be used for the gradient); it lets
    the cumulative scores settle before they become the policy's state.

    RL hyper-parameters [RECON, spec §3.3 defaults]:
        actions (tuple = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)): multipliers of N_B.
        hidden, layers (int = 64, 2): policy MLP.
        policy_lr (float = 1e-3): Adam learning rate of the policy.
        rl_gamma (float = 0.9): discount of the returns.
        entropy_coef (float = 0.01): entropy bonus β.
        baseline_momentum (float = 0.9): EMA of the baseline.
        eta (float = 1.0): weight η of the fused-score improvement in the reward.
        spread (str = "maxmin"): ``maxmin`` or ``std`` imbalance term of the reward.
        reward_scores (str = "s_hat"): which scores the spread uses: ``s_hat`` (the spec) or ``window``
            (the mean batch scores since the last decision: a faster-reacting signal).
        policy_update_every (int = 10): K, transitions per REINFORCE update.
        warmup_epochs (int = 1): epochs of DUS-H before the policy acts.
        seed (int | None = None): policy initialisation and sampling seed; ``None`` = ``train.seed``.
    """

    _label = "dus-rl"

    def __init__(self, base_batch: Optional[int] = None, min_scale: float = 0.5, max_scale: float = 2.0,
                 gamma: float = 1.0, preserve_budget: bool = True, ema_momentum: Optional[float] = None,
                 update_every: int = 1, epoch_budget: Optional[int] = None, pairing: str = "nested",
                 size_multiple: int = 1, actions: Sequence[float] = DEFAULT_ACTIONS, hidden: int = 64, layers: int = 2,
                 policy_lr: float = 1e-3, rl_gamma: float = 0.9, entropy_coef: float = 0.01,
                 baseline_momentum: float = 0.9, eta: float = 1.0, spread: str = "maxmin",
                 reward_scores: str = "s_hat", policy_update_every: int = 10, warmup_epochs: int = 1,
                 seed: Optional[int] = None):
        self._init_common(base_batch, min_scale, max_scale, gamma, preserve_budget, ema_momentum, update_every,
                          epoch_budget, pairing, size_multiple)
        self.actions = [float(a) for a in actions]
        if not self.actions or min(self.actions) <= 0:
            raise ValueError(f"dus-rl: actions must be positive multipliers, got {list(actions)}")
        if spread not in ("maxmin", "std"):
            raise ValueError(f"dus-rl: spread must be 'maxmin' or 'std', got {spread!r}")
        if reward_scores not in ("s_hat", "window"):
            raise ValueError(f"dus-rl: reward_scores must be 's_hat' or 'window', got {reward_scores!r}")
        if int(policy_update_every) < 1:
            raise ValueError(f"dus-rl: policy_update_every must be >= 1, got {policy_update_every}")
        self.hidden, self.layers = int(hidden), int(layers)
        self.policy_lr, self.rl_gamma, self.entropy_coef = float(policy_lr), float(rl_gamma), float(entropy_coef)
        self.baseline_momentum, self.eta = float(baseline_momentum), float(eta)
        self.spread, self.reward_scores = spread, reward_scores
        self.policy_update_every, self.warmup_epochs = int(policy_update_every), int(warmup_epochs)
        self.seed = seed
        self.rl: Optional[Reinforce] = None
        self._pending: Optional[Dict[str, Any]] = None  # last action awaiting its reward
        self._prev_mm: Optional[float] = None
        self._win_sum: Optional[torch.Tensor] = None
        self._win_count = 0
        self._epoch_rewards: List[float] = []
        self._epoch_updates: List[Dict[str, float]] = []

    def configure_model(self, trainer, model):
        super().configure_model(trainer, model)
        if self.rl is None:
            m = len(self.modalities)
            seed = trainer.cfg.train.seed if self.seed is None else self.seed
            self.rl = Reinforce(3 * m + 1, m, len(self.actions), self.hidden, self.layers, self.policy_lr,
                                self.rl_gamma, self.entropy_coef, self.baseline_momentum, seed)

    def _observe(self, trainer, batch, out):
        super()._observe(trainer, batch, out)
        if self.reward_scores == "window":
            s, _ = self._batch_scores(trainer, batch, out)
            self._win_sum = s if self._win_sum is None else self._win_sum.to(s.device) + s
            self._win_count += 1

    def _decide(self, trainer, s_hat, rho, mm_mean):
        spread_on = s_hat
        if self.reward_scores == "window" and self._win_sum is not None:
            spread_on = (self._win_sum / max(self._win_count, 1)).cpu().tolist()
            self._win_sum, self._win_count = None, 0
        reward = -imbalance(spread_on, self.spread) + (
            self.eta * (mm_mean - self._prev_mm) if self._prev_mm is not None else 0.0)
        self._prev_mm = mm_mean
        if self._pending is not None:
            self.rl.record(self._pending["obs"], self._pending["action"], reward)
            self._epoch_rewards.append(reward)
            if len(self.rl) >= self.policy_update_every:
                self._epoch_updates.append(self.rl.update())
            self._pending = None
        if trainer.epoch < self.warmup_epochs:
            return self._heuristic(rho)
        obs = torch.tensor(list(s_hat) + list(rho) + [n / self.N_B for n in self.sizes]
                           + [min(self.t / self.total_steps, 1.0)], dtype=torch.float32)
        action = self.rl.act(obs)
        self._pending = {"obs": obs, "action": action}
        return self._allocate([self.N_B * self.actions[int(a)] for a in action])

    def on_epoch_end(self, trainer, epoch, record):
        super().on_epoch_end(trainer, epoch, record)
        if self._epoch_rewards:
            trainer.log("dus/reward", sum(self._epoch_rewards) / len(self._epoch_rewards))
        if self._epoch_updates:
            last = self._epoch_updates[-1]
            trainer.log("dus/policy_entropy", last["entropy"])
            trainer.log("dus/baseline", last["baseline"])
        trainer.log("dus/policy_updates", self.rl.updates)
        self._epoch_rewards, self._epoch_updates = [], []

    def state_dict(self):
        s = self._common_state()
        s.update(rl=self.rl.state_dict() if self.rl is not None else None,
                 pending=None if self._pending is None else {k: v.clone() for k, v in self._pending.items()},
                 prev_mm=self._prev_mm,
                 win_sum=None if self._win_sum is None else self._win_sum.detach().cpu().clone(),
                 win_count=self._win_count)
        return s

    def load_state_dict(self, state):
        self._load_common(state)
        if state.get("rl") is not None:
            self.rl.load_state_dict(state["rl"])
        self._pending = state["pending"]
        self._prev_mm = state["prev_mm"]
        self._win_sum, self._win_count = state["win_sum"], int(state["win_count"])


DUSRL.__doc__ += _COMMON_DOC
