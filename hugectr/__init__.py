"""``import hugectr`` gives hgc itself: the same module objects under HugeCTR's name.

Importing this package imports hgc, registers every loaded ``hgc.*`` module as ``hugectr.*`` and installs a
finder that maps any later ``import hugectr.x.y`` to ``hgc.x.y``, so classes are identical under both names
(``hugectr.Model is hgc.Model``) and ``from hugectr.tools import DataGenerator`` works unchanged.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

import hgc

PREFIX = "hugectr."


class _AliasLoader(importlib.abc.Loader):
    """Loads ``hugectr.<rest>`` by importing ``hgc.<rest>`` and handing back that very module."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        return None  # the hgc module is already executed


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(PREFIX):
            return None
        real = "hgc." + fullname[len(PREFIX):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real))


def _alias_loaded() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("hgc.") and module is not None:
            sys.modules.setdefault(PREFIX + name[len("hgc."):], module)


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
_alias_loaded()
sys.modules[__name__] = hgc
