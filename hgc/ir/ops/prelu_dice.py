"""PReLU_Dice (DIN's Dice activation) on a 2-D input (B, H); ``elu_alpha`` = a, ``eps``.

Per feature: p = sigmoid((x - E) / sqrt(Var + eps)), y = p*x + (1 - p)*a*x, where E and Var are the
feature's mean and (biased) variance. a is fixed, not learned; there are no weights.

Training uses the statistics of the current batch and the backward is the full derivative,
including the path through E and Var. Inference uses running statistics (DESIGN.md §7; HugeCTR
uses the batch statistics there too). Training keeps them in ``ctx.state``
(``running_mean``, ``running_var``: float64 arrays of shape (H,), ``updates``: batches seen) as
running = (1 - m)*running + m*batch with m = max(1/(updates + 1), DICE_MOMENTUM): the plain mean of
the batches so far for the first 1/DICE_MOMENTUM batches, an exponential average with factor
DICE_MOMENTUM = 0.01 after that. An evaluation with no running statistics in ``ctx.state`` (nothing
trained in this process, e.g. a model loaded from HugeCTR files, which hold none) falls back to
the batch statistics, as HugeCTR does.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import positive, require
from hgc.ir.ops._shape_rules import dense, is_number
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType

DICE_MOMENTUM = 0.01


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    dense(xs)
    require(x.rank == 2, f"PReLU_Dice takes a 2-D input (B, H), got rank {x.rank}")
    return [TensorType(x.shape, x.dtype)]


def _update(state: dict[str, Any], mean: np.ndarray, var: np.ndarray) -> None:
    n = int(state.get("updates", 0))
    m = max(1.0 / (n + 1), DICE_MOMENTUM)
    if n == 0:
        state["running_mean"] = mean.astype(np.float64).copy()
        state["running_var"] = var.astype(np.float64).copy()
    else:
        state["running_mean"] = (1 - m) * state["running_mean"] + m * mean
        state["running_var"] = (1 - m) * state["running_var"] + m * var
    state["updates"] = n + 1


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    a, eps = attrs["elu_alpha"], attrs["eps"]
    batch_stats = ctx.training or "running_mean" not in ctx.state
    if batch_stats:
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        if ctx.training:
            _update(ctx.state, mean, var)
    else:
        mean = ctx.state["running_mean"].astype(x.dtype)
        var = ctx.state["running_var"].astype(x.dtype)
    inv = 1.0 / np.sqrt(var + x.dtype.type(eps))
    n = (x - mean) * inv
    p = 0.5 * (1.0 + np.tanh(0.5 * n))
    y = x * (a + (1 - a) * p)
    return [y.astype(x.dtype)], (x, n, p, inv, batch_stats)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, n, p, inv, batch_stats = saved
    a, g = attrs["elu_alpha"], gys[0]
    direct = g * (a + (1 - a) * p)
    gn = g * x * (1 - a) * p * (1 - p)  # gradient reaching the normalised value n
    if batch_stats:
        gx_n = inv * (gn - gn.mean(axis=0) - n * (gn * n).mean(axis=0))
    else:
        gx_n = inv * gn
    return [(direct + gx_n).astype(x.dtype)], []


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d["prelu_dice_param"]
    alpha = p["alpha"] if "alpha" in p else p["elu_alpha"]
    return {"elu_alpha": alpha, "eps": p["eps"]}


register(OpDef(
    "PReLU_Dice", "dense",
    (Attr("elu_alpha", 1.0, is_number, "slope factor a of the rectified part"),
     Attr("eps", 1e-5, positive, "variance epsilon")),
    infer, traits=frozenset({"fp32_only", "stateful"}), forward=forward, backward=backward,
    json_write=lambda a: {"prelu_dice_param": {"alpha": a["elu_alpha"], "eps": a["eps"]}},
    json_read=json_read, doc=__doc__ or ""))
