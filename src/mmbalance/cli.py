"""Command line: ``mmbalance train | eval | list`` plus ``compare``, ``report``, ``prepare``, ``verify``, ...

Sub-commands other than train/eval/list live in their own modules, each with ``add_arguments(parser)``
and ``main(args) -> int``; they are listed in :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

COMMANDS = {
    "compare": ("mmbalance.report.compare", "run a methods x seeds grid and aggregate it"),
    "report": ("mmbalance.report.html", "write an HTML/markdown report for a run or grid"),
    "prepare": ("mmbalance.data.prepare", "preprocess a paper dataset from raw files"),
    "verify": ("mmbalance.data.verify", "check a prepared dataset against its manifest"),
    "sweep": ("mmbalance.report.sweep", "sweep hyper-parameters (e.g. DUS batch size x learning rate)"),
}


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``compare``: the run's config and overrides."""
    p.add_argument("--config", help="YAML config file (dotted overrides apply on top)")
    p.add_argument("--dataset", help="dataset name (see `mmbalance list`)")
    p.add_argument("--preset", help="dataset preset, e.g. av-digits clean|hard")
    p.add_argument("--modalities", help="comma-separated modalities/views, e.g. pix,fou,zer for mfeat")
    p.add_argument("--root", help="data folder or file (paper datasets, `arrays`)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--encoder", help="encoder name for every modality")
    p.add_argument("--fusion")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_trust_pickle_argument(p)
    p.add_argument("--logger", help="comma-separated loggers: tensorboard, csv, wandb (offline by default), mlflow")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. optim.lr=0.01 method_args.dus-h.gamma=2")


def add_trust_pickle_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-pickle", action="store_true",
                   help="read pickle-based data files (.pkl: MOSI, PMR/BSS audio). Unpickling runs code from the "
                        "file: only for files you trust (data.trust_pickle=true)")


#: modules and files given with ``--import`` (recorded in every run's config as ``plugins``)
IMPORTS: list = []


def _pop_imports(argv: list) -> tuple:
    """``(argv without --import options, [imported specs])``; ``--import`` may appear anywhere."""
    rest, specs, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--import" and i + 1 < len(argv):
            specs.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--import="):
            specs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    return rest, specs


def config_from_args(args, method: str | None = None, seed: int | None = None, out: str | None = None):
    import yaml

    from .config import Config

    cfg = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    items = []
    if IMPORTS:
        plugins = list(dict.fromkeys(list(cfg.plugins) + IMPORTS))
        items.append("plugins=" + yaml.safe_dump(plugins, default_flow_style=True).strip())
    for flag, key in (("dataset", "data.name"), ("preset", "data.preset"), ("modalities", "data.modalities"),
                      ("root", "data.root"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("lr", "optim.lr"), ("encoder", "model.encoder"), ("fusion", "model.fusion"),
                      ("device", "train.device")):
        v = getattr(args, flag, None)
        if v is not None:
            items.append(f"{key}={v}")
    if method is not None:
        items.append(f"method={method}")
    if seed is not None:
        items.append(f"train.seed={seed}")
    if out is not None:
        items.append(f"out={out}")
    if getattr(args, "logger", None):
        items.append(f"log.loggers=[{args.logger}]")
    if getattr(args, "no_progress", False):
        items.append("train.progress=false")
    if getattr(args, "trust_pickle", False):
        items.append("data.trust_pickle=true")
    cfg = cfg.override(items + list(args.overrides or []))
    if cfg.data.modalities is not None and isinstance(cfg.data.modalities, str):
        cfg = cfg.override([f"data.modalities=[{cfg.data.modalities}]"])
    return cfg


def cmd_train(args) -> int:
    from .engine import Trainer

    if args.devices and args.devices > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_torchrun(args.devices)

    cfg = config_from_args(args, method=args.method, seed=args.seed, out=args.out)
    if cfg.out is None:
        raise SystemExit("error: --out RUN_FOLDER is required")
    check_folder_path(Path(cfg.out), "--out")
    summary = Trainer(cfg).fit(resume=args.resume, overwrite=args.overwrite, allow_change=args.allow_change or ())
    if not summary:  # a non-zero DDP rank: rank 0 reports
        return 0
    print(format_summary(summary))
    print(f"run folder: {cfg.out}")
    return 0


def _launch_torchrun(n: int) -> int:
    """Re-run this command under ``torchrun --standalone --nproc_per_node n`` (one machine)."""
    import subprocess

    argv = sys.argv[1:]
    clean, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--devices":
            skip = True
            continue
        if a.startswith("--devices="):
            continue
        clean.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "mmbalance"] + clean
    print("launching:", " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def check_folder_path(path: Path, flag: str) -> None:
    """Fail with one line if ``path`` cannot become a folder: it, or a folder above it, is a regular file."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"lies below the file {p}"
                raise ValueError(f"{flag} {path} {what}, not a folder")
            return


def format_summary(s: dict) -> str:
    lines = [f"{s['method']} on {s['dataset']} (seed {s['seed']}): best epoch {s['best_epoch']} "
             f"(selected on {s['select_on']})"]
    for split in ("val", "test"):
        m = s[split]
        mods = ", ".join(f"{k} head {v:.3f}" for k, v in m["modality_acc"].items())
        lines.append(f"  {split:4s} acc {m['acc']:.4f}  macro-F1 {m['macro_f1']:.4f}  mAP {m['map']:.4f}  | {mods}")
    if s.get("probe"):
        lines.append("  linear probe (test acc; floor = same probe on the untrained encoder):")
        for k, v in s["probe"].items():
            lines.append(f"    {k:10s} trained {v['trained']:.3f}   floor {v['floor']:.3f}")
    lines.append(f"  wall time {s['wall_time_s']:.1f} s on {s['device']}")
    return "\n".join(lines)


def cmd_eval(args) -> int:
    from .config import Config, ConfigError
    from .engine import Trainer
    from .engine.checkpoint import CheckpointError, check_model_state, load_checkpoint

    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.yaml)")
    # the checkpoint is read (safely) before any data: a refused file stops here. Pickle-based data files
    # need this command's own --trust-pickle: a run folder from someone else must not be able to opt in.
    path = run / f"{args.checkpoint}.pt"
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} has no model state (not written by mmbalance?)")
    cfg = Config.from_yaml(run / "config.yaml").override(
        ["train.progress=false", "out=null", f"data.trust_pickle={'true' if args.trust_pickle else 'false'}"] +
        ([f"train.device={args.device}"] if args.device else []))
    # likewise the extension modules the run's config names are imported only if this command names them too
    unconfirmed = [p for p in cfg.plugins if p not in IMPORTS]
    if unconfirmed:
        raise ConfigError(f"{run / 'config.yaml'} names extension modules ({', '.join(unconfirmed)}); importing "
                          f"runs their code, so eval imports only what you pass: add --import {unconfirmed[0]} "
                          f"if you trust it")
    tr = Trainer(cfg)
    check_model_state(tr.model, ckpt["model"], path, optional=("extras.",))  # one line, before torch's message
    try:
        tr.load_weights(ckpt)
    except (RuntimeError, ValueError) as e:  # what the first check cannot see (a grown module of another shape)
        raise CheckpointError(f"checkpoint {path} does not fit this model: {str(e).splitlines()[0]}") from None
    res = {split: tr.evaluate(split) for split in args.splits.split(",")}
    print(json.dumps(res, indent=2))
    return 0


def cmd_list(args) -> int:
    from . import registry
    from .methods import method_params

    if args.method:
        return _describe_method(args.method)
    for title, reg in (("methods", registry.METHODS), ("datasets", registry.DATASETS),
                       ("encoders", registry.ENCODERS), ("fusions", registry.FUSIONS)):
        print(f"{title}:")
        for name in reg:
            extra = ""
            if reg is registry.METHODS:
                params = method_params(name)
                extra = ("  [" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + "]") if params else ""
            print(f"  {name:20s} {reg.doc(name)}{extra if args.verbose else ''}")
    return 0


def _describe_method(name: str) -> int:
    import textwrap

    from .engine.options import describe_options
    from .registry import METHODS

    cls = METHODS.get(name)
    print(f"{name}: {METHODS.doc(name)}")
    rows = describe_options(cls.Options)
    if not rows:
        print("  (no options)")
    for opt, what, default, source, doc in rows:
        print(f"\n  {opt} = {default!r}   ({what})   {source}")
        print(textwrap.fill(doc, width=100, initial_indent="      ", subsequent_indent="      "))
    print(f"\nset with method_args.{name}.<option>=VALUE")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmbalance", description="Balanced multimodal learning.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line (also after the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run")
    add_run_arguments(p)
    p.add_argument("--method", help="method name; stack with + (e.g. ogm-ge+dus-h)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (config, metrics.jsonl, summary.json, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another run in OUT (the new run is prepared aside and swapped in when it finishes)")
    p.add_argument("--allow-change", action="append", metavar="KEY",
                   help="with --resume: a config key that may differ from the run's (repeatable; epochs need none)")
    p.add_argument("--devices", type=int, help="train with DDP on N processes of this machine (wraps torchrun)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint")
    p.add_argument("run", help="run folder")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--splits", default="val,test")
    p.add_argument("--device")
    add_trust_pickle_argument(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("list", help="list registered methods, datasets, encoders, fusions")
    p.add_argument("-v", "--verbose", action="store_true", help="show each method's options")
    p.add_argument("--method", help="describe one method: every option with its type, default, provenance and doc")
    p.set_defaults(func=cmd_list)

    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        p = sub.add_parser(name, help=help_)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    for p in sub.choices.values():  # `mmbalance train ... --debug` works too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    from .engine.losses import NonFiniteLossError
    from .extensions import ExtensionError, import_extensions, resolve
    from .registry import UnknownNameError

    argv, imports = _pop_imports(list(sys.argv[1:] if argv is None else argv))
    try:
        import_extensions(imports)  # before the parser: the user's methods appear in `list` and name checks
    except ExtensionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    IMPORTS[:] = [resolve(s) for s in imports]
    parser = build_parser()
    # KEY=VALUE overrides may sit between options (argparse stops a nargs="*" positional at the first option)
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if "=" not in a or a.startswith("-")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    try:
        return int(args.func(args) or 0)
    # every error the library raises for bad input: ValueError covers ConfigError, DataError, CheckpointError,
    # IncompatiblePluginsError; OSError a file or folder that cannot be read or written
    except (ValueError, UnknownNameError, NonFiniteLossError, ExtensionError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130


def error_line(e: BaseException) -> str:
    """The message of ``e`` as the CLI prints it (KeyError quotes its message; OSError names its file)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
