"""Every kernel family forward + backward on the GPU against the NumPy reference semantics of its op, on
random odd-sized inputs, in each dtype (fp32 relative error < 1e-5, fp16/bf16 < 1e-2). Outputs are
poisoned with NaN before each launch so unwritten elements fail."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.gpu._util import (
    DTYPES,
    TOL,
    Module,
    blocks,
    empty,
    f32,
    from_dev,
    gpu,
    i32,
    i64,
    quantize,
    rel_err,
    to_dev,
)

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.lower import interaction_config
from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.runtime.cuda import rng as hrng


def ref(op: str, attrs: dict, xs: list, ws: list | None = None, gys: list | None = None,
        training: bool = True, state: dict | None = None) -> tuple[list, list, list]:
    """(ys, gxs, gws) of the reference semantics in float64."""
    full = check_attrs(op, attrs)
    ctx = RefContext(training=training, rng=np.random.default_rng(0), state=state if state is not None else {})
    ys, saved = get_op(op).forward(ctx, full, [np.asarray(x, np.float64) for x in xs],
                                   [np.asarray(w, np.float64) for w in (ws or [])])
    if gys is None:
        return ys, [], []
    gxs, gws = get_op(op).backward(ctx, full, saved, gys)
    return ys, gxs, gws


def rand(shape: tuple[int, ...], dtype: str, lo: float = -1.5, hi: float = 1.5, seed: int = 0) -> np.ndarray:
    return quantize(np.random.default_rng(seed).uniform(lo, hi, shape), dtype)


# -- elementwise ------------------------------------------------------------------------------------
UNARY = [("relu", "ReLU", {}, {}), ("elu", "ELU", {"elu_alpha": 0.7}, {"alpha": 0.7}),
         ("sigmoid", "Sigmoid", {}, {})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,ir,attrs,params", UNARY, ids=[u[0] for u in UNARY])
def test_unary(op: str, ir: str, attrs: dict, params: dict, dtype: str) -> None:
    shape = (37, 13)
    n = 37 * 13
    x, g = rand(shape, dtype, seed=1), rand(shape, dtype, seed=2)
    (y_ref,), (gx_ref,), _ = ref(ir, attrs, [x], gys=[g])
    m = Module("elementwise", op=op, dtype=dtype, **params)
    dx, y = to_dev(cp, x, dtype), empty(cp, shape, dtype)
    m("fwd", blocks(n), 256, dx, y, i64(n))
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    gx = empty(cp, shape, dtype)
    m("bwd", blocks(n), 256, dx, to_dev(cp, g, dtype), gx, i64(n), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]
    m("bwd", blocks(n), 256, dx, to_dev(cp, g, dtype), gx, i64(n), i32(1))  # accumulate
    assert rel_err(from_dev(cp, gx, dtype), 2 * gx_ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,ir,arity", [("add", "Add", 3), ("mul", "ElementwiseMultiply", 3),
                                         ("mul", "ElementwiseMultiply", 2), ("sub", "Sub", 2)])
def test_nary(op: str, ir: str, arity: int, dtype: str) -> None:
    shape, n = (29, 11), 29 * 11
    xs = [rand(shape, dtype, seed=10 + i) for i in range(arity)]
    g = rand(shape, dtype, seed=3)
    (y_ref,), gx_ref, _ = ref(ir, {}, xs, gys=[g])
    params = {"arity": arity} if op != "sub" else {}
    m = Module("elementwise", op=op, dtype=dtype, **params)
    dxs = [to_dev(cp, x, dtype) for x in xs]
    y = empty(cp, shape, dtype)
    m("fwd", blocks(n), 256, *dxs, y, i64(n))
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    gxs = [empty(cp, shape, dtype) for _ in range(arity)]
    args: list[Any] = list(dxs) if op == "mul" else []
    args.append(to_dev(cp, g, dtype))
    for k in range(arity):
        args += [gxs[k] if k != 1 else np.uint64(0), i32(0)]  # input 1 takes no gradient: a null pointer
    m("bwd", blocks(n), 256, *args, i64(n))
    for k in range(arity):
        got = from_dev(cp, gxs[k], dtype)
        if k == 1:
            assert np.isnan(got).all(), "a null gradient pointer was written through"
        else:
            assert rel_err(got, gx_ref[k]) < TOL[dtype]


@pytest.mark.parametrize("src,dst", [("float32", "float16"), ("float16", "float32")])
def test_cast(src: str, dst: str) -> None:
    shape, n = (17, 23), 17 * 23
    x, g = rand(shape, src, seed=4), rand(shape, dst, seed=5)
    m = Module("elementwise", op="cast", dtype=src, dst_dtype=dst)
    y = empty(cp, shape, dst)
    m("fwd", blocks(n), 256, to_dev(cp, x, src), y, i64(n))
    assert rel_err(from_dev(cp, y, dst), quantize(x, dst)) < TOL["float16"] / 10
    gx = empty(cp, shape, src)
    m("bwd", blocks(n), 256, to_dev(cp, g, dst), gx, i64(n), i32(0))
    assert rel_err(from_dev(cp, gx, src), quantize(g, src)) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_the_host_mirror(dtype: str) -> None:
    shape, n, rate = (41, 33), 41 * 33, 0.3
    x, g = rand(shape, dtype, seed=6), rand(shape, dtype, seed=7)
    seed = hrng.step_seed(12345, "drop1", 3)
    keep = hrng.dropout_keep(seed, n, rate).reshape(shape)
    assert abs(keep.mean() - 0.7) < 0.05
    m = Module("elementwise", op="dropout", dtype=dtype, rate=rate)
    y = empty(cp, shape, dtype)
    m("fwd", blocks(n), 256, to_dev(cp, x, dtype), y, i64(n), np.uint64(seed))
    assert rel_err(from_dev(cp, y, dtype), x * keep / (1 - rate)) < TOL[dtype]
    gx = empty(cp, shape, dtype)
    m("bwd", blocks(n), 256, to_dev(cp, g, dtype), gx, i64(n), np.uint64(seed), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), g * keep / (1 - rate)) < TOL[dtype]
    y2 = empty(cp, shape, dtype)
    m("fwd", blocks(n), 256, to_dev(cp, x, dtype), y2, i64(n), np.uint64(seed + 1))
    assert not np.array_equal(from_dev(cp, y2, dtype), from_dev(cp, y, dtype))
    m("copy", blocks(n), 256, to_dev(cp, x, dtype), y2, i64(n))
    assert np.array_equal(from_dev(cp, y2, dtype), x)


# -- fully connected epilogue ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["Relu", "Non"])
def test_bias_act(dtype: str, act: str) -> None:
    rows, cols = 53, 37
    y0 = rand((rows, cols), dtype, seed=8)
    b = rand((1, cols), "float32", seed=9)
    m = Module("bias_act", dtype=dtype, act=act)
    y = to_dev(cp, y0, dtype)
    m("fwd", blocks(rows * cols), 256, y, to_dev(cp, b, "float32"), i64(rows), i32(cols))
    want = y0 + b
    if act == "Relu":
        want = np.maximum(want, 0)
    got = from_dev(cp, y, dtype)
    assert rel_err(got, want) < TOL[dtype]
    g0 = rand((rows, cols), dtype, seed=10)
    g = to_dev(cp, g0, dtype)
    db0 = np.random.default_rng(11).uniform(-1, 1, cols)
    db = to_dev(cp, db0, "float32")
    parts = 3  # the bias gradient: partial sums over 3 row chunks, then their sum (see test_reductions.py)
    part = empty(cp, (parts, cols), "float32")
    if act == "Relu":  # dReLU in place, fused into the first stage
        m("drelu_bias_part", (blocks(cols, 32), parts, 1), (32, 8, 1), y, g, part, i64(rows), i32(cols))
        g0 = g0 * (got > 0)
        assert rel_err(from_dev(cp, g, dtype), g0) < TOL[dtype]
    else:
        m("bias_part", (blocks(cols, 32), parts, 1), (32, 8, 1), g, part, i64(rows), i32(cols))
    m("bias_finish", blocks(cols, 32), (32, 8, 1), part, i32(parts), db, i32(cols))
    assert rel_err(from_dev(cp, db, "float32"), db0 + g0.sum(axis=0)) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,m,act", [(429, 1, "Non"), (45, 3, "Relu")])
def test_fc_narrow(dtype: str, k: int, m: int, act: str) -> None:
    """FCs with few outputs: y = act(x W + b), dW += x^T g (3 row chunks), dx += g W^T."""
    rows = 1037
    x0, w0 = rand((rows, k), dtype, seed=12), rand((k, m), "float32", seed=13)
    b0 = rand((1, m), "float32", seed=14)
    mod = Module("fc_narrow", dtype=dtype, ydtype=dtype, k=k, m=m, act=act)
    x, w, b = to_dev(cp, x0, dtype), to_dev(cp, w0, "float32"), to_dev(cp, b0, "float32")
    y = empty(cp, (rows, m), dtype)
    mod("fwd", (7, 1, 1), (32, 8, 1), x, w, b, y, i64(rows))
    want = x0 @ w0 + b0
    assert rel_err(from_dev(cp, y, dtype), np.maximum(want, 0) if act == "Relu" else want) < TOL[dtype]
    g0 = rand((rows, m), dtype, seed=15)
    g = to_dev(cp, g0, dtype)
    parts = 3
    dw0 = np.random.default_rng(16).uniform(-1, 1, (k, m))
    dw, part = to_dev(cp, dw0, "float32"), empty(cp, (parts, k * m), "float32")
    mod("wgrad_part", (blocks(k * m, 32), parts, 1), (32, 8, 1), x, g, part, i64(rows))
    mod("wgrad_finish", (blocks(k * m, 32), 1, 1), (32, 8, 1), part, i32(parts), dw)
    assert rel_err(from_dev(cp, dw, "float32"), dw0 + x0.T @ g0) < 1e-5
    dx0 = rand((rows, k), dtype, seed=17)
    dx = to_dev(cp, dx0, dtype)
    mod("dgrad", (blocks(rows * k), 1, 1), (256, 1, 1), g, w, dx, i64(rows), i32(1))
    assert rel_err(from_dev(cp, dx, dtype), dx0 + g0 @ w0.T) < TOL[dtype]


# -- losses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["bce", "ce1", "ce2", "multi"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_losses(case: str, dtype: str) -> None:
    rows = 37
    r = np.random.default_rng(12)
    extra: list[Any] = []
    if case == "bce":
        op, attrs, x = "BinaryCrossEntropyLoss", {}, rand((rows, 1), dtype, -4, 4, 13)
        y, params = (r.random((rows, 1)) < 0.4).astype(np.float64), {"op": "bce"}
    elif case.startswith("ce"):
        op, attrs, x = "CrossEntropyLoss", {}, rand((rows, 2), dtype, -3, 3, 14)
        width = int(case[-1])
        y = (r.random((rows, 1)) < 0.5).astype(np.float64)
        if width == 2:
            y = np.concatenate([1 - y, y], axis=1)
        params = {"op": "ce", "label_width": width}
    else:
        tw = (0.5, 1.5, 2.0)
        op, attrs, x = "MultiCrossEntropyLoss", {"target_weight_vec": tw}, rand((rows, 3), dtype, -3, 3, 15)
        y = r.choice([0.0, 1.0, -1.0], size=(rows, 3), p=[0.45, 0.45, 0.1])
        params = {"op": "multi", "width": 3}
        extra = [to_dev(cp, np.asarray(tw), "float32")]
    w = 0.7
    (loss_ref,), gx_ref, _ = ref(op, attrs, [x, y], gys=[np.full((1, 1), w)])
    m = Module("loss", dtype=dtype, **params)
    dx, dy = to_dev(cp, x, dtype), to_dev(cp, y, "float32")
    loss = empty(cp, (1, 1), "float32")
    m("fwd", 1, 1024, dx, dy, *extra, loss, i64(rows))
    assert rel_err(from_dev(cp, loss, "float32"), loss_ref) < 1e-5
    gx = empty(cp, x.shape, dtype)
    m("bwd", blocks(x.size), 256, dx, dy, *extra, gx, i64(rows), f32(w), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref[0]) < TOL[dtype]


# -- interaction, fm, reduce, softmax -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,d,f", [(37, 13, 7), (129, 64, 26), (5, 16, 1), (131, 128, 26), (33, 32, 12)])
def test_interaction(dtype: str, b: int, d: int, f: int) -> None:
    cfg = interaction_config(dtype, d, f)  # float16/bfloat16 with d % 16 == 0: the tensor-core kernels
    assert cfg.tc == (dtype != "float32" and d % 16 == 0)
    x, e = rand((b, d), dtype, seed=16), rand((b, f, d), dtype, seed=17)
    wdt = d + f * (f + 1) // 2 + 1
    g = rand((b, wdt), dtype, seed=18)
    (y_ref,), (gx_ref, ge_ref), _ = ref("Interaction", {}, [x, e], gys=[g])
    m = Module("interaction", dtype=dtype, d=d, f=f, tc=cfg.tc)
    dx, de = to_dev(cp, x, dtype), to_dev(cp, e, dtype)
    y = empty(cp, (b, wdt), dtype)
    grid = blocks(b, cfg.per_block)
    m("fwd", grid, cfg.block, dx, de, y, i64(b), smem=cfg.fwd_smem)
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    assert np.all(from_dev(cp, y, dtype)[:, -1] == 0)
    gx, ge = empty(cp, (b, d), dtype), empty(cp, (b, f, d), dtype)
    dg = to_dev(cp, g, dtype)
    m("bwd", min(grid, 16), cfg.block, dx, de, dg, gx, ge, i64(b), i32(0), i32(0), smem=cfg.bwd_smem)
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]
    assert rel_err(from_dev(cp, ge, dtype), ge_ref) < TOL[dtype]
    m("bwd", grid, cfg.block, dx, de, dg, gx, np.uint64(0), i64(b), i32(1), i32(0), smem=cfg.bwd_smem)  # no ge
    assert rel_err(from_dev(cp, gx, dtype), 2 * gx_ref) < TOL[dtype] * 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_fm_order2(dtype: str) -> None:
    b, s, k = 37, 7, 5
    x, g = rand((b, s * k), dtype, seed=19), rand((b, k), dtype, seed=20)
    (y_ref,), (gx_ref,), _ = ref("FmOrder2", {"out_dim": k}, [x], gys=[g])
    m = Module("fm_order2", dtype=dtype, k=k, slots=s)
    dx, y = to_dev(cp, x, dtype), empty(cp, (b, k), dtype)
    m("fwd", blocks(b * k), 256, dx, y, i64(b))
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    gx = empty(cp, x.shape, dtype)
    m("bwd", blocks(b * k), 256, dx, to_dev(cp, g, dtype), gx, i64(b), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_reduce(dtype: str, op: str, axis: int) -> None:
    shape = (9, 11, 6)
    x = rand(shape, dtype, seed=21)
    out_shape = tuple(1 if i == axis else d for i, d in enumerate(shape))
    g = rand(out_shape, dtype, seed=22)
    (y_ref,), (gx_ref,), _ = ref(op, {"axis": axis}, [x], gys=[g])
    outer, red, inner = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
    m = Module("reduce", dtype=dtype, op="mean" if op == "ReduceMean" else "sum")
    y = empty(cp, out_shape, dtype)
    m("fwd", blocks(outer * inner), 256, to_dev(cp, x, dtype), y, i64(outer), i64(red), i64(inner))
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    gx = empty(cp, shape, dtype)
    m("bwd", blocks(x.size), 256, to_dev(cp, g, dtype), gx, i64(outer), i64(red), i64(inner), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_shape", [None, (5, 1, 1, 7), (5, 3, 1, 7), (1, 3, 7, 7)])
def test_softmax(dtype: str, mask_shape: tuple | None) -> None:
    shape = (5, 3, 7, 7) if mask_shape else (37, 19)
    x, g = rand(shape, dtype, -3, 3, seed=23), rand(shape, dtype, seed=24)
    xs = [x]
    params: dict[str, Any] = {"masked": False}
    attrs: dict[str, Any] = {}
    if mask_shape:
        mask = (np.random.default_rng(25).random(mask_shape) < 0.7).astype(np.float64)
        xs.append(mask)
        attrs = {"factor": 0.25}
        params = {"masked": True, "factor": 0.25, "d1": 3, "d2": 7, "mb": int(mask_shape[0] == 1),
                  "m1": mask_shape[1], "m2": mask_shape[2]}
    (y_ref,), gx_ref, _ = ref("Softmax", attrs, xs, gys=[g])
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    m = Module("softmax", dtype=dtype, **params)
    y = empty(cp, shape, dtype)
    m("fwd", blocks(rows, 8), (32, 8, 1), *[to_dev(cp, v, dtype) for v in xs], y, i64(rows), i32(cols))
    got = from_dev(cp, y, dtype)
    assert rel_err(got, y_ref) < TOL[dtype]
    gx = empty(cp, shape, dtype)
    m("bwd", blocks(rows, 8), (32, 8, 1), y, to_dev(cp, g, dtype), gx, i64(rows), i32(cols), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref[0]) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_copies_concat_and_slice(dtype: str) -> None:
    b = 23
    xs = [rand((b, 4, 3), dtype, seed=26), rand((b, 4, 5), dtype, seed=27)]
    g = rand((b, 4, 8), dtype, seed=28)
    (y_ref,), gx_ref, _ = ref("Concat", {"axis": 2}, xs, gys=[g])
    m = Module("concat_slice", dtype=dtype)
    rows, total = b * 4, 8
    y = empty(cp, (b, 4, 8), dtype)
    off = 0
    for x in xs:
        w = x.shape[-1]
        m("copy", blocks(rows * w), 256, to_dev(cp, x, dtype), y, i64(rows), i64(1), i64(w), i64(0), i64(w), i64(0),
          i64(0), i64(total), i64(0), i64(off), i32(0))
        off += w
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    dg, off = to_dev(cp, g, dtype), 0
    for x, want in zip(xs, gx_ref):
        w = x.shape[-1]
        gx = to_dev(cp, np.ones(x.shape), dtype)
        m("copy", blocks(rows * w), 256, dg, gx, i64(rows), i64(1), i64(w), i64(0), i64(total), i64(0), i64(off),
          i64(w), i64(0), i64(0), i32(1))
        assert rel_err(from_dev(cp, gx, dtype), want + 1) < TOL[dtype]
        off += w
    # FusedReshapeConcat's item output: a 3-level copy
    (item_ref, _), _, _ = ref("FusedReshapeConcat", {}, xs)
    item = empty(cp, (b * 3, 8), dtype)
    off = 0
    for x in xs:
        v = x.shape[-1]
        m("copy", blocks(b * 3 * v), 256, to_dev(cp, x, dtype), item, i64(b), i64(3), i64(v), i64(0), i64(4 * v),
          i64(v), i64(0), i64(3 * 8), i64(8), i64(off), i32(0))
        off += v
    assert rel_err(from_dev(cp, item, dtype), item_ref) < TOL[dtype]


# -- multi cross v1 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,n,layers", [(37, 13, 2), (16_384, 429, 6)])  # odd sizes; DCN's cross network
def test_multi_cross_v1(dtype: str, b: int, n: int, layers: int) -> None:
    """The launches the plan makes: v1_fwd_all (every layer), then per layer v1_bwd (layer 0 writes the
    input's gradient) and v1_wgrad_finish; against the reference, and bit for bit the same when the
    backward runs again (the weight-gradient partials are summed in a fixed order, no atomics)."""
    from hgc.codegen.lower import row_parts
    from tests.codegen._col_order import column_sums

    x0 = rand((b, n), dtype, -1, 1, seed=29)
    ws = [rand((1, n), "float32", -0.5, 0.5, seed=30 + i) * (13 / n) ** 0.5 for i in range(2 * layers)]
    g = rand((b, n), dtype, seed=35)
    (y_ref,), (gx_ref,), gw_ref = ref("MultiCross", {"num_layers": layers}, [x0], ws, gys=[g])
    m = Module("multi_cross", dtype=dtype, n=n, layers=layers)
    rb = (32, 8, 1)
    dx0 = to_dev(cp, x0, dtype)
    xs = [dx0] + [empty(cp, (b, n), dtype) for _ in range(layers)]
    ss = [empty(cp, (b,), "float32") for _ in range(layers)]
    dws = [to_dev(cp, w, "float32") for w in ws]
    m("v1_fwd_all", blocks(b, 8), rb, dx0, *dws, *xs[1:], *ss, i64(b))
    assert rel_err(from_dev(cp, xs[-1], dtype), y_ref) < TOL[dtype]
    parts = row_parts(b)
    runs = []
    for _ in range(2):
        dy, d0 = to_dev(cp, g, dtype), empty(cp, (b, n), dtype)
        gx = empty(cp, (b, n), dtype)
        gws = [cp.zeros(n, cp.float32) for _ in ws]
        for l in reversed(range(layers)):
            part = empty(cp, (parts, 2 * n), "float32")
            out = (gx, i32(0)) if l == 0 else (np.uint64(0), i32(0))
            m("v1_bwd", (parts, 1, 1), rb, dx0, xs[l], dy, ss[l], dws[2 * l], d0, i32(0 if l == layers - 1 else 1),
              *out, part, i64(b))
            m("v1_wgrad_finish", blocks(2 * n, 32), rb, part, i32(parts), gws[2 * l], gws[2 * l + 1])
        runs.append([from_dev(cp, gx, dtype)] + [cp.asnumpy(w) for w in gws])
    # the last layer's db: plain sums of the seed gradient, in the column reductions' order
    assert np.array_equal(runs[0][-1], column_sums(g, parts))
    tol = TOL[dtype] * (1 if dtype == "float32" else 3)
    assert rel_err(runs[0][0], gx_ref) < tol
    for got, want in zip(runs[0][1:], gw_ref):
        assert rel_err(got, np.asarray(want).reshape(-1)) < tol
    assert all(np.array_equal(u, v) for u, v in zip(*runs)), "not reproducible"


# -- batch norm -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm(dtype: str) -> None:
    b, n = 37, 11
    x, g = rand((b, n), dtype, -2, 3, seed=36), rand((b, n), dtype, seed=37)
    gamma, beta = rand((1, n), "float32", 0.5, 1.5, 38), rand((1, n), "float32", seed=39)
    attrs = {"factor": 0.9, "eps": 1e-5}
    state: dict = {}
    (y_ref,), (gx_ref,), (dg_ref, db_ref) = ref("BatchNorm", attrs, [x], [gamma, beta], gys=[g], state=state)
    m = Module("batch_norm", dtype=dtype, n=n, eps=1e-5, factor=0.9)
    dx, y = to_dev(cp, x, dtype), empty(cp, (b, n), dtype)
    dgm, dbt = to_dev(cp, gamma, "float32"), to_dev(cp, beta, "float32")
    mean, invstd = cp.empty(n, cp.float32), cp.empty(n, cp.float32)
    rm, rv = cp.zeros(n, cp.float32), cp.ones(n, cp.float32)
    m("fwd_train", 1, 256, dx, dgm, dbt, y, mean, invstd, rm, rv, i64(b))
    assert rel_err(from_dev(cp, y, dtype), y_ref) < TOL[dtype]
    assert rel_err(cp.asnumpy(rm), state["mean"]) < 1e-5 and rel_err(cp.asnumpy(rv), state["var"]) < 1e-5
    gx = empty(cp, (b, n), dtype)
    dgamma, dbeta = cp.zeros(n, cp.float32), cp.zeros(n, cp.float32)
    m("bwd", 1, 256, dx, to_dev(cp, g, dtype), dgm, mean, invstd, gx, dgamma, dbeta, i64(b), i32(0))
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype] * (1 if dtype == "float32" else 3)
    assert rel_err(cp.asnumpy(dgamma), dg_ref.reshape(-1)) < TOL[dtype]
    assert rel_err(cp.asnumpy(dbeta), db_ref.reshape(-1)) < TOL[dtype]
    (ye_ref,), _, _ = ref("BatchNorm", attrs, [x], [gamma, beta], training=False, state=state)
    ye = empty(cp, (b, n), dtype)
    m("fwd_eval", blocks(b * n), 256, dx, dgm, dbt, ye, rm, rv, i64(b))
    assert rel_err(from_dev(cp, ye, dtype), ye_ref) < TOL[dtype]


# -- dense optimizer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["SGD", "MomentumSGD", "Nesterov", "Adam", "AdaGrad", "Ftrl"])
@pytest.mark.parametrize("reg", ["none", "L1", "L2"])
def test_dense_optimizer(kind: str, reg: str) -> None:
    from hgc.runtime.optim.dense import make_dense_optimizer
    from hgc.runtime.regularizer import Regularizer

    n, lr, lam, batch = 1001, 0.01, 0.3, 16
    hyper = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "momentum_factor": 0.8, "lambda1": 0.01,
             "lambda2": 0.02, "beta": 0.5, "initial_accu_value": 0.1}
    r = np.random.default_rng(40)
    w = r.uniform(-1, 1, n).astype(np.float32)
    host = make_dense_optimizer(kind, [w.copy()], **hyper)
    regz = Regularizer(None if reg == "none" else reg, lam, batch)
    m = Module("optimizer", kind=kind, reg=reg, half_copy=True,
               **{k: hyper[k] for k in ("beta1", "beta2", "epsilon", "momentum_factor", "lambda1", "lambda2", "beta")})
    dw = cp.asarray(w)
    init = hyper["initial_accu_value"] if kind == "AdaGrad" else 0.0
    s0, s1 = cp.full(n, init, cp.float32), cp.zeros(n, cp.float32)
    w16 = cp.zeros(n, cp.float16)
    for step in range(1, 4):
        g = r.uniform(-1, 1, n).astype(np.float32)
        host.step([regz.grads(host.weights)[0] + g], lr)
        alpha = lr * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        m("step", blocks(n), 256, dw, cp.asarray(g), s0, s1, w16, i64(n), f32(lr), f32(alpha), f32(1.0),
          f32(lam / batch if reg != "none" else 0.0))
    assert rel_err(cp.asnumpy(dw), host.weights[0]) < 1e-5
    assert rel_err(cp.asnumpy(w16), host.weights[0].astype(np.float16)) < 1e-3
    for i, st in enumerate(host.states()):
        assert rel_err(cp.asnumpy((s0, s1)[i]), st[0]) < 1e-5
