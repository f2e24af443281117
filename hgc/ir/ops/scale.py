"""Scale: broadcast a 2-D input (B, n) by repetition (``axis``, ``factor`` = k, a whole number).

axis=0: every element is repeated k times in a row -> (B, n*k).
axis=1: every row is repeated k times in a row -> (B*k, n).
The backward sums the k copies (HugeCTR keeps only the first; DESIGN.md §7). fp32 only in HugeCTR.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hgc.ir.ops._common import one_of, require
from hgc.ir.ops._shape_rules import dense, whole_positive
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    require(x.rank == 2, f"Scale takes a 2-D input (B, n), got rank {x.rank}")
    k = int(attrs["factor"])
    rows, width = x.shape
    if attrs["axis"] == 0:
        require(isinstance(width, int),
                f"Scale axis 0 needs a width that does not depend on the batch, got {x}")
        return [TensorType((rows, width * k), x.dtype)]
    return [TensorType((rows * k, width), x.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x, k = xs[0], int(attrs["factor"])
    return [x.repeat(k, axis=1 if attrs["axis"] == 0 else 0)], x.shape


def backward(ctx: RefContext, attrs: Mapping[str, Any], shape: Any, gys: list) -> tuple[list, list]:
    (rows, width), k, g = shape, int(attrs["factor"]), gys[0]
    if attrs["axis"] == 0:
        return [g.reshape(rows, width, k).sum(axis=2)], []
    return [g.reshape(rows, k, width).sum(axis=1)], []


register(OpDef(
    "Scale", "dense",
    (Attr("axis", 1, one_of(0, 1), "0: repeat elements along the row; 1: repeat rows"),
     Attr("factor", 1.0, whole_positive, "repeat count")),
    infer, traits=frozenset({"fp32_only"}), forward=forward, backward=backward,
    json_write=lambda a: {"scale_param": {"axis": a["axis"], "factor": a["factor"]}},
    json_read=lambda d: {"axis": int(d["scale_param"]["axis"]), "factor": d["scale_param"]["factor"]},
    doc=__doc__ or ""))
