"""GRU: one unidirectional GRU layer over every step of a sequence (cuDNN's GRU, as HugeCTR runs it).

Shapes. Let N = ``batchsize``, T = ``SeqLength``, V = ``vector_size`` and H = ``num_output``. The input
is 2-D (T·N, V) and the output (T·N, H), as HugeCTR's front end sizes them (same first dimension,
widths V and H). Both are read **sequence-major**, cuDNN's unpacked layout: row t·N + b is step t of
sequence b. The output holds the hidden state of every step. The initial hidden state is 0.
NOTE: reshaping a (B, T·V) tensor to (B·T, V) gives the sample-major order (row b·T + t), not this one,
exactly as in HugeCTR. When the first dimension depends on the batch size it must equal T·N at run time.

Equations (cuDNN's variant: the reset gate r multiplies the recurrent product, one bias per gate on the
input side only; σ the logistic function), for each step t with h₀ = 0:
    r_t = σ(W_r x_t + R_r h_{t−1} + b_r)
    z_t = σ(W_z x_t + R_z h_{t−1} + b_z)             (cuDNN's "update" gate i_t)
    n_t = tanh(W_h x_t + r_t ⊙ (R_h h_{t−1}) + b_h)
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

Weights: one flat tensor (1, 3H·V + 3H·H + 3H) in cuDNN's weight-space order
[W_r, W_z, W_h (each H×V row-major), R_r, R_z, R_h (each H×H), b_r, b_z, b_h (each H)].
GRU has no initialiser of its own in HugeCTR, so every initializer type gives all zeros.
Backward is full back-propagation through time.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.errors import ShapeError
from hgc.ir.ops._common import init_attr, init_fields, read_init_fields, require, static, zeros
from hgc.ir.ops._numeric import positive_int, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType

GRU_INITS = {"weight_init_type": "weight_init", "bias_init_type": "bias_init"}
_SIZES = ("num_output", "batchsize", "SeqLength", "vector_size")


def weight_size(hidden: int, vec: int) -> int:
    return 3 * hidden * vec + 3 * hidden * hidden + 3 * hidden


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    (x,) = xs
    require_float(x)
    n, t, v = attrs["batchsize"], attrs["SeqLength"], attrs["vector_size"]
    require(x.rank == 2, f"input must be 2-D (SeqLength*batchsize, vector_size), got rank {x.rank}")
    require(static(x.width, "input width") == v, f"input width {x.width} must equal vector_size {v}")
    rows = x.shape[0]
    if isinstance(rows, int):
        require(rows == t * n, f"input rows {rows} must equal SeqLength*batchsize = {t}*{n} = {t * n}")
    return [TensorType((rows, attrs["num_output"]), x.dtype)]


def weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    return [WeightSpec("weights", (1, weight_size(attrs["num_output"], attrs["vector_size"])),
                       "weight_init_type")]


def init(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    return [zeros(spec.shape) for spec in weights(attrs, xs)]


def split(w: np.ndarray, hidden: int, vec: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat weight space as W (3, H, V), R (3, H, H), b (3, H), gates in order r, z, h."""
    flat = w.reshape(-1)
    a, c = 3 * hidden * vec, 3 * hidden * vec + 3 * hidden * hidden
    return (flat[:a].reshape(3, hidden, vec), flat[a:c].reshape(3, hidden, hidden),
            flat[c:].reshape(3, hidden))


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x, hid, vec = xs[0], attrs["num_output"], attrs["vector_size"]
    n, steps = attrs["batchsize"], attrs["SeqLength"]
    if x.shape != (steps * n, vec):
        raise ShapeError(f"GRU input {x.shape} does not match (SeqLength*batchsize, vector_size) = "
                         f"({steps}*{n}, {vec})")
    w, r, b = split(ws[0], hid, vec)
    seq = x.reshape(steps, n, vec)
    h = np.zeros((n, hid), x.dtype)
    out, saved = [], []
    for t in range(steps):
        xt = seq[t]
        gr = _sigmoid(xt @ w[0].T + h @ r[0].T + b[0])
        gz = _sigmoid(xt @ w[1].T + h @ r[1].T + b[1])
        m = h @ r[2].T
        cand = np.tanh(xt @ w[2].T + gr * m + b[2])
        saved.append((xt, h, gr, gz, m, cand))
        h = (1 - gz) * cand + gz * h
        out.append(h)
    return [np.stack(out).reshape(steps * n, hid)], (saved, ws[0].shape, w, r)


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    steps_saved, wshape, w, r = saved
    hid, n = attrs["num_output"], attrs["batchsize"]
    gy = gys[0].reshape(len(steps_saved), n, hid)
    dw, dr, db = np.zeros_like(w), np.zeros_like(r), np.zeros((3, hid), w.dtype)
    dx = []
    dh = np.zeros((n, hid), gy.dtype)
    for t in reversed(range(len(steps_saved))):
        xt, hp, gr, gz, m, cand = steps_saved[t]
        dh = dh + gy[t]
        dcand = dh * (1 - gz)
        dgz = dh * (hp - cand)
        dhp = dh * gz
        da_h = dcand * (1 - cand * cand)
        da_r = da_h * m * gr * (1 - gr)
        da_z = dgz * gz * (1 - gz)
        dm = da_h * gr
        das = (da_r, da_z, da_h)
        for g in range(3):
            dw[g] += das[g].T @ xt
            db[g] += das[g].sum(axis=0)
        dr[0] += da_r.T @ hp
        dr[1] += da_z.T @ hp
        dr[2] += dm.T @ hp
        dx.append(da_r @ w[0] + da_z @ w[1] + da_h @ w[2])
        dh = dhp + da_r @ r[0] + da_z @ r[1] + dm @ r[2]
    dx_all = np.stack(dx[::-1]).reshape(-1, w.shape[2])
    dflat = np.concatenate([dw.reshape(-1), dr.reshape(-1), db.reshape(-1)]).reshape(wshape)
    return [dx_all], [dflat]


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"gru_param": {**{k: attrs[k] for k in _SIZES}, **init_fields(attrs, GRU_INITS)}}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d["gru_param"]
    return {**{k: p[k] for k in _SIZES if k in p}, **read_init_fields(p, GRU_INITS)}


GRU = register(OpDef(
    name="GRU",
    kind="dense",
    attrs=(Attr("num_output", 1, positive_int, "hidden size H"),
           Attr("batchsize", 1, positive_int, "sequences per GPU batch N"),
           Attr("SeqLength", 1, positive_int, "steps per sequence T"),
           Attr("vector_size", 1, positive_int, "input vector length V"),
           init_attr("weight_init_type"), init_attr("bias_init_type")),
    infer=infer,
    traits=frozenset({"has_weights", "fp32_only"}),
    weights=weights,
    init=init,
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))
