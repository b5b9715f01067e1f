"""Report sections that say how runs were made: provenance (command, code, data, versions, config) and the
config differences between the methods (or sweep cells) of a grid."""
from __future__ import annotations

import json
import shlex
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .page import Page

#: keys that differ between the runs of any grid by construction, or that change nothing computed
DIFF_IGNORED = ("out", "method", "train.seed", "train.progress", "data.num_workers", "train.checkpoint_every",
                "log.tensorboard")
#: packages worth a row even when they agree across runs (the others appear only when they differ)
_MAIN_PACKAGES = ("python", "torch", "numpy", "scipy", "scikit-learn", "cuda", "platform")


def flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a.b.c": value}`` of a nested mapping; an empty mapping contributes nothing (``method_args: {}`` and
    no ``method_args.x.*`` keys say the same)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(configs: Mapping[str, Mapping[str, Any]],
                ignored: Sequence[str] = DIFF_IGNORED) -> Tuple[List[str], List[List[str]]]:
    """``(headers, rows)``: one row per config key whose value differs between the labelled configs
    (a key one config lacks shows ``—``)."""
    flat = {label: flatten(cfg) for label, cfg in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - set(ignored))
    rows = []
    for k in keys:
        vals = [f.get(k, _MISSING) for f in flat.values()]
        if any(v != vals[0] for v in vals[1:]):
            rows.append([k] + ["—" if v is _MISSING else _short(v) for v in vals])
    return ["config key"] + list(configs), rows


_MISSING = object()


def _short(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else "null" if v is None else str(v)


def command_line(argv: Sequence[str]) -> str:
    """A shell-quoted command; the interpreter's view of the CLI (``.../bin/mmbalance``,
    ``.../mmbalance/__main__.py``) is shown as ``mmbalance``."""
    if not argv:
        return ""
    head = "mmbalance" if str(argv[0]).endswith(("mmbalance", "mmbalance/__main__.py")) else str(argv[0])
    return shlex.join([head, *map(str, argv[1:])])


def config_diff_section(page: Page, configs: Mapping[str, Mapping[str, Any]], what: str = "method") -> None:
    """The table of config keys that differ between the labelled configs (first seed's run of each)."""
    page.subheading(f"Config differences between the {what}s")
    if len(configs) < 2:
        page.para(f"One {what} only: nothing to compare.")
        return
    headers, rows = config_diff(configs)
    if not rows:
        page.para(f"The {what}s' configs are identical apart from the {what} itself (and the run folder/seed).")
        return
    page.para(f"Config keys whose values differ between the {what}s (resolved configs of each {what}'s "
              f"lowest-seed run; {', '.join(DIFF_IGNORED)} left out). Everything else is the same.")
    page.table(headers, rows)


def _describe_git(git: Optional[Mapping[str, Any]]) -> str:
    if not git:
        return "not a git checkout (installed package)"
    if "error" in git:
        return f"unknown ({git['error']})"
    return git["commit"][:12] + (" (uncommitted changes)" if git.get("dirty") else "")


def _counted(values: List[str]) -> str:
    c = Counter(values)
    if len(c) == 1:
        return values[0]
    return "; ".join(f"{v} ({n} runs)" for v, n in c.most_common())


def provenance_section(page: Page, summaries: Sequence[Mapping[str, Any]], command: Optional[str] = None,
                       config: Optional[Mapping[str, Any]] = None, config_label: str = "") -> None:
    """Command, code version, data fingerprint, package versions and the (collapsed) config of the runs behind
    a page. Values that differ between runs are listed with their counts and flagged."""
    page.heading("Provenance")
    provs = [s["provenance"] for s in summaries if isinstance(s.get("provenance"), Mapping)]
    if command is None and provs:
        command = command_line(provs[0].get("argv") or []) or None
    facts = [("command", command or "not recorded")]
    if not provs:
        page.facts(facts)
        page.para("These runs recorded no provenance (made before mmbalance recorded it in summary.json).")
        return
    missing = len(summaries) - len(provs)
    facts.append(("mmbalance", _counted([str(p.get("mmbalance")) for p in provs])))
    gits = [_describe_git(p.get("git")) for p in provs]
    facts.append(("git commit", _counted(gits)))
    data = [p.get("data") or {} for p in provs]
    labels = [str(p.get("dataset")) for p in provs]
    facts.append(("dataset", _counted(labels)))
    ids = [str(d.get("fingerprint", d.get("error", "?"))) for d in data]
    facts.append(("data fingerprint", _counted(ids)))
    d0 = next((d for d in data if "train" in d), None)
    if d0:
        facts.append(("splits", ", ".join(f"{s} {d0[s]['n']}" for s in ("train", "val", "test"))))
        facts.append(("input shapes", ", ".join(f"{m} {tuple(v)}" for m, v in d0["train"]["shapes"].items())))
    page.facts(facts)
    if missing:
        page.warn(f"{missing} of {len(summaries)} runs recorded no provenance.")
    if len(set(gits)) > 1 or len({p.get('mmbalance') for p in provs}) > 1:
        page.warn("The runs were made by different versions of mmbalance (see git commit / mmbalance above).")
    by_label: Dict[str, set] = {}
    for label, i in zip(labels, ids):
        by_label.setdefault(label, set()).add(i)
    if any(len(v) > 1 for v in by_label.values()):
        page.warn("Runs naming the same dataset saw different data (different fingerprints): their results are "
                  "not comparable as they stand.")
    _packages_table(page, [p.get("packages") or {} for p in provs])
    page.para("Data fingerprint: a SHA-256 over every split's size, modality names and labels and the inputs of "
              "8 evenly spaced samples per split and modality (the fingerprint a resume checks); equal "
              "fingerprints mean the same data as far as that sample can tell.")
    if config is not None:
        page.code(yaml.safe_dump(dict(config), sort_keys=False),
                  summary=f"resolved config{(' of ' + config_label) if config_label else ''} (click to show)",
                  lang="yaml")


def _packages_table(page: Page, packages: List[Mapping[str, Any]]) -> None:
    names = list(dict.fromkeys(k for p in packages for k in p if k != "error"))
    rows = []
    for name in names:
        vals = [str(p.get(name, "—")) for p in packages]
        if name in _MAIN_PACKAGES or len(set(vals)) > 1:
            rows.append([name, _counted(vals)])
    if rows:
        page.table(["package", "version"], rows)


__all__ = ["DIFF_IGNORED", "command_line", "flatten", "config_diff", "config_diff_section", "provenance_section"]
