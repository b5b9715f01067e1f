"""Every method runs under ``train.compile`` and learns what it learns in eager mode.

The GPU loop may compile the model (``train.compile=default|reduce-overhead``); plug-ins call it in many ways
(no-grad scoring passes, per-loss ``autograd.grad`` with ``retain_graph``, per-modality batch sizes, step
replacement). On CPU ``default`` exercises the same dynamo tracing and guards; inductor compiles each graph
once per process (about 30 s for all methods together on 2 cores).
"""
import warnings

import pytest

from mmbalance import Trainer
from mmbalance.methods import METHODS

from conftest import make_cfg

STACKS = ["ogm-ge+dus-h", "joint-aux+diagnose-relearn"]
EXTRA = {"diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1"],
         "joint-aux+diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1"],
         "dus-h": ["method_args.dus-h.size_multiple=8"]}


def run(method, compile_mode):
    cfg = make_cfg(f"method={method}", "train.epochs=2", f"train.compile={compile_mode}", *EXTRA.get(method, []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(cfg)
        summary = tr.fit()
    return summary, tr.history


@pytest.mark.parametrize("method", sorted(METHODS) + STACKS)
def test_method_under_torch_compile_matches_eager(method):
    eager, _ = run(method, "none")
    compiled, hist = run(method, "default")
    assert len(hist) == 2 and all(h["train"]["steps"] > 0 for h in hist)
    # same method, same seed: fp32 compiled kernels differ from eager only in rounding
    assert abs(compiled["test"]["acc"] - eager["test"]["acc"]) <= 0.1, (compiled["test"]["acc"], eager["test"]["acc"])
