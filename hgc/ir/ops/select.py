"""Select: keep the entries ``index`` of dimension ``dim`` (dim >= 1; dim 0 is the batch).

The output has ``dim`` replaced by len(index). The backward scatters g back to the chosen entries
(repeated indices accumulate) and leaves zero elsewhere.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense, index_list, static_dim
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def dim_rule(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
    return None if ok else "must be an integer >= 1 (dim 0 is the batch dimension)"


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    dim, index = attrs["dim"], attrs["index"]
    require(dim < x.rank, f"Select dim {dim} is outside a rank-{x.rank} input")
    size = static_dim(x, dim, "Select dimension")
    bad = [i for i in index if i >= size]
    require(not bad, f"Select index {bad} is outside [0, {size}) of dim {dim}")
    shape = list(x.shape)
    shape[dim] = len(index)
    return [TensorType(tuple(shape), x.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    return [np.take(x, list(attrs["index"]), axis=attrs["dim"])], x.shape


def backward(ctx: RefContext, attrs: Mapping[str, Any], shape: Any, gys: list) -> tuple[list, list]:
    dim = attrs["dim"]
    gx = np.zeros(shape, dtype=gys[0].dtype)
    where = [slice(None)] * len(shape)
    where[dim] = np.asarray(attrs["index"])  # type: ignore[call-overload]
    np.add.at(gx, tuple(where), gys[0])
    return [gx], []


register(OpDef(
    "Select", "dense",
    (Attr("dim", 0, dim_rule, "dimension to select along (>= 1)"),
     Attr("index", (), index_list(True), "entries of dim to keep, in order")),
    infer, traits=frozenset({"shape_only"}), forward=forward, backward=backward,
    json_write=lambda a: {"dim": a["dim"], "index": list(a["index"])},
    json_read=lambda d: {"dim": d["dim"], "index": tuple(d["index"])},
    doc=__doc__ or ""))
