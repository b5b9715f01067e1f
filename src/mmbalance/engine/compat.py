"""Compatibility of stacked plug-ins, decided before training from what each one implements."""
from __future__ import annotations

from typing import List

from .plugin import EXCLUSIVE, Plugin


class IncompatiblePluginsError(ValueError):
    """Stacked methods that cannot work together (raised before training starts)."""


def check_plugins(plugins: List[Plugin]) -> None:
    """The generic rules, then each plug-in's own ``check_compatible``:

    * a method is stacked at most once;
    * each one-answer hook (:data:`~.plugin.EXCLUSIVE`) is provided by at most one plug-in;
    * a method acting inside the default step cannot run next to a step strategy;
    * a method needing paired batches cannot run next to a batcher (DUS gives modalities different samples).
    """
    names = [p.name for p in plugins]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise IncompatiblePluginsError(f"method {sorted(dup)[0]!r} is stacked twice")
    providers = {hook: [p.name for p in plugins if hook in p.provides()] for hook in EXCLUSIVE}
    for hook, owners in providers.items():
        if len(owners) > 1:
            raise IncompatiblePluginsError(
                f"{owners[0]!r} and {owners[1]!r} both {EXCLUSIVE[hook]}; they cannot be stacked")
    stepping = providers["training_step"]
    for p in plugins:
        if p.needs_default_step and stepping and stepping[0] != p.name:
            raise IncompatiblePluginsError(
                f"{p.name!r} modulates the default training step, but {stepping[0]!r} replaces that step; "
                f"they cannot be stacked")
    if providers["batcher"]:
        paired = [p.name for p in plugins if p.requires_paired_batches]
        if paired:
            raise IncompatiblePluginsError(
                f"{paired[0]!r} needs strictly paired batches, but {providers['batcher'][0]!r} gives modalities "
                f"different numbers of samples; these cannot be stacked")
    for p in plugins:
        p.check_compatible([q for q in plugins if q is not p])
