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
    p.add_argument("--logger", help="comma-separated loggers: tensorboard, csv, wandb (offline by default), mlflow")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted config overrides, e.g. optim.lr=0.01 method_args.dus-h.gamma=2")


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
    summary = Trainer(cfg).fit(resume=args.resume)
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
    from .config import Config
    from .engine import Trainer
    from .engine.checkpoint import load_checkpoint

    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.yaml)")
    cfg = Config.from_yaml(run / "config.yaml").override(["train.progress=false", "out=null"] +
                                                          ([f"train.device={args.device}"] if args.device else []))
    tr = Trainer(cfg)
    ckpt = load_checkpoint(run / f"{args.checkpoint}.pt")
    tr.model.load_state_dict(ckpt["model"])
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. The options of a sub-command in :data:`COMMANDS` are added only for ``command`` (the one
    on the command line; None: all of them; "": none), so that ``mmbalance --help`` imports none of their
    modules."""
    parser = argparse.ArgumentParser(prog="mmbalance", description="Balanced multimodal learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run")
    add_run_arguments(p)
    p.add_argument("--method", help="method name; stack with + (e.g. ogm-ge+dus-h)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (config, metrics.jsonl, summary.json, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--devices", type=int, help="train with DDP on N processes of this machine (wraps torchrun)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint")
    p.add_argument("run", help="run folder")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--splits", default="val,test")
    p.add_argument("--device")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("list", help="list registered methods, datasets, encoders, fusions")
    p.add_argument("-v", "--verbose", action="store_true", help="show each method's options")
    p.add_argument("--method", help="describe one method: every option with its type, default, provenance and doc")
    p.set_defaults(func=cmd_list)

    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if command is not None and name != command:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv=None) -> int:
    argv, imports = _pop_imports(list(sys.argv[1:] if argv is None else argv))
    if imports:  # before the parser: the user's methods appear in `list` and name checks
        from .extensions import ExtensionError, import_extensions, resolve

        try:
            import_extensions(imports)
        except ExtensionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        IMPORTS[:] = [resolve(s) for s in imports]
    else:
        IMPORTS[:] = []
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
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
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


#: (module, class) of the errors reported as one line with exit code 2; checked only once a command failed, so
#: that the CLI does not import torch to parse its arguments
USER_ERRORS = (("mmbalance.config", "ConfigError"), ("mmbalance.data.base", "DataError"),
               ("mmbalance.registry", "UnknownNameError"), ("mmbalance.engine.compat", "IncompatiblePluginsError"),
               ("mmbalance.engine.losses", "NonFiniteLossError"), ("builtins", "FileNotFoundError"),
               ("builtins", "ValueError"))


def _is_user_error(e: BaseException) -> bool:
    for module, name in USER_ERRORS:
        mod = sys.modules.get(module)  # a class from a module never imported cannot have been raised
        if mod is not None and isinstance(e, getattr(mod, name)):
            return True
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
