"""InnerProduct: y = x·W + b, on (B, in) or (B, S, in) inputs. W is (in, out), b is (1, out)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import (
    init_attr,
    init_fields,
    positive,
    read_init_fields,
    require,
    rows,
    static,
    truncated_normal,
    uniform,
    zeros,
)
from hgc.ir.registry import Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType

FC_INITS = {"weight_init_type": "weight_init", "bias_init_type": "bias_init"}


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require(x.rank in (2, 3), f"input must be 2-D (B, in) or 3-D (B, S, in), got rank {x.rank}")
    static(x.width, "input width")
    return [TensorType((*x.shape[:-1], attrs["num_output"]), x.dtype)]


def weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    n_in, n_out = static(xs[0].width, "input width"), attrs["num_output"]
    return [WeightSpec("W", (n_in, n_out), "weight_init_type"), WeightSpec("b", (1, n_out), "bias_init_type")]


def init_fc(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    """HugeCTR's FC initialisers (facts §1.5): W by fan_in+fan_out, b by fan_out."""
    n_in, n_out = static(xs[0].width, "input width"), attrs["num_output"]
    wk, bk = attrs["weight_init_type"], attrs["bias_init_type"]
    if wk == "Zero":
        w = zeros((n_in, n_out))
    elif wk == "Uniform":
        w = uniform(rng, (n_in, n_out), 1.0 / (n_in + n_out))
    elif wk == "XavierUniform":
        w = uniform(rng, (n_in, n_out), np.sqrt(6.0 / (n_in + n_out)))
    else:  # Default, XavierNorm
        w = truncated_normal(rng, (n_in, n_out), np.sqrt(2.0 / (n_in + n_out)) / 0.8796256610)
    if bk == "Zero":
        b = zeros((1, n_out))
    elif bk == "Uniform":
        b = uniform(rng, (1, n_out), 1.0 / n_out)
    elif bk == "XavierUniform":
        b = uniform(rng, (1, n_out), np.sqrt(6.0 / n_out))
    elif bk == "XavierNorm":
        b = truncated_normal(rng, (1, n_out), np.sqrt(2.0 / n_out) / 0.8796256610)
    else:
        b = truncated_normal(rng, (1, n_out), np.sqrt(1.0 / n_out))
    return [w, b]


def fc_backward(x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx, dW, db of y = x·W + b for upstream gradient g (shared with the fused FC ops)."""
    g2 = rows(g)
    dx = (g2 @ w.T).reshape(x.shape)
    return dx, rows(x).T @ g2, g2.sum(axis=0, keepdims=True)


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    (x,), (w, b) = xs, ws
    y = rows(x) @ w + b
    return [y.reshape(*x.shape[:-1], w.shape[1])], (x, w)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, w = saved
    dx, dw, db = fc_backward(x, w, gys[0])
    return [dx], [dw, db]


INNER_PRODUCT = register(OpDef(
    name="InnerProduct",
    kind="dense",
    attrs=(Attr("num_output", 1, positive, "output width"),
           init_attr("weight_init_type"), init_attr("bias_init_type")),
    infer=infer,
    traits=frozenset({"has_weights", "gemm"}),
    weights=weights,
    init=init_fc,
    forward=forward,
    backward=backward,
    json_write=lambda a: {"fc_param": {"num_output": a["num_output"], **init_fields(a, FC_INITS)}},
    json_read=lambda d: {"num_output": d["fc_param"]["num_output"],
                         **read_init_fields(d["fc_param"], FC_INITS)},
    doc=__doc__ or "",
))
