"""Tensor types of the IR.

The first dimension of a HugeCTR tensor is the per-GPU batch. Some layers change it (Reshape with
``leading_dim``, Scale on axis 1, FusedReshapeConcat), so a dimension is either an ``int`` or a
:class:`Batch`: a rational multiple of the batch size ``B`` that is fixed only at run time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from math import prod
from typing import Union

DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "uint32")


@dataclass(frozen=True, order=True)
class Batch:
    """``scale * B``: a dimension proportional to the per-GPU batch size B."""

    scale: Fraction = Fraction(1)

    def __mul__(self, k: int | Fraction) -> Batch:
        return Batch(self.scale * k)

    __rmul__ = __mul__

    def __truediv__(self, k: int | Fraction) -> Batch:
        return Batch(self.scale / k)

    def at(self, batch: int) -> int:
        """The concrete size for per-GPU batch ``batch``; it must come out whole."""
        v = self.scale * batch
        if v.denominator != 1:
            raise ValueError(f"dimension {self} is not whole for batch size {batch}")
        return int(v)

    def __str__(self) -> str:
        n, d = self.scale.numerator, self.scale.denominator
        s = "B" if n == 1 else f"{n}*B"
        return s if d == 1 else f"{s}/{d}"


B = Batch()
Dim = Union[int, Batch]
Shape = tuple[Dim, ...]

_BATCH_RE = re.compile(r"^(?:(\d+)\*)?B(?:/(\d+))?$")


def parse_dim(text: str) -> Dim:
    """Inverse of ``str(dim)``."""
    m = _BATCH_RE.match(text)
    if m:
        return Batch(Fraction(int(m.group(1) or 1), int(m.group(2) or 1)))
    return int(text)


def shape_str(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def numel(shape: Shape) -> Dim:
    """Element count: an int, or a Batch when the shape has a batch dimension."""
    ints = prod(d for d in shape if isinstance(d, int))
    batch = [d for d in shape if isinstance(d, Batch)]
    if not batch:
        return ints
    if len(batch) > 1:
        raise ValueError(f"shape {shape_str(shape)} has more than one batch dimension")
    return batch[0] * ints


def concrete(shape: Shape, batch: int) -> tuple[int, ...]:
    return tuple(d.at(batch) if isinstance(d, Batch) else d for d in shape)


@dataclass(frozen=True)
class TensorType:
    """Shape and element type of one tensor. ``sparse`` tensors hold keys (batch, slots, max nnz)."""

    shape: Shape
    dtype: str = "float32"
    sparse: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype '{self.dtype}' is not one of {DTYPES}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def width(self) -> Dim:
        """Size of the last dimension."""
        return self.shape[-1]

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype, self.sparse)

    def concrete(self, batch: int) -> tuple[int, ...]:
        return concrete(self.shape, batch)

    def __str__(self) -> str:
        return f"{'sparse ' if self.sparse else ''}{self.dtype}{shape_str(self.shape)}"
