"""Reshape, in HugeCTR's three modes (checked in this order):

1. ``selected=True``: input (B, S, v) -> (B, k*v) holding the ``selected_slots`` (k of them, in the
   listed order; an empty list keeps all S slots). The backward writes g into the selected slots
   and zero everywhere else (HugeCTR leaves those stale; DESIGN.md §7). Repeated slots accumulate.
2. ``leading_dim=L > 0``: output (N/L, L) with N the element count; with ``time_step=T > 0`` the
   output is (N/(L*T), T, L). The first (batch) dimension may change: (B, 26, 11) with L = 11
   gives (26*B, 11).
3. ``shape=[...]`` with exactly one -1 placeholder: a general view; the placeholder takes the rest.
   A non-empty ``shape`` wins over ``leading_dim``, whose default is 1 (the seed's argument list).

In modes 2 and 3 the new leading size must stay a whole multiple of B, or B divided by a whole
number, so one shape is right for every batch size (else: "non-divisible" error).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import (
    count,
    dense,
    divide,
    index_list,
    int_at_least,
    is_bool,
    reshape_shape,
    static_dim,
)
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def mode(attrs: Mapping[str, Any]) -> str:
    if attrs["selected"]:
        return "selected"
    if attrs["shape"]:
        return "shape"
    return "leading_dim"


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    m = mode(attrs)
    if m == "selected":
        require(x.rank == 3,
                f"Reshape with selected=True needs a 3-D input (B, slots, vec), got rank {x.rank}")
        slots_in, vec = static_dim(x, 1, "slot count"), static_dim(x, 2, "vector size")
        slots = attrs["selected_slots"]
        require(len(slots) <= slots_in,
                f"Reshape selects {len(slots)} slots but the input has only {slots_in}")
        bad = [s for s in slots if s >= slots_in]
        require(not bad, f"Reshape selected_slots {list(bad)} are outside [0, {slots_in})")
        return [TensorType((x.shape[0], (len(slots) or slots_in) * vec), x.dtype)]
    n = count(x)
    if m == "leading_dim":
        lead, steps = attrs["leading_dim"], attrs["time_step"]
        if steps == 0:
            return [TensorType((divide(n, lead, f"non-divisible leading_dim {lead}"), lead), x.dtype)]
        rows = divide(n, lead * steps, f"non-divisible leading_dim {lead} x time_step {steps}")
        return [TensorType((rows, steps, lead), x.dtype)]
    shape = attrs["shape"]
    known = prod(d for d in shape if d != -1)
    rest = divide(n, known, f"non-divisible Reshape shape {list(shape)}")
    return [TensorType(tuple(rest if d == -1 else d for d in shape), x.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    m = mode(attrs)
    if m == "selected":
        slots = list(attrs["selected_slots"]) or list(range(x.shape[1]))
        return [x[:, slots, :].reshape(x.shape[0], -1)], (x.shape, slots)
    if m == "leading_dim":
        lead, steps = attrs["leading_dim"], attrs["time_step"]
        y = x.reshape(-1, lead) if steps == 0 else x.reshape(-1, steps, lead)
        return [y.copy()], (x.shape, None)
    return [x.reshape(attrs["shape"]).copy()], (x.shape, None)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    shape, slots = saved
    g = gys[0]
    if slots is None:
        return [g.reshape(shape).copy()], []
    gx = np.zeros(shape, dtype=g.dtype)
    np.add.at(gx, (slice(None), np.asarray(slots)), g.reshape(shape[0], len(slots), shape[2]))
    return [gx], []


def json_write(a: Mapping[str, Any]) -> dict[str, Any]:
    m = mode(a)
    if m == "selected":
        return {"selected": list(a["selected_slots"])}
    if m == "leading_dim":
        return {"leading_dim": a["leading_dim"], "time_step": a["time_step"]}
    return {"shape": list(a["shape"])}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    if "selected" in d:
        return {"selected": True, "selected_slots": tuple(d["selected"])}
    if d.get("shape"):
        return {"shape": tuple(d["shape"])}
    return {"leading_dim": d["leading_dim"], "time_step": d.get("time_step", 0)}


register(OpDef(
    "Reshape", "dense",
    (Attr("leading_dim", 1, int_at_least(1), "innermost output size (mode 2)"),
     Attr("time_step", 0, int_at_least(0), "middle output size of a 3-D result (mode 2)"),
     Attr("selected", False, is_bool, "use the selected-slots mode"),
     Attr("selected_slots", (), index_list(False), "slots kept in selected mode"),
     Attr("shape", (), reshape_shape, "output shape with one -1 placeholder (mode 3)")),
    infer, traits=frozenset({"shape_only"}), forward=forward, backward=backward,
    json_write=json_write, json_read=json_read, doc=__doc__ or ""))
