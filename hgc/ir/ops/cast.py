"""Cast: switch a dense tensor between float32 and float16.

As in HugeCTR, float32 becomes float16 (the mixed-precision entry point) and float16 becomes
float32. The reference semantics keep any other float dtype (float64 in gradient tests) as it is.
The backward casts the incoming gradient back to the input dtype: a true gradient, where HugeCTR's
backward does nothing (DESIGN.md §7).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense
from hgc.ir.registry import OpDef, RefContext, register
from hgc.ir.types import TensorType

FLIP = {"float32": "float16", "float16": "float32"}


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    require(x.dtype in FLIP, f"Cast converts float32 <-> float16, got a {x.dtype} input")
    return [TensorType(x.shape, FLIP[x.dtype])]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    out = FLIP.get(x.dtype.name, x.dtype.name)
    return [x.astype(np.dtype(out))], x.dtype


def backward(ctx: RefContext, attrs: Mapping[str, Any], dtype: Any, gys: list) -> tuple[list, list]:
    return [gys[0].astype(dtype)], []


register(OpDef("Cast", "dense", (), infer, traits=frozenset({"elementwise"}),
               forward=forward, backward=backward, doc=__doc__ or ""))
