"""Concat: join N >= 1 tensors along one axis.

2-D inputs (B, n_i) join along dim 1 into (B, sum n_i). 3-D inputs join along ``axis`` 1
((B, s_i, v) -> (B, sum s_i, v)) or 2 ((B, s, v_i) -> (B, s, sum v_i)); every other dimension must
match. Other ranks are rejected, as HugeCTR does. The backward splits g back into the inputs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense, int_at_least
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dense(xs)
    shown = ", ".join(map(str, xs))
    rank = xs[0].rank
    require(rank in (2, 3), f"Concat takes 2-D or 3-D inputs, got rank {rank}")
    require(all(x.rank == rank for x in xs), f"Concat inputs must all have the same rank, got {shown}")
    require(len({x.dtype for x in xs}) == 1, f"Concat inputs must share one dtype, got {shown}")
    axis = attrs["axis"]
    if rank == 2:
        require(axis == 1, f"2-D Concat joins along axis 1, got axis {axis}")
    else:
        require(axis in (1, 2), f"3-D Concat joins along axis 1 or 2, got axis {axis}")
    for d in range(rank):
        if d != axis:
            require(len({x.shape[d] for x in xs}) == 1,
                    f"Concat along axis {axis} needs equal dim {d} in every input, got {shown}")
    sizes = [x.shape[axis] for x in xs]
    require(all(isinstance(s, int) for s in sizes),
            f"Concat axis {axis} sizes must not depend on the batch size, got {shown}")
    shape = list(xs[0].shape)
    shape[axis] = sum(sizes)  # type: ignore[arg-type]
    return [TensorType(tuple(shape), xs[0].dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    axis = attrs["axis"]
    return [np.concatenate(xs, axis=axis)], [x.shape[axis] for x in xs]


def backward(ctx: RefContext, attrs: Mapping[str, Any], sizes: Any, gys: list) -> tuple[list, list]:
    cuts = np.cumsum(sizes)[:-1]
    return [p.copy() for p in np.split(gys[0], cuts, axis=attrs["axis"])], []


register(OpDef(
    "Concat", "dense", (Attr("axis", 1, int_at_least(0), "axis to join 3-D inputs along (1 or 2)"),),
    infer, num_inputs=(1, None), traits=frozenset({"shape_only"}), forward=forward, backward=backward,
    json_write=lambda a: {"axis": a["axis"]},
    json_read=lambda d: {"axis": d.get("axis", 1)},
    doc=__doc__ or ""))
