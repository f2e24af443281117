"""The one configuration object of hgc, with ``HGC_*`` environment overrides and a counters dict.

>>> from hgc.config import config
>>> with config.patch(target="cpu"):
...     ...
"""
from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any


def _env(name: str, default: str) -> str:
    return os.environ.get(f"HGC_{name.upper()}", default)


@dataclass
class Config:
    target: str = field(default_factory=lambda: _env("target", "auto"))  # auto | cpu | cuda
    debug: int = field(default_factory=lambda: int(_env("debug", "0")))  # 0..6, see DESIGN.md §6
    cache_dir: str = field(default_factory=lambda: _env("cache_dir", os.path.expanduser("~/.cache/hgc")))
    verify_each_pass: bool = field(default_factory=lambda: _env("verify_each_pass", "1") == "1")
    compile_only: bool = field(default_factory=lambda: _env("compile_only", "0") == "1")
    counters: Counter = field(default_factory=Counter)

    @contextlib.contextmanager
    def patch(self, **kw: Any) -> Iterator[Config]:
        names = {f.name for f in fields(self)}
        for k in kw:
            if k not in names:
                raise TypeError(f"config.patch(): unknown setting '{k}'; known: {sorted(names)}")
        old = {k: getattr(self, k) for k in kw}
        for k, v in kw.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)


config = Config()
