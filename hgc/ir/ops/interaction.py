"""Interaction: DLRM's dot interaction of a bottom-MLP output with the embedding vectors.

Inputs x (B, d) and E (B, F, d). Per sample, stack the n = F + 1 rows R = [x; E₀; …; E_{F−1}] and take
Z = R·Rᵀ. The output row (width d + F(F+1)/2 + 1) is x, then the strict lower triangle of Z row by row,
(1,0), (2,0), (2,1), (3,0), … — element (i, j) at offset d + i(i−1)/2 + j — then one pad element, 0.

``num_tops`` = 2 adds a second output equal to the first: HugeCTR's fp16 scripts name a gradient-buffer
top there for the following fused layers. It is an alias; backward ignores any gradient given for it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import one_of, require, static
from hgc.ir.ops._numeric import require_float
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def out_width(d: int, f: int) -> int:
    return d + f * (f + 1) // 2 + 1


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    x, e = xs
    require_float(x, "the MLP input")
    require_float(e, "the embedding input")
    require(x.rank == 2 and e.rank == 3,
            f"inputs must be the MLP output (B, d) and the embeddings (B, F, d), got {x} and {e}")
    require(x.shape[0] == e.shape[0], f"batch dimensions differ: {x} vs {e}")
    require(x.dtype == e.dtype, f"inputs must share one dtype, got {x} and {e}")
    d, f = static(x.width, "MLP width"), static(e.shape[1], "embedding slot count")
    require(e.width == d, f"the embedding width must equal the MLP width: {e} has d = {e.width}, "
                          f"{x} has d = {d}")
    y = TensorType((x.shape[0], out_width(d, f)), x.dtype)
    return [y] * attrs["num_tops"]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x, e = xs
    b = x.shape[0]
    r = np.concatenate([x[:, None, :], e], axis=1)  # (B, n, d)
    n = r.shape[1]
    z = r @ r.transpose(0, 2, 1)
    ii, jj = np.tril_indices(n, -1)  # row-major strict lower triangle
    y = np.concatenate([x, z[:, ii, jj], np.zeros((b, 1), x.dtype)], axis=1)
    return [y] + [y.copy() for _ in range(attrs["num_tops"] - 1)], r


def backward(ctx: RefContext, attrs: Mapping[str, Any], r: Any, gys: list) -> tuple[list, list]:
    g = gys[0]  # gys[1], if any, belongs to the alias output and is ignored
    b, n, d = r.shape
    ii, jj = np.tril_indices(n, -1)
    gz = np.zeros((b, n, n), g.dtype)
    gz[:, ii, jj] = g[:, d:d + len(ii)]
    dr = (gz + gz.transpose(0, 2, 1)) @ r
    return [g[:, :d] + dr[:, 0, :], dr[:, 1:, :]], []


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    top = d.get("top", ())
    return {"num_tops": len(top) if isinstance(top, (list, tuple)) else 1}


INTERACTION = register(OpDef(
    name="Interaction",
    kind="dense",
    attrs=(Attr("num_tops", 1, one_of(1, 2), "1, or 2 for an extra alias output (HugeCTR fp16 scripts)"),),
    infer=infer,
    num_inputs=(2, 2),
    forward=forward,
    backward=backward,
    json_read=json_read,
    doc=__doc__ or "",
))
