"""DUS-RL's policy: a factorised categorical policy over batch-size multipliers, trained by REINFORCE."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn



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
