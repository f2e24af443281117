"""Add, Sub and ElementwiseMultiply: elementwise arithmetic over same-shaped inputs.

Add sums N >= 2 inputs; Sub takes exactly two (x0 - x1); ElementwiseMultiply multiplies N >= 2
inputs. ElementwiseMultiply's backward is the true product rule (dx_i = g times the product of the
other inputs), also where some factor is zero (HugeCTR zeroes every gradient there; DESIGN.md §7).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._shape_rules import dense, same_types
from hgc.ir.registry import OpDef, RefContext, register
from hgc.ir.types import TensorType


def _infer(rule: str) -> Any:
    def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
        dense(xs)
        same_types(xs, rule)
        return [TensorType(xs[0].shape, xs[0].dtype)]
    return infer


def add_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    y = xs[0].copy()
    for x in xs[1:]:
        y = y + x
    return [y], len(xs)


def add_backward(ctx: RefContext, attrs: Mapping[str, Any], n: Any, gys: list) -> tuple[list, list]:
    return [gys[0].copy() for _ in range(n)], []


def sub_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    return [xs[0] - xs[1]], None


def sub_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    return [gys[0].copy(), -gys[0]], []


def mul_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    y = xs[0].copy()
    for x in xs[1:]:
        y = y * x
    return [y], list(xs)


def mul_backward(ctx: RefContext, attrs: Mapping[str, Any], xs: Any, gys: list) -> tuple[list, list]:
    """Product of the other factors, formed explicitly so a zero factor does not poison the rest."""
    gxs = []
    for i in range(len(xs)):
        others = np.ones_like(xs[i])
        for j, x in enumerate(xs):
            if j != i:
                others = others * x
        gxs.append(gys[0] * others)
    return gxs, []


register(OpDef("Add", "dense", (), _infer("Add needs >= 2 inputs of one shape"), num_inputs=(2, None),
               traits=frozenset({"elementwise"}), forward=add_forward, backward=add_backward,
               doc="Add: y = sum of N >= 2 same-shaped inputs; each input gradient is a copy of g."))
register(OpDef("Sub", "dense", (), _infer("Sub needs 2 inputs of one shape"), num_inputs=(2, 2),
               traits=frozenset({"elementwise", "fp32_only"}), forward=sub_forward, backward=sub_backward,
               doc="Sub: y = x0 - x1; dx0 = g, dx1 = -g. fp32 only in HugeCTR."))
register(OpDef("ElementwiseMultiply", "dense", (),
               _infer("ElementwiseMultiply needs >= 2 inputs of one shape"), num_inputs=(2, None),
               traits=frozenset({"elementwise"}), forward=mul_forward, backward=mul_backward,
               doc=__doc__ or ""))
