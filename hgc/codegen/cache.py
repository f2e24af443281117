"""hgc's plan cache: ExecutablePlans keyed by what determines them, stored under ``<cache_dir>/plans``.

The key is the sha256 of the printed optimized IR, the settings that shape lowering (batch, plans' repr),
the sha256 of every template the plan uses and the hgc version: a template edit or an upgrade makes a new
key. Entries are pickles written to a temporary file and renamed, so a reader never sees half an entry
and ranks sharing the directory can race safely. CuPy keeps its own cubin cache beside it (``cupy/``).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path

import hgc
from hgc.codegen.plan import ExecutablePlan
from hgc.codegen.render import template_sha256
from hgc.config import config

FORMAT = 1


def plans_dir() -> Path:
    return Path(os.path.expanduser(config.cache_dir)) / "plans"


def plan_key(ir_text: str, settings: str, templates: Iterable[str]) -> str:
    """The cache key of a plan lowered from ``ir_text`` with ``settings`` using ``templates``."""
    h = hashlib.sha256()
    for part in (f"hgc {hgc.__version__} plan format {FORMAT}", ir_text, settings,
                 *(f"{t}:{template_sha256(t)}" for t in sorted(set(templates)))):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def load(key: str) -> ExecutablePlan | None:
    """The cached plan of ``key``, or None (also when the entry is unreadable: it is then recomputed)."""
    path = plans_dir() / f"{key}.pkl"
    try:
        with open(path, "rb") as f:
            plan = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return plan if isinstance(plan, ExecutablePlan) else None


def store(key: str, plan: ExecutablePlan) -> Path:
    """Write the entry atomically (temporary file + rename); returns its path."""
    d = plans_dir()
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:12]}.", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(plan, f, protocol=pickle.HIGHEST_PROTOCOL)
        path = d / f"{key}.pkl"
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
