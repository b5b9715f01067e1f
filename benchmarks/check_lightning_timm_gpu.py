"""GPU check of the Lightning adapter and the timm encoder (issue 21); not part of the CPU test suite.

    python benchmarks/check_lightning_timm_gpu.py      # from the repository root, on a CUDA machine with lightning
                                                      # and timm installed (the lent H200's image has both)

Prints, for OGM-GE (with GE noise), D&R, BSS-L, DUS-H and MLA on the synthetic dataset (4 epochs): the per-epoch
test accuracies of mmbalance.lightning on the GPU and of mmbalance's Trainer on the GPU, their largest
differences, and (all but MLA) the weight difference between an uninterrupted fit and one resumed from
Lightning's last.ckpt; then trains emoji-9 with model.encoder.image=timm:resnet18 (no download: pretrained=False)
and checks that model.init_from.image reloads that encoder exactly. CUDA kernels need not be bit-reproducible:
read the differences, do not expect zeros.
"""
import importlib.util
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
import torch  # noqa: E402
import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from mmbalance import Config, Trainer  # noqa: E402
from mmbalance.data import build_splits  # noqa: E402

print("torch", torch.__version__, torch.cuda.get_device_name(0), "lightning", L.__version__, flush=True)
EXAMPLE = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "lightning_module.py"
spec = importlib.util.spec_from_file_location("lm", EXAMPLE)
lm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lm)
DATA = ["data.name=synthetic", "data.options.n=400"]
OVER = ["train.batch_size=32", "train.monitor_heads=false"]
METHODS = {"ogm-ge": {"ogm-ge": {"ge": True}}, "diagnose-relearn": {"diagnose-relearn": {"reinit_every": 2}},
           "bss-l": {}, "dus-h": {}, "mla": {}}


class StopAfter(L.Callback):
    def __init__(self, n):
        self.n = n

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


def lightning_run(method, args, root, resume=None, stop=None):
    module = lm.BalancedClassifier(build_splits(Config().override(DATA).data), method, args, OVER)
    cbs = [ModelCheckpoint(dirpath=root, save_last=True, save_top_k=-1, filename="{epoch}")]
    cbs += [StopAfter(stop)] if stop else []
    trainer = L.Trainer(max_epochs=4, accelerator="gpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=cbs,
                        default_root_dir=root)
    trainer.fit(module, ckpt_path=resume)
    return module


def trainer_run(method, args):
    extra = [f"method_args.{m}.{k}={str(v).lower() if isinstance(v, bool) else v}" for m, kv in args.items()
             for k, v in kv.items()]
    cfg = Config().override([*DATA, "train.epochs=4", f"method={method}", *OVER, *extra, "train.device=cuda",
                             "eval.probe=false", "log.tensorboard=false", "train.progress=false"])
    t = Trainer(cfg)
    t.begin()
    while t.epoch < 4:
        t.fit_epoch()
    return t


def wdiff(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float().cpu() - sb[k].float().cpu()).abs().max()) for k in sa)


for method, args in METHODS.items():
    t0 = time.time()
    mod = lightning_run(method, args, tempfile.mkdtemp())
    tr = trainer_run(method, args)
    a = [r["test"]["acc"] for r in mod.balance.history]
    b = [r["test"]["acc"] for r in tr.history]
    print(f"{method}: device {mod.balance.device} lightning {[round(x, 4) for x in a]} trainer "
          f"{[round(x, 4) for x in b]} max acc diff {max(abs(x - y) for x, y in zip(a, b)):.2e} "
          f"max weight diff {wdiff(mod.model, tr.model):.2e}", flush=True)
    if method != "mla":
        root = tempfile.mkdtemp()
        whole = lightning_run(method, args, tempfile.mkdtemp())
        lightning_run(method, args, root, stop=2)
        resumed = lightning_run(method, args, root, resume=f"{root}/last.ckpt")
        same = [r["test"]["acc"] for r in whole.balance.history] == [r["test"]["acc"] for r in resumed.balance.history]
        print(f"  resume: max weight diff {wdiff(whole.model, resumed.model):.2e}, acc equal {same} "
              f"({time.time() - t0:.1f} s)", flush=True)

# timm encoder (no download: pretrained=False) on emoji-9's 3x32x32 images, then init_from its weights
import timm  # noqa: E402

print("timm", timm.__version__, flush=True)
base = ["data.name=emoji-9", "train.epochs=3", "train.device=cuda", "eval.probe=false", "log.tensorboard=false",
        "train.progress=false", "model.encoder.image=timm:resnet18"]
t = Trainer(Config().override(base))
s = t.fit()
enc = t.model.encoders["image"]
print("timm:resnet18 on emoji-9 (3 epochs):", type(enc).__name__, "out_dim", enc.out_dim, "test acc",
      round(s["test"]["acc"], 4), flush=True)
path = tempfile.mkdtemp() + "/image.pt"
torch.save({k: v.cpu() for k, v in enc.state_dict().items()}, path)
t2 = Trainer(Config().override(base + [f"model.init_from.image={path}"]))
same = all(torch.equal(v.cpu(), enc.state_dict()[k].cpu()) for k, v in t2.model.encoders["image"].state_dict().items())
print("init_from.image reloads the trained timm encoder exactly:", same, flush=True)
