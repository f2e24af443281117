"""LayerNorm: normalise every row over the last dimension d, then y = gamma·x̂ + beta.

x̂ = (x − mean) / √(var + eps) with the biased variance of the row. Inputs of rank 2, 3 or 4; weights
gamma (1, d) and beta (1, d), initialised like BatchNorm's (1 and 0; Zero gives 0).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import init_attr, init_fields, positive, read_init_fields, require, rows, static
from hgc.ir.ops._numeric import acc_dtype, require_float
from hgc.ir.ops.batch_norm import NORM_INITS, init_norm, norm_weights
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    require(x.rank in (2, 3, 4), f"input must have rank 2, 3 or 4, got rank {x.rank}")
    static(x.width, "input width")
    return [x]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    (x,), (gamma, beta) = xs, ws
    x2 = rows(x).astype(acc_dtype(x))
    mean = x2.mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(x2.var(axis=1, keepdims=True) + attrs["eps"])
    xhat = (x2 - mean) * inv_std
    y = (xhat * gamma + beta).astype(x.dtype).reshape(x.shape)
    return [y], (xhat, inv_std, gamma, x.shape)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    xhat, inv_std, gamma, shape = saved
    g = rows(gys[0]).astype(xhat.dtype)
    dgamma = (g * xhat).sum(axis=0, keepdims=True)
    dbeta = g.sum(axis=0, keepdims=True)
    dxhat = g * gamma
    d = g.shape[1]
    dx = inv_std / d * (d * dxhat - dxhat.sum(axis=1, keepdims=True)
                        - xhat * (dxhat * xhat).sum(axis=1, keepdims=True))
    return [dx.astype(gys[0].dtype).reshape(shape)], [dgamma, dbeta]


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"ln_param": {"eps": attrs["eps"], **init_fields(attrs, NORM_INITS)}}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d.get("ln_param", {})
    return {**({"eps": p["eps"]} if "eps" in p else {}), **read_init_fields(p, NORM_INITS)}


LAYER_NORM = register(OpDef(
    name="LayerNorm",
    kind="dense",
    attrs=(Attr("eps", 1e-5, positive, "added to the variance"),
           init_attr("gamma_init_type"), init_attr("beta_init_type")),
    infer=infer,
    traits=frozenset({"has_weights"}),
    weights=norm_weights,
    init=init_norm,
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))
