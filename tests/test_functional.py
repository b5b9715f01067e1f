"""mmbalance.functional: one implementation, two entry points. Every exported function is the plug-ins' own
(re-exported, not copied), documented and typed, listed in docs/functional.md; the cores lifted out of the
plug-ins are checked on hand-computed cases (the plug-ins' behaviour is unchanged: /work/regress harness)."""
import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mmbalance.functional as MF
from mmbalance.models.fusion import ConcatFusion

DOC = Path(__file__).resolve().parents[1] / "docs" / "functional.md"


def _functions():
    for fam in ("common", *MF.FAMILIES):
        mod = getattr(MF, fam) if fam != "common" else __import__("mmbalance.functional.common", fromlist=["x"])
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) and not inspect.isclass(obj):
                yield fam, name, obj


@pytest.mark.parametrize("fam,name,fn", list(_functions()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_function_is_documented_and_typed(fam, name, fn):
    assert (fn.__doc__ or "").strip(), f"{fam}.{name} has no docstring"
    sig = inspect.signature(fn)
    untyped = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
    assert not untyped, f"{fam}.{name}: parameters without a type: {untyped}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{fam}.{name} has no return type"
    assert f"### `{name}`" in DOC.read_text(), f"docs/functional.md misses {name}"


def test_the_docs_page_is_generated_from_the_docstrings():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_functional_docs.py"
    spec = importlib.util.spec_from_file_location("build_functional_docs", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.render() == DOC.read_text(), "docs/functional.md is out of date: python scripts/build_functional_docs.py"


def test_functions_are_the_plugins_own_not_copies():
    from mmbalance.diagnostics.purity import clustering_purity
    from mmbalance.methods import agm, diagnose_relearn, mmpareto, ogm_ge
    from mmbalance.methods.bss import measurer, orders
    from mmbalance.methods.dus import allocation

    assert MF.ogm_ge.ogm_coefficients is ogm_ge.ogm_coefficients and MF.ogm_ge.modulate_ is ogm_ge.modulate_
    assert MF.agm.contributions is agm.contributions and MF.mmpareto.combine is mmpareto.combine
    assert MF.diagnose_relearn.soft_reinit_ is diagnose_relearn.soft_reinit_
    assert MF.diagnose_relearn.clustering_purity is clustering_purity
    assert MF.dus.allocate_sizes is allocation.allocate_sizes and MF.bss.balance_scores is measurer.balance_scores
    assert MF.bss.pacing is orders.pacing
    for fam in MF.FAMILIES:  # each family module only re-exports: it defines no function of its own
        mod = MF.family(fam)
        own = [n for n in mod.__all__ if getattr(getattr(mod, n), "__module__", "") == mod.__name__]
        assert not own, f"mmbalance.functional.{fam} defines {own}; define them in the method module"


def test_flat_names_and_ambiguity():
    assert MF.ogm_coefficients is MF.ogm_ge.ogm_coefficients and MF.heuristic_sizes is MF.dus.heuristic_sizes
    with pytest.raises(AttributeError, match="agm.discrepancy or mmbalance.functional.dus.discrepancy"):
        MF.discrepancy
    with pytest.raises(AttributeError, match="no family"):
        MF.family("nope")


# ---------------------------------------------------------------- the lifted cores, by hand
def test_fusion_shares_sum_to_the_fused_logits():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 3, "b": 2}, 4)
    feats = {"a": torch.randn(5, 3), "b": torch.randn(5, 2)}
    shares = MF.fusion_shares(fusion.modality_logits, feats)
    assert torch.allclose(shares["a"] + shares["b"], fusion(feats), atol=1e-6)
    assert not shares["a"].requires_grad


def test_ogm_scores_by_hand():
    logits = {"a": torch.tensor([[0.0, 0.0], [math.log(3), 0.0]]), "b": torch.zeros(2, 2)}
    y = torch.tensor([0, 0])
    s = MF.ogm_scores(logits, y, ["a", "b"])
    assert torch.allclose(s, torch.tensor([0.5 + 0.75, 1.0]))  # softmax true-class probabilities, summed
    rho, k = MF.ogm_coefficients(s, alpha=0.8)
    assert math.isclose(float(rho[0]), 1.25, rel_tol=1e-6) and math.isclose(float(k[0]), 1 - math.tanh(0.8 * 1.25),
                                                                            rel_tol=1e-6)
    assert float(k[1]) == 1.0  # the lagging modality is not slowed


def test_dus_modality_scores_by_hand():
    logits = {"a": torch.tensor([[0.0, 0.0]]), "b": torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])}
    labels = {"a": torch.tensor([1]), "b": torch.tensor([0, 0])}
    assert torch.allclose(MF.modality_scores(logits, labels, ["a", "b"]), torch.tensor([0.5, (0.75 + 0.5) / 2]))


def test_purity_gap_by_hand():
    # two well separated clusters with the right labels on train (purity 1); on val the labels disagree with the
    # clusters for half the samples (purity 0.5): gap 0.5, alpha = tanh(3 * 0.5)
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    stats = MF.purity_gap(x, torch.tensor([0, 0, 1, 1]), x, torch.tensor([0, 1, 0, 1]), 2, lambda_=3.0,
                          backend="sklearn")
    assert stats == {"purity_train": 1.0, "purity_val": 0.5, "gap": 0.5, "alpha": math.tanh(1.5)}


def test_agm_coalition_values_and_contributions_by_hand():
    fusion = ConcatFusion({"a": 1, "b": 1}, 1)
    with torch.no_grad():
        fusion.fc.weight.copy_(torch.tensor([[2.0, 3.0]]))
        fusion.fc.bias.zero_()
    feats = {"a": torch.tensor([[1.0]]), "b": torch.tensor([[1.0]])}
    fills = {"a": torch.zeros(1, 1), "b": torch.zeros(1, 1)}
    vals = MF.coalition_values(fusion, feats, fills, ["a", "b"], fusion(feats))
    got = {tuple(sorted(s)): float(v) for s, v in vals.items()}
    assert got == {(): 0.0, ("a",): 2.0, ("b",): 3.0, ("a", "b"): 5.0}
    contrib = MF.contributions(vals, ["a", "b"])
    assert float(contrib["a"]) == 2.0 and float(contrib["b"]) == 3.0  # (T - P_a + P_v) / 2 with T = 5


def test_pmr_entropy_regulariser_by_hand():
    rho, beta = torch.tensor([1.5, 0.5]), torch.tensor([0.0, 0.6])
    uniform, peaked = torch.zeros(1, 2), torch.tensor([[10.0, -10.0]])
    reg = MF.entropy_regulariser(rho, beta, [uniform, peaked], weight=0.01)
    assert math.isclose(float(reg), -0.01 * 0.6 * math.log(2), rel_tol=1e-6)  # only the dominant one counts


def test_smv_mixture_loss_by_hand():
    fused, only_a = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    y = torch.tensor([0])
    no_copies = MF.mixture_loss(fused, y, torch.zeros(1, 2), {})
    assert torch.allclose(no_copies, F.cross_entropy(fused, y))
    two = MF.mixture_loss(fused, y, torch.tensor([[2.0, 0.0]]), {0: only_a})
    assert torch.allclose(two, (F.cross_entropy(fused, y) + 2 * math.log(2)) / 3)


def test_pareto_rewrite_agreeing_gradients_is_gamma_times_the_sum():
    p = torch.nn.Parameter(torch.zeros(3))
    g_mm, g_uni = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    p.grad = g_mm + g_uni
    cos, k_uni = MF.pareto_rewrite_([p], [g_mm], [g_uni], gamma=1.5)
    assert float(cos) > 0 and float(k_uni) == 0.5
    assert torch.allclose(p.grad, 1.5 * (g_mm + g_uni))
