"""MultiCross: the DCN cross network on a (B, n) input, L = ``num_layers`` layers, output (B, n).

v1 (``projection_dim`` = 0): x_{l+1} = x₀ · (x_l·w_l) + b_l + x_l, where x_l·w_l is one scalar per row;
weights [w₀ (1, n), b₀ (1, n), w₁, b₁, …].
v2 (``projection_dim`` = k > 0): x_{l+1} = x₀ ⊙ (x_l·U_l·V_l + b_l) + x_l;
weights [U₀ (n, k), V₀ (k, n), b₀ (1, n), U₁, …].

Default initialisers (facts §1.5; Uniform, XavierNorm and XavierUniform act as Default, Zero gives 0):
v1 w_l ~ N(0, √(1/n)), v2 U_l ~ N(0, √(2/(n+k))) and V_l ~ N(0, √(2/(k+n))), all untruncated; biases 0.
``weight_init_type`` governs w (or U and V), ``bias_init_type`` governs b.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import init_attr, init_fields, normal, read_init_fields, require, static, zeros
from hgc.ir.ops._numeric import non_negative_int, positive_int, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType

MC_INITS = {"weight_init_type": "weight_init", "bias_init_type": "bias_init"}


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    require(x.rank == 2, f"input must be 2-D (B, n), got rank {x.rank}")
    static(x.width, "input width")
    return [x]


def weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    n, k = static(xs[0].width, "input width"), attrs["projection_dim"]
    specs = []
    for l in range(attrs["num_layers"]):
        if k:
            specs += [WeightSpec(f"U{l}", (n, k), "weight_init_type"),
                      WeightSpec(f"V{l}", (k, n), "weight_init_type")]
        else:
            specs.append(WeightSpec(f"w{l}", (1, n), "weight_init_type"))
        specs.append(WeightSpec(f"b{l}", (1, n), "bias_init_type"))
    return specs


def init(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    n, k = static(xs[0].width, "input width"), attrs["projection_dim"]
    out = []
    for spec in weights(attrs, xs):
        if spec.name.startswith("b") or attrs[spec.init_attr] == "Zero":
            out.append(zeros(spec.shape))
        elif k:
            out.append(normal(rng, spec.shape, np.sqrt(2.0 / (n + k))))
        else:
            out.append(normal(rng, spec.shape, np.sqrt(1.0 / n)))
    return out


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x0 = xs[0]
    x = x0
    saved = []
    if attrs["projection_dim"]:
        for l in range(attrs["num_layers"]):
            u, v, b = ws[3 * l:3 * l + 3]
            h = x @ u
            z = h @ v + b
            saved.append((x, h, z))
            x = x0 * z + x
    else:
        for l in range(attrs["num_layers"]):
            w, b = ws[2 * l:2 * l + 2]
            s = x @ w.T  # (B, 1): one scalar per row
            saved.append((x, s))
            x = x0 * s + b + x
    return [x], (x0, ws, saved)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x0, ws, layers = saved
    dy = gys[0]
    dx0 = np.zeros_like(dy)
    gws: list = [None] * len(ws)
    if attrs["projection_dim"]:
        for l in reversed(range(len(layers))):
            u, v, _ = ws[3 * l:3 * l + 3]
            x, h, z = layers[l]
            dz = dy * x0
            dx0 += dy * z
            dh = dz @ v.T
            gws[3 * l:3 * l + 3] = [x.T @ dh, h.T @ dz, dz.sum(axis=0, keepdims=True)]
            dy = dy + dh @ u.T
    else:
        for l in reversed(range(len(layers))):
            w = ws[2 * l]
            x, s = layers[l]
            dx0 += dy * s
            ds = (dy * x0).sum(axis=1, keepdims=True)  # (B, 1)
            gws[2 * l:2 * l + 2] = [ds.T @ x, dy.sum(axis=0, keepdims=True)]
            dy = dy + ds * w
    return [dx0 + dy], gws


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {"num_layers": attrs["num_layers"]}
    if attrs["projection_dim"]:
        p["projection_dim"] = attrs["projection_dim"]
    return {"mc_param": {**p, **init_fields(attrs, MC_INITS)}}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d["mc_param"]
    out = {"num_layers": p["num_layers"], **read_init_fields(p, MC_INITS)}
    if "projection_dim" in p:
        out["projection_dim"] = p["projection_dim"]
    return out


MULTI_CROSS = register(OpDef(
    name="MultiCross",
    kind="dense",
    attrs=(Attr("num_layers", 0, positive_int, "number of cross layers"),
           Attr("projection_dim", 0, non_negative_int, "0: DCN v1; k > 0: DCN v2 with rank-k projections"),
           init_attr("weight_init_type"), init_attr("bias_init_type")),
    infer=infer,
    traits=frozenset({"has_weights", "gemm"}),
    weights=weights,
    init=init,
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))
