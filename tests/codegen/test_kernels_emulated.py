"""The column-reduction kernels (bias_act, reduce, weight_multiply, multi_cross), the interaction kernels,
MultiCross v1's row kernels, fc_narrow and the one-hot embedding kernels (single-GPU table and multi-GPU
shards; atomics included) — which also compile for sm_90 here — run on the CPU through
tests/codegen/_cuda_emu.py (g++ and a shim of the CUDA built-ins), against the reference semantics, in
every dtype, at odd sizes (1 row, 3 rows, more chunks than rows, 1/31/33/70/429 columns). The plain sums of
the column reductions are also checked bit for bit against a float32 replay of their fixed summation order
(tests/codegen/_col_order.py): that order, not the hardware's scheduling, decides every bit of the result.
The same kernels run on the GPU in tests/gpu/test_reductions.py and tests/gpu/test_kernels.py."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.codegen import nvrtc
from hgc.codegen.lower import column_parts, interaction_config, row_parts
from hgc.codegen.plan import KernelSpec, Params
from hgc.codegen.render import render
from hgc.ir.registry import RefContext, get_op
from tests.codegen import _cuda_emu as emu
from tests.codegen._col_order import column_sums

pytestmark = pytest.mark.skipif(not emu.available(), reason="needs g++ to run kernels on the CPU")
DTYPES = ("float32", "float16", "bfloat16")
TOL = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}


def module(template: str, **params: object) -> emu.EmulatedModule:
    return emu.EmulatedModule(KernelSpec(template, f"e_{template}", Params(params)))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape and np.all(np.isfinite(a))
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def grids(cols: int, parts: int) -> tuple[tuple[int, int], tuple[int, int]]:
    tiles = -(-cols // 32)
    return (tiles, parts), (tiles, 1)


SHAPES = [(1, 1), (3, 31), (3, 33), (200, 33), (131, 70)]


# -- bias gradient (with the fused dReLU) and reduce's column sums --------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", SHAPES)
def test_bias_gradient(dtype: str, rows: int, cols: int) -> None:
    r = np.random.default_rng(rows * 100 + cols)
    m = module("bias_act", dtype=dtype, act="Relu")
    for parts in sorted({column_parts(rows, cols), 1, 5}):  # 5 chunks of 3 rows: some are empty
        g0 = emu.host_array(r.uniform(-1, 1, (rows, cols)), dtype)
        y = emu.host_array(r.uniform(-1, 1, (rows, cols)), dtype)
        db0 = r.uniform(-1, 1, cols).astype(np.float32)
        (g1, g2) = grids(cols, parts)
        part = np.full(parts * cols, np.nan, np.float32)
        db = db0.copy()
        g = g0.copy()
        m("drelu_bias_part", g1, (32, 8), y, g, part, np.int64(rows), np.int32(cols))
        m("bias_finish", g2, (32, 8), part, np.int32(parts), db, np.int32(cols))
        masked = np.where(emu.as_float64(y, dtype) > 0, emu.as_float64(g0, dtype), 0.0)
        assert np.array_equal(emu.as_float64(g, dtype), masked), "dReLU in place"
        assert np.array_equal(db, column_sums(masked, parts, db0)), f"{parts} chunks"
        assert rel(db - db0, masked.sum(axis=0)) < 1e-5
        # without the activation: g untouched, same order
        part[:] = np.nan
        db = db0.copy()
        m("bias_part", g1, (32, 8), g0, part, np.int64(rows), np.int32(cols))
        m("bias_finish", g2, (32, 8), part, np.int32(parts), db, np.int32(cols))
        assert np.array_equal(db, column_sums(emu.as_float64(g0, dtype), parts, db0))


@pytest.mark.parametrize("act", ["Relu", "Non"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_forward_follows_the_column(dtype: str, act: str) -> None:
    """y = act(y + b) in place: the kernel tracks each element's column across grid strides (blocks x
    threads both smaller and larger than a row, strides that wrap around the row several times)."""
    r = np.random.default_rng(11)
    m = module("bias_act", dtype=dtype, act=act)
    for rows, cols, blocks, threads in [(5, 33, 1, 32), (7, 70, 3, 64), (200, 33, 2, 128), (3, 1, 1, 32),
                                        (13, 257, 5, 32)]:
        y0 = emu.host_array(r.uniform(-1, 1, (rows, cols)), dtype)
        b = r.uniform(-1, 1, cols).astype(np.float32)
        y = y0.copy()
        m("fwd", (blocks, 1), (threads, 1), y, b, np.int64(rows), np.int32(cols))
        want = emu.as_float64(y0, dtype) + b
        if act == "Relu":
            want = np.maximum(want, 0.0)
        assert rel(emu.as_float64(y, dtype), want) < TOL[dtype], (rows, cols, blocks, threads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduce_column_sums(dtype: str) -> None:
    rows, cols = 77, 45
    parts = column_parts(rows, cols)
    assert parts == 2
    x = emu.host_array(np.random.default_rng(3).uniform(-2, 2, (rows, cols)), dtype)
    m = module("reduce", dtype=dtype, op="sum")
    part = np.full(parts * cols, np.nan, np.float32)
    out = np.zeros(cols, np.float32)
    g1, g2 = grids(cols, parts)
    m("colsum_part", g1, (32, 8), x, part, np.int64(rows), np.int32(cols))
    m("colsum_finish", g2, (32, 8), part, np.int32(parts), out, np.int32(cols))
    assert np.array_equal(out, column_sums(emu.as_float64(x, dtype), parts, np.zeros(cols)))


def test_column_tiles_step_over_a_short_grid() -> None:
    """Fewer blocks in x than 32-column tiles: the kernels step over the rest (grid stride)."""
    rows, cols = 40, 100
    x = np.random.default_rng(4).uniform(-1, 1, (rows, cols)).astype(np.float32)
    m = module("reduce", dtype="float32", op="sum")
    part = np.full(3 * cols, np.nan, np.float32)
    out = np.zeros(cols, np.float32)
    m("colsum_part", (2, 3), (32, 8), x, part, np.int64(rows), np.int32(cols))
    m("colsum_finish", (1, 1), (32, 8), part, np.int32(3), out, np.int32(cols))
    assert np.array_equal(out, column_sums(x, 3, np.zeros(cols)))


# -- weight gradients ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rows,s,k,dtype", [(1, 1, 1, "float32"), (3, 11, 3, "bfloat16"),
                                             *((150, 7, 5, dt) for dt in DTYPES)])
def test_weight_multiply_wgrad(dtype: str, rows: int, s: int, k: int) -> None:
    r = np.random.default_rng(rows + s)
    x = emu.host_array(r.uniform(-1, 1, (rows, s)), dtype)
    gy = emu.host_array(r.uniform(-1, 1, (rows, s * k)), dtype)
    w = r.uniform(-1, 1, (s, k))
    _, _, (gw_ref,) = _ref("WeightMultiply", {"weight_dims": (s, k)}, [emu.as_float64(x, dtype)], [w],
                           [emu.as_float64(gy, dtype)])
    m = module("weight_multiply", dtype=dtype, s=s, k=k)
    dw0, dw, _ = _wgrad(m, r, rows, s * k, x, gy)
    assert rel(dw - dw0, gw_ref.reshape(-1)) < 1e-5


def _wgrad(m: emu.EmulatedModule, r: np.random.Generator, rows: int, cols: int, *inputs: np.ndarray) -> tuple:
    """(dw0, dw, parts): a weight gradient of ``cols`` values summed by the module's wgrad_part and
    wgrad_finish (column partials over ``rows``) onto random values dw0."""
    parts = column_parts(rows, cols)
    g1, g2 = grids(cols, parts)
    part = np.full(parts * cols, np.nan, np.float32)
    dw0 = r.uniform(-1, 1, cols).astype(np.float32)
    dw = dw0.copy()
    m("wgrad_part", g1, (32, 8), *inputs, part, np.int64(rows))
    m("wgrad_finish", g2, (32, 8), part, np.int32(parts), dw)
    return dw0, dw, parts


# -- MultiCross v1: all layers' forward in one launch, one backward launch per layer --------------------
def _round(x: np.ndarray, dtype: str) -> np.ndarray:
    return emu.as_float64(emu.host_array(np.asarray(x, np.float32), dtype), dtype).astype(np.float32)


def _warp_dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row dot products in float32 as a warp forms them: lane k adds columns k, k + 32, ... in order,
    then the butterfly of hgc::warp_sum (xor 16, 8, 4, 2, 1)."""
    rows, n = x.shape
    nj = -(-n // 32)
    prod = np.zeros((rows, nj * 32), np.float32)
    prod[:, :n] = x.astype(np.float32) * w.astype(np.float32)
    lanes = np.zeros((rows, 32), np.float32)
    for j in range(nj):
        lanes = lanes + prod[:, 32 * j:32 * j + 32]
    for o in (16, 8, 4, 2, 1):
        lanes = lanes + lanes[:, np.arange(32) ^ o]
    return lanes[:, 0]


def _cross_fwd_replay(x0: np.ndarray, ws: list, dtype: str, carry_rounded: bool = True) -> tuple[list, list]:
    """(x_1..x_L, s_0..s_{L-1}) in float32 the way v1_fwd_all forms them (without FMA contraction, as g++
    builds the emulated module); ``carry_rounded`` False carries the unrounded float value instead."""
    a = x0.astype(np.float32)
    x, xs, ss = a, [], []
    for l in range(len(ws) // 2):
        w, b = (np.asarray(v, np.float32).reshape(-1) for v in ws[2 * l:2 * l + 2])
        d = _warp_dot(x, w)
        v = (a * d[:, None] + b) + x
        stored = _round(v, dtype)
        xs.append(stored)
        ss.append(d)
        x = stored if carry_rounded else v
    return xs, ss


def _cross_module(dtype: str, n: int, layers: int) -> emu.EmulatedModule:
    return module("multi_cross", dtype=dtype, n=n, layers=layers)


def _cross_weights(r: np.random.Generator, n: int, layers: int) -> list:
    return [r.uniform(-1, 1, (1, n)).astype(np.float32) / np.float32(np.sqrt(n)) for _ in range(2 * layers)]


def _run_fwd_all(m: emu.EmulatedModule, x0: np.ndarray, ws: list, dtype: str, grid: int) -> tuple[list, list]:
    rows, n = x0.shape
    layers = len(ws) // 2
    xs = [emu.host_array(np.full((rows, n), np.nan), dtype) for _ in range(layers)]
    ss = [np.full(rows, np.nan, np.float32) for _ in range(layers)]
    m("v1_fwd_all", grid, (32, 8), x0, *(w.reshape(-1) for w in ws), *xs, *ss, np.int64(rows))
    return xs, ss


CROSS_FWD = [(37, 13, 1, "float32", 5), (37, 45, 3, "float16", 2), (300, 429, 6, "float32", 38),
             (300, 429, 6, "float16", 7), (37, 429, 6, "bfloat16", 5), (9, 45, 3, "bfloat16", 1)]


@pytest.mark.parametrize("rows,n,layers,dtype,grid", CROSS_FWD)
def test_multi_cross_v1_fwd_all(rows: int, n: int, layers: int, dtype: str, grid: int) -> None:
    """Every layer in one launch (grid smaller than rows / 8 too: the blocks step over the rows): equal to
    a float32 replay of the kernel's order, which carries the value each layer stored (rounded to the
    dtype) into the next layer, and close to the float64 reference."""
    r = np.random.default_rng(rows + n + layers)
    x0 = emu.host_array(r.uniform(-1, 1, (rows, n)), dtype)
    ws = _cross_weights(r, n, layers)
    m = _cross_module(dtype, n, layers)
    xs, ss = _run_fwd_all(m, x0, ws, dtype, grid)
    x0f = emu.as_float64(x0, dtype)
    want_xs, want_ss = _cross_fwd_replay(x0f, ws, dtype)
    got_xs = [emu.as_float64(x, dtype) for x in xs]
    exact = 1e-6 if dtype == "float32" else 1e-5  # the replay equals the kernel up to a rare rounding flip
    for l in range(layers):
        assert rel(ss[l], want_ss[l]) < 1e-6, f"s of layer {l}"
        assert rel(got_xs[l], want_xs[l]) < exact, f"x_{l + 1}"
    if dtype != "float32" and layers > 1:  # carrying the unrounded values is visibly different
        other, _ = _cross_fwd_replay(x0f, ws, dtype, carry_rounded=False)
        assert rel(got_xs[-1], other[-1]) > 10 * exact
    (y_ref,), _, _ = _ref("MultiCross", {"num_layers": layers}, [x0f], ws, [np.ones((rows, n))])
    assert rel(got_xs[-1], y_ref) < 3 * TOL[dtype]


def _bwd_ref(x0: np.ndarray, xl: np.ndarray, dy: np.ndarray, s: np.ndarray, w: np.ndarray,
             dx0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dy after, dx0 after, dw, db) of one layer in float64."""
    ds = (dy * x0).sum(axis=1)
    return (dy + ds[:, None] * w, (0.0 if dx0 is None else dx0) + dy * s[:, None],
            (ds[:, None] * xl).sum(axis=0), dy.sum(axis=0))


def _run_bwd(m: emu.EmulatedModule, parts: int, x0: np.ndarray, xl: np.ndarray, dy: np.ndarray, s: np.ndarray,
             w: np.ndarray, dx0: np.ndarray, acc: int, gx: np.ndarray | None, gacc: int,
             dw: np.ndarray, db: np.ndarray) -> np.ndarray:
    """One layer's v1_bwd + v1_wgrad_finish; returns the partials."""
    rows, n = x0.shape
    part = np.full(parts * 2 * n, np.nan, np.float32)
    m("v1_bwd", parts, (32, 8), x0, xl, dy, s, w, dx0, np.int32(acc), gx, np.int32(gacc), part, np.int64(rows))
    m("v1_wgrad_finish", -(-2 * n // 32), (32, 8), part, np.int32(parts), dw, db)
    return part


CROSS_BWD = [(37, 13, "float32"), (37, 45, "float16"), (37, 45, "bfloat16"), (300, 429, "float32"),
             (300, 429, "float16"), (1, 13, "float32")]


@pytest.mark.parametrize("rows,n,dtype", CROSS_BWD)
def test_multi_cross_v1_bwd(rows: int, n: int, dtype: str) -> None:
    """One layer's backward against float64, for the plan's chunk count and others (one chunk; more chunks
    than rows: empty chunks write zero partials); bias partials (plain sums of dy) equal a float32 replay
    of the column-reduction order bit for bit, and two runs give the same bits. Then the last-layer form:
    the input's gradient written (and added to) directly, dx0 and dy left alone."""
    r = np.random.default_rng(rows * 3 + n)
    x0, xl, dy0 = (emu.host_array(r.uniform(-1, 1, (rows, n)), dtype) for _ in range(3))
    s = r.uniform(-1, 1, rows).astype(np.float32)
    w = (r.uniform(-1, 1, n) / np.sqrt(n)).astype(np.float32)
    dx00 = emu.host_array(r.uniform(-1, 1, (rows, n)), dtype)
    f = lambda a: emu.as_float64(a, dtype)
    m = _cross_module(dtype, n, 1)
    tol = TOL[dtype]
    for parts in sorted({row_parts(rows), 3, *((1, rows + 5) if rows < 100 else ())}):
        for acc in (0, 1):
            want_dy, want_dx0, want_dw, want_db = _bwd_ref(f(x0), f(xl), f(dy0), s, w, f(dx00) if acc else None)
            dw0, db0 = r.uniform(-1, 1, n).astype(np.float32), r.uniform(-1, 1, n).astype(np.float32)
            runs = []
            for _ in range(1 + acc):
                dy, dx0, dw, db = dy0.copy(), dx00.copy(), dw0.copy(), db0.copy()
                runs.append(_run_bwd(m, parts, x0, xl, dy, s, w, dx0, acc, None, 0, dw, db))
                assert rel(f(dy), want_dy) < tol and rel(f(dx0), want_dx0) < tol, (parts, acc)
                assert rel(dw - dw0, want_dw) < 1e-5 and rel(db - db0, want_db) < 1e-5, (parts, acc)
                assert np.array_equal(db, column_sums(f(dy0), parts, db0)), "bias partials out of order"
            assert np.array_equal(runs[0], runs[-1]), "partials differ between runs"
        # the last layer: gx (+gacc)= dx0 (+)= dy * s, plus the updated dy
        want_dy, want_dx0, _, _ = _bwd_ref(f(x0), f(xl), f(dy0), s, w, f(dx00))
        gx00 = r.uniform(-1, 1, (rows, n))
        for gacc in (0, 1) if parts == row_parts(rows) else (1,):
            dy, dx0, gx = dy0.copy(), dx00.copy(), emu.host_array(gx00, dtype)
            dw, db = np.zeros(n, np.float32), np.zeros(n, np.float32)
            _run_bwd(m, parts, x0, xl, dy, s, w, dx0, 1, gx, gacc, dw, db)
            assert np.array_equal(dy, dy0) and np.array_equal(dx0, dx00), "dy / dx0 written in the last layer"
            want = want_dx0 + want_dy + (f(emu.host_array(gx00, dtype)) if gacc else 0.0)
            assert rel(f(gx), want) < tol, (parts, gacc)


@pytest.mark.parametrize("rows,n,layers,dtype", [(37, 13, 1, "float32"), (37, 45, 3, "float16"),
                                                 (300, 429, 6, "float32"), (300, 429, 6, "float16")])
def test_multi_cross_v1_layers_chain(rows: int, n: int, layers: int, dtype: str) -> None:
    """The whole op as the plan runs it (fwd_all; per layer bwd + finish, layer 0 into the input's
    gradient) against the reference op in float64."""
    r = np.random.default_rng(rows + 17 * layers)
    x0 = emu.host_array(r.uniform(-1, 1, (rows, n)), dtype)
    gy = emu.host_array(r.uniform(-1, 1, (rows, n)), dtype)
    ws = _cross_weights(r, n, layers)
    f = lambda a: emu.as_float64(a, dtype)
    (y_ref,), (gx_ref,), gw_ref = _ref("MultiCross", {"num_layers": layers}, [f(x0)], ws, [f(gy)])
    m = _cross_module(dtype, n, layers)
    xs, ss = _run_fwd_all(m, x0, ws, dtype, -(-rows // 8))
    assert rel(f(xs[-1]), y_ref) < 3 * TOL[dtype]
    parts = row_parts(rows)
    dy, dx0 = gy.copy(), emu.host_array(np.full((rows, n), np.nan), dtype)
    gx = emu.host_array(np.full((rows, n), np.nan), dtype)
    gws = [np.zeros(n, np.float32) for _ in ws]
    inputs = [x0, *xs[:-1]]
    for l in reversed(range(layers)):
        _run_bwd(m, parts, x0, inputs[l], dy, ss[l], ws[2 * l].reshape(-1), dx0, int(l < layers - 1),
                 gx if l == 0 else None, 0, gws[2 * l], gws[2 * l + 1])
    tol = 1e-5 if dtype == "float32" else 3 * TOL[dtype]
    assert rel(f(gx), gx_ref) < tol
    for got, want in zip(gws, gw_ref):
        assert rel(got, np.asarray(want).reshape(-1)) < tol


@pytest.mark.skipif(nvrtc.available() is None, reason="no NVRTC and no nvcc")
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_cross_v1_compiles_without_spills(dtype: str) -> None:
    """DCN's shape (429 columns, 6 layers) compiles for sm_90; the row kernels keep their registers
    (no spills) and fit two blocks of 256 threads per SM."""
    spec = KernelSpec("multi_cross", "k_mc", Params(dtype=dtype, n=429, layers=6))
    res = nvrtc.compile_source(render(spec), spec.name, arch="sm_90")
    assert {"k_mc_v1_fwd_all", "k_mc_v1_bwd", "k_mc_v1_wgrad_finish", "k_mc_finish"} <= set(res.resources)
    for fn, rr in res.resources.items():
        assert rr.spill_stores == 0 and rr.spill_loads == 0, f"{fn} spills: {rr}"
    assert res.resources["k_mc_v1_bwd"].registers <= 128 and res.resources["k_mc_v1_fwd_all"].registers <= 128


# -- interaction ----------------------------------------------------------------------------------------
def _ref(op: str, attrs: dict, xs: list, ws: list, gys: list) -> tuple[list, list, list]:
    from hgc.ir.build import check_attrs

    full = check_attrs(op, attrs)
    ctx = RefContext(training=True, rng=np.random.default_rng(0), state={})
    ys, saved = get_op(op).forward(ctx, full, [np.asarray(x, np.float64) for x in xs],
                                   [np.asarray(w, np.float64) for w in ws])
    gxs, gws = get_op(op).backward(ctx, full, saved, gys)
    return ys, gxs, gws


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` one element past a 16-byte boundary (the kernels' vector loads must not be used)."""
    buf = np.empty(a.size + 1, a.dtype)
    out = buf[1:].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 16 != 0
    return out


# (batch, d, f, dtype, tensor cores, grid): the float kernels (float32, or d % 16 != 0) and the tensor-core
# kernels (float16/bfloat16, d % 16 == 0: one or two 16-row tiles; more samples than a block's warps, so
# warps stride over the batch with grid 1; grid 2 leaves warps without samples).
INTERACTION_CASES = [(1, 4, 1, "float32", False, 1), *((5, 13, 7, dt, False, 2) for dt in DTYPES),
                     (3, 32, 6, "float16", True, 2), (2, 16, 5, "bfloat16", True, 1),
                     *((b, d, f, dt, True, g) for dt in ("float16", "bfloat16")
                       for b, d, f, g in ((1, 16, 1, 1), (3, 16, 3, 2), (5, 16, 26, 1), (5, 128, 26, 2),
                                          (3, 128, 3, 1)))]


@pytest.mark.parametrize("b,d,f,dtype,tc,grid", INTERACTION_CASES)
def test_interaction(dtype: str, b: int, d: int, f: int, tc: bool, grid: int) -> None:
    r = np.random.default_rng(b * 31 + d + f)
    wd = d + f * (f + 1) // 2 + 1
    cfg = interaction_config(dtype, d, f)
    assert cfg.tc == tc
    x, e = emu.host_array(r.uniform(-1, 1, (b, d)), dtype), emu.host_array(r.uniform(-1, 1, (b, f, d)), dtype)
    gy = emu.host_array(r.uniform(-1, 1, (b, wd)), dtype)
    xs = [emu.as_float64(x, dtype), emu.as_float64(e, dtype)]
    (y_ref,), (gx_ref, ge_ref), _ = _ref("Interaction", {}, xs, [], [emu.as_float64(gy, dtype)])
    m = module("interaction", dtype=dtype, d=d, f=f, tc=tc)
    block = cfg.block
    for xa, ea in ((x, e), (_misaligned(x), _misaligned(e))) if tc else ((x, e),):
        y = emu.host_array(np.full((b, wd), np.nan), dtype)
        m("fwd", grid, block, xa, ea, y, np.int64(b), smem=cfg.fwd_smem)
        got = emu.as_float64(y, dtype)
        assert np.all(got[:, -1] == 0) and np.array_equal(got[:, :d], emu.as_float64(x, dtype))
        assert rel(got, y_ref) < TOL[dtype]
        gx = emu.host_array(np.full((b, d), np.nan), dtype)
        ge = emu.host_array(np.full((b, f, d), np.nan), dtype)
        m("bwd", grid, block, xa, ea, gy, gx, ge, np.int64(b), np.int32(0), np.int32(0), smem=cfg.bwd_smem)
        assert rel(emu.as_float64(gx, dtype), gx_ref) < TOL[dtype]
        assert rel(emu.as_float64(ge, dtype), ge_ref) < TOL[dtype]
        if dtype == "float32" or tc:  # accumulate into ge only (no gx: a null pointer), then into gx only
            m("bwd", 1, block, xa, ea, gy, None, ge, np.int64(b), np.int32(0), np.int32(1), smem=cfg.bwd_smem)
            assert rel(emu.as_float64(ge, dtype), 2 * ge_ref) < 2 * TOL[dtype]
            m("bwd", 1, block, xa, ea, gy, gx, None, np.int64(b), np.int32(1), np.int32(0), smem=cfg.bwd_smem)
            assert rel(emu.as_float64(gx, dtype), 2 * gx_ref) < 2 * TOL[dtype]


# -- strided copies (Concat / Slice / padded GEMM rows) ----------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_copy(dtype: str) -> None:
    """dst[doff + o*d0 + j*d1 + c] (+)= src[soff + o*s0 + j*s1 + c] (zeros for n2 <= c < n2 + nz): rows
    into padded rows and back (accumulating), a 3-D block, and zero-filled padding, with grids smaller than
    the work (grid-stride loop)."""
    r = np.random.default_rng(21)
    m = module("concat_slice", dtype=dtype)
    rows, k, kp = 37, 13, 16
    src = emu.host_array(r.uniform(-1, 1, rows * k), dtype)
    pad = emu.host_array(np.full(rows * kp, 7.0), dtype)
    i64 = np.int64
    m("copy", (2, 1), (64, 1), src, pad, i64(rows), i64(1), i64(k), i64(0), i64(k), i64(0), i64(0), i64(kp),
      i64(0), i64(0), np.int32(0))
    got = emu.as_float64(pad, dtype).reshape(rows, kp)
    assert np.array_equal(got[:, :k], emu.as_float64(src, dtype).reshape(rows, k))
    assert np.all(got[:, k:] == 7.0)  # the padding is left alone
    back0 = r.uniform(-1, 1, rows * k)
    back = emu.host_array(back0, dtype)
    m("copy", (3, 1), (32, 1), pad, back, i64(rows), i64(1), i64(k), i64(0), i64(kp), i64(0), i64(0), i64(k),
      i64(0), i64(0), np.int32(1))
    want = emu.as_float64(emu.host_array(back0, dtype), dtype) + emu.as_float64(src, dtype)
    assert rel(emu.as_float64(back, dtype), want) < TOL[dtype]
    # (o, j, c) over 5 x 3 x 4 from offset 2 of a (5, 3, 6) block into a (5, 4, 4) one at offset 1
    blk = emu.host_array(r.uniform(-1, 1, 5 * 3 * 6 + 2), dtype)
    out = emu.host_array(np.zeros(5 * 4 * 4 + 1), dtype)
    m("copy", (1, 1), (32, 1), blk, out, i64(5), i64(3), i64(4), i64(0), i64(18), i64(6), i64(2), i64(16), i64(4),
      i64(1), np.int32(0))
    b = emu.as_float64(blk, dtype)[2:].reshape(5, 3, 6)[:, :, :4]
    o = emu.as_float64(out, dtype)[1:].reshape(5, 4, 4)[:, :3, :]
    assert np.array_equal(o, b)
    # zero padding: rows of k values into rows of kp, the kp - k columns after each set to 0 (over garbage)
    pad = emu.host_array(np.full(rows * kp, np.nan), dtype)
    m("copy", (2, 1), (64, 1), src, pad, i64(rows), i64(1), i64(k), i64(kp - k), i64(k), i64(0), i64(0), i64(kp),
      i64(0), i64(0), np.int32(0))
    got = emu.as_float64(pad, dtype).reshape(rows, kp)
    assert np.array_equal(got[:, :k], emu.as_float64(src, dtype).reshape(rows, k))
    assert np.all(got[:, k:] == 0.0)


# -- dropout (counter RNG) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_masks_equal_the_host_rng(dtype: str) -> None:
    """fwd and bwd keep exactly rng.dropout_keep's elements (odd n, a grid smaller than the work), scaled by
    1/(1 - rate); the backward adds into its target when acc is set."""
    from hgc.runtime.cuda import rng as hrng

    n, rate, seed = 1001, 0.3, 0x1234ABCD9876
    r = np.random.default_rng(31)
    m = module("elementwise", op="dropout", dtype=dtype, rate=rate)
    x = emu.host_array(r.uniform(0.5, 1.5, n), dtype)
    y = emu.host_array(np.full(n, 9.0), dtype)
    m("fwd", (3, 1), (64, 1), x, y, np.int64(n), np.uint64(seed))
    keep = hrng.dropout_keep(seed, n, rate)
    want = np.where(keep, emu.as_float64(x, dtype) / (1 - rate), 0.0)
    assert rel(emu.as_float64(y, dtype), want) < TOL[dtype]
    gx0 = r.uniform(-1, 1, n)
    gx = emu.host_array(gx0, dtype)
    m("bwd", (2, 1), (32, 1), x, gx, np.int64(n), np.uint64(seed), np.int32(1))
    want = emu.as_float64(emu.host_array(gx0, dtype), dtype) + np.where(keep, emu.as_float64(x, dtype) / (1 - rate), 0)
    assert rel(emu.as_float64(gx, dtype), want) < TOL[dtype]


def test_counter_rng_statistics() -> None:
    """The pairs sharing one hash are uncorrelated, and keep fractions and moments are those of U[0, 1)."""
    from hgc.runtime.cuda import rng as hrng

    u = hrng.uniform01(hrng.step_seed(7, "drop", 3), np.arange(1 << 20, dtype=np.uint64)).astype(np.float64)
    assert abs(u.mean() - 0.5) < 2e-3 and abs(u.var() - 1 / 12) < 2e-3
    assert abs(np.corrcoef(u[0::2], u[1::2])[0, 1]) < 5e-3  # the two halves of one draw
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5e-3
    assert abs((u >= 0.5).mean() - 0.5) < 2e-3
    other = hrng.uniform01(hrng.step_seed(7, "drop", 4), np.arange(1 << 20, dtype=np.uint64))
    assert abs(np.corrcoef(u, other)[0, 1]) < 5e-3  # the next step's mask is another one


# -- fc_narrow (FCs with few outputs) -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,k,m,act", [(37, 13, 1, "Non"), (130, 45, 3, "Relu"), (9, 429, 4, "Non")])
def test_fc_narrow(dtype: str, rows: int, k: int, m: int, act: str) -> None:
    """y = act(x W + b) (a warp per row, grids smaller than the work), dW += x^T g in chunk order, and
    dx (+)= g W^T, against float64 on odd sizes."""
    r = np.random.default_rng(rows + k + m)
    mod = module("fc_narrow", dtype=dtype, ydtype=dtype, k=k, m=m, act=act)
    x = emu.host_array(r.uniform(-1, 1, (rows, k)), dtype)
    w = r.uniform(-1, 1, (k, m)).astype(np.float32)
    b = r.uniform(-0.5, 0.5, m).astype(np.float32)
    y = emu.host_array(np.full((rows, m), 5.0), dtype)
    mod("fwd", (3, 1), (32, 8), x, w, b, y, np.int64(rows))
    xf = emu.as_float64(x, dtype)
    want = xf @ w.astype(np.float64) + b
    want = np.maximum(want, 0.0) if act == "Relu" else want
    assert rel(emu.as_float64(y, dtype).reshape(rows, m), want) < TOL[dtype]
    g = emu.host_array(r.uniform(-1, 1, (rows, m)), dtype)
    gf = emu.as_float64(g, dtype).reshape(rows, m)
    dw0, dw, parts = _wgrad(mod, r, rows, k * m, x, g)
    assert rel(dw - dw0, (xf.T @ gf).reshape(-1)) < 1e-5
    prod = (xf[:, :, None] * gf[:, None, :]).reshape(rows, k * m)
    assert np.array_equal(dw, column_sums(prod.astype(np.float32).astype(np.float64), parts, dw0))
    dx0 = r.uniform(-1, 1, (rows, k))
    dx = emu.host_array(dx0, dtype)
    mod("dgrad", (2, 1), (64, 1), g, w, dx, np.int64(rows), np.int32(1))
    want = emu.as_float64(emu.host_array(dx0, dtype), dtype).reshape(rows, k) + gf @ w.T.astype(np.float64)
    assert rel(emu.as_float64(dx, dtype).reshape(rows, k), want) < TOL[dtype]


# -- one-hot shards of a multi-GPU localized table (embedding template) ---------------------------------------
def _shard_module(dtype: str, vec: int) -> emu.EmulatedModule:
    return module("embedding", dtype=dtype, vec=vec, combiner="sum", optimizer="SGD", update="Local",
                  beta1=0.9, beta2=0.999, epsilon=1e-7, momentum_factor=0.9)


def test_onehot_cols_and_the_first_bad_key() -> None:
    """Rows of slots 1 and 3 of 5 (one key each) with their slot offsets; a bad key gives -1 and, through
    note_bad_cols, [count, key, slot, sample] of the smallest bad position; first is reset."""
    m = _shard_module("float32", 4)
    n, s = 7, 5
    sizes = np.array([3, 4, 5, 6, 7], np.int64)
    offs = np.array([0, 0, 4, 9, 4], np.int64)  # local offsets of slots 1 and 3 (others unused)
    keys = np.random.default_rng(1).integers(0, 3, (n, s)).astype(np.int64)
    keys[4, 3], keys[2, 1] = 6, -1  # bad: position 23 (sample 4, slot 3) and 11 (sample 2, slot 1)
    cols = np.array([1, 3], np.int64)
    rows = np.full(n * 2, -7, np.int64)
    first = np.full(1, np.iinfo(np.uint64).max, np.uint64)
    rec = np.zeros(4, np.int64)
    m("onehot_cols", (2,), (32,), keys.reshape(-1), np.int64(n), np.int32(s), cols, np.int32(2), offs, sizes, rows,
      first)
    want = keys[:, cols] + offs[cols]
    want[(keys[:, cols] < 0) | (keys[:, cols] >= sizes[cols])] = -1
    assert np.array_equal(rows, want.reshape(-1)) and first[0] == 11
    m("note_bad_cols", (1,), (32,), keys.reshape(-1), np.int32(s), first, rec)
    assert rec.tolist() == [1, -1, 1, 2] and first[0] == np.iinfo(np.uint64).max


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("combiner,vec", [("sum", 8), ("mean", 9)])
def test_one_hot_table_step(dtype: str, combiner: str, vec: int) -> None:
    """The single-GPU one-hot table's step: onehot (rows, the first bad key), bad_info, segments, combine (sum
    or mean of each (sample, slot) segment, rounded to the dtype) and scatter_sgd (every key's gradient, mean
    scaled, added to its row with atomics) against float64, on multi-hot segments with an empty one."""
    r = np.random.default_rng(vec)
    m = module("embedding", dtype=dtype, vec=vec, combiner=combiner, optimizer="SGD", update="Local",
               beta1=0.9, beta2=0.999, epsilon=1e-7, momentum_factor=0.9)
    s, n = 3, 5
    sizes, offs = np.array([4, 2, 6], np.int64), np.array([0, 4, 6], np.int64)
    counts = r.integers(1, 4, n * s)
    counts[4] = 0
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    slot = np.repeat(np.arange(n * s) % s, counts)
    keys = (r.random(offsets[-1]) * sizes[slot]).astype(np.int64)
    keys[3] = sizes[slot[3]]  # out of range: the first bad position
    nseg = n * s
    rows = np.full(keys.shape[0], -7, np.int64)
    err = np.array([np.iinfo(np.uint64).max, 0, 0, 0], np.uint64)
    m("onehot", (2,), (32,), keys, offsets, np.int64(nseg), np.int32(s), offs, sizes, rows, err)
    want_rows = np.where((keys >= 0) & (keys < sizes[slot]), keys + offs[slot], -1)
    assert np.array_equal(rows, want_rows) and err[0] == 3
    m("bad_info", (1,), (32,), keys, offsets, np.int64(nseg), err)
    seg3 = int(np.searchsorted(offsets, 3, side="right") - 1)
    assert err[1] == keys[3] and err[2] == seg3
    table = r.uniform(-1, 1, (12, vec)).astype(np.float32)
    out = emu.host_array(np.full((nseg, vec), 9.0), dtype)
    m("combine", (3,), (64,), offsets, rows, np.int64(nseg), table, out)
    want = np.zeros((nseg, vec))
    for g in range(nseg):
        picked = [table[row] for row in rows[offsets[g]:offsets[g + 1]] if row >= 0]
        if picked:
            want[g] = np.sum(picked, axis=0) / (counts[g] if combiner == "mean" else 1)
    assert rel(emu.as_float64(out, dtype).reshape(nseg, vec), want) < TOL[dtype]
    seg = np.full(keys.shape[0], -1, np.int64)
    m("segments", (2,), (32,), offsets, np.int64(nseg), seg)
    assert np.array_equal(seg, np.repeat(np.arange(nseg), counts))
    grad = emu.host_array(r.uniform(-1, 1, (nseg, vec)), dtype)
    hp = np.array([0.5, 0.0, 0.25], np.float32)
    t = table.copy()
    m("scatter_sgd", (3,), (64,), offsets, np.int64(nseg), rows, seg, grad, t, hp)
    want_t = table.astype(np.float64)
    gf = emu.as_float64(grad, dtype).reshape(nseg, vec)
    for i, row in enumerate(rows):
        if row >= 0:
            scale = 1.0 / counts[seg[i]] if combiner == "mean" and counts[seg[i]] > 1 else 1.0
            want_t[row] -= 0.5 * 0.25 * scale * gf[seg[i]]
    assert rel(t, want_t) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vec", [8, 9])
def test_gather_to_and_sgd_from_the_feeds(dtype: str, vec: int) -> None:
    """A shard's rows into two feed buffers (samples [0, 3) and [3, 7)) at its slots, rounded to the dtype, zeros
    for a bad row; then atomic SGD from gradients in those buffers, every key's gradient added to its row (two
    keys share a row)."""
    r = np.random.default_rng(vec)
    m = _shard_module(dtype, vec)
    n, s, cols = 7, 3, np.array([0, 2], np.int64)
    table = r.uniform(-1, 1, (5, vec)).astype(np.float32)
    rows = r.integers(0, 5, n * 2).astype(np.int64)
    rows[5] = -1
    lo = np.array([0, 3, 7], np.int64)
    feeds = [emu.host_array(np.full((3, s, vec), 9.0), dtype), emu.host_array(np.full((4, s, vec), 9.0), dtype)]
    ptr = np.array([f.ctypes.data for f in feeds], np.uint64)
    m("gather_to", (3,), (64,), rows, np.int64(n), cols, np.int32(2), np.int32(s), table, ptr, lo, np.int32(2))
    got = np.concatenate([emu.as_float64(f, dtype).reshape(-1, s, vec) for f in feeds])
    want = np.where(rows[:, None] >= 0, table[rows], 0.0).reshape(n, 2, vec)
    assert np.array_equal(got[:, cols], emu.as_float64(emu.host_array(want, dtype), dtype))
    assert (got[:, 1] == 9.0).all()  # the other GPU's slot is left alone
    grads = r.uniform(-1, 1, (n, s, vec))
    feeds = [emu.host_array(grads[:3], dtype), emu.host_array(grads[3:], dtype)]
    ptr = np.array([f.ctypes.data for f in feeds], np.uint64)
    hp = np.array([0.5, 0.0, 0.25], np.float32)  # lr, alpha, 1 / scale
    t = table.copy()
    m("sgd_from", (3,), (64,), rows, np.int64(n), cols, np.int32(2), np.int32(s), ptr, lo, np.int32(2), t, hp)
    g = np.concatenate([emu.as_float64(f, dtype).reshape(-1, s, vec) for f in feeds])[:, cols].reshape(-1, vec)
    want_t = table.astype(np.float64)
    for i, row in enumerate(rows):
        if row >= 0:
            want_t[row] -= 0.5 * 0.25 * g[i]
    assert rel(t, want_t) < 1e-6
