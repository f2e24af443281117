"""The two-stage column reductions (FC bias gradient with the fused dReLU, reduce's column sums,
WeightMultiply and MultiCross v1 weight gradients) and the interaction kernels on the GPU against the
NumPy reference, at odd sizes: 1 and 3 rows, about a million rows, 1 / 31 / 33 / 1025 columns. Plain sums
must equal a float32 replay of the kernels' summation order bit for bit (tests/codegen/_col_order.py), and
every reduction gives the same bits when run again (no atomics: the cuda target's runs are reproducible)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.codegen._col_order import column_sums
from tests.gpu._util import DTYPES, TOL, Module, empty, from_dev, gpu, i32, i64, quantize, rel_err, to_dev

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.lower import column_parts, interaction_config
from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op

SHAPES = [(1, 1), (3, 31), (3, 33), (4099, 1025), (1_000_003, 33), (65_537, 1)]


def rand(shape: tuple[int, ...], dtype: str, seed: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return quantize(np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32), dtype)


def grids(cols: int, parts: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    tiles = -(-cols // 32)
    return (tiles, parts, 1), (tiles, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("act", ["Relu", "Non"])
def test_bias_gradient(dtype: str, rows: int, cols: int, act: str) -> None:
    g0, y = rand((rows, cols), dtype, seed=cols), rand((rows, cols), dtype, seed=cols + 1)
    db0 = np.random.default_rng(rows).uniform(-1, 1, cols).astype(np.float32)
    m = Module("bias_act", dtype=dtype, act=act)
    parts = column_parts(rows, cols)
    g1, g2 = grids(cols, parts)
    dy = to_dev(cp, y, dtype)
    results = []
    for _ in range(2):
        g = to_dev(cp, g0, dtype)
        part = empty(cp, (parts, cols), "float32")
        db = to_dev(cp, db0, "float32")
        if act == "Relu":
            m("drelu_bias_part", g1, (32, 8, 1), dy, g, part, i64(rows), i32(cols))
        else:
            m("bias_part", g1, (32, 8, 1), g, part, i64(rows), i32(cols))
        m("bias_finish", g2, (32, 8, 1), part, i32(parts), db, i32(cols))
        results.append(cp.asnumpy(db))
    want_g = np.where(y > 0, g0, 0.0) if act == "Relu" else g0
    assert np.array_equal(from_dev(cp, g, dtype), want_g)
    assert np.array_equal(results[0], results[1]), "not reproducible"
    assert np.array_equal(results[0], column_sums(want_g, parts, db0)), "summation order"
    assert rel_err(results[0] - db0, want_g.sum(axis=0)) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 33), (100_003, 1025)])
def test_reduce_column_sums(dtype: str, rows: int, cols: int) -> None:
    x = rand((rows, cols), dtype, seed=7)
    m = Module("reduce", dtype=dtype, op="sum")
    parts = column_parts(rows, cols)
    g1, g2 = grids(cols, parts)
    part = empty(cp, (parts, cols), "float32")
    out = cp.zeros(cols, cp.float32)
    m("colsum_part", g1, (32, 8, 1), to_dev(cp, x, dtype), part, i64(rows), i32(cols))
    m("colsum_finish", g2, (32, 8, 1), part, i32(parts), out, i32(cols))
    assert np.array_equal(cp.asnumpy(out), column_sums(x, parts))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,s,k", [(1, 1, 1), (3, 11, 3), (1_000_003, 13, 4), (16_384, 39, 27)])
def test_weight_multiply_wgrad(dtype: str, rows: int, s: int, k: int) -> None:
    x, gy = rand((rows, s), dtype, seed=s), rand((rows, s * k), dtype, seed=k)
    want = (gy.reshape(rows, s, k) * x.reshape(rows, s, 1)).sum(axis=0).reshape(-1)
    m = Module("weight_multiply", dtype=dtype, s=s, k=k)
    parts = column_parts(rows, s * k)
    g1, g2 = grids(s * k, parts)
    dx, dg = to_dev(cp, x, dtype), to_dev(cp, gy, dtype)
    outs = []
    for _ in range(2):
        part = empty(cp, (parts, s * k), "float32")
        dw = cp.zeros(s * k, cp.float32)
        m("wgrad_part", g1, (32, 8, 1), dx, dg, part, i64(rows))
        m("wgrad_finish", g2, (32, 8, 1), part, i32(parts), dw)
        outs.append(cp.asnumpy(dw))
    assert np.array_equal(outs[0], outs[1]), "not reproducible"
    assert rel_err(outs[0], want) < 1e-5


def ref_interaction(x: np.ndarray, e: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ctx = RefContext(training=True, rng=np.random.default_rng(0), state={})
    op, attrs = get_op("Interaction"), check_attrs("Interaction", {})
    (y,), saved = op.forward(ctx, attrs, [x, e], [])
    (gx, ge), _ = op.backward(ctx, attrs, saved, [g])
    return y, gx, ge


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,d,f", [(1, 4, 1), (3, 13, 7), (1001, 128, 26), (257, 64, 26), (33, 16, 5)])
def test_interaction(dtype: str, b: int, d: int, f: int) -> None:
    cfg = interaction_config(dtype, d, f)  # float16/bfloat16 with d % 16 == 0: the tensor-core kernels
    assert cfg.tc == (dtype != "float32" and d % 16 == 0)
    x, e = rand((b, d), dtype, seed=b), rand((b, f, d), dtype, seed=d)
    wd = d + f * (f + 1) // 2 + 1
    g = rand((b, wd), dtype, seed=f)
    y_ref, gx_ref, ge_ref = ref_interaction(x, e, g)
    m = Module("interaction", dtype=dtype, d=d, f=f, tc=cfg.tc)
    dx, de = to_dev(cp, x, dtype), to_dev(cp, e, dtype)
    y = empty(cp, (b, wd), dtype)
    grid = min(-(-b // cfg.per_block), 97)
    m("fwd", grid, cfg.block, dx, de, y, i64(b), smem=cfg.fwd_smem)
    got = from_dev(cp, y, dtype)
    assert np.all(got[:, -1] == 0) and np.array_equal(got[:, :d], x)
    assert rel_err(got, y_ref) < TOL[dtype]
    gx, ge = empty(cp, (b, d), dtype), empty(cp, (b, f, d), dtype)
    dg = to_dev(cp, g, dtype)
    m("bwd", grid, cfg.block, dx, de, dg, gx, ge, i64(b), i32(0), i32(0), smem=cfg.bwd_smem)
    assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]
    assert rel_err(from_dev(cp, ge, dtype), ge_ref) < TOL[dtype]
    m("bwd", grid, cfg.block, dx, de, dg, np.uint64(0), ge, i64(b), i32(0), i32(1), smem=cfg.bwd_smem)  # no gx
    assert rel_err(from_dev(cp, ge, dtype), 2 * ge_ref) < TOL[dtype] * 2
    if cfg.tc:  # x and e one element past a 16-byte boundary: element-wise staging instead of 16-byte loads
        xo, eo = cp.empty(b * d + 1, dx.dtype)[1:], cp.empty(b * f * d + 1, de.dtype)[1:]
        xo[...], eo[...] = dx.ravel(), de.ravel()
        y2 = empty(cp, (b, wd), dtype)
        m("fwd", grid, cfg.block, xo, eo, y2, i64(b), smem=cfg.fwd_smem)
        assert rel_err(from_dev(cp, y2, dtype), y_ref) < TOL[dtype]
        m("bwd", grid, cfg.block, xo, eo, dg, gx, np.uint64(0), i64(b), i32(0), i32(0), smem=cfg.bwd_smem)
        assert rel_err(from_dev(cp, gx, dtype), gx_ref) < TOL[dtype]
