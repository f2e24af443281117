"""Shared pieces of op definitions: attribute rules, shape helpers, initialisers, JSON init fields."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hgc.errors import ShapeError
from hgc.ir.registry import INITIALIZERS, Attr
from hgc.ir.types import Batch, Dim, TensorType

Check = Callable[[Any], "str | None"]


# -- attribute rules (return None when fine, else the rule broken) ---------------------------
def positive(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else "must be > 0"


def non_negative(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else "must be >= 0"


def one_of(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}"
    return check


def int_list(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)
    return None if ok else "must be a list of integers"


def float_list(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and all(isinstance(i, (int, float)) for i in v)
    return None if ok else "must be a list of numbers"


def init_attr(name: str) -> Attr:
    return Attr(name, "Default", one_of(*INITIALIZERS), "Initializer_t name")


# -- shape helpers ---------------------------------------------------------------------------
def require(cond: bool, message: str) -> None:
    if not cond:
        raise ShapeError(message)


def same_shapes(types: Sequence[TensorType]) -> None:
    shapes = {t.shape for t in types}
    require(len(shapes) == 1, f"all inputs must have the same shape, got {[str(t) for t in types]}")


def static(d: Dim, what: str) -> int:
    require(isinstance(d, int), f"{what} must not depend on the batch size, got {d}")
    return int(d)  # type: ignore[arg-type]


def is_batch(d: Dim) -> bool:
    return isinstance(d, Batch)


# -- initialisers ----------------------------------------------------------------------------
def uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """N(0, std) truncated to ±2·std (redrawn), as 'truncated' initialisers promise (DESIGN.md §7)."""
    out = rng.normal(0.0, std, size=shape)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out.astype(np.float32)


def normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    return rng.normal(0.0, std, size=shape).astype(np.float32)


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, np.float32)


# -- JSON helpers ----------------------------------------------------------------------------
def init_fields(attrs: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, str]:
    """JSON initializer fields, written only when not Default. ``mapping``: attr name → JSON key."""
    return {key: attrs[a] for a, key in mapping.items() if attrs[a] != "Default"}


def read_init_fields(d: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, str]:
    return {a: d[key] for a, key in mapping.items() if key in d}


def rows(x: np.ndarray) -> np.ndarray:
    """View a (…, n) array as 2-D rows."""
    return x.reshape(-1, x.shape[-1])
