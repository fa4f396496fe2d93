"""Modules loaded on first use: a command's module names what its work needs without importing it when
`r1 --help` (or another command) only needs its options.

Not importlib's LazyLoader: on Python 3.11 it is not thread-safe (CPython gh-114763), and `r1 ask --samples`
first touches the turn engine from several threads at once; one saw a half-executed module. Here the first
use goes through importlib.import_module, which holds the module's import lock until it is fully executed."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for a module; the first attribute read imports it, and every read is the module's own."""

    def __init__(self, name: str):
        self.__dict__["_name"] = name
        self.__dict__["_module"] = None

    def _load(self) -> ModuleType:
        module = importlib.import_module(self._name)
        self.__dict__["_module"] = module
        return module

    def __getattr__(self, attr: str):
        return getattr(self.__dict__["_module"] or self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_import(name: str) -> LazyModule:
    return LazyModule(name)
