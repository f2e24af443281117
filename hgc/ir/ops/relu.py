"""ReLU: y = max(x, 0); dx = g where x > 0."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._shape_rules import dense
from hgc.ir.registry import OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dense(xs)  # a sparse key tensor has no activation
    return [TensorType(xs[0].shape, xs[0].dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    return [np.maximum(x, 0)], x > 0


def backward(ctx: RefContext, attrs: Mapping[str, Any], mask: Any, gys: list) -> tuple[list, list]:
    return [gys[0] * mask], []


register(OpDef("ReLU", "dense", (), infer, traits=frozenset({"elementwise"}),
               forward=forward, backward=backward, doc=__doc__ or ""))
