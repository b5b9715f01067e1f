"""DUS-RL's reward-signal diagnostic: does the action taken explain the reward and the learning it causes?

Every decision window of the policy is recorded as one row: the sizes each modality really got in the
window (``x_j = mean n_j / N_B``), the reward the policy was given for it, the modalities' scores ŝ and,
when a probe set is evaluated, each modality's and the fused head's probe loss at the window's end. The
summary correlates each modality's ``x_j`` with

* the reward (``corr_reward``) and the share of the reward's variance a linear function of all ``x``
  explains (``r2_reward``),
* the decrease of that modality's own probe loss over the window (``corr_own_gain``) and of the fused
  probe loss (``corr_fused_gain``) and of the probe loss of the modality that was the weaker (higher
  loss) at the window's start (``corr_weakest_gain``), or that had the lowest ŝ then
  (``corr_weak_s_hat_gain``): what the allocation actually did to learning,
* the change of ŝ over the window (``corr_ds_hat``),
* the decrease of that modality's *training* loss from this window's batches to the next window's
  (``corr_train_gain``; the next window's batches are the first ones scored after this window's updates).

With a policy that still explores (the allocation varies at random), these are causal estimates of the
action's effect; a policy that has converged varies little and its correlations mean little. Pure math on
plain floats, so the record is checkpointed exactly and the summary is testable by hand.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

#: the per-decision fields of a record, each a list (one entry per window)
FIELDS = ("x", "reward", "s_hat", "probe", "train_loss")


Values = Union[Sequence[float], np.ndarray]


def correlation(x: Values, y: Values) -> Optional[float]:
    """Pearson correlation; None with fewer than 3 pairs or when either side is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 3 or a.size != b.size:
        return None
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return None if den <= 1e-300 else float((a * b).sum()) / den


def explained_variance(x: Union[Sequence[Sequence[float]], np.ndarray], y: Values) -> Optional[float]:
    """R² of the least-squares fit ``y ≈ c + x·w`` (minimum-norm ``w``: collinear columns such as the
    budget-preserved sizes of two modalities are fine); None with fewer than 3 rows or constant ``y``."""
    X, v = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if v.size < 3:
        return None
    X = X.reshape(v.size, -1)
    Xc, vc = X - X.mean(0), v - v.mean()
    ss = float((vc * vc).sum())
    if ss <= 1e-300:
        return None
    w, *_ = np.linalg.lstsq(Xc, vc, rcond=None)
    resid = vc - Xc @ w
    return max(0.0, 1.0 - float((resid * resid).sum()) / ss)


class SignalRecord:
    """The per-window rows of the diagnostic (plain lists: checkpointed as they are)."""

    def __init__(self) -> None:
        self.rows: Dict[str, List[Any]] = {k: [] for k in FIELDS}
        #: ŝ and probe losses at the decision that opened the current window
        self.start_s_hat: Optional[List[float]] = None
        self.start_probe: Optional[List[float]] = None

    def __len__(self) -> int:
        return len(self.rows["reward"])

    def add(self, x: Sequence[float], reward: float, s_hat: Sequence[float], probe: Optional[Sequence[float]],
            train_loss: Sequence[float]) -> None:
        """One window: ``s_hat``/``probe`` at its end; the start values are those of the previous call or
        of :meth:`open` (a window started by a non-policy decision)."""
        self.rows["x"].append([float(v) for v in x])
        self.rows["reward"].append(float(reward))
        self.rows["s_hat"].append([[float(v) for v in self.start_s_hat or s_hat], [float(v) for v in s_hat]])
        self.rows["probe"].append(None if probe is None or self.start_probe is None else
                                  [list(self.start_probe), [float(v) for v in probe]])
        self.rows["train_loss"].append([float(v) for v in train_loss])

    def open(self, s_hat: Sequence[float], probe: Optional[Sequence[float]]) -> None:
        """Remember the values at the decision that opens the next window."""
        self.start_s_hat = [float(v) for v in s_hat]
        self.start_probe = None if probe is None else [float(v) for v in probe]

    def summary(self, modalities: Sequence[str]) -> Dict[str, float]:
        """``{key: value}`` over every recorded window (keys as in the module docstring, ``/<modality>``
        appended to the per-modality ones); entries that cannot be computed are left out."""
        n = len(self)
        out: Dict[str, float] = {"transitions": float(n)}
        if n == 0:
            return out
        x = np.asarray(self.rows["x"], dtype=np.float64)  # [n, M]
        r = np.asarray(self.rows["reward"], dtype=np.float64)
        ds = np.asarray([e[1] for e in self.rows["s_hat"]]) - np.asarray([s[0] for s in self.rows["s_hat"]])
        tl = np.asarray(self.rows["train_loss"], dtype=np.float64)
        have_probe = [i for i, p in enumerate(self.rows["probe"]) if p is not None]
        gain = (np.asarray([self.rows["probe"][i][0] for i in have_probe]) -
                np.asarray([self.rows["probe"][i][1] for i in have_probe])) if have_probe else None
        if gain is not None:  # the gain of the modality whose probe loss was the highest at the window's start
            start = np.asarray([self.rows["probe"][i][0][:-1] for i in have_probe])
            weakest = gain[np.arange(len(have_probe)), start.argmax(1)]
            lowest = np.asarray([self.rows["s_hat"][i][0] for i in have_probe]).argmin(1)
            weak_s_hat = gain[np.arange(len(have_probe)), lowest]
        values = {"r2_reward": explained_variance(x, r)}
        for j, m in enumerate(modalities):
            values[f"corr_reward/{m}"] = correlation(x[:, j], r)
            values[f"corr_ds_hat/{m}"] = correlation(x[:, j], ds[:, j])
            # window i's allocation shows in the training loss of window i+1's batches
            values[f"corr_train_gain/{m}"] = correlation(x[:-1, j], tl[:-1, j] - tl[1:, j]) if n > 1 else None
            if gain is not None:
                values[f"corr_own_gain/{m}"] = correlation(x[have_probe, j], gain[:, j])
                values[f"corr_fused_gain/{m}"] = correlation(x[have_probe, j], gain[:, -1])
                values[f"corr_weakest_gain/{m}"] = correlation(x[have_probe, j], weakest)
                values[f"corr_weak_s_hat_gain/{m}"] = correlation(x[have_probe, j], weak_s_hat)
        out.update({k: v for k, v in values.items() if v is not None})
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"rows": {k: list(v) for k, v in self.rows.items()}, "start_s_hat": self.start_s_hat,
                "start_probe": self.start_probe}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.rows = {k: list(s["rows"][k]) for k in FIELDS}
        self.start_s_hat, self.start_probe = s["start_s_hat"], s["start_probe"]
