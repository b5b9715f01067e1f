"""BalanceBenchmark's methods that were missing: Greedy (MMTM + re-balancing), UMT (teacher stage + feature
distillation), UME (unimodal ensemble), MBSD (performance-weighted self-distillation). Hand-computed math, the real
loop, exact resume (UMT also interrupted inside its teacher stage), stacks with the seed methods."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Plugin, Trainer
from mmbalance.engine import IncompatiblePluginsError, Stage
from mmbalance.functional import ensemble_logits
from mmbalance.methods import build_plugins
from mmbalance.methods.greedy import MMTM, Greedy, branch_speed, grad_weight_ratio, guided_schedule, speed_gap
from mmbalance.methods.mbsd import kl_term, mbsd_terms, performance_weight, rs_term
from mmbalance.methods.umt import UMT, feature_distillation

from conftest import assert_resume_is_exact, make_cfg

SMALL = ["data.options.n=200"]
MFEAT = ["data.name=mfeat", "data.modalities=[pix,fou,zer]", "train.batch_size=128"]


def _untimed(r):
    r = dict(r)
    r.pop("time", None)
    r["train"] = {k: v for k, v in r["train"].items() if k != "time_s"}
    return r


def _lines(path):
    return [_untimed(json.loads(x)) for x in path.read_text().splitlines()]


# ============================================================================================ engine: the two hooks
class _Coupled(Plugin):
    name = "coupled"

    def configure_model(self, trainer, model):
        model.coupling = torch.nn.Identity()  # replaced below by a scaling to check where it acts

        class Double(torch.nn.Module):
            def forward(self, feats):
                return {m: 2 * f for m, f in feats.items()}

        model.coupling = Double()


def test_a_coupling_module_acts_between_the_encoders_and_the_heads_and_fusion():
    tr = Trainer(make_cfg("method=joint", *SMALL), plugins=[*build_plugins(make_cfg("method=joint")), _Coupled()])
    batch = next(iter(tr.data.iter_batches("val")))
    out = tr.forward(batch.inputs)
    raw = tr.model.encode(batch.inputs)
    for m, f in raw.items():
        assert torch.allclose(out.features[m], 2 * f)
        assert torch.allclose(out.logits[m], tr.model.heads[m](2 * f))
    assert torch.allclose(out.fused, tr.model.fusion({m: 2 * f for m, f in raw.items()}))


class _StageWithEnd(Plugin):
    name = "stage-end"

    def __init__(self):
        self.ends = []

    def stages(self, trainer):
        return [Stage("probe", 2, lambda t, b: {"zero": torch.zeros(())}, None, self.end)]

    def end(self, trainer, epoch):
        self.ends.append((epoch, trainer.stage_epochs.get("probe", 0)))
        self.log("end_epoch", epoch)


def test_a_stage_epoch_end_runs_before_the_record_is_written(tmp_path):
    p = _StageWithEnd()
    Trainer(make_cfg("method=joint", *SMALL, "train.epochs=1", out=tmp_path / "r"),
            plugins=[*build_plugins(make_cfg("method=joint")), p]).fit()
    assert p.ends == [(0, 0), (1, 1)]  # after the epoch's steps, before it is counted as done
    stage = _lines(tmp_path / "r" / "stages.jsonl")
    assert [r["plugins"]["stage-end/end_epoch"] for r in stage] == [0, 1]


# ============================================================================================ shared: ensembles
def test_ensemble_logits_by_hand():
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    assert torch.allclose(ensemble_logits([a, b]), torch.tensor([[1.0, 2.0]]))
    assert torch.allclose(ensemble_logits([a, b], [3, 1]), torch.tensor([[1.5, 1.0]]))
    pa, pb = F.softmax(a, 1), F.softmax(b, 1)
    assert torch.allclose(ensemble_logits([a, b], space="probs"), torch.log((pa + pb) / 2))
    with pytest.raises(ValueError, match="non-negative"):
        ensemble_logits([a, b], [1, -1])
    with pytest.raises(ValueError, match="space"):
        ensemble_logits([a, b], space="votes")


# ============================================================================================ Greedy
def _mmtm():
    mm = MMTM({"a": 2, "b": 1}, ratio=3.0)  # hidden = int(2 * 3 / 3) = 2
    with torch.no_grad():
        mm.squeeze.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        mm.squeeze.bias.zero_()
        mm.excite["a"].weight.copy_(torch.eye(2))
        mm.excite["a"].bias.zero_()
        mm.excite["b"].weight.copy_(torch.tensor([[1.0, -1.0]]))
        mm.excite["b"].bias.zero_()
    return mm


def test_mmtm_gates_and_running_average_by_hand():
    mm = _mmtm()
    s = torch.sigmoid
    t = torch.tensor
    # h = relu([a1, a2 + b]) = [1, 5]; g_a = sigmoid(h), g_b = sigmoid(1 - 5)
    out = mm({"a": t([[1.0, 2.0]]), "b": t([[3.0]])})
    assert torch.allclose(out["a"], t([[1 * s(t(1.0)), 2 * s(t(5.0))]]))
    assert torch.allclose(out["b"], t([[3 * s(t(-4.0))]]))
    assert torch.allclose(mm.running_gate, t([s(t(1.0)), s(t(5.0)), s(t(-4.0))]))
    # second forward: h = [0, 1]; the running mean is over both forwards [CODE formula]
    mm({"a": t([[0.0, 1.0]]), "b": t([[0.0]])})
    g2 = t([s(t(0.0)), s(t(1.0)), s(t(-1.0))])
    avg = (t([s(t(1.0)), s(t(5.0)), s(t(-4.0))]) + g2) / 2
    assert torch.allclose(mm.running_gate, avg) and int(mm.steps) == 2
    # frozen modality a: its gate is the running mean (updated with this batch first) and gets no gradient
    mm.frozen.copy_(t([True, False]))
    fa = t([[1.0, 2.0]], requires_grad=True)
    out = mm({"a": fa, "b": t([[3.0]])})
    avg3 = (avg * 2 + t([s(t(1.0)), s(t(5.0)), s(t(-4.0))])) / 3
    assert torch.allclose(out["a"], fa.detach() * avg3[:2])
    assert torch.allclose(out["b"], t([[3 * s(t(-4.0))]]))
    (out["a"].sum() + out["b"].sum()).backward()
    assert torch.count_nonzero(mm.excite["a"].weight.grad) == 0
    assert torch.count_nonzero(mm.excite["b"].weight.grad) > 0
    # evaluation: no freezing, no update; a pass over a subset of the modalities is left alone
    mm.eval()
    out = mm({"a": t([[1.0, 2.0]]), "b": t([[3.0]])})
    assert torch.allclose(out["a"], t([[1 * s(t(1.0)), 2 * s(t(5.0))]])) and int(mm.steps) == 3
    only_a = {"a": t([[1.0, 2.0]])}
    assert mm(only_a) is only_a


def test_speed_math_by_hand():
    p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # |p|^2 = 25
    q = torch.nn.Parameter(torch.tensor([0.0, 5.0]))  # |q|^2 = 25, no gradient
    p.grad = torch.tensor([1.0, 2.0])  # |g|^2 = 5
    assert float(grad_weight_ratio([p, q])) == pytest.approx(5 / 50)  # sums first, then the ratio
    bdr = branch_speed(torch.tensor([1.0, 10.0]), torch.tensor([10.0, 10.0]))
    assert torch.allclose(bdr, torch.tensor([-1.0, 0.0]))
    assert torch.allclose(speed_gap(bdr), torch.tensor([-1.0, 1.0]))  # two modalities: [d, -d]
    assert torch.allclose(speed_gap(torch.tensor([3.0, 1.0, 2.0])), torch.tensor([1.5, -1.5, 0.0]))


def test_guided_schedule_by_hand():
    f = torch.tensor(False)
    zero = torch.tensor(0)

    def nxt(state, gap, unlocked=True):
        return guided_schedule(*state, torch.tensor(gap), unlocked, epsilon=0.1, window=3)

    s = nxt((f, zero, zero), [0.05, -0.05])
    assert not s[0]  # |d| <= epsilon
    s = nxt(s, [-0.5, 0.5])  # d = BDR_0 - BDR_1 < 0: modality 1 is cared for
    assert bool(s[0]) and int(s[1]) == 1 and int(s[2]) == 0
    rebalanced = 0
    while bool(s[0]):  # every step inside the window runs re-balanced, whatever the gap says
        rebalanced += 1
        s = nxt(s, [5.0, -5.0])
    assert rebalanced == 3 and int(s[1]) == 1
    s = nxt(s, [0.2, -0.2])
    assert bool(s[0]) and int(s[1]) == 0
    s = nxt(s, [0.2, -0.2], unlocked=False)
    assert not s[0] and int(s[1]) == 0


class _Watch(Greedy):
    """Greedy that records, per step, the schedule state it starts from and what the backward gave."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def after_backward(self, trainer, batch, out):
        frozen = self._mmtm.frozen.clone()
        grads = [bool(torch.count_nonzero(self._mmtm.excite[m].weight.grad)) for m in self._mods]
        before = (bool(self._state["rebalancing"]), self._state["m_main"].clone())
        super().after_backward(trainer, batch, out)
        self.seen.append((before, frozen, grads, self._state["m_main"].clone()))


def test_greedy_measures_outside_windows_and_cuts_the_caring_inflow():
    opts = {"epsilon": 0.0, "window": 2, "starting_epoch": 0}
    g = _Watch(**opts)
    tr = Trainer(make_cfg("method=greedy", *SMALL, "train.epochs=1", "train.batch_size=16"), plugins=[g])
    tr.fit()
    assert any(b[0] for b, *_ in g.seen) and any(not b[0] for b, *_ in g.seen)
    for (was_rebalancing, m_before), frozen, grads, m_after in g.seen:
        assert torch.equal(m_before, m_after) == was_rebalancing  # no measurement inside a window
        assert bool(frozen.any()) == was_rebalancing
        for i, cut in enumerate(frozen.tolist()):
            if cut:
                assert not grads[i]  # the frozen gate's excitation got no gradient this step
    # the official objective: sum of the branch CEs, no fusion head, prediction = mean of the branch logits
    assert tr.model.fusion is None and set(tr.history[0]["train"]) >= {"loss_uni_a", "loss_uni_b"}
    r = tr.collect("test")
    assert torch.allclose(r["pred"], (r["logits"]["a"] + r["logits"]["b"]) / 2)


def test_greedy_runs_on_av_digits_and_three_views(tmp_path):
    tr = Trainer(make_cfg("method=greedy", "data.name=av-digits", "data.preset=hard", "train.epochs=3"))
    s = tr.fit()
    assert s["test"]["acc"] > 0.5
    plug = tr.history[-1]["plugins"]
    assert 0 < plug["greedy/rebalancing"] <= 1 and math.isfinite(plug["greedy/image/bdr"])
    tr3 = Trainer(make_cfg("method=greedy", *MFEAT, "train.epochs=2", "method_args.greedy.starting_epoch=0"))
    tr3.fit()
    assert set(tr3.model.coupling.modalities) == {"pix", "fou", "zer"}
    assert tr3.history[-1]["plugins"]["greedy/rebalancing"] > 0


def test_greedy_bb_objective_keeps_the_fusion_head():
    g = Greedy(objective="bb")
    assert "predict" not in g.provides() and not g.wants_unimodal_loss
    tr = Trainer(make_cfg("method=greedy", *SMALL, "train.epochs=1", "method_args.greedy.objective=bb"))
    tr.fit()
    assert tr.model.fusion is not None and "loss_fused" in tr.history[0]["train"]


def test_greedy_resumes_exactly_inside_rebalancing(tmp_path):
    assert_resume_is_exact(tmp_path, ["method=greedy", *SMALL, "method_args.greedy.starting_epoch=0",
                                      "method_args.greedy.window=3"], crash_at=2, epochs=3)


def test_greedy_stacks():
    with pytest.raises(IncompatiblePluginsError, match="'greedy' needs strictly paired batches"):
        Trainer(make_cfg("method=greedy+dus-h", *SMALL))
    with pytest.raises(IncompatiblePluginsError, match="'greedy' modulates the default training step"):
        Trainer(make_cfg("method=greedy+mla", *SMALL, "method_args.greedy.objective=bb"))
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        Trainer(make_cfg("method=greedy+mla", *SMALL))
    tr = Trainer(make_cfg("method=greedy+bss-l", *SMALL, "train.epochs=1"))
    tr.fit()
    assert tr.history[0]["train"]["steps"] > 0
    Trainer(make_cfg("method=greedy+diagnose-relearn", *SMALL, "train.epochs=2",
                     "method_args.diagnose-relearn.reinit_every=1", "method_args.diagnose-relearn.n_init=2",
                     "method_args.diagnose-relearn.kmeans_backend=torch")).fit()


# ============================================================================================ UMT
def test_feature_distillation_by_hand():
    f, t = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    assert float(feature_distillation(f, t)) == pytest.approx((1 + 4 + 9 + 1) / 4)
    # DDP: this rank's 2 rows of a global batch of 6 rows on 3 ranks -> sum / (6 * 2) * 3
    assert float(feature_distillation(f, t, world_size=3, global_count=6)) == pytest.approx(15 / 12 * 3)


UMT_FAST = ["method=umt", *SMALL, "method_args.umt.teacher_epochs=3"]


def test_umt_teacher_stage_keeps_the_best_validation_teacher(tmp_path):
    tr = Trainer(make_cfg(*UMT_FAST, "train.epochs=1", out=tmp_path / "r"))
    joint = Trainer(make_cfg("method=joint", *SMALL, "train.epochs=1"))
    assert all(torch.equal(v, joint.initial_state[k]) for k, v in tr.initial_state.items())  # same student init
    tr.fit()
    stage = _lines(tmp_path / "r" / "stages.jsonl")
    assert [(r["stage"], r["epoch"]) for r in stage] == [("umt-teachers", e) for e in range(3)]
    p = tr.plugin("umt")
    for m in ("a", "b"):
        accs = [r["plugins"][f"umt/teacher/{m}/val_acc"] for r in stage]
        best = max(range(3), key=lambda e: (accs[e], -e))  # first epoch with the highest accuracy
        assert stage[-1]["plugins"][f"umt/teacher/{m}/best_epoch"] == best == p._best[m]["epoch"]
        for k, v in p.teachers.encoders[m].state_dict().items():
            assert torch.equal(v.cpu(), p._best[m]["encoder"][k])
    assert stage[-1]["plugins"]["umt/teacher/a/val_acc"] > 0.8  # the teachers learn (b is the weak modality)
    assert tr.history[0]["train"]["cost"]["forwards_per_step"] == 2.0  # student + teachers


def test_umt_distillation_term_by_hand():
    tr = Trainer(make_cfg(*UMT_FAST, "method_args.umt.scaling=3"))
    p = tr.plugin("umt")
    batch = next(iter(tr.data.iter_batches("train", train=True)))
    out = tr.forward(batch.inputs)
    losses = {}
    p.compute_loss(tr, batch, out, losses)
    for m in ("a", "b"):
        with torch.no_grad():
            t = p.teachers.encoders[m](batch.inputs[m])
        expected = 3 * float(((out.features[m].detach() - t) ** 2).mean())
        assert float(losses[f"umt_distill_{m}"].detach()) == pytest.approx(expected)
    assert not p.teachers.training  # the frozen teacher runs in eval mode by default
    tr.epoch = 81  # outside BalanceBenchmark's window (0-80): no term
    losses = {}
    p.compute_loss(tr, batch, out, losses)
    assert losses == {}


class _CrashInTeachers(UMT):
    """UMT interrupted at the third step of the second teacher epoch."""

    def _teacher_step(self, trainer, batch):
        if trainer.stage_epochs.get("umt-teachers", 0) == 1:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 3:
                raise KeyboardInterrupt
        return super()._teacher_step(trainer, batch)


def test_umt_interrupted_in_the_teacher_stage_resumes_exactly(tmp_path):
    over = [*UMT_FAST, "train.epochs=2"]
    full = Trainer(make_cfg(*over, out=tmp_path / "full")).fit()
    cfg = make_cfg(*over, out=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, plugins=[_CrashInTeachers(teacher_epochs=3)]).fit()
    assert len(_lines(tmp_path / "cut" / "stages.jsonl")) == 1
    resumed = Trainer(cfg).fit(resume=True)
    for name in ("stages.jsonl", "metrics.jsonl"):
        a, b = _lines(tmp_path / "full" / name), _lines(tmp_path / "cut" / name)
        assert a == b and a
    full.pop("wall_time_s"), resumed.pop("wall_time_s")
    assert full == resumed


def test_umt_resumes_exactly_in_the_main_epochs(tmp_path):
    assert_resume_is_exact(tmp_path, [*UMT_FAST, "method_args.umt.teacher_mode=train"], crash_at=2, epochs=3)


def test_umt_stacks_and_three_views():
    tr = Trainer(make_cfg("method=umt+dus-h", *SMALL, "train.epochs=1", "method_args.umt.teacher_epochs=1"))
    tr.fit()  # nested batches: each modality's rows are distilled from its own teacher
    assert tr.history[0]["plugins"]["umt/distill/a"] > 0
    with pytest.raises(IncompatiblePluginsError, match="'umt' modulates the default training step"):
        Trainer(make_cfg("method=umt+mla", *SMALL))
    tr3 = Trainer(make_cfg("method=umt", *MFEAT, "train.epochs=1", "method_args.umt.teacher_epochs=1"))
    tr3.fit()
    assert set(tr3.plugin("umt").teachers.heads) == {"pix", "fou", "zer"}


# ============================================================================================ UME
def test_ume_trains_each_unimodal_model_exactly_as_alone():
    over = [*SMALL, "train.epochs=2"]
    ume = Trainer(make_cfg("method=ume", *over))
    ume.fit()
    assert ume.model.fusion is None and set(ume.history[0]["train"]) >= {"loss_uni_a", "loss_uni_b"}
    assert "loss_fused" not in ume.history[0]["train"]
    alone = Trainer(make_cfg("method=unimodal", "method_args.unimodal.modality=a", *over))
    alone.fit()
    for k, v in alone.model.encoders["a"].state_dict().items():
        assert torch.allclose(v, ume.model.encoders["a"].state_dict()[k], atol=1e-6), k
    r = ume.collect("test")
    assert torch.allclose(r["pred"], (r["logits"]["a"] + r["logits"]["b"]) / 2)


def test_ume_combine_and_weights():
    tr = Trainer(make_cfg("method=ume", *SMALL, "train.epochs=1", "method_args.ume.combine=probs",
                          "method_args.ume.weights={a: 3, b: 1}"))
    tr.fit()
    r = tr.collect("test")
    p = 0.75 * F.softmax(r["logits"]["a"], 1) + 0.25 * F.softmax(r["logits"]["b"], 1)
    assert torch.allclose(r["pred"], torch.log(p), atol=1e-5)
    with pytest.raises(ValueError, match="'b' has none"):
        Trainer(make_cfg("method=ume", *SMALL, "method_args.ume.weights={a: 1}"))


def test_ume_stacks_and_three_views():
    tr = Trainer(make_cfg("method=ume+dus-h", *SMALL, "train.epochs=1"))
    tr.fit()
    assert tr.history[0]["train"]["steps"] > 0
    with pytest.raises(ValueError, match="ogm-ge: fusion"):  # no fusion head to take shares from
        Trainer(make_cfg("method=ume+ogm-ge", *SMALL, "train.epochs=1")).fit()
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        Trainer(make_cfg("method=ume+mla", *SMALL))
    s = Trainer(make_cfg("method=ume", *MFEAT, "train.epochs=2")).fit()
    assert s["test"]["acc"] > 0.5


# ============================================================================================ MBSD
def _reference_mbsd(za, zb, y):
    """A per-sample loop of the two-modality loss (independent of the vectorised code)."""
    n, c = za.shape
    pa, pb = F.softmax(za, 1), F.softmax(zb, 1)
    rs = kl = 0.0
    for i in range(n):
        qa, qb = float(pa[i, y[i]]), float(pb[i, y[i]])
        ok = int(pa[i].argmax()) == int(y[i]) or int(pb[i].argmax()) == int(y[i])
        w = abs(qa - qb) if ok else 0.0
        rs += w * float(((za[i] - zb[i]) ** 2).sum()) / c
        ps, pw = max(qa, qb), min(qa, qb)
        kl += w * pw * (math.log(pw) - ps)
    return rs / n, kl / n


def test_mbsd_terms_by_hand():
    za = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    zb = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    pa, pb = F.softmax(za, 1), F.softmax(zb, 1)
    w = performance_weight(za, zb, y)
    # row 0: a correct -> |pa00 - pb00|; row 1: a correct -> |pa11 - pb11|; row 2: neither correct -> 0
    assert torch.allclose(w, torch.stack([(pa[0, 0] - pb[0, 0]).abs(), (pa[1, 1] - pb[1, 1]).abs(), torch.tensor(0.)]))
    assert torch.allclose(rs_term(za, zb), torch.tensor([2 / 3, 10 / 3, 2 / 3]))
    assert torch.allclose(rs_term(za, zb, "probs"), ((pa - pb) ** 2).mean(1))
    qa, qb = pa[0, 0], pb[0, 0]
    assert float(kl_term(za, zb, y)[0]) == pytest.approx(float(qb * (torch.log(qb) - qa)))  # pw (log pw - ps)
    full_kl = (pa[0] * (pa[0].log() - pb[0].log())).sum()  # a is the stronger on row 0
    assert float(kl_term(za, zb, y, "kl")[0]) == pytest.approx(float(full_kl))
    rs, kl, _ = mbsd_terms({"a": za, "b": zb}, y)
    ref_rs, ref_kl = _reference_mbsd(za, zb, y)
    assert float(rs) == pytest.approx(ref_rs) and float(kl) == pytest.approx(ref_kl)
    # three modalities: the mean over the three pairs
    zc = torch.tensor([[0.0, 0.0, 2.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    rs3, kl3, _ = mbsd_terms({"a": za, "b": zb, "c": zc}, y)
    pairs = [mbsd_terms(d, y) for d in ({"a": za, "b": zb}, {"a": za, "c": zc}, {"b": zb, "c": zc})]
    assert float(rs3) == pytest.approx(sum(float(p[0]) for p in pairs) / 3)
    assert float(kl3) == pytest.approx(sum(float(p[1]) for p in pairs) / 3)


def test_mbsd_weight_keeps_its_gradient_unless_detached():
    za = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    zb = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    y = torch.tensor([0, 1])
    grads = []
    for detach in (False, True):
        za.grad = None
        rs, _, _ = mbsd_terms({"a": za, "b": zb}, y, detach_weight=detach)
        rs.backward()
        grads.append(za.grad.clone())
    w = performance_weight(za.detach(), zb, y)
    assert torch.allclose(grads[1], (w.unsqueeze(1) * 2 * (za.detach() - zb) / 3) / 2)  # d(w·rs)/dz with w fixed
    assert not torch.allclose(grads[0], grads[1])  # BalanceBenchmark's weight carries a gradient too


def test_mbsd_in_the_loop_window_and_heads():
    tr = Trainer(make_cfg("method=mbsd", *SMALL, "train.epochs=2", "method_args.mbsd.modulation_ends=0"))
    tr.fit()
    first, second = tr.history[0]["train"], tr.history[1]["train"]
    assert {"loss_mbsd_uni_a", "loss_mbsd_rs", "loss_mbsd_kl"} <= set(first)
    assert not any(k.startswith("loss_mbsd") for k in second)  # after the window: CE(fused) only
    assert "mbsd/weight" in tr.history[0]["plugins"]
    heads = Trainer(make_cfg("method=mbsd", *SMALL, "train.epochs=1", "method_args.mbsd.score_from=heads"))
    heads.fit()
    assert {"loss_uni_a", "loss_mbsd_rs"} <= set(heads.history[0]["train"])
    assert "loss_mbsd_uni_a" not in heads.history[0]["train"]


def test_mbsd_resumes_exactly_and_stacks(tmp_path):
    assert_resume_is_exact(tmp_path, ["method=mbsd", *SMALL, "method_args.mbsd.kl_form=kl"], crash_at=2, epochs=3)
    tr = Trainer(make_cfg("method=mbsd+dus-h", *SMALL, "train.epochs=1"))
    tr.fit()  # the pairwise terms use the paired rows of the nested batch
    assert tr.history[0]["train"]["loss_mbsd_rs"] > 0
    with pytest.raises(ValueError, match="mbsd: fusion 'gated' has no additive per-modality share"):
        Trainer(make_cfg("method=mbsd", *SMALL, "model.fusion=gated")).fit()
    s = Trainer(make_cfg("method=mbsd", *MFEAT, "train.epochs=2")).fit()
    assert s["test"]["acc"] > 0.5


# ============================================================================================ docs
@pytest.mark.parametrize("method", ["greedy", "umt", "ume", "mbsd"])
def test_the_docs_option_table_is_the_generated_one(method):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("method_options_md", root / "scripts" / "method_options_md.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    page = (root / "docs" / "methods" / f"{method}.md").read_text()
    embedded = page.split(f"<!-- options:{method} -->\n")[1].split("\n<!-- /options -->")[0]
    assert embedded == mod.options_table(method), f"regenerate with scripts/method_options_md.py {method}"


def test_umt_without_distillation_trains_exactly_as_joint():
    # the teacher stage has its own initialisation stream and order: the student is untouched by it
    over = [*SMALL, "train.epochs=2"]
    umt = Trainer(make_cfg("method=umt", *over, "method_args.umt.scaling=0", "method_args.umt.teacher_epochs=2"))
    umt.fit()
    joint = Trainer(make_cfg("method=joint", *over))
    joint.fit()
    for k, v in joint.model.state_dict().items():
        assert torch.allclose(v, umt.model.state_dict()[k], atol=1e-6), k
