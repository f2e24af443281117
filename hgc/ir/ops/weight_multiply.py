"""WeightMultiply: scale each input feature by a learned vector, (B, S) → (B, S·k).

``weight_dims`` = [S, k], S the input width. y[b, s·k + j] = x[b, s]·W[s, j]; one weight W (S, k).
Initialisers (facts §1.5), with fan_in = S and fan_out = S·k: Default and XavierUniform
U(±√(6/(S + S·k))); Uniform U(±1/(S + S·k)); XavierNorm a normal of std √(2/(S + S·k))/0.8796
truncated at ±2 std; Zero 0.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import init_attr, require, static, truncated_normal, uniform, zeros
from hgc.ir.ops._numeric import is_int, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType


def dims_rule(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(is_int(i) and i > 0 for i in v)
    return None if ok else "must be two positive integers [S, k]"


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    require(x.rank == 2, f"input must be 2-D (B, S), got rank {x.rank}")
    s, k = attrs["weight_dims"]
    w = static(x.width, "input width")
    require(w == s, f"weight_dims[0] = {s} must equal the input width {w}")
    return [TensorType((x.shape[0], s * k), x.dtype)]


def weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    return [WeightSpec("W", tuple(attrs["weight_dims"]), "weight_init_type")]


def init(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    s, k = attrs["weight_dims"]
    fan = s + s * k
    kind = attrs["weight_init_type"]
    if kind == "Zero":
        return [zeros((s, k))]
    if kind == "Uniform":
        return [uniform(rng, (s, k), 1.0 / fan)]
    if kind == "XavierNorm":
        return [truncated_normal(rng, (s, k), np.sqrt(2.0 / fan) / 0.8796256610)]
    return [uniform(rng, (s, k), np.sqrt(6.0 / fan))]


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    (x,), (w,) = xs, ws
    y = x[:, :, None] * w[None, :, :]  # (B, S, k)
    return [y.reshape(x.shape[0], -1)], (x, w)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, w = saved
    g = gys[0].reshape(x.shape[0], *w.shape)
    return [(g * w[None]).sum(axis=2)], [(g * x[:, :, None]).sum(axis=0)]


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"weight_dims": list(attrs["weight_dims"])}
    if attrs["weight_init_type"] != "Default":
        out["weight_init"] = attrs["weight_init_type"]
    return out


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"weight_dims": tuple(d["weight_dims"])}
    if "weight_init" in d:
        out["weight_init_type"] = d["weight_init"]
    return out


WEIGHT_MULTIPLY = register(OpDef(
    name="WeightMultiply",
    kind="dense",
    attrs=(Attr("weight_dims", (), dims_rule, "[S, k]: input width and vector length"),
           init_attr("weight_init_type")),
    infer=infer,
    traits=frozenset({"has_weights"}),
    weights=weights,
    init=init,
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))
