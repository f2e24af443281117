"""SequenceMask (BST): build an attention mask from two per-sample sequence lengths.

Inputs: lengths "from" and "to", each (B, 1). Output (B, 1, F, T) with F = max_sequence_len_from
and T = max_sequence_len_to: mask[b, 0, i, j] = 1 where i < from[b] and j < to[b], else 0.
The lengths take no gradient.
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
    require(all(x.rank == 2 and x.shape[1] == 1 for x in xs),
            f"SequenceMask takes two (B, 1) length tensors, got {shown}")
    require(xs[0].shape == xs[1].shape and xs[0].dtype == xs[1].dtype,
            f"SequenceMask length tensors must have one shape and dtype, got {shown}")
    f, t = attrs["max_sequence_len_from"], attrs["max_sequence_len_to"]
    return [TensorType((xs[0].shape[0], 1, f, t), xs[0].dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    src, dst = xs[0][:, 0], xs[1][:, 0]
    f, t = attrs["max_sequence_len_from"], attrs["max_sequence_len_to"]
    rows = np.arange(f)[None, :] < src[:, None]
    cols = np.arange(t)[None, :] < dst[:, None]
    mask = rows[:, :, None] & cols[:, None, :]
    return [mask[:, None, :, :].astype(xs[0].dtype)], None


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    return [None, None], []


register(OpDef(
    "SequenceMask", "dense",
    (Attr("max_sequence_len_from", 1, int_at_least(1), "mask rows (query length)"),
     Attr("max_sequence_len_to", 1, int_at_least(1), "mask columns (key length)")),
    infer, num_inputs=(2, 2), forward=forward, backward=backward,
    json_write=lambda a: {"max_sequence_len_from": a["max_sequence_len_from"],
                          "max_sequence_len_to": a["max_sequence_len_to"]},
    json_read=lambda d: {"max_sequence_len_from": d["max_sequence_len_from"],
                         "max_sequence_len_to": d["max_sequence_len_to"]},
    doc=__doc__ or ""))
