"""FusedReshapeConcat and FusedReshapeConcatGeneral (DIN): k inputs (B, S, v_i) with one B and S.

The inputs are joined along the vector dimension (width W = sum v_i), then
- FusedReshapeConcat gives two outputs: "item" (B*(S-1), W), the first S-1 slots of every sample
  as rows, and "ad" (B, W), the last slot (needs S >= 2);
- FusedReshapeConcatGeneral gives one output (B*S, W), every slot as a row.
The backward scatters the gradients back. fp32 only in HugeCTR.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.ops._shape_rules import dense
from hgc.ir.registry import OpDef, RefContext, register
from hgc.ir.types import TensorType


def _common(name: str, xs: Sequence[TensorType]) -> tuple[Any, int, int]:
    dense(xs)
    shown = ", ".join(map(str, xs))
    require(all(x.rank == 3 for x in xs), f"{name} inputs must all be 3-D (B, S, v), got {shown}")
    require(len({x.shape[0] for x in xs}) == 1, f"{name} inputs must share the batch dimension, got {shown}")
    require(len({x.shape[1] for x in xs}) == 1, f"{name} inputs must share the slot count, got {shown}")
    require(len({x.dtype for x in xs}) == 1, f"{name} inputs must share one dtype, got {shown}")
    slots = xs[0].shape[1]
    require(isinstance(slots, int) and all(isinstance(x.shape[2], int) for x in xs),
            f"{name} slot counts and vector sizes must not depend on the batch size, got {shown}")
    return xs[0].shape[0], int(slots), sum(int(x.shape[2]) for x in xs)  # type: ignore[arg-type]


def infer_pair(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    rows, slots, width = _common("FusedReshapeConcat", xs)
    require(slots >= 2, f"FusedReshapeConcat needs at least 2 slots (S-1 items + 1 ad), got S = {slots}")
    dt = xs[0].dtype
    return [TensorType((rows * (slots - 1), width), dt), TensorType((rows, width), dt)]


def infer_general(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    rows, slots, width = _common("FusedReshapeConcatGeneral", xs)
    return [TensorType((rows * slots, width), xs[0].dtype)]


def _split(g: np.ndarray, xs_widths: list[int]) -> list[np.ndarray]:
    return [p.copy() for p in np.split(g, np.cumsum(xs_widths)[:-1], axis=2)]


def pair_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    cat = np.concatenate(xs, axis=2)
    n, s, w = cat.shape
    return [cat[:, :s - 1, :].reshape(n * (s - 1), w), cat[:, s - 1, :].copy()], \
        (cat.shape, [x.shape[2] for x in xs])


def pair_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    (n, s, w), widths = saved
    g = np.empty((n, s, w), dtype=gys[0].dtype)
    g[:, :s - 1, :] = gys[0].reshape(n, s - 1, w)
    g[:, s - 1, :] = gys[1]
    return _split(g, widths), []


def general_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    cat = np.concatenate(xs, axis=2)
    n, s, w = cat.shape
    return [cat.reshape(n * s, w)], (cat.shape, [x.shape[2] for x in xs])


def general_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    shape, widths = saved
    return _split(gys[0].reshape(shape), widths), []


TRAITS = frozenset({"shape_only", "fp32_only"})
register(OpDef("FusedReshapeConcat", "dense", (), infer_pair, num_inputs=(1, None), traits=TRAITS,
               forward=pair_forward, backward=pair_backward, doc=__doc__ or ""))
register(OpDef("FusedReshapeConcatGeneral", "dense", (), infer_general, num_inputs=(1, None), traits=TRAITS,
               forward=general_forward, backward=general_backward, doc=__doc__ or ""))
