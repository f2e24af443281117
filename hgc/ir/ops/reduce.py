"""ReduceSum and ReduceMean along ``axis`` (default 1), keeping that dimension with size 1.

Inputs of rank 1 to 3 with no zero-sized dimension, and 0 <= axis < rank, as HugeCTR's kernels
take. The backward broadcasts g over the reduced dimension (divided by its size for the mean).
ReduceMean is fp32 only in HugeCTR.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import check_axis, dense, int_at_least
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def _infer(name: str) -> Any:
    def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
        (x,) = xs
        dense(xs)
        require(1 <= x.rank <= 3, f"{name} takes a 1-D to 3-D input, got rank {x.rank}")
        require(all(d != 0 for d in x.shape), f"{name} input {x} has a zero-sized dimension")
        axis = attrs["axis"]
        check_axis(axis, x.rank, name)
        shape = list(x.shape)
        shape[axis] = 1
        return [TensorType(tuple(shape), x.dtype)]
    return infer


def sum_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    return [x.sum(axis=attrs["axis"], keepdims=True)], x.shape


def mean_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    return [x.mean(axis=attrs["axis"], keepdims=True)], x.shape


def sum_backward(ctx: RefContext, attrs: Mapping[str, Any], shape: Any, gys: list) -> tuple[list, list]:
    return [np.broadcast_to(gys[0], shape).copy()], []


def mean_backward(ctx: RefContext, attrs: Mapping[str, Any], shape: Any, gys: list) -> tuple[list, list]:
    g = gys[0] / gys[0].dtype.type(shape[attrs["axis"]])
    return [np.broadcast_to(g, shape).copy()], []


def _axis() -> tuple[Attr, ...]:
    return (Attr("axis", 1, int_at_least(0), "dimension to reduce"),)


for _name, _fwd, _bwd, _traits in (("ReduceSum", sum_forward, sum_backward, frozenset()),
                                   ("ReduceMean", mean_forward, mean_backward, frozenset({"fp32_only"}))):
    register(OpDef(_name, "dense", _axis(), _infer(_name), traits=_traits, forward=_fwd, backward=_bwd,
                   json_write=lambda a: {"axis": a["axis"]},
                   json_read=lambda d: {"axis": d.get("axis", 1)},
                   doc=__doc__ or ""))
