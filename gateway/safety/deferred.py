"""Import Presidio without loading spaCy until something actually uses spaCy.

presidio-analyzer imports spaCy at import time (≈60 MB resident, 1,000 modules, 0.35 s) for type hints
and for NLP engines that Switchyard runs only when a policy names a spaCy model (`ner_model`). The
pattern recognizers never touch it. So from `defer()` on, imports of the packages in
`DEFERRED` get stand-in modules whose attributes are stand-ins; the first real use of any of them (a
call, an attribute, subclassing) imports the real package and forwards to it from then on. An
isinstance check against a class that was never loaded is False without loading it: no instance of it
can exist yet.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

# spaCy and thinc; and the Presidio modules that register spaCy components when they are imported.
DEFERRED = (
    "spacy", "thinc",
    *(f"presidio_analyzer.nlp_engine.{m}" for m in ("huggingface_token_pipe", "stanza_nlp_engine", "transformers_nlp_engine")),
)


class _Deferral(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Hands out stand-ins while armed; `load` turns them into the real modules."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes = prefixes
        self.stand_ins: dict[str, _StandInModule] = {}
        self.lock = threading.RLock()
        self.loaded = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if self.loaded or not any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandInModule(spec.name, self)
        self.stand_ins[spec.name] = module
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def load(self) -> None:
        with self.lock:
            if self.loaded:
                return
            self.loaded = True
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            for name, module in self.stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
            for name in self.stand_ins:
                importlib.import_module(name)


class _StandInModule(types.ModuleType):
    def __init__(self, name: str, deferral: _Deferral) -> None:
        super().__init__(name)
        self.__deferral = deferral

    def __getattr__(self, attr: str) -> Any:
        if self.__deferral.loaded:
            return getattr(sys.modules[self.__name__], attr)
        if attr.startswith("__"):
            raise AttributeError(attr)  # the import system probes these: not a use
        return _StandIn(lambda: _real_attribute(self.__name__, attr), self.__deferral)


def _real_attribute(module: str, attr: str) -> Any:
    real = importlib.import_module(module)
    try:
        return getattr(real, attr)
    except AttributeError:
        return importlib.import_module(f"{module}.{attr}")


class _StandIn:
    """An attribute of a deferred module: loads the real one on first use."""

    __slots__ = ("_find", "_deferral", "_real")

    def __init__(self, find: Callable[[], Any], deferral: _Deferral) -> None:
        self._find = find
        self._deferral = deferral
        self._real: Any = _StandIn

    def _resolve(self) -> Any:
        if self._real is _StandIn:
            self._deferral.load()
            self._real = self._find()
        return self._real

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and self._real is _StandIn:
            raise AttributeError(attr)  # typing and inspect probe these (`__typing_subst__`…): not a use
        return getattr(self._resolve(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._resolve()[key]

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self._resolve(),)

    def __instancecheck__(self, instance: Any) -> bool:
        return self._deferral.loaded and isinstance(instance, self._resolve())

    def __subclasscheck__(self, subclass: type) -> bool:
        return self._deferral.loaded and issubclass(subclass, self._resolve())

    def __repr__(self) -> str:
        return f"<deferred {self._real!r}>" if self._real is not _StandIn else "<deferred, not loaded>"


def defer(prefixes: tuple[str, ...] = DEFERRED) -> None:
    """From now on, imports of `prefixes` get stand-ins until one of them is used. Call before importing Presidio."""
    if prefixes[0] in sys.modules or any(isinstance(f, _Deferral) for f in sys.meta_path):
        return  # loaded already (a spaCy model is in use), or deferred already
    sys.meta_path.insert(0, _Deferral(prefixes))
