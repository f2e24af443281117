"""A float64 host interpreter of ExecutablePlans for the lowering tests (no GPU): it executes GEMMs,
memsets and the launches of the kernel families below with NumPy versions of the kernels, so the wiring of
a lowering (arguments, offsets, strides, transposes, step order, accumulation flags) is checked against
the reference semantics of the ops. Families: select, weight_multiply, layer_norm, dice, gru, bias_act,
multi_cross, interaction, reduce's column sums, the elementwise sequence mask, the concat_slice copy and fc_narrow.
The two-stage column reductions are mirrored chunk by chunk (the partials view must hold the chunks the
launch's grid y makes).

``seeded_plan`` lowers a graph with every floating tensor taking a gradient and the gradients of the given
outputs treated as written, so one op's backward can be run without a loss.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.codegen.lower import _Lowering
from hgc.codegen.plan import (
    Arg,
    ExecutablePlan,
    GemmCall,
    KernelLaunch,
    Memset,
    Params,
    StridedGemm,
)
from hgc.ir.graph import Graph
from hgc.ir.registry import RefContext, get_op


class _Seeded(_Lowering):
    def __init__(self, graph: Graph, batch: int, seeds: Sequence[str]) -> None:
        self._seeds = tuple(seeds)
        super().__init__(graph, {}, batch, ())

    def _needs_grad(self) -> dict[str, bool]:
        return {t: not ty.sparse and ty.dtype in ("float32", "float16", "bfloat16")
                for t, ty in self.types.items()}

    def run(self) -> ExecutablePlan:
        self.grad_written.update(self._seeds)
        return super().run()


def seeded_plan(graph: Graph, batch: int, seeds: Sequence[str]) -> ExecutablePlan:
    return _Seeded(graph, batch, seeds).run()


def _sig(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _put(dst: np.ndarray, start: int, v: np.ndarray, acc: int) -> None:
    v = np.asarray(v, np.float64).reshape(-1)
    dst[start:start + v.size] = dst[start:start + v.size] + v if acc else v


# -- kernels (same arguments as the CUDA ones) ------------------------------------------------------
def select_fwd(p: Params, x: Any, y: Any, outer: int, d: int, inner: int) -> None:
    idx = np.asarray(p["index"])
    xv = x[:outer * d * inner].reshape(outer, d, inner)
    out = np.full((outer, idx.size, inner), np.nan)
    ok = idx < d
    out[:, ok, :] = xv[:, idx[ok], :]
    _put(y, 0, out, 0)


def select_bwd(p: Params, gy: Any, gx: Any, outer: int, d: int, inner: int, acc: int) -> None:
    q, off, qs = len(p["index"]), p["inv_off"], p["inv_q"]
    g = gy[:outer * q * inner].reshape(outer, q, inner)
    out = np.zeros((outer, d, inner))
    for e in range(min(d, len(off) - 1)):
        for k in range(off[e], off[e + 1]):
            out[:, e, :] += g[:, qs[k], :]
    _put(gx, 0, out, acc)


def sequence_mask_fwd(p: Params, src: Any, dst: Any, y: Any, batch: int) -> None:
    f, t = p["f"], p["t"]
    rows = np.arange(f)[None, :] < src[:batch, None]
    cols = np.arange(t)[None, :] < dst[:batch, None]
    _put(y, 0, (rows[:, :, None] & cols[:, None, :]).astype(np.float64), 0)


def wm_fwd(p: Params, x: Any, w: Any, y: Any, rows: int) -> None:
    s, k = p["s"], p["k"]
    _put(y, 0, x[:rows * s].reshape(rows, s, 1) * w[:s * k].reshape(1, s, k), 0)


def wm_bwd_x(p: Params, gy: Any, w: Any, gx: Any, rows: int, acc: int) -> None:
    s, k = p["s"], p["k"]
    _put(gx, 0, (gy[:rows * s * k].reshape(rows, s, k) * w[:s * k].reshape(1, s, k)).sum(axis=2), acc)


# -- two-stage column reductions (the prelude's col_partials / col_finish) -----------------------------
def col_partials(part: Any, values: np.ndarray) -> None:
    """Stage 1 on a (rows, cols) array: row chunk k of ceil(rows / chunks) rows sums into part[k, :]; the
    number of chunks is what the plan sized the partials view for (the launch's grid y)."""
    rows, cols = values.shape
    parts = part.size // cols
    assert parts * cols <= part.size and parts >= 1
    per = -(-rows // parts)
    out = np.zeros((parts, cols))
    for k in range(parts):
        out[k] = values[min(rows, k * per):min(rows, (k + 1) * per)].sum(axis=0)
    part[:parts * cols] = out.reshape(-1)


def col_finish(part: Any, parts: int, cols: int) -> np.ndarray:
    """Stage 2: the per-column sums of the ``parts`` chunks (the whole partials view)."""
    assert parts * cols == part.size, f"{parts} chunks of {cols} columns in a partials view of {part.size}"
    return part[:parts * cols].reshape(parts, cols).sum(axis=0)


def wm_wgrad_part(p: Params, x: Any, gy: Any, part: Any, rows: int) -> None:
    s, k = p["s"], p["k"]
    col_partials(part, (gy[:rows * s * k].reshape(rows, s, k) * x[:rows * s].reshape(rows, s, 1))
                 .reshape(rows, s * k))


def wm_wgrad_finish(p: Params, part: Any, parts: int, dw: Any) -> None:
    _put(dw, 0, col_finish(part, parts, p["s"] * p["k"]), 1)


def bias_fwd(p: Params, y: Any, b: Any, rows: int, cols: int) -> None:
    v = _rows(y, rows, cols) + b[:cols]
    _put(y, 0, np.maximum(v, 0.0) if p["act"] == "Relu" else v, 0)


def bias_part(p: Params, g: Any, part: Any, rows: int, cols: int) -> None:
    col_partials(part, _rows(g, rows, cols))


def drelu_bias_part(p: Params, y: Any, g: Any, part: Any, rows: int, cols: int) -> None:
    masked = np.where(_rows(y, rows, cols) > 0, _rows(g, rows, cols), 0.0)
    _put(g, 0, masked, 0)
    col_partials(part, masked)


def bias_finish(p: Params, part: Any, parts: int, db: Any, cols: int) -> None:
    _put(db, 0, col_finish(part, parts, cols), 1)


def colsum_finish(p: Params, part: Any, parts: int, out: Any, cols: int) -> None:
    _put(out, 0, col_finish(part, parts, cols), 1)


def narrow_fwd(p: Params, x: Any, w: Any, b: Any, y: Any, rows: int) -> None:
    k, m = p["k"], p["m"]
    v = _rows(x, rows, k) @ _rows(w, k, m) + b[:m]
    _put(y, 0, np.maximum(v, 0.0) if p["act"] == "Relu" else v, 0)


def narrow_wgrad_part(p: Params, x: Any, g: Any, part: Any, rows: int) -> None:
    k, m = p["k"], p["m"]
    col_partials(part, (_rows(x, rows, k)[:, :, None] * _rows(g, rows, m)[:, None, :]).reshape(rows, k * m))


def narrow_wgrad_finish(p: Params, part: Any, parts: int, dw: Any) -> None:
    _put(dw, 0, col_finish(part, parts, p["k"] * p["m"]), 1)


def narrow_dgrad(p: Params, g: Any, w: Any, dx: Any, rows: int, acc: int) -> None:
    k, m = p["k"], p["m"]
    _put(dx, 0, _rows(g, rows, m) @ _rows(w, k, m).T, acc)


def cross_v1_fwd_all(p: Params, x0: Any, *args: Any) -> None:
    """(x0, w_0, b_0, ..., w_{L-1}, b_{L-1}, x_1, ..., x_L, s_0, ..., s_{L-1}, batch)."""
    nw, layers = p["n"], p["layers"]
    assert len(args) == 4 * layers + 1, f"v1_fwd_all of {layers} layers takes {4 * layers + 2} arguments"
    wb, xs, ss, batch = args[:2 * layers], args[2 * layers:3 * layers], args[3 * layers:4 * layers], args[-1]
    x0v = _rows(x0, batch, nw)
    x = x0v
    for l in range(layers):
        d = x @ wb[2 * l][:nw]
        ss[l][:batch] = d
        x = x0v * d[:, None] + wb[2 * l + 1][:nw] + x
        _put(xs[l], 0, x, 0)


def cross_v1_bwd(p: Params, x0: Any, xl: Any, dy: Any, s: Any, w: Any, dx0: Any, acc: int, gx: Any, gacc: int,
                 part: Any, batch: int) -> None:
    nw = p["n"]
    g = _rows(dy, batch, nw).copy()
    ds = (g * _rows(x0, batch, nw)).sum(axis=1)
    col_partials(part, np.concatenate([ds[:, None] * _rows(xl, batch, nw), g], axis=1))
    dx = g * s[:batch, None] + (_rows(dx0, batch, nw) if acc else 0.0)
    gnew = g + ds[:, None] * w[:nw]
    if isinstance(gx, np.ndarray):  # the last layer: the input's gradient, dx0 and dy left alone
        _put(gx, 0, dx + gnew, gacc)
    else:
        _put(dx0, 0, dx, 0)
        _put(dy, 0, gnew, 0)


def cross_v1_wgrad_finish(p: Params, part: Any, parts: int, dw: Any, db: Any) -> None:
    nw = p["n"]
    tot = col_finish(part, parts, 2 * nw)
    _put(dw, 0, tot[:nw], 1)
    _put(db, 0, tot[nw:], 1)


def cross_v2_combine(p: Params, x0: Any, z: Any, b: Any, xl: Any, xnext: Any, batch: int) -> None:
    nw = p["n"]
    zb = _rows(z, batch, nw) + b[:nw]
    _put(z, 0, zb, 0)
    _put(xnext, 0, _rows(x0, batch, nw) * zb + _rows(xl, batch, nw), 0)


def cross_v2_bwd(p: Params, dy: Any, x0: Any, z: Any, dz: Any, dx0: Any, acc: int, batch: int) -> None:
    nw = p["n"]
    g = _rows(dy, batch, nw)
    _put(dz, 0, g * _rows(x0, batch, nw), 0)
    _put(dx0, 0, g * _rows(z, batch, nw), acc)


def cross_finish(p: Params, dx0: Any, dy: Any, gx: Any, batch: int, acc: int) -> None:
    nw = p["n"]
    _put(gx, 0, _rows(dx0, batch, nw) + _rows(dy, batch, nw), acc)


def _tril(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.tril_indices(n, -1)  # row-major strict lower triangle: (1,0), (2,0), (2,1), ...
    return i, j


def inter_fwd(p: Params, x: Any, e: Any, y: Any, batch: int) -> None:
    d, f = p["d"], p["f"]
    r = np.concatenate([x[:batch * d].reshape(batch, 1, d), e[:batch * f * d].reshape(batch, f, d)], axis=1)
    i, j = _tril(f + 1)
    dots = np.einsum("bpc,bpc->bp", r[:, i, :], r[:, j, :])
    _put(y, 0, np.concatenate([r[:, 0, :], dots, np.zeros((batch, 1))], axis=1), 0)


def inter_bwd(p: Params, x: Any, e: Any, gy: Any, gx: Any, ge: Any, batch: int, acc_x: int,
              acc_e: int) -> None:
    d, f = p["d"], p["f"]
    n = f + 1
    r = np.concatenate([x[:batch * d].reshape(batch, 1, d), e[:batch * f * d].reshape(batch, f, d)], axis=1)
    g = gy[:batch * (d + f * n // 2 + 1)].reshape(batch, -1)
    i, j = _tril(n)
    gm = np.zeros((batch, n, n))
    gm[:, i, j] = g[:, d:d + i.size]
    gm = gm + gm.transpose(0, 2, 1)
    dr = gm @ r
    if not isinstance(gx, (int, np.integer)):
        _put(gx, 0, dr[:, 0, :] + g[:, :d], acc_x)
    if not isinstance(ge, (int, np.integer)):
        _put(ge, 0, dr[:, 1:, :], acc_e)


def _rows(x: Any, rows: int, cols: int) -> np.ndarray:
    return x[:rows * cols].reshape(rows, cols)


def ln_fwd(p: Params, x: Any, gamma: Any, beta: Any, y: Any, mean: Any, invstd: Any, rows: int,
           cols: int) -> None:
    xv = _rows(x, rows, cols)
    mu = xv.mean(axis=1)
    inv = 1.0 / np.sqrt(xv.var(axis=1) + p["eps"])
    mean[:rows], invstd[:rows] = mu, inv
    _put(y, 0, (xv - mu[:, None]) * inv[:, None] * gamma[:cols] + beta[:cols], 0)


def ln_bwd_x(p: Params, x: Any, gy: Any, gamma: Any, mean: Any, invstd: Any, gx: Any, rows: int, cols: int,
             acc: int) -> None:
    xh = (_rows(x, rows, cols) - mean[:rows, None]) * invstd[:rows, None]
    h = _rows(gy, rows, cols) * gamma[:cols]
    out = invstd[:rows, None] / cols * (cols * h - h.sum(axis=1, keepdims=True)
                                        - xh * (h * xh).sum(axis=1, keepdims=True))
    _put(gx, 0, out, acc)


def ln_wgrad(p: Params, x: Any, gy: Any, mean: Any, invstd: Any, dgamma: Any, dbeta: Any, rows: int,
             cols: int) -> None:
    xh = (_rows(x, rows, cols) - mean[:rows, None]) * invstd[:rows, None]
    g = _rows(gy, rows, cols)
    _put(dgamma, 0, (g * xh).sum(axis=0), 1)
    _put(dbeta, 0, g.sum(axis=0), 1)


def _dice_apply(p: Params, xv: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    a = p["alpha"]
    return xv * (a + (1 - a) * _sig((xv - mu) / np.sqrt(var + p["eps"])))


def dice_fwd_train(p: Params, x: Any, y: Any, mean: Any, invstd: Any, rm: Any, rv: Any, seen: Any,
                   batch: int) -> None:
    nf = p["n"]
    xv = _rows(x, batch, nf)
    mu, var = xv.mean(axis=0), xv.var(axis=0)
    mean[:nf], invstd[:nf] = mu, 1.0 / np.sqrt(var + p["eps"])
    m = np.maximum(1.0 / (seen[:nf] + 1.0), p["momentum"])
    first = seen[:nf] == 0
    rm[:nf] = np.where(first, mu, (1 - m) * rm[:nf] + m * mu)
    rv[:nf] = np.where(first, var, (1 - m) * rv[:nf] + m * var)
    seen[:nf] += 1
    _put(y, 0, _dice_apply(p, xv, mu, var), 0)


def dice_fwd_eval(p: Params, x: Any, y: Any, rm: Any, rv: Any, seen: Any, batch: int) -> None:
    nf = p["n"]
    xv = _rows(x, batch, nf)
    trained = seen[:nf] > 0
    mu = np.where(trained, rm[:nf], xv.mean(axis=0))
    var = np.where(trained, rv[:nf], xv.var(axis=0))
    _put(y, 0, _dice_apply(p, xv, mu, var), 0)


def dice_bwd(p: Params, x: Any, gy: Any, mean: Any, invstd: Any, gx: Any, batch: int, acc: int) -> None:
    nf, a = p["n"], p["alpha"]
    xv, g = _rows(x, batch, nf), _rows(gy, batch, nf)
    n = (xv - mean[:nf]) * invstd[:nf]
    pr = _sig(n)
    gn = g * xv * (1 - a) * pr * (1 - pr)
    out = g * (a + (1 - a) * pr) + invstd[:nf] * (gn - gn.mean(axis=0) - n * (gn * n).mean(axis=0))
    _put(gx, 0, out, acc)


def gru_fwd(p: Params, xw: Any, hr: Any, w: Any, y: Any, save: Any, t: int) -> None:
    nb, h, v = p["n"], p["h"], p["v"]
    bias = w[3 * h * v + 3 * h * h:][:3 * h]
    xr = xw[t * nb * 3 * h:(t + 1) * nb * 3 * h].reshape(nb, 3 * h)
    ar, az = xr[:, :h] + bias[:h], xr[:, h:2 * h] + bias[h:2 * h]
    m, hp = np.zeros((nb, h)), np.zeros((nb, h))
    if t > 0:
        hm = hr[:nb * 3 * h].reshape(nb, 3 * h)
        ar, az, m = ar + hm[:, :h], az + hm[:, h:2 * h], hm[:, 2 * h:]
        hp = y[(t - 1) * nb * h:t * nb * h].reshape(nb, h)
    r, z = _sig(ar), _sig(az)
    n = np.tanh(xr[:, 2 * h:] + r * m + bias[2 * h:])
    _put(y, t * nb * h, (1 - z) * n + z * hp, 0)
    _put(save, t * nb * 4 * h, np.concatenate([r, z, n, m], axis=1), 0)


def gru_bwd(p: Params, gy: Any, y: Any, save: Any, dh: Any, da: Any, dm: Any, t: int) -> None:
    nb, h, steps = p["n"], p["h"], p["steps"]
    s = save[t * nb * 4 * h:(t + 1) * nb * 4 * h].reshape(nb, 4 * h)
    r, z, n, m = s[:, :h], s[:, h:2 * h], s[:, 2 * h:3 * h], s[:, 3 * h:]
    hp = y[(t - 1) * nb * h:t * nb * h].reshape(nb, h) if t > 0 else np.zeros((nb, h))
    d = gy[t * nb * h:(t + 1) * nb * h].reshape(nb, h)
    if t < steps - 1:
        d = d + dh[:nb * h].reshape(nb, h)
    dah = d * (1 - z) * (1 - n * n)
    dar = dah * m * r * (1 - r)
    daz = d * (hp - n) * z * (1 - z)
    _put(da, t * nb * 3 * h, np.concatenate([dar, daz, dah], axis=1), 0)
    _put(dm, t * nb * 3 * h, np.concatenate([dar, daz, dah * r], axis=1), 0)
    _put(dh, 0, d * z, 0)


def gru_bias_grad(p: Params, da: Any, wg: Any, rows: int) -> None:
    h, v = p["h"], p["v"]
    _put(wg, 3 * h * v + 3 * h * h, da[:rows * 3 * h].reshape(rows, 3 * h).sum(axis=0), 1)


def copy(p: Params, src: Any, dst: Any, n0: int, n1: int, n2: int, nz: int, s0: int, s1: int, soff: int,
         d0: int, d1: int, doff: int, acc: int) -> None:
    o, j, c = np.meshgrid(np.arange(n0), np.arange(n1), np.arange(n2 + nz), indexing="ij")
    o, j, c = o.ravel(), j.ravel(), c.ravel()
    di, keep = doff + o * d0 + j * d1 + c, c < n2
    v = np.zeros(di.shape, dst.dtype)
    v[keep] = src[(soff + o * s0 + j * s1 + c)[keep]]
    dst[di] = dst[di] + v if acc else v


KERNELS = {
    ("select", "fwd"): select_fwd, ("select", "bwd"): select_bwd,
    ("elementwise:sequence_mask", "fwd"): sequence_mask_fwd,
    ("weight_multiply", "fwd"): wm_fwd, ("weight_multiply", "bwd_x"): wm_bwd_x,
    ("weight_multiply", "wgrad_part"): wm_wgrad_part, ("weight_multiply", "wgrad_finish"): wm_wgrad_finish,
    ("fc_narrow", "fwd"): narrow_fwd, ("fc_narrow", "wgrad_part"): narrow_wgrad_part,
    ("fc_narrow", "wgrad_finish"): narrow_wgrad_finish, ("fc_narrow", "dgrad"): narrow_dgrad,
    ("bias_act", "fwd"): bias_fwd, ("bias_act", "bias_part"): bias_part,
    ("bias_act", "drelu_bias_part"): drelu_bias_part, ("bias_act", "bias_finish"): bias_finish,
    ("reduce", "colsum_part"): bias_part, ("reduce", "colsum_finish"): colsum_finish,
    ("multi_cross", "v1_fwd_all"): cross_v1_fwd_all, ("multi_cross", "v1_bwd"): cross_v1_bwd,
    ("multi_cross", "v1_wgrad_finish"): cross_v1_wgrad_finish, ("multi_cross", "v2_combine"): cross_v2_combine,
    ("multi_cross", "v2_bwd"): cross_v2_bwd, ("multi_cross", "finish"): cross_finish,
    ("interaction", "fwd"): inter_fwd, ("interaction", "bwd"): inter_bwd,
    ("layer_norm", "fwd"): ln_fwd, ("layer_norm", "bwd_x"): ln_bwd_x, ("layer_norm", "wgrad"): ln_wgrad,
    ("dice", "fwd_train"): dice_fwd_train, ("dice", "fwd_eval"): dice_fwd_eval, ("dice", "bwd"): dice_bwd,
    ("gru", "fwd"): gru_fwd, ("gru", "bwd"): gru_bwd, ("gru", "bias_grad"): gru_bias_grad,
    ("concat_slice", "copy"): copy,
}


class HostPlan:
    """Buffers (float64, one flat array per buffer id), the flat weights and their gradients, states."""

    def __init__(self, plan: ExecutablePlan, batch: int, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
        self.plan, self.batch = plan, batch
        sizes: dict[int, int] = {}
        for b in plan.buffers:
            sizes[b.buffer] = max(sizes.get(b.buffer, 0), b.numel.at(batch))
        self.buffers = {i: np.full(n, np.nan) for i, n in sizes.items()}
        self.views = {(b.tensor, b.kind): b for b in plan.buffers}
        count = plan.weights[-1].offset + plan.weights[-1].size if plan.weights else 1
        self.master, self.wgrad = np.zeros(count), np.zeros(count)
        for w in plan.weights:
            self.master[w.offset:w.offset + w.size] = np.asarray(weights[w.node][w.index]).reshape(-1)
        self.states = {s.name: np.full(max(1, s.size), s.init) for s in plan.states}
        self.training = True

    def view(self, name: str, kind: str = "activation") -> np.ndarray:
        b = self.views[(name, kind)]
        return self.buffers[b.buffer][:b.numel.at(self.batch)].reshape(b.concrete(self.batch))

    def set(self, name: str, value: np.ndarray, kind: str = "activation") -> None:
        self.view(name, kind)[...] = value

    def wgrads(self, node: str) -> list[np.ndarray]:
        return [self.wgrad[w.offset:w.offset + w.size].reshape(w.shape) for w in self.plan.weights
                if w.node == node]

    def resolve(self, a: Arg) -> Any:
        kind = {"act": "activation", "grad": "gradient", "scratch": "scratch"}.get(a.kind)
        if kind is not None:
            return self.buffers[self.views[(a.name, kind)].buffer]
        if a.kind in ("weight", "wgrad"):
            w = next(s for s in self.plan.weights if (s.node, s.index) == (a.name, a.index))
            return (self.wgrad if a.kind == "wgrad" else self.master)[w.offset:w.offset + w.size]
        if a.kind == "state":
            return self.states[a.name]
        if a.kind == "int":
            return a.value.at(self.batch)
        if a.kind == "float":
            return a.value
        if a.kind == "null":
            return 0
        raise ValueError(f"the host interpreter does not know argument kind '{a.kind}'")

    def _matrices(self, a: Arg, off: int, count: int, stride: int, rows: int, cols: int,
                  ld: int | None = None) -> list[np.ndarray]:
        """``count`` (rows, cols) views of the operand ``a`` (rows ``ld`` elements apart; default cols)."""
        base = self.resolve(a)
        ld = cols if ld is None else ld
        assert ld >= cols, f"GEMM operand {a}: leading dimension {ld} < {cols} columns"
        out = []
        for i in range(count):
            s = off + i * stride
            assert s >= 0 and s + (rows - 1) * ld + cols <= base.size, f"GEMM operand {a} out of its view"
            out.append(np.lib.stride_tricks.as_strided(base[s:], (rows, cols), (ld * base.itemsize,
                                                                                 base.itemsize)))
        return out

    def run_op(self, op: Any) -> None:
        at = self.batch
        if isinstance(op, KernelLaunch):
            if op.mode == "train" and not self.training or op.mode == "eval" and self.training:
                return
            spec = self.plan.kernel(op.spec)
            family = spec.template if spec.template != "elementwise" else f"elementwise:{spec.params['op']}"
            KERNELS[(family, op.function)](spec.params, *(self.resolve(a) for a in op.args))
        elif isinstance(op, StridedGemm):
            m, n, k, cnt = op.m.at(at), op.n.at(at), op.k.at(at), op.batch.at(at)
            As = self._matrices(op.a, op.offset_a.at(at), cnt, op.stride_a.at(at),
                                *((k, m) if op.transa else (m, k)))
            Bs = self._matrices(op.b, op.offset_b.at(at), cnt, op.stride_b.at(at),
                                *((n, k) if op.transb else (k, n)))
            Cs = self._matrices(op.c, op.offset_c.at(at), cnt, op.stride_c.at(at), m, n)
            for a, b, c in zip(As, Bs, Cs):
                prod = (a.T if op.transa else a) @ (b.T if op.transb else b)
                c[...] = op.alpha * prod + (op.beta * c if op.beta else 0.0)
        elif isinstance(op, GemmCall):
            m, n, k = op.m.at(at), op.n.at(at), op.k.at(at)
            (a,) = self._matrices(op.a, 0, 1, 0, *((k, m) if op.transa else (m, k)), op.lda.at(at))
            (b,) = self._matrices(op.b, 0, 1, 0, *((n, k) if op.transb else (k, n)), op.ldb.at(at))
            (c,) = self._matrices(op.c, 0, 1, 0, m, n, op.ldc.at(at))
            prod = (a.T if op.transa else a) @ (b.T if op.transb else b)
            c[...] = op.alpha * prod + (op.beta * c if op.beta else 0.0)
            if op.epilogue is not None:
                self.run_op(op.epilogue)
        elif isinstance(op, Memset):
            if op.target.kind in ("wgrads", "wgrad"):
                self.wgrad[...] = 0.0
            else:
                self.resolve(op.target)[...] = 0.0
        else:
            raise ValueError(f"the host interpreter does not run {type(op).__name__}")

    def forward(self, training: bool = True) -> None:
        self.training = training
        for step in self.plan.forward:
            for op in step.ops:
                self.run_op(op)

    def backward(self) -> None:
        for step in self.plan.backward:
            for op in step.ops:
                self.run_op(op)


def reference(graph: Graph, feeds: Mapping[str, np.ndarray], weights: Mapping[str, Sequence[np.ndarray]],
              out_grads: Mapping[str, np.ndarray], state: dict[str, dict] | None = None,
              training: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list]]:
    """(values, input/activation gradients, weight gradients per node) of the reference semantics in
    float64; fan-out gradients are summed. ``state`` keeps each node's RefContext state across calls."""
    state = {} if state is None else state
    values: dict[str, np.ndarray] = {k: np.asarray(v, np.float64) for k, v in feeds.items()}
    saved: dict[str, Any] = {}
    nodes = [n for n in graph.nodes() if get_op(n.op).kind != "input"]
    for n in nodes:
        ctx = RefContext(training=training, rng=np.random.default_rng(0), state=state.setdefault(n.name, {}))
        ys, saved[n.name] = get_op(n.op).forward(ctx, n.attrs, [values[t] for t in n.inputs],
                                                 [np.asarray(w, np.float64) for w in weights.get(n.name, [])])
        values.update(zip(n.outputs, ys))
    grads: dict[str, np.ndarray] = {k: np.asarray(v, np.float64) for k, v in out_grads.items()}
    wgrads: dict[str, list] = {}
    if not training:
        return values, grads, wgrads
    for n in reversed(nodes):
        if not any(t in grads for t in n.outputs):
            continue
        gys = [grads.get(t, np.zeros_like(values[t])) for t in n.outputs]
        ctx = RefContext(training=True, rng=np.random.default_rng(0), state=state[n.name])
        gxs, gws = get_op(n.op).backward(ctx, n.attrs, saved[n.name], gys)
        if gws:
            wgrads[n.name] = [np.asarray(g) for g in gws]
        for t, gx in zip(n.inputs, gxs):
            if gx is not None:
                gx = np.asarray(gx).reshape(values[t].shape)
                grads[t] = grads[t] + gx if t in grads else gx
    return values, grads, wgrads


def rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    assert np.all(np.isfinite(a)), "result has NaN/inf (an element was never written)"
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_graph(graph: Graph, batch: int, seeds: Sequence[str], weights: Mapping[str, Sequence[np.ndarray]],
                rng: np.random.Generator, tol: float = 1e-10) -> tuple[ExecutablePlan, HostPlan]:
    """Lower ``graph`` seeded at ``seeds``, run it on the host on random dense input and seed gradients, and
    assert every output, the dense input's gradient and every weight gradient match the reference."""
    plan = seeded_plan(graph, batch, seeds)
    host = HostPlan(plan, batch, weights)
    dense = rng.uniform(-1.5, 1.5, host.view("dense").shape)
    host.set("dense", dense)
    host.forward()
    gys = {t: rng.uniform(-1, 1, host.view(t, "gradient").shape) for t in seeds}
    for t, g in gys.items():
        host.set(t, g, "gradient")
    host.backward()
    values, grads, wgrads = reference(graph, {"dense": dense}, weights, gys)
    for n in graph.nodes():
        if get_op(n.op).kind == "dense":
            for t in n.outputs:
                assert rel_err(host.view(t), values[t]) < tol, f"output {t}"
    assert rel_err(host.view("dense", "gradient"), grads["dense"]) < tol, "gradient of the dense input"
    for node, gs in wgrads.items():
        for got, want in zip(host.wgrads(node), gs):
            assert rel_err(got, np.asarray(want).reshape(got.shape)) < tol, f"weight gradient of {node}"
    return plan, host
