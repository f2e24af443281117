"""ELU and Sigmoid (ReLU lives in relu.py).

ELU (``elu_alpha`` = a): y = x for x >= 0, a*(e^x - 1) below; dx = g, or g*a*e^x below 0.
Sigmoid: y = 1/(1 + e^-x); dx = g*y*(1 - y), with y recomputed from x.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._shape_rules import dense, is_number
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def same(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dense(xs)
    return [TensorType(xs[0].shape, xs[0].dtype)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def elu_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x, a = xs[0], attrs["elu_alpha"]
    neg = a * np.expm1(np.minimum(x, 0))
    return [np.where(x >= 0, x, neg).astype(x.dtype)], x


def elu_backward(ctx: RefContext, attrs: Mapping[str, Any], x: Any, gys: list) -> tuple[list, list]:
    a = attrs["elu_alpha"]
    return [gys[0] * np.where(x >= 0, 1.0, a * np.exp(np.minimum(x, 0))).astype(x.dtype)], []


def sig_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    return [sigmoid(xs[0])], xs[0]


def sig_backward(ctx: RefContext, attrs: Mapping[str, Any], x: Any, gys: list) -> tuple[list, list]:
    y = sigmoid(x)
    return [gys[0] * y * (1 - y)], []


register(OpDef(
    "ELU", "dense", (Attr("elu_alpha", 1.0, is_number, "value ELU saturates to below zero (negated)"),),
    same, traits=frozenset({"elementwise"}), forward=elu_forward, backward=elu_backward,
    json_write=lambda a: {"elu_param": {"alpha": a["elu_alpha"]}},
    json_read=lambda d: {"elu_alpha": d["elu_param"]["alpha"]},
    doc="ELU: y = x for x >= 0, elu_alpha*(e^x - 1) below."))
register(OpDef("Sigmoid", "dense", (), same, traits=frozenset({"elementwise"}),
               forward=sig_forward, backward=sig_backward, doc="Sigmoid: y = 1/(1 + e^-x)."))
