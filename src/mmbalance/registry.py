"""Decorator registries for methods, datasets, encoders and fusions (one factory per concept, like timm)."""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, Iterator, Optional, Type, TypeVar

if TYPE_CHECKING:
    from .engine.plugin import Plugin

#: what a registry holds: factories (classes or functions)
F = TypeVar("F", bound=Callable[..., Any])
_Decorated = TypeVar("_Decorated")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message suggests the nearest valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[F]):
    """A named table of factories. ``@REG.register("name")`` adds one; ``REG.get("name")`` looks it up."""

    def __init__(self, kind: str, names_classes: bool = False, builtin: Optional[str] = None):
        self.kind = kind
        #: the package whose import registers the built-in entries (imported on first look-up, so that a
        #: registry is complete whichever module was imported first)
        self.builtin = builtin
        self._discovered = False
        #: registration sets ``cls.name`` (methods: a plug-in learns its name from the registry)
        self.names_classes = names_classes
        self._items: Dict[str, F] = {}
        self._docs: Dict[str, str] = {}

    def register(self, name: str, doc: Optional[str] = None) -> Callable[[_Decorated], _Decorated]:
        def deco(fn):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.names_classes:
                fn.name = name
            self._items[name] = fn
            self._docs[name] = (doc or (fn.__doc__ or "")).strip().splitlines()[0] if (doc or fn.__doc__) else ""
            return fn

        return deco

    def _discover(self) -> None:
        """Import the built-in entries and installed extensions' entry points (once): a name they register
        becomes known."""
        if self.builtin is not None:
            importlib.import_module(self.builtin)  # a no-op once imported (or while it is being imported)
        if not self._discovered:
            self._discovered = True
            from .extensions import load_entry_points

            load_entry_points()

    def get(self, name: str) -> F:
        if name not in self._items:
            self._discover()
        if name not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{suggest(name, self._items)} "
                f"Registered {self.kind}s: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        if name not in self._items:
            self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._items))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern`` (``"dus-*"``), sorted."""
        self._discover()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")


METHODS: Registry[Type[Plugin]] = Registry("method", names_classes=True, builtin="mmbalance.methods")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset", builtin="mmbalance.data")
ENCODERS: Registry[Callable[..., Any]] = Registry("encoder", builtin="mmbalance.models")
FUSIONS: Registry[Callable[..., Any]] = Registry("fusion", builtin="mmbalance.models")
