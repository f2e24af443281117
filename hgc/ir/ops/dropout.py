"""Dropout (``dropout_rate`` p, 0 < p < 1): inverted dropout.

In training each element is kept with probability 1 - p (mask drawn from ``ctx.rng``) and kept
values are scaled by 1/(1 - p); the backward applies the same scaled mask to g. In evaluation it
is the identity, forward and backward.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hgc.ir.ops._shape_rules import dense, open_unit
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dense(xs)
    return [TensorType(xs[0].shape, xs[0].dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    if not ctx.training:
        return [x.copy()], None
    p = attrs["dropout_rate"]
    scale = (ctx.rng.random(x.shape) >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return [x * scale], scale


def backward(ctx: RefContext, attrs: Mapping[str, Any], scale: Any, gys: list) -> tuple[list, list]:
    g = gys[0]
    return [g.copy() if scale is None else g * scale], []


register(OpDef(
    "Dropout", "dense", (Attr("dropout_rate", 0.5, open_unit, "probability of dropping an element"),),
    infer, traits=frozenset({"elementwise", "random"}), forward=forward, backward=backward,
    json_write=lambda a: {"rate": a["dropout_rate"]},
    json_read=lambda d: {"dropout_rate": d["rate"]} if "rate" in d else {},
    doc=__doc__ or ""))
