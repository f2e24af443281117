"""MatrixMultiply of two inputs (fp32 only in HugeCTR):

- 2-D x 2-D: (m, n) x (n, k) -> (m, k);
- 3-D x 3-D: (b, m, n) x (b, n, k) -> (b, m, k), one product per leading index;
- 4-D x 4-D: (b, h, m, n) x (b, h, n, k) -> (b, h, m, k) (attention heads);
- 2-D x 3-D: (m, n) x (n, g, h) -> (m, g, h), the right side read as an (n, g*h) matrix.
Backward: dA = g·Bᵀ, dB = Aᵀ·g per product.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense
from hgc.ir.registry import OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    a, b = xs
    dense(xs)
    require(a.dtype == b.dtype, f"MatrixMultiply inputs must share one dtype, got {a} and {b}")
    require(a.rank >= 2 and b.rank >= 2, f"MatrixMultiply inputs need at least 2 dims, got {a} and {b}")
    if a.rank == 2 and b.rank == 3:
        require(a.shape[1] == b.shape[0], f"MatrixMultiply 2-D x 3-D needs (m, n) x (n, g, h), got {a} x {b}")
        return [TensorType((a.shape[0], b.shape[1], b.shape[2]), a.dtype)]
    require(a.rank == b.rank and a.rank <= 4,
            f"MatrixMultiply takes 2-D x 2-D, 3-D x 3-D, 4-D x 4-D or 2-D x 3-D inputs, got {a} x {b}")
    require(a.shape[-1] == b.shape[-2], f"MatrixMultiply needs (.., m, n) x (.., n, k), got {a} x {b}")
    require(a.shape[:-2] == b.shape[:-2],
            f"MatrixMultiply inputs must share the leading (batch/head) dims, got {a} x {b}")
    return [TensorType((*a.shape[:-1], b.shape[-1]), a.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    a, b = xs
    if a.ndim == 2 and b.ndim == 3:
        return [(a @ b.reshape(b.shape[0], -1)).reshape(a.shape[0], *b.shape[1:])], (a, b)
    return [np.matmul(a, b)], (a, b)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    a, b = saved
    g = gys[0]
    if a.ndim == 2 and b.ndim == 3:
        b2, g2 = b.reshape(b.shape[0], -1), g.reshape(g.shape[0], -1)
        return [g2 @ b2.T, (a.T @ g2).reshape(b.shape)], []
    return [np.matmul(g, np.swapaxes(b, -1, -2)), np.matmul(np.swapaxes(a, -1, -2), g)], []


register(OpDef("MatrixMultiply", "dense", (), infer, num_inputs=(2, 2),
               traits=frozenset({"fp32_only"}), forward=forward, backward=backward,
               doc=__doc__ or ""))
