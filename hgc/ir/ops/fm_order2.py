"""FmOrder2: the second-order term of a factorization machine.

The 2-D input (B, S·k) holds S vectors of length k = ``out_dim`` side by side; the output (B, k) is
y_j = ½·((Σ_s x_{s,j})² − Σ_s x_{s,j}²), and dx_{s,j} = g_j·(Σ_t x_{t,j} − x_{s,j}).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hgc.ir.ops._common import require, static
from hgc.ir.ops._numeric import positive_int, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    require(x.rank == 2, f"input must be 2-D (B, S*k), got rank {x.rank}")
    w, k = static(x.width, "input width"), attrs["out_dim"]
    require(w % k == 0, f"input width {w} must be a multiple of out_dim {k}")
    return [TensorType((x.shape[0], k), x.dtype)]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    v = x.reshape(x.shape[0], -1, attrs["out_dim"])  # (B, S, k)
    s = v.sum(axis=1)
    return [0.5 * (s * s - (v * v).sum(axis=1))], (v, s)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    v, s = saved
    dx = gys[0][:, None, :] * (s[:, None, :] - v)
    return [dx.reshape(v.shape[0], -1)], []


FM_ORDER2 = register(OpDef(
    name="FmOrder2",
    kind="dense",
    attrs=(Attr("out_dim", 0, positive_int, "latent vector length k"),),
    infer=infer,
    forward=forward,
    backward=backward,
    json_write=lambda a: {"out_dim": a["out_dim"]},
    json_read=lambda d: {"out_dim": d["out_dim"]},
    doc=__doc__ or "",
))
