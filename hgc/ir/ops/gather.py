"""Gather: pick rows ``indices`` (batch entries) of a 2-D input (R, n) -> (len(indices), n).

Indices must be >= 0; that they are below the row count is checked here only when the row count
does not depend on the batch size, otherwise at run time by the forward. The backward scatters g
back into the chosen rows (repeated rows accumulate) and zero elsewhere. fp32 only in HugeCTR.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.errors import ShapeError
from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense, index_list
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    require(x.rank == 2, f"Gather takes a 2-D input (rows, n), got rank {x.rank}")
    rows, indices = x.shape[0], attrs["indices"]
    if isinstance(rows, int):
        bad = [i for i in indices if i >= rows]
        require(not bad, f"Gather indices {bad} are outside the {rows} input rows")
    return [TensorType((len(indices), x.shape[1]), x.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    idx = np.asarray(attrs["indices"])
    if idx.max() >= x.shape[0]:
        raise ShapeError(f"Gather indices {[int(i) for i in idx if i >= x.shape[0]]} are outside the "
                         f"{x.shape[0]} input rows")
    return [x[idx].copy()], (x.shape, idx)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    shape, idx = saved
    gx = np.zeros(shape, dtype=gys[0].dtype)
    np.add.at(gx, idx, gys[0])
    return [gx], []


register(OpDef(
    "Gather", "dense", (Attr("indices", (), index_list(True), "rows to pick, in order"),),
    infer, traits=frozenset({"shape_only", "fp32_only"}), forward=forward, backward=backward,
    json_write=lambda a: {"indices": list(a["indices"])},
    json_read=lambda d: {"indices": tuple(d["indices"])},
    doc=__doc__ or ""))
