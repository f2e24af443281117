"""Slice: cut ranges [a, b) of the last dimension into separate outputs (one per range).

Ranges are non-negative, not reversed (a < b), with starts and ends non-decreasing in list order
(identical ranges are fine: the frontend uses full-width copies for fan-out) and inside the width.
The backward adds every output gradient into its range, so overlapping ranges accumulate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense, slice_ranges, static_dim
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    require(x.rank >= 1, "Slice needs an input with at least one dimension")
    width = static_dim(x, -1, "Slice input width")
    out = []
    for a, b in attrs["ranges"]:
        require(b <= width, f"Slice range ({a}, {b}) exceeds the input width {width}")
        out.append(TensorType((*x.shape[:-1], b - a), x.dtype))
    return out


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    return [x[..., a:b].copy() for a, b in attrs["ranges"]], x.shape


def backward(ctx: RefContext, attrs: Mapping[str, Any], shape: Any, gys: list) -> tuple[list, list]:
    gx = np.zeros(shape, dtype=gys[0].dtype)
    for (a, b), g in zip(attrs["ranges"], gys):
        gx[..., a:b] += g
    return [gx], []


register(OpDef(
    "Slice", "dense", (Attr("ranges", (), slice_ranges, "list of (start, end) ranges of the last dim"),),
    infer, traits=frozenset({"shape_only"}), forward=forward, backward=backward,
    json_write=lambda a: {"ranges": [list(r) for r in a["ranges"]]},
    json_read=lambda d: {"ranges": tuple(tuple(r) for r in d["ranges"])},
    doc=__doc__ or ""))
