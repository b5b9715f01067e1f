"""DUS-RL's learning signal: window rewards from probe losses, the running advantage, the factorised policy
gradient, the warm start, the reward-signal diagnostic, and exact resume of the whole design."""
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmbalance import Trainer
from mmbalance.config import ConfigError
from mmbalance.methods.dus import (Reinforce, RunningNormaliser, SignalRecord, correlation, explained_variance,
                                   gain_reward)
from mmbalance.methods.dus.reward import probe_indices, probe_losses

from conftest import assert_resume_is_exact, load_metrics, make_cfg

A = "method_args.dus-rl"
#: the learning-signal design with every new part switched on (short windows so a tiny run has many)
DESIGN = [f"{A}.reward=weakest_gain", f"{A}.advantage=running", f"{A}.rl_gamma=0", f"{A}.update_every=3",
          f"{A}.policy_update_every=2", f"{A}.policy_lr=0.01", f"{A}.entropy_final=0",
          f"{A}.state=[s_hat,rho,sizes,progress,loss_slope]", f"{A}.probe_size=40"]


# ----------------------------------------------------------------------------- rewards and advantages
def test_gain_rewards_by_hand():
    before, after = [1.0, 2.0, 1.5], [0.8, 1.5, 1.2]  # [L_a, L_b, L_fused] at the window's start and end
    assert gain_reward(before, after, "fused_gain") == pytest.approx([0.3])
    assert gain_reward(before, after, "weakest_gain") == pytest.approx([0.5])  # b had the higher loss
    assert gain_reward(before, after, "weakest_gain", weaker=0) == pytest.approx([0.2])  # weaker given (ŝ)
    assert gain_reward(before, after, "own_gain") == pytest.approx([0.2, 0.5])
    with pytest.raises(ValueError, match="gain reward"):
        gain_reward(before, after, "spread")


def test_running_normaliser_by_hand():
    # momentum 0.5, returns 1, 3, 4, 5:
    # t0 initialises b = 1 (adv 0); t1: dev 2, scale not yet known -> 2; v = .5*0 + .5*4 = 2, b = 2
    # t2: dev 2 -> 2/sqrt(2); v = .5*2 + .5*4 = 3, b = 3;  t3: dev 2 -> 2/sqrt(3)
    n = RunningNormaliser(1, momentum=0.5)
    adv = n.advantages([[1.0], [3.0], [4.0], [5.0]])
    assert [a[0] for a in adv] == pytest.approx([0.0, 2.0, 2 / math.sqrt(2), 2 / math.sqrt(3)])
    assert n.mean == pytest.approx([4.0]) and n.var == pytest.approx([3.5])
    raw = RunningNormaliser(1, momentum=0.5, normalise=False).advantages([[1.0], [3.0], [4.0], [5.0]])
    assert [a[0] for a in raw] == pytest.approx([0.0, 2.0, 2.0, 2.0])
    two = RunningNormaliser(2, momentum=0.5)  # per component: each has its own baseline
    assert two.advantages([[1.0, 10.0], [3.0, 10.0]]) == [[0.0, 0.0], [2.0, 0.0]]
    again = RunningNormaliser(1, momentum=0.5)
    again.load_state_dict(n.state_dict())
    assert again.advantages([[6.0]]) == n.advantages([[6.0]])


@pytest.mark.parametrize("factorised", [False, True])
def test_policy_gradient_by_hand(factorised):
    # the output layer starts at zero: a uniform policy, where d log pi_j(a)/d bias_{j,k} = 1[a = k] - 1/|A|
    # and the entropy's gradient vanishes, so d loss / d bias_{j,k} = -mean_t A_t,d(j) (1[a_t,j = k] - 1/|A|)
    rl = Reinforce(state_dim=2, num_modalities=2, num_actions=3, hidden=4, entropy_coef=0.5, seed=0)
    obs = torch.tensor([[0.1, 0.2], [0.3, -0.4]])
    act = torch.tensor([[0, 2], [1, 2]])
    adv = torch.tensor([[1.0, -2.0], [3.0, 0.5]]) if factorised else torch.tensor([[1.0], [3.0]])
    loss, entropy = rl.loss(obs, act, adv)
    assert entropy.tolist() == pytest.approx([2 * math.log(3)] * 2)
    loss.backward()
    grad = rl.policy.net[-1].bias.grad.reshape(2, 3)
    expected = torch.zeros(2, 3)
    for t in range(2):
        for j in range(2):
            a_tj = adv[t, j] if factorised else adv[t, 0]
            expected[j] -= a_tj * (F.one_hot(act[t, j], 3).float() - 1 / 3) / 2
    assert torch.allclose(grad, expected, atol=1e-6)


def test_running_advantage_learns_a_factorised_bandit():
    # modality 0 is rewarded for action 1, modality 1 for action 0, each through its own reward component
    rl = Reinforce(1, 2, 2, hidden=8, lr=0.05, gamma=0.0, entropy_coef=0.0, seed=0, advantage="running",
                   reward_dim=2)
    obs, noise = torch.ones(1), torch.Generator().manual_seed(2)
    for _ in range(300):
        a = rl.act(obs)
        rl.record(obs, a, [float(a[0] == 1) + 0.3 * float(torch.randn(1, generator=noise)), float(a[1] == 0)])
        if len(rl) >= 5:
            rl.update()
    p = rl.probs(obs)
    assert float(p[0, 1]) > 0.9 and float(p[1, 0]) > 0.9


def test_imitation_smoothing_keeps_the_policy_exploring():
    obs, target = torch.randn(8, 3), torch.tensor([[1, 2]] * 8)
    sharp, soft = Reinforce(3, 2, 6, lr=0.01, seed=0), Reinforce(3, 2, 6, lr=0.01, seed=0)
    sharp.imitate(obs, target, 300)
    soft.imitate(obs, target, 300, smoothing=0.5)
    assert float(sharp.probs(obs)[:, 0, 1].min()) > 0.97
    p = soft.probs(obs)[:, 0, 1]  # the smoothed target: 1 - 0.5 + 0.5/6
    assert torch.allclose(p, torch.full_like(p, 0.5 + 0.5 / 6), atol=0.02)


# ----------------------------------------------------------------------------- the diagnostic
def test_correlation_and_explained_variance_by_hand():
    # x - mean = (-.5, 0, .5, 0), r - mean = (-1, 1, 0, 0): sum of products .5, sums of squares .5 and 2
    x, r = [0.5, 1.0, 1.5, 1.0], [1.0, 3.0, 2.0, 2.0]
    assert correlation(x, r) == pytest.approx(0.5)
    assert explained_variance([[v, 2 - v] for v in x], r) == pytest.approx(0.25)  # collinear columns are fine
    assert correlation([1, 1, 1], [1, 2, 3]) is None and correlation([1, 2], [2, 1]) is None
    assert explained_variance([[1.0]] * 3, [2.0] * 3) is None


def test_signal_record_on_a_tiny_deterministic_case():
    rec = SignalRecord()
    rec.open([0.2, 0.4], [2.0, 1.0, 1.5])  # ŝ and probe losses [L_a, L_b, L_fused] when the first window opens
    x_a = [0.5, 1.0, 1.5, 1.0]
    probes = [[1.9, 0.8, 1.4], [1.7, 0.7, 1.2], [1.4, 0.7, 1.1], [1.3, 0.5, 0.9]]
    s_hats = [[0.25, 0.45], [0.3, 0.5], [0.4, 0.5], [0.45, 0.6]]
    train = [[2.0, 2.0], [1.8, 2.1], [1.5, 2.0], [1.4, 1.6]]
    for i in range(4):
        rec.add([x_a[i], 2 - x_a[i]], [1.0, 3.0, 2.0, 2.0][i], s_hats[i], probes[i], train[i])
        rec.open(s_hats[i], probes[i])
    s = rec.summary(["a", "b"])
    assert s["transitions"] == 4
    assert s["corr_reward/a"] == pytest.approx(0.5) and s["corr_reward/b"] == pytest.approx(-0.5)
    assert s["r2_reward"] == pytest.approx(0.25)
    # a's probe gains 0.1, 0.2, 0.3, 0.1 (start of window i = end of window i-1): x dev (-.5, 0, .5, 0),
    # gain dev (-.075, .025, .125, -.075) -> .1 / sqrt(.5 * .0275)
    assert s["corr_own_gain/a"] == pytest.approx(0.1 / math.sqrt(0.5 * 0.0275))
    # a's training loss falls 0.2, 0.3, 0.1 into the *next* window: x (.5, 1, 1.5) -> r = -.05 / sqrt(.5 * .02)
    assert s["corr_train_gain/a"] == pytest.approx(-0.05 / math.sqrt(0.5 * 0.02))
    # a always had the higher probe loss, so its gain is the weakest modality's gain; its ŝ was always lower too
    assert s["corr_weakest_gain/a"] == pytest.approx(s["corr_own_gain/a"]) == pytest.approx(s["corr_weak_s_hat_gain/a"])
    ds = np.array([0.05, 0.05, 0.1, 0.05])  # a's ŝ changes over the windows
    assert s["corr_ds_hat/a"] == pytest.approx(correlation(x_a, ds))
    again = SignalRecord()
    again.load_state_dict(rec.state_dict())
    assert again.summary(["a", "b"]) == s


def test_diagnostic_logs_and_plot_in_a_real_run(tmp_path):
    from mmbalance.report.plots_dus import plot, signal_series

    Trainer(make_cfg("method=dus-rl", "train.epochs=3", *DESIGN, out=tmp_path / "r")).fit()
    lines = load_metrics(tmp_path / "r")
    last = lines[-1]["plugins"]
    series = signal_series(lines)
    n = int(last["dus-rl/signal/transitions"])
    assert n == len(series["reward"]) == len(series["x/a"]) == len(series["gain/fused"]) >= 8
    # the logged correlations are those of the logged per-window series
    assert last["dus-rl/signal/corr_reward/a"] == pytest.approx(np.corrcoef(series["x/a"], series["reward"])[0, 1])
    assert last["dus-rl/signal/corr_fused_gain/b"] == pytest.approx(
        np.corrcoef(series["x/b"], series["gain/fused"])[0, 1])
    # reward = gain of the modality with the higher probe loss at the window's start: one of the two gains
    assert all(min(abs(r - ga), abs(r - gb)) < 1e-9 for r, ga, gb in zip(series["reward"], series["gain/a"],
                                                                          series["gain/b"]))
    assert "dus-rl/signal/transitions" in lines[0]["plugins"] and "dus-rl/reward" not in lines[0]["plugins"]
    names = [pathlib.Path(f).name for f in plot(tmp_path / "r", tmp_path / "p")]
    assert names == ["dus_batch_sizes.png", "dus_scores.png", "dus_rl_signal.png"]


def test_probe_losses_match_a_manual_evaluation_and_leave_training_alone(tmp_path):
    tr = Trainer(make_cfg("method=dus-rl", "train.epochs=1", out=tmp_path / "r"))
    tr.fit()
    idx = probe_indices(len(tr.splits.val), 50, seed=0)
    assert len(idx) == 50 and idx.tolist() == sorted(set(idx.tolist()))
    rng = torch.get_rng_state()
    got = probe_losses(tr, "val", idx, ["a", "b"])
    assert torch.equal(rng, torch.get_rng_state())
    tr.model.eval()
    rows = [tr.splits.val[int(i)] for i in idx]
    with torch.no_grad():
        xs = {m: torch.stack([torch.as_tensor(r["inputs"][m]) for r in rows]).float() for m in ("a", "b")}
        y = torch.tensor([int(r["y"]) for r in rows])
        out = tr.model(xs)
    want = [float(F.cross_entropy(out.logits[m], y)) for m in ("a", "b")] + [float(F.cross_entropy(out.fused, y))]
    assert got == pytest.approx(want, rel=1e-5)
    # the probe and the diagnostic only observe: with the spec's reward a run is the same with or without them
    a = Trainer(make_cfg("method=dus-rl", "train.epochs=3", f"{A}.policy_update_every=3", out=tmp_path / "a")).fit()
    b = Trainer(make_cfg("method=dus-rl", "train.epochs=3", f"{A}.policy_update_every=3", f"{A}.diagnose=false",
                         out=tmp_path / "b")).fit()
    assert a["test"] == b["test"] and a["val"] == b["val"]


# ----------------------------------------------------------------------------- the plug-in
def test_new_design_resumes_exactly(tmp_path):
    over = ["method=dus-rl", *DESIGN, f"{A}.warm_start=imitate", f"{A}.imitation_steps=20"]
    a = assert_resume_is_exact(tmp_path, over, crash_at=2)
    assert a[-1]["plugins"]["dus-rl/policy_updates"] >= 4 and a[-1]["plugins"]["dus-rl/signal/transitions"] > 10


def test_warm_start_clones_dus_h_before_the_policy_acts(tmp_path):
    cfg = make_cfg("method=dus-rl", "train.epochs=2", *DESIGN, f"{A}.warm_start=imitate", f"{A}.imitation_steps=300",
                   f"{A}.imitation_smoothing=0", out=tmp_path / "r")
    tr = Trainer(cfg)
    tr.fit()
    lines = load_metrics(tmp_path / "r")
    heuristic = lines[0]["steps"]["dus-rl/n/a"]
    acted = lines[1]["steps"]["dus-rl/n/a"][:6]  # the first sizes the cloned policy chooses, before it learns much
    assert abs(np.mean(acted) - np.mean(heuristic[-6:])) < 8


def test_option_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"method_args\.dus-rl\.state"):
        Trainer(make_cfg("method=dus-rl", f"{A}.state=[s_hat,velocity]"))
    with pytest.raises(ConfigError, match=r"method_args\.dus-rl\.reward"):
        Trainer(make_cfg("method=dus-rl", f"{A}.reward=accuracy"))
