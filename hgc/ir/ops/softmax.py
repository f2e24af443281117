"""Softmax over the last dimension, computed stably (the row max is subtracted; DESIGN.md §7).

One input: y = softmax(x); dx = y*(g - sum(g*y)).
Two inputs (scores, mask), HugeCTR's masked form: z = x*factor - (1 - mask)*10000, y = softmax(z).
The mask has the scores' rank and last dimension, other dimensions equal or 1 (it broadcasts;
HugeCTR uses (B, 1, 1, S) masks on (B, H, S, S) scores). dx = factor*y*(g - sum(g*y)); the mask
takes no gradient. ``factor`` applies only to the masked form.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense, is_number
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType

MASK_PENALTY = 10000.0


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dense(xs)
    x = xs[0]
    require(x.rank >= 1, "Softmax needs an input with at least one dimension")
    if len(xs) == 2:
        m = xs[1]
        require(m.rank == x.rank, f"masked Softmax: mask {m} must have the rank of the scores {x}")
        require(m.shape[-1] == x.shape[-1],
                f"masked Softmax: mask {m} and scores {x} must share the last dimension")
        ok = all(dm == dx or dm == 1 for dm, dx in zip(m.shape, x.shape))
        require(ok, f"masked Softmax: every mask dimension must equal the scores' or be 1, got mask {m} "
                    f"for scores {x}")
    return [TensorType(x.shape, x.dtype)]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    if len(xs) == 1:
        y = softmax(x)
        return [y], (y, 1.0, 1)
    f = attrs["factor"]
    z = x * x.dtype.type(f) - (1 - xs[1].astype(x.dtype)) * x.dtype.type(MASK_PENALTY)
    y = softmax(z)
    return [y], (y, f, 2)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    y, f, n = saved
    g = gys[0]
    dx = y * (g - (g * y).sum(axis=-1, keepdims=True))
    if n == 1:
        return [dx], []
    return [dx * dx.dtype.type(f), None], []


register(OpDef(
    "Softmax", "dense", (Attr("factor", 1.0, is_number, "score scale of the masked form"),),
    infer, num_inputs=(1, 2), forward=forward, backward=backward,
    json_write=lambda a: {"factor": a["factor"]},
    json_read=lambda d: {"factor": d.get("factor", 1.0)},
    doc=__doc__ or ""))
