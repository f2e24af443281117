"""BatchNorm: normalise each feature of a (B, n) input over the batch, then y = gamma·x̂ + beta.

Training normalises with the batch mean and the biased batch variance and returns the true gradient
(through the batch statistics). It also folds the batch statistics into the running statistics kept in
``ctx.state["mean"]`` / ``ctx.state["var"]`` (1-D, n values; 0 and 1 when absent):
``running = running·(1 − factor) + batch·factor``, where the variance folded in is the unbiased one, as
cuDNN stores it. Evaluation normalises with the running statistics. Weights: gamma (1, n), beta (1, n).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import init_attr, init_fields, positive, read_init_fields, require, static
from hgc.ir.ops._numeric import acc_dtype, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType

NORM_INITS = {"gamma_init_type": "gamma_init", "beta_init_type": "beta_init"}


def unit_interval(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
    return None if ok else "must be in [0, 1]"


def norm_weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    n = static(xs[0].width, "input width")
    return [WeightSpec("gamma", (1, n), "gamma_init_type"), WeightSpec("beta", (1, n), "beta_init_type")]


def init_norm(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    """gamma = 1 and beta = 0 for every initializer but Zero, which gives 0 (facts §1.5)."""
    n = static(xs[0].width, "input width")
    gamma = np.zeros((1, n), np.float32) if attrs["gamma_init_type"] == "Zero" else np.ones((1, n), np.float32)
    return [gamma, np.zeros((1, n), np.float32)]


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    require(x.rank == 2, f"input must be 2-D (B, n): statistics are taken per feature over the batch, "
                         f"got rank {x.rank}")
    static(x.width, "input width")
    return [x]


def running_stats(ctx: RefContext, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The node's running mean and variance, created as 0 and 1 on first use."""
    if "mean" not in ctx.state:
        ctx.state["mean"] = np.zeros(n, dtype)
        ctx.state["var"] = np.ones(n, dtype)
    return ctx.state["mean"], ctx.state["var"]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    (x,), (gamma, beta) = xs, ws
    dt = acc_dtype(x)
    xa = x.astype(dt)
    b, n = xa.shape
    run_mean, run_var = running_stats(ctx, n, dt)
    if ctx.training:
        mean = xa.mean(axis=0)
        var = xa.var(axis=0)
        f = attrs["factor"]
        unbiased = var * (b / (b - 1)) if b > 1 else var
        ctx.state["mean"] = (run_mean * (1 - f) + mean * f).astype(dt)
        ctx.state["var"] = (run_var * (1 - f) + unbiased * f).astype(dt)
    else:
        mean, var = run_mean, run_var
    inv_std = 1.0 / np.sqrt(var + attrs["eps"])
    xhat = (xa - mean) * inv_std
    y = (xhat * gamma + beta).astype(x.dtype)
    return [y], (xhat, inv_std, gamma, ctx.training)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    xhat, inv_std, gamma, training = saved
    g = gys[0].astype(xhat.dtype)
    dgamma = (g * xhat).sum(axis=0, keepdims=True)
    dbeta = g.sum(axis=0, keepdims=True)
    dxhat = g * gamma
    if training:
        b = g.shape[0]
        dx = inv_std / b * (b * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    else:
        dx = dxhat * inv_std
    return [dx.astype(gys[0].dtype)], [dgamma, dbeta]


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"bn_param": {"factor": attrs["factor"], "eps": attrs["eps"], **init_fields(attrs, NORM_INITS)}}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d["bn_param"]
    out = {k: p[k] for k in ("factor", "eps") if k in p}
    return {**out, **read_init_fields(p, NORM_INITS)}


BATCH_NORM = register(OpDef(
    name="BatchNorm",
    kind="dense",
    attrs=(Attr("factor", 1.0, unit_interval, "running-statistics update factor"),
           Attr("eps", 1e-5, positive, "added to the variance"),
           init_attr("gamma_init_type"), init_attr("beta_init_type")),
    infer=infer,
    traits=frozenset({"has_weights", "stateful"}),
    weights=norm_weights,
    init=init_norm,
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))
