"""Data Remixing: confidence and assignment by hand, the modality-pure batcher, the data layer's pure batches, the
real loop (each sample trained once, on its assigned modality only), resume, and stacks on the batch layer."""
import math

import pytest
import torch

from mmbalance import Plugin, Trainer
from mmbalance.data.base import BatchDataset
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.engine.samplers import EpochBatchSampler, IndexListOrder
from mmbalance.functional.common import kl_from_uniform
from mmbalance.methods.remix import RemixBatcher, least_confident_modality, modality_streams

from conftest import assert_resume_is_exact, load_metrics, make_cfg


# ----------------------------------------------------------------------------- the math
def test_kl_from_uniform_by_hand():
    # p = [0.75, 0.25], C = 2: 0.75 log2(1.5) + 0.25 log2(0.5) = 0.75 * 0.5849625 - 0.25
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [50.0, 0.0]])
    kl = kl_from_uniform(logits)
    assert kl[0].item() == pytest.approx(0.75 * math.log2(1.5) - 0.25, abs=1e-6)
    assert kl[1].item() == pytest.approx(0.0, abs=1e-7)  # uniform: no confidence
    assert kl[2].item() == pytest.approx(1.0, abs=1e-6)  # one-hot over two classes: log2 C = 1 bit


def test_least_confident_modality_with_ties_to_the_last():
    conf = torch.tensor([[1.0, 2.0], [3.0, 1.0], [2.0, 2.0]])
    # the code: audio (first) only if KL_audio < KL_video strictly, else video
    assert least_confident_modality(conf).tolist() == [0, 1, 1]
    assert least_confident_modality(torch.tensor([[3.0, 1.0, 1.0], [0.5, 1.0, 2.0]])).tolist() == [2, 0]


def test_streams_and_pure_batches_by_hand():
    assignment = torch.tensor([0, 1, 0, 0, 1])
    order = torch.tensor([4, 3, 2, 1, 0])
    assert modality_streams(order, assignment, 2) == [[3, 2, 0], [4, 1]]
    mods = ["a", "v"]
    blocks = list(RemixBatcher(assignment, mods, mods, 2).batches(order, 0))
    assert [b.per_modality for b in blocks] == [{"a": [3, 2], "v": []}, {"a": [0], "v": []}, {"a": [], "v": [4, 1]}]
    assert all(list(b) == [] and b.sizes[m] == 0 for b in blocks for m in mods if not b.per_modality[m])
    inter = list(RemixBatcher(assignment, mods, ["v", "a"], 2, schedule="interleaved").batches(order, 0))
    assert [b.per_modality for b in inter] == [{"a": [], "v": [4, 1]}, {"a": [3, 2], "v": []}, {"a": [0], "v": []}]
    dropped = list(RemixBatcher(assignment, mods, mods, 2, drop_last=True).batches(order, 0))
    assert [b.per_modality for b in dropped] == [{"a": [3, 2], "v": []}, {"a": [], "v": [4, 1]}]
    assert RemixBatcher(assignment, mods, mods, 2).num_batches(5) == 3
    assert RemixBatcher(assignment, mods, mods, 2, drop_last=True).num_batches(5) == 2


def test_a_pure_batch_loads_only_its_modality_and_pairs_nothing():
    tr = Trainer(make_cfg("method=joint-aux"))
    assignment = torch.zeros(len(tr.splits.train), dtype=torch.long)
    sampler = EpochBatchSampler(IndexListOrder(torch.arange(10), shuffle=False), RemixBatcher(assignment, tr.modalities,
                                                                              tr.modalities, 4))
    batch = next(iter(tr.data.loader("train", sampler)))
    first, other = tr.modalities
    assert batch.kind == "independent" and batch.n_pair == 0 and batch.inputs[other] is None
    assert batch.inputs[first].shape[0] == 4 and batch.labels(first).tolist() == tr.splits.train.labels[:4].tolist()
    out = tr.forward(tr.data.to_device(batch).inputs)
    assert out.n_pair == 0 and out.fused is None and set(out.logits) == {first}
    # an empty index list gives None for every source kind (the Batch contract), not an empty tensor
    assert BatchDataset(tr.splits.train)._load(torch.tensor([], dtype=torch.long), first) is None


# ----------------------------------------------------------------------------- the real loop
class Spy(Plugin):
    """Records, per epoch, which modality each training index was given to and the batch kinds."""

    name = "spy"

    def __init__(self):
        self.seen, self.kinds, self.recomputed = {}, {}, {}

    def on_epoch_start(self, trainer, epoch):  # after remix's own (same priority, written after it)
        remix = trainer.plugin("remix")
        if remix.assignment is not None:
            self.recomputed[epoch] = (remix.assignment.clone(), least_confident_modality(remix.confidences(trainer)))

    def before_forward(self, trainer, batch):
        present = [m for m, x in batch.inputs.items() if x is not None]
        self.kinds.setdefault(trainer.epoch, set()).add((batch.kind, len(present)))
        for m in present:
            for i in batch.indices(m).tolist():
                self.seen.setdefault(trainer.epoch, {}).setdefault(i, []).append(m)


def test_after_warmup_every_sample_trains_once_on_its_assigned_modality(tmp_path):
    from mmbalance.methods import build_plugins

    cfg = make_cfg("method=remix", "method_args.remix.warmup_epochs=1", "train.epochs=3", out=tmp_path / "r")
    spy = Spy()
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [spy])
    remix = tr.plugin("remix")
    tr.fit()
    n = len(tr.splits.train)
    assert spy.kinds[0] == {("paired", 2)}  # warm-up: ordinary batches
    assert spy.kinds[2] == {("independent", 1)}  # remixed: one modality per batch
    last = spy.seen[2]
    assert sorted(last) == list(range(n)) and all(len(v) == 1 for v in last.values())
    mods = tr.modalities
    assert [mods.index(last[i][0]) for i in range(n)] == remix.assignment.tolist()
    # the assignment is the least confident head on each training sample (recomputed at the same epoch start)
    used, again = spy.recomputed[2]
    assert torch.equal(used, again) and used.tolist() == remix.assignment.tolist()
    records = load_metrics(tmp_path / "r")
    shares = [records[2]["plugins"][f"remix/{m}/share"] for m in mods]
    assert sum(shares) == pytest.approx(1.0) and records[0]["plugins"]["remix/active"] == 0.0
    counts = torch.bincount(remix.assignment, minlength=2).tolist()
    assert records[2]["train"]["steps"] == sum(-(-c // 32) for c in counts)
    assert {"loss_fused", f"loss_uni_{mods[0]}", f"loss_uni_{mods[1]}"} <= set(records[2]["train"])


def test_masked_fused_loss_trains_the_fusion_head_on_pure_batches():
    def fusion_change(masked):
        cfg = make_cfg("method=remix", "method_args.remix.warmup_epochs=0", "train.epochs=1",
                       f"method_args.remix.masked_fused_loss={str(masked).lower()}")
        tr = Trainer(cfg)
        before = {k: v.clone() for k, v in tr.model.fusion.state_dict().items()}
        tr.fit()
        return any(not torch.equal(before[k], v) for k, v in tr.model.fusion.state_dict().items())

    assert fusion_change(True) and not fusion_change(False)


def test_remix_on_three_views():
    summary = Trainer(make_cfg("data.name=mfeat", "data.modalities=[pix,fou,zer]", "method=remix",
                               "method_args.remix.warmup_epochs=1", "train.epochs=3")).fit()
    assert summary["test"]["acc"] > 0.5


def test_remix_resumes_exactly_after_warmup(tmp_path):
    assert_resume_is_exact(tmp_path, ["method=remix", "method_args.remix.warmup_epochs=1",
                                      "method_args.remix.reassign_every=2"], crash_at=2, epochs=4)


# ----------------------------------------------------------------------------- stacks on the batch layer
def test_remix_and_dus_are_interchangeable_not_stackable():
    with pytest.raises(IncompatiblePluginsError, match="both decide the sample batcher"):
        Trainer(make_cfg("method=remix+dus-h"))
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):
        Trainer(make_cfg("method=remix+mla"))


@pytest.mark.parametrize("host", ["bss-l", "ogm-ge", "diagnose-relearn", "pmr", "mmpareto"])
def test_remix_stacks_with_seed_and_gradient_methods(host):
    over = ["method=remix+" + host, "method_args.remix.warmup_epochs=1", "train.epochs=3"]
    if host == "diagnose-relearn":
        over += ["method_args.diagnose-relearn.reinit_every=1", "method_args.diagnose-relearn.kmeans_backend=torch"]
    tr = Trainer(make_cfg(*over))
    tr.fit()
    assert tr.history[2]["plugins"]["remix/active"] == 1.0
    if host == "ogm-ge":  # OGM-GE compares modalities on paired rows: only the warm-up epoch has them
        assert "ogm-ge/a/ratio" in tr.history[0]["plugins"]
        assert not any(k.startswith("ogm-ge/") and k.endswith("/ratio") for k in tr.history[2]["plugins"])
