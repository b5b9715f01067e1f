"""DUS-RL's policy: a factorised categorical policy over batch-size multipliers, trained by REINFORCE."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .reward import RunningNormaliser


def discounted_returns(rewards: Sequence[float], gamma: float) -> List[float]:
    """``G_i = Σ_{k>=i} γ^{k-i} r_k`` within the episode (truncated at its end)."""
    out, g = [0.0] * len(rewards), 0.0
    for i in range(len(rewards) - 1, -1, -1):
        g = float(rewards[i]) + gamma * g
        out[i] = g
    return out


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
                 seed: int = 0, advantage: str = "episode", reward_dim: int = 1, normalise: bool = True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.policy = FactorisedPolicy(state_dim, num_modalities, num_actions, hidden, layers)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.gamma, self.entropy_coef, self.baseline_momentum = gamma, entropy_coef, baseline_momentum
        if advantage not in ("episode", "running"):
            raise ValueError(f"advantage must be 'episode' or 'running', got {advantage!r}")
        if reward_dim not in (1, num_modalities):
            raise ValueError(f"reward_dim must be 1 (shared) or the number of modalities, got {reward_dim}")
        self.advantage, self.reward_dim = advantage, int(reward_dim)
        self.normaliser = RunningNormaliser(self.reward_dim, baseline_momentum, normalise)
        self.generator = torch.Generator().manual_seed(int(seed) + 17)
        self.baseline: Optional[float] = None
        self.obs: List[torch.Tensor] = []
        self.actions: List[torch.Tensor] = []
        self.rewards: List[Any] = []
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

    def record(self, obs: torch.Tensor, action: torch.Tensor, reward: Union[float, Sequence[float]]) -> None:
        """One transition; ``reward`` is a float, or one float per modality with ``reward_dim = M``."""
        self.obs.append(obs.detach().float().cpu())
        self.actions.append(action.detach().long().cpu())
        if isinstance(reward, (int, float)):
            reward = [float(reward)]
        r = [float(v) for v in reward]
        if self.reward_dim == 1 and len(r) == 1:
            self.rewards.append(r[0])
        else:
            if len(r) != self.reward_dim:
                raise ValueError(f"expected {self.reward_dim} rewards per transition, got {len(r)}")
            self.rewards.append(r)

    def __len__(self) -> int:
        return len(self.rewards)

    def update(self) -> Dict[str, float]:
        """One policy-gradient step on the buffered episode, then clear it.

        ``advantage = "episode"`` (spec): ``G - b`` with one scalar baseline, an EMA of the episodes' mean
        returns (initialised to the first episode's). ``"running"``: per transition and per reward
        component, :class:`~.reward.RunningNormaliser` (baseline and scale from the transitions before it).
        With one reward per modality (factorised), modality j's log-probability is weighted by its own
        advantage; with a shared reward, by the one advantage (the sum of the modalities' log-probs)."""
        if not self.rewards:
            return {}
        obs, act = torch.stack(self.obs), torch.stack(self.actions)
        if self.advantage == "episode" and self.reward_dim == 1:
            returns = torch.tensor(discounted_returns(self.rewards, self.gamma))
            if self.baseline is None:  # first episode: centre on its own mean instead of an arbitrary 0
                self.baseline = float(returns.mean())
            adv = (returns - self.baseline).unsqueeze(-1)
            mu = self.baseline_momentum
            self.baseline = mu * self.baseline + (1 - mu) * float(returns.mean())
        else:
            cols = [[float(v) for v in r] if isinstance(r, list) else [float(r)] for r in self.rewards]
            returns = torch.tensor([discounted_returns([c[d] for c in cols], self.gamma)
                                    for d in range(self.reward_dim)]).T  # [T, D]
            adv = torch.tensor(self.normaliser.advantages(returns.tolist()), dtype=torch.float32)
            self.baseline = float(sum(self.normaliser.mean or [0.0]) / self.reward_dim)
        loss, entropy = self.loss(obs, act, adv)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        self.last_stats = {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean()),
                           "return": float(returns.mean()), "baseline": float(self.baseline)}
        self.obs, self.actions, self.rewards = [], [], []
        return self.last_stats

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(loss, entropy per transition)`` for states ``[T, S]``, actions ``[T, M]`` and advantages ``[T, D]``:
        ``loss = -mean_t Σ_j A_t,d(j) · log π_j(a_t,j | o_t) - β · mean_t H(π(·|o_t))`` where ``d(j) = j``
        for one advantage per modality (D = M, factorised) and ``d(j) = 0`` for a shared one (D = 1)."""
        logp_all = torch.log_softmax(self.policy(obs), -1)  # [T, M, A]
        logp_m = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [T, M]
        entropy = -(logp_all.exp() * logp_all).sum(-1).sum(-1)
        weighted = adv[:, 0] * logp_m.sum(-1) if adv.shape[-1] == 1 else (adv * logp_m).sum(-1)
        return -weighted.mean() - self.entropy_coef * entropy.mean(), entropy

    def imitate(self, obs: torch.Tensor, targets: torch.Tensor, steps: int, smoothing: float = 0.0) -> float:
        """Warm start: ``steps`` Adam steps of cross-entropy towards target actions ``[N, M]`` in states
        ``[N, S]`` (behaviour cloning of another allocation rule). ``smoothing`` ε: the target distribution
        puts ``1 - ε + ε/|A|`` on the target action and ``ε/|A|`` on each other one, so the cloned policy
        keeps exploring (ε = 0 clones to a near-deterministic policy, which REINFORCE can no longer move).
        Returns the last loss."""
        loss = torch.zeros(())
        for _ in range(int(steps)):
            logits = self.policy(obs.float())
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.long().reshape(-1),
                                   label_smoothing=float(smoothing))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> Dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "baseline": self.baseline,
                "obs": [o.clone() for o in self.obs], "actions": [a.clone() for a in self.actions],
                "rewards": [list(r) if isinstance(r, list) else r for r in self.rewards], "updates": self.updates,
                "normaliser": self.normaliser.state_dict()}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.policy.load_state_dict(s["policy"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.generator.set_state(s["generator"])
        self.baseline = s["baseline"]
        self.obs, self.actions = list(s["obs"]), list(s["actions"])
        self.rewards, self.updates = list(s["rewards"]), int(s["updates"])
        if "normaliser" in s:  # absent in checkpoints written before the running advantage existed
            self.normaliser.load_state_dict(s["normaliser"])
