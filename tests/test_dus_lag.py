"""DUS ``decision_lag=1``: the same decisions, each applied one step later, without a host wait on a GPU."""
import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from mmbalance import Config, Trainer
from mmbalance.engine.epoch_log import EpochLog
from mmbalance.methods import METHODS
from mmbalance.methods.dus import discrepancy, heuristic_sizes
from mmbalance.methods.dus.readback import ScoreReadback

from conftest import assert_resume_is_exact, assert_weights_only_roundtrip, free_port, load_metrics, make_cfg

# per-step batch scores s_t (modality a, b) and the fused score; N_B = 8, bounds [4, 16], budget 16
SCORES = [([0.8, 0.4], 0.5), ([0.4, 0.8], 0.5), ([0.2, 0.8], 0.5), ([0.6, 0.6], 0.5), ([0.6, 0.6], 0.5)]
# decisions D_t from the cumulative mean ŝ_t, worked by hand:
#   t=1: ŝ = (.8, .4), ρ = (2, .5), raw 8/ρ = (4, 16) -> budget 16: (4, 12)
#   t=2: ŝ = (.6, .6), ρ = (1, 1) -> (8, 8)
#   t=3: ŝ = (1.4/3, 2/3), ρ = (.7, 1/.7), raw (80/7, 5.6) -> scaled to 16: (10.74, 5.26) -> (11, 5)
#   t=4: ŝ = (.5, .65), ρ = (10/13, 1.3), raw (10.4, 6.15) -> (10.06, 5.94) -> (10, 6)
DECISIONS = [[4, 12], [8, 8], [11, 5], [10, 6]]


def _fake_trainer():
    cfg = SimpleNamespace(train=SimpleNamespace(batch_size=8, compile="none", epochs=1))
    return SimpleNamespace(active_modalities=["a", "b"], cfg=cfg, world_size=1, epoch=0, epoch_log=EpochLog(),
                           splits=SimpleNamespace(train=list(range(64))))


def _plugin(lag, trainer, state=None):
    p = METHODS.get("dus-h")(decision_lag=lag)
    p.attach(trainer)
    if state is not None:
        p.load_state_dict(state)
    p.configure_model(trainer, None)
    return p


def _step(p, trainer, s, mm):
    """One training step as DUS sees it: the batch's scores after the forward, then the step's end."""
    p._batch_scores = lambda *_: (torch.tensor(s), torch.tensor(mm))
    batch = SimpleNamespace(sizes=dict(zip(p.modalities, p._next_sizes())))
    p.after_forward(trainer, batch, None)
    p.after_step(trainer, batch, None)
    return list(p.sizes)


def test_lag_applies_every_decision_one_step_later_by_hand():
    t0, t1 = _fake_trainer(), _fake_trainer()
    exact, lagged = _plugin(0, t0), _plugin(1, t1)
    after_exact = [_step(exact, t0, s, mm) for s, mm in SCORES]
    after_lagged = [_step(lagged, t1, s, mm) for s, mm in SCORES]
    assert after_exact[:4] == DECISIONS  # sizes for step t+1, decided after step t
    assert after_lagged == [[8, 8]] + DECISIONS  # the same decisions, one step later


def test_lag_state_with_a_decision_in_flight_resumes_exactly():
    ta, tb = _fake_trainer(), _fake_trainer()
    a = _plugin(1, ta)
    for s, mm in SCORES[:2]:
        _step(a, ta, s, mm)
    state = assert_weights_only_roundtrip(a.state_dict())  # tensors and plain containers only
    assert state["in_flight"] is not None  # the decision of step 2 is not applied yet
    b = _plugin(1, tb, state)
    rest_a = [_step(a, ta, s, mm) for s, mm in SCORES[2:]]
    rest_b = [_step(b, tb, s, mm) for s, mm in SCORES[2:]]
    assert rest_a == rest_b == DECISIONS[1:]


def test_readback_on_the_cpu_is_a_copy():
    v = torch.tensor([0.25, 0.5])
    r = ScoreReadback(v)
    v.mul_(2)  # later in-place changes on the device side do not reach the snapshot
    assert r.values() == [0.25, 0.5]


def _sizes_and_scores(run):
    lines = load_metrics(run)
    n = [[a, b] for line in lines for a, b in zip(line["steps"]["dus-h/n/a"], line["steps"]["dus-h/n/b"])]
    s = [[a, b] for line in lines for a, b in zip(line["steps"]["dus-h/s_hat/a"], line["steps"]["dus-h/s_hat/b"])]
    last = {sum(len(x["steps"]["dus-h/n/a"]) for x in lines[: k + 1]) - 1 for k in range(len(lines))}
    return n, s, last


@pytest.mark.parametrize("lag", [0, 1])
def test_in_the_loop_each_step_uses_the_decision_of_lag_plus_one_steps_before(tmp_path, lag):
    """Across epochs too: the sizes of step k are the rule applied to the ŝ logged at step k - 1 - lag
    (the last step of each epoch is scaled to the budget, so it is skipped)."""
    cfg = make_cfg("method=dus-h", f"method_args.dus-h.decision_lag={lag}", "train.epochs=2", out=tmp_path / "r")
    Trainer(cfg).fit()
    n, s_hat, last = _sizes_and_scores(tmp_path / "r")
    assert all(x == [32, 32] for x in n[: 1 + lag])
    checked = 0
    for k in range(1 + lag, len(n)):
        if k in last:
            continue
        rho = discrepancy(torch.tensor(s_hat[k - 1 - lag], dtype=torch.float64)).tolist()
        assert [int(x) for x in n[k]] == heuristic_sizes(rho, 32, 1.0, 16, 64), k
        checked += 1
    assert checked > 20 and len({tuple(x) for x in n}) > 2


def test_lag_resumes_exactly(tmp_path):
    assert_resume_is_exact(tmp_path, ["method=dus-h", "method_args.dus-h.decision_lag=1"], crash_at=2, epochs=3)


def test_lag_reaches_the_same_accuracy_within_noise():
    """av-digits hard, 3 seeds: |mean difference| <= max(2 x pooled std, 0.05) (the fast-path rule)."""
    acc = {}
    for lag in (0, 1):
        acc[lag] = torch.tensor([Trainer(Config().override([
            "data.name=av-digits", "data.preset=hard", "train.epochs=5", f"train.seed={seed}", "method=dus-h",
            f"method_args.dus-h.decision_lag={lag}", "eval.probe=false", "log.tensorboard=false",
            "train.progress=false"])).fit()["test"]["acc"] for seed in (0, 1, 2)])
    pooled = ((acc[0].var() + acc[1].var()) / 2).sqrt()
    assert abs(float(acc[0].mean() - acc[1].mean())) <= max(2 * float(pooled), 0.05), acc


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    Trainer(make_cfg(*DDP, "train.device=cpu", out=out)).fit()
    torch.distributed.destroy_process_group()


DDP = ["train.epochs=2", "train.batch_size=32", "data.options.n=240", "eval.probe=false", "method=dus-h",
       "method_args.dus-h.decision_lag=1"]


def test_lag_under_two_ranks_decides_like_one_rank(tmp_path):
    Trainer(make_cfg(*DDP, out=tmp_path / "one")).fit()
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one, two = load_metrics(tmp_path / "one"), load_metrics(tmp_path / "two")
    for a, b in zip(one, two):  # the same global sizes and scores at every step: the ranks decided alike
        for m in ("a", "b"):  # rank 0 logs its share of each global batch: the first ceil(n / 2) rows
            assert [math.ceil(n / 2) for n in a["steps"][f"dus-h/n/{m}"]] == b["steps"][f"dus-h/n/{m}"]
            assert a["steps"][f"dus-h/s_hat/{m}"] == pytest.approx(b["steps"][f"dus-h/s_hat/{m}"], abs=1e-5)
        assert len(set(a["steps"]["dus-h/n/a"])) > 1
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["test"]["acc"] > 0
