"""Attribute rules and shape helpers shared by the data-movement and elementwise op families."""
from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from hgc.errors import ShapeError
from hgc.ir.ops._common import require
from hgc.ir.types import Batch, Dim, TensorType, numel, shape_str


# -- attribute rules (None when fine, else the rule broken) ------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_at_least(lo: int) -> Any:
    def check(v: Any) -> str | None:
        return None if _is_int(v) and v >= lo else f"must be an integer >= {lo}"
    return check


def is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be True or False"


def is_number(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) else "must be a number"


def open_unit(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
    return None if ok else "must lie strictly between 0 and 1"


def whole_positive(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and float(v).is_integer()
    return None if ok else "must be a whole number >= 1"


def index_list(non_empty: bool) -> Any:
    """A list of integers >= 0 (non-empty when ``non_empty``)."""
    def check(v: Any) -> str | None:
        ok = isinstance(v, (list, tuple)) and all(_is_int(i) and i >= 0 for i in v)
        if not ok:
            return "must be a list of integers >= 0"
        if non_empty and not v:
            return "must not be empty"
        return None
    return check


def slice_ranges(v: Any) -> str | None:
    """Slice ranges: non-empty list of (a, b) with 0 <= a < b, starts and ends non-decreasing."""
    if not isinstance(v, (list, tuple)) or not v:
        return "must be a non-empty list of (start, end) pairs"
    prev = (-1, 0)
    for r in v:
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(_is_int(i) for i in r)):
            return f"must be a list of (start, end) integer pairs; got {r!r}"
        a, b = r
        if a < 0 or b < 0:
            return f"range {tuple(r)} is negative"
        if a >= b:
            return f"range {tuple(r)} is reversed or empty (start must be < end)"
        if a < prev[0] or b < prev[1]:
            return (f"range {tuple(r)} is out of order or inside the range before it {prev}: "
                    f"starts and ends must be non-decreasing")
        prev = (a, b)
    return None


def reshape_shape(v: Any) -> str | None:
    """Empty, or positive integers with exactly one -1 placeholder."""
    if not isinstance(v, (list, tuple)) or not all(_is_int(i) for i in v):
        return "must be a list of integers"
    if not v:
        return None
    if sum(1 for i in v if i == -1) != 1:
        return "must hold exactly one -1 placeholder"
    if any(i != -1 and i <= 0 for i in v):
        return "entries other than the -1 placeholder must be > 0"
    return None


# -- shape helpers -----------------------------------------------------------------------------
def dense(xs: Sequence[TensorType]) -> None:
    for i, x in enumerate(xs):
        require(not x.sparse, f"input {i} is a sparse key tensor {x}; this layer takes dense tensors")


def same_types(xs: Sequence[TensorType], rule: str) -> None:
    """All inputs share one shape and one dtype."""
    shapes = {x.shape for x in xs}
    require(len(shapes) == 1, f"{rule}: all inputs must have the same shape, got {', '.join(map(str, xs))}")
    dtypes = {x.dtype for x in xs}
    require(len(dtypes) == 1, f"{rule}: all inputs must have the same dtype, got {', '.join(map(str, xs))}")


def static_dim(x: TensorType, axis: int, what: str) -> int:
    d = x.shape[axis]
    require(isinstance(d, int), f"{what} (dim {axis} of {x}) must not depend on the batch size")
    return int(d)  # type: ignore[arg-type]


def divide(n: Dim, d: int, rule: str) -> Dim:
    """``n / d`` for an element count ``n`` (int or multiple of B).

    For a batch-proportional count ``s·B`` the result must stay ``k·B`` or ``B/k`` (k whole), so it
    is whole for every batch size that HugeCTR could accept.
    """
    if isinstance(n, Batch):
        q = n.scale / d
        require(q.numerator == 1 or q.denominator == 1,
                f"{rule}: {n} elements do not split into rows of {d} for every batch size "
                f"(per-sample count {n.scale} and {d} must divide one another)")
        return Batch(Fraction(q))
    require(n % d == 0, f"{rule}: {n} elements are not divisible by {d}")
    return n // d


def count(x: TensorType) -> Dim:
    try:
        return numel(x.shape)
    except ValueError:
        raise ShapeError(f"shape {shape_str(x.shape)} has more than one batch dimension") from None


def check_axis(axis: int, rank: int, rule: str) -> None:
    require(0 <= axis < rank, f"{rule}: axis {axis} is outside [0, {rank}) for a rank-{rank} input")
