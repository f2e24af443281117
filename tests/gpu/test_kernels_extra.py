"""The kernel families added for Select/Gather/Scale, SequenceMask, WeightMultiply, LayerNorm, PReLU_Dice,
MatrixMultiply and GRU on the GPU:

* fp32 through the whole lowering: each op's plan (lowered with its output gradient seeded) runs on the
  CudaExecutor and its outputs, input gradient and weight gradients are compared with the reference
  semantics in float64 (relative error < 1e-5);
* every dtype straight at the kernels (fp16/bf16 < 1e-2), outputs poisoned with NaN before each launch;
* a DIN-style graph (Scale, FusedReshapeConcat, Sub, ElementwiseMultiply, Softmax, ReduceSum, ReduceMean,
  PReLU_Dice) against the CpuExecutor for a few training steps and an evaluation.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import pytest

from tests.gpu._util import (
    DTYPES,
    TOL,
    Module,
    blocks,
    empty,
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

from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.ops.gru import weight_size
from hgc.runtime.cuda.executor import CudaExecutor
from hgc.runtime.data.batch import Batch
from tests.codegen._plan_interp import reference, seeded_plan
from tests.passes._graphs import with_input

F32 = 1e-5


def check(tag: str, got: Any, want: Any, tol: float) -> None:
    """Assert rel_err(got, want) < tol; with $OUT set (scripts/gpu_check.sh) the error is logged there."""
    err = rel_err(got, want)
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "kernels_extra_errors.txt"), "a") as f:
            f.write(f"{tag}\t{err:.3e}\ttol {tol:g}\n")
    assert err < tol, f"{tag}: relative error {err:.3e} >= {tol:g}"


def rand(shape: tuple[int, ...], dtype: str, lo: float = -1.5, hi: float = 1.5, seed: int = 0) -> np.ndarray:
    return quantize(np.random.default_rng(seed).uniform(lo, hi, shape), dtype)


# -- fp32 through the lowering and the executor ----------------------------------------------------
def run_seeded(graph: Graph, batch: int, seeds: list[str], weights: dict[str, list[np.ndarray]],
               seed: int, tag: str) -> None:
    """Lower with ``seeds`` seeded, run forward + backward on the GPU, check against the reference: every
    output, the dense input's gradient and every weight gradient."""
    plan = seeded_plan(graph, batch, seeds)
    w32 = {k: [np.asarray(x, np.float32) for x in v] for k, v in weights.items()}
    ex = CudaExecutor(plan, w32, {})
    inp = next(n for n in graph.nodes() if n.op == "Input").attrs
    dense = rand((batch, inp["dense_dim"]), "float32", seed=seed)
    out = ex.forward(Batch(batch, np.zeros((batch, 1), np.float32), dense.astype(np.float32), []), True)
    got = {n.outputs[0]: out.tensors[n.outputs[0]] for n in graph.nodes() if n.op != "Input"}
    r = np.random.default_rng(seed + 1)
    gys = {t: quantize(r.uniform(-1, 1, ex.tensor(t, "gradient").shape), "float32") for t in seeds}
    for t, g in gys.items():
        ex.tensor(t, "gradient").set(g.astype(np.float32))
    wg, _ = ex.backward()
    gx = cp.asnumpy(ex.tensor("dense", "gradient"))
    values, grads, wgrads = reference(graph, {"dense": dense}, {k: [np.asarray(x, np.float64) for x in v]
                                                                for k, v in w32.items()}, gys)
    for t, v in got.items():
        check(f"{tag} fp32 output {t}", v, values[t], F32)
    check(f"{tag} fp32 input gradient", gx, grads["dense"], F32)
    for node, gs in wgrads.items():
        for i, (a, b) in enumerate(zip(wg[node], gs)):
            check(f"{tag} fp32 weight gradient {i}", a, np.asarray(b).reshape(a.shape), F32)


def graph_select(dim: int) -> tuple[Graph, dict]:
    g = with_input(35, 1)
    add_node(g, "Reshape", ["dense"], ["x3"], {"leading_dim": 5, "time_step": 7})  # (B, 7, 5)
    add_node(g, "Select", ["x3"], ["y"], {"dim": dim, "index": (4, 0, 4, 2) if dim == 2 else (6, 1, 1, 3, 0)})
    return g, {}


def graph_gather() -> tuple[Graph, dict]:
    g = with_input(13, 1)
    add_node(g, "Gather", ["dense"], ["y"], {"indices": (8, 0, 8, 3, 30)})
    return g, {}


def graph_scale(axis: int) -> tuple[Graph, dict]:
    g = with_input(13, 1)
    add_node(g, "Scale", ["dense"], ["y"], {"axis": axis, "factor": 7.0})
    return g, {}


def graph_weight_multiply() -> tuple[Graph, dict]:
    g = with_input(11, 1)
    add_node(g, "WeightMultiply", ["dense"], ["y"], {"weight_dims": (11, 5)})
    return g, {"y": [rand((11, 5), "float32", seed=41)]}


def graph_layer_norm(three_d: bool) -> tuple[Graph, dict]:
    g = with_input(57, 1)
    x = "dense"
    if three_d:
        add_node(g, "Reshape", ["dense"], ["x3"], {"leading_dim": 19, "time_step": 3})
        x = "x3"
    add_node(g, "LayerNorm", [x], ["y"], {"eps": 1e-5})
    d = 19 if three_d else 57
    return g, {"y": [rand((1, d), "float32", 0.5, 1.5, 42), rand((1, d), "float32", seed=43)]}


def graph_dice() -> tuple[Graph, dict]:
    g = with_input(37, 1)
    add_node(g, "PReLU_Dice", ["dense"], ["y"], {"elu_alpha": 0.2, "eps": 1e-6})
    return g, {}


def graph_matmul(kind: str) -> tuple[Graph, dict]:
    g = with_input(42, 1)
    if kind == "3d":
        add_node(g, "Slice", ["dense"], ["a", "b"], {"ranges": ((0, 21), (21, 42))})
        add_node(g, "Reshape", ["a"], ["a3"], {"leading_dim": 7, "time_step": 3})  # (B, 3, 7)
        add_node(g, "Reshape", ["b"], ["b3"], {"leading_dim": 3, "time_step": 7})  # (B, 7, 3)
        add_node(g, "MatrixMultiply", ["a3", "b3"], ["y"])
    elif kind == "4d":
        add_node(g, "Reshape", ["dense"], ["a4"], {"shape": (-1, 2, 3, 7)})
        add_node(g, "Reshape", ["dense"], ["b4"], {"shape": (-1, 2, 7, 3)})
        add_node(g, "MatrixMultiply", ["a4", "b4"], ["y"])
    else:
        add_node(g, "Slice", ["dense"], ["a"], {"ranges": ((0, 5),)})
        add_node(g, "Gather", ["dense"], ["w"], {"indices": (3, 0, 4, 1, 2)})  # (5, 42)
        rhs = "w"
        if kind == "2d3d":
            add_node(g, "Reshape", ["w"], ["w3"], {"leading_dim": 6, "time_step": 7})  # (5, 7, 6)
            rhs = "w3"
        add_node(g, "MatrixMultiply", ["a", rhs], ["y"])
    return g, {}


def graph_gru(n: int, steps: int) -> tuple[Graph, dict]:
    vec, hid = 5, 9
    g = with_input(steps * vec, 1)
    add_node(g, "Reshape", ["dense"], ["seq"], {"leading_dim": vec})
    add_node(g, "GRU", ["seq"], ["y"], {"num_output": hid, "batchsize": n, "SeqLength": steps,
                                         "vector_size": vec})
    return g, {"y": [rand((1, weight_size(hid, vec)), "float32", -0.5, 0.5, 44)]}


CASES = {
    "select_dim1": (lambda: graph_select(1), 9), "select_dim2": (lambda: graph_select(2), 9),
    "gather": (graph_gather, 37), "scale_axis0": (lambda: graph_scale(0), 23),
    "scale_axis1": (lambda: graph_scale(1), 23), "weight_multiply": (graph_weight_multiply, 29),
    "layer_norm_2d": (lambda: graph_layer_norm(False), 31),
    "layer_norm_3d": (lambda: graph_layer_norm(True), 31),
    "dice": (graph_dice, 53), "matmul_2d": (lambda: graph_matmul("2d"), 17),
    "matmul_2d3d": (lambda: graph_matmul("2d3d"), 17), "matmul_3d": (lambda: graph_matmul("3d"), 17),
    "matmul_4d": (lambda: graph_matmul("4d"), 17), "gru_1": (lambda: graph_gru(7, 1), 7),
    "gru_5": (lambda: graph_gru(7, 5), 7),
}


@pytest.mark.parametrize("case", list(CASES))
def test_op_through_lowering_fp32(case: str) -> None:
    make, batch = CASES[case]
    graph, weights = make()
    run_seeded(graph, batch, ["y"], weights, seed=len(case), tag=case)


def test_sequence_mask_through_lowering() -> None:
    g = with_input(2, 1)
    add_node(g, "Slice", ["dense"], ["from", "to"], {"ranges": ((0, 1), (1, 2))})
    add_node(g, "SequenceMask", ["from", "to"], ["mask"],
             {"max_sequence_len_from": 5, "max_sequence_len_to": 7})
    ex = CudaExecutor(seeded_plan(g, 19, ()), {}, {})
    lens = np.random.default_rng(45).integers(0, 9, (19, 2)).astype(np.float32)
    out = ex.forward(Batch(19, np.zeros((19, 1), np.float32), lens, []), False)
    values, _, _ = reference(g, {"dense": lens}, {}, {}, training=False)
    assert np.array_equal(out.tensors["mask"], values["mask"])


def test_dice_running_statistics_on_the_device() -> None:
    graph, _ = graph_dice()
    plan = seeded_plan(graph, 41, ["y"])
    ex = CudaExecutor(plan, {}, {})
    state: dict = {}
    r = np.random.default_rng(46)
    for step in range(3):
        x = quantize(r.uniform(-1, 2, (41, 37)) * (step + 1), "float32")
        ex.forward(Batch(41, np.zeros((41, 1), np.float32), x.astype(np.float32), []), True)
        reference(graph, {"dense": x}, {}, {}, state=state)
    x = quantize(r.uniform(-1, 2, (41, 37)), "float32")
    out = ex.forward(Batch(41, np.zeros((41, 1), np.float32), x.astype(np.float32), []), False)
    values, _, _ = reference(graph, {"dense": x}, {}, {}, state=state, training=False)
    check("dice fp32 eval with running statistics", out.tensors["y"], values["y"], F32)
    st = ex.state_of("y")
    check("dice fp32 running mean", st["running_mean"], state["y"]["running_mean"], F32)
    check("dice fp32 running var", st["running_var"], state["y"]["running_var"], F32)


# -- every dtype straight at the kernels ------------------------------------------------------------
def ref(op: str, attrs: dict, xs: list, ws: list | None = None, gys: list | None = None) -> tuple:
    from hgc.ir.build import check_attrs
    from hgc.ir.registry import RefContext, get_op

    full = check_attrs(op, attrs)
    ctx = RefContext(training=True, rng=np.random.default_rng(0), state={})
    ys, saved = get_op(op).forward(ctx, full, [np.asarray(x, np.float64) for x in xs],
                                   [np.asarray(w, np.float64) for w in (ws or [])])
    if gys is None:
        return ys, [], []
    gxs, gws = get_op(op).backward(ctx, full, saved, gys)
    return ys, gxs, gws


def inverse(index: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    readers: list[list[int]] = [[] for _ in range(max(index) + 1)]
    for q, d in enumerate(index):
        readers[d].append(q)
    off = [0]
    for rd in readers:
        off.append(off[-1] + len(rd))
    return {"index": index, "inv_off": tuple(off), "inv_q": tuple(q for rd in readers for q in rd)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["select", "scale0", "scale1"])
def test_select_kernels(dtype: str, case: str) -> None:
    if case == "select":
        shape, op, attrs, index = (13, 7, 5), "Select", {"dim": 1, "index": (6, 1, 1, 3)}, (6, 1, 1, 3)
        outer, d, inner = 13, 7, 5
    else:
        k = 6
        shape, op, attrs, index = (13, 5), "Scale", {"axis": int(case[-1]), "factor": float(k)}, (0,) * k
        outer, d, inner = (65, 1, 1) if case == "scale0" else (13, 1, 5)
    x = rand(shape, dtype, seed=47)
    (y_ref,), _, _ = ref(op, attrs, [x])
    g = rand(y_ref.shape, dtype, seed=48)
    _, (gx_ref,), _ = ref(op, attrs, [x], gys=[g])
    m = Module("select", dtype=dtype, **inverse(index))
    y = empty(cp, y_ref.shape, dtype)
    m("fwd", blocks(y_ref.size), 256, to_dev(cp, x, dtype), y, i64(outer), i64(d), i64(inner))
    check(f"{case} {dtype} forward", from_dev(cp, y, dtype), y_ref, TOL[dtype])
    gx = to_dev(cp, np.ones(shape), dtype)
    m("bwd", blocks(x.size), 256, to_dev(cp, g, dtype), gx, i64(outer), i64(d), i64(inner), i32(1))
    check(f"{case} {dtype} backward (acc)", from_dev(cp, gx, dtype), gx_ref + 1, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_mask_kernel(dtype: str) -> None:
    b, f, t = 23, 5, 9
    r = np.random.default_rng(49)
    src, dst = r.integers(0, 7, (b, 1)).astype(np.float64), r.integers(0, 11, (b, 1)).astype(np.float64)
    (y_ref,), _, _ = ref("SequenceMask", {"max_sequence_len_from": f, "max_sequence_len_to": t}, [src, dst])
    m = Module("elementwise", op="sequence_mask", dtype=dtype, f=f, t=t)
    y = empty(cp, (b, 1, f, t), dtype)
    m("fwd", blocks(y_ref.size), 256, to_dev(cp, src, dtype), to_dev(cp, dst, dtype), y, i64(b))
    assert np.array_equal(from_dev(cp, y, dtype), y_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_multiply_kernels(dtype: str) -> None:
    b, s, k = 37, 11, 7
    x, w, g = rand((b, s), dtype, seed=50), rand((s, k), "float32", seed=51), rand((b, s * k), dtype, seed=52)
    (y_ref,), (gx_ref,), (gw_ref,) = ref("WeightMultiply", {"weight_dims": (s, k)}, [x], [w], gys=[g])
    m = Module("weight_multiply", dtype=dtype, s=s, k=k)
    dx, dw, dg = to_dev(cp, x, dtype), to_dev(cp, w, "float32"), to_dev(cp, g, dtype)
    y = empty(cp, (b, s * k), dtype)
    m("fwd", blocks(b * s * k), 256, dx, dw, y, i64(b))
    check(f"weight_multiply {dtype} forward", from_dev(cp, y, dtype), y_ref, TOL[dtype])
    gx = empty(cp, (b, s), dtype)
    m("bwd_x", blocks(b * s), 256, dg, dw, gx, i64(b), i32(0))
    check(f"weight_multiply {dtype} input gradient", from_dev(cp, gx, dtype), gx_ref, TOL[dtype])
    gw = cp.zeros(s * k, cp.float32)
    part = empty(cp, (2, s * k), "float32")  # partial sums of 2 row chunks, then their sum
    m("wgrad_part", (blocks(s * k, 32), 2, 1), (32, 8, 1), dx, dg, part, i64(b))
    m("wgrad_finish", blocks(s * k, 32), (32, 8, 1), part, i32(2), gw)
    check(f"weight_multiply {dtype} weight gradient", cp.asnumpy(gw), gw_ref.reshape(-1), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [19, 77])
def test_layer_norm_kernels(dtype: str, cols: int) -> None:
    rows = 41
    x, g = rand((rows, cols), dtype, -2, 3, 53), rand((rows, cols), dtype, seed=54)
    gamma, beta = rand((1, cols), "float32", 0.5, 1.5, 55), rand((1, cols), "float32", seed=56)
    (y_ref,), (gx_ref,), (dg_ref, db_ref) = ref("LayerNorm", {"eps": 1e-5}, [x], [gamma, beta], gys=[g])
    m = Module("layer_norm", dtype=dtype, eps=1e-5)
    dx, dgm, dbt, dg = (to_dev(cp, x, dtype), to_dev(cp, gamma, "float32"), to_dev(cp, beta, "float32"),
                        to_dev(cp, g, dtype))
    y, mean, inv = empty(cp, (rows, cols), dtype), cp.empty(rows, cp.float32), cp.empty(rows, cp.float32)
    m("fwd", blocks(rows, 8), (32, 8, 1), dx, dgm, dbt, y, mean, inv, i64(rows), i32(cols))
    check(f"layer_norm {cols} {dtype} forward", from_dev(cp, y, dtype), y_ref, TOL[dtype])
    gx = empty(cp, (rows, cols), dtype)
    m("bwd_x", blocks(rows, 8), (32, 8, 1), dx, dg, dgm, mean, inv, gx, i64(rows), i32(cols), i32(0))
    tol = TOL[dtype] * (1 if dtype == "float32" else 3)
    check(f"layer_norm {cols} {dtype} input gradient", from_dev(cp, gx, dtype), gx_ref, tol)
    dgamma, dbeta = cp.zeros(cols, cp.float32), cp.zeros(cols, cp.float32)
    m("wgrad", blocks(cols, 32), (32, 8, 1), dx, dg, mean, inv, dgamma, dbeta, i64(rows), i32(cols))
    check(f"layer_norm {cols} {dtype} dgamma", cp.asnumpy(dgamma), dg_ref.reshape(-1), tol)
    check(f"layer_norm {cols} {dtype} dbeta", cp.asnumpy(dbeta), db_ref.reshape(-1), tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dice_kernels(dtype: str) -> None:
    b, n = 61, 13
    x, g = rand((b, n), dtype, -2, 3, 57), rand((b, n), dtype, seed=58)
    attrs = {"elu_alpha": 0.3, "eps": 1e-5}
    (y_ref,), (gx_ref,), _ = ref("PReLU_Dice", attrs, [x], gys=[g])
    m = Module("dice", dtype=dtype, n=n, alpha=0.3, eps=1e-5, momentum=0.01)
    dx = to_dev(cp, x, dtype)
    y = empty(cp, (b, n), dtype)
    mean, inv = cp.empty(n, cp.float32), cp.empty(n, cp.float32)
    rm, rv, seen = cp.zeros(n, cp.float32), cp.zeros(n, cp.float32), cp.zeros(n, cp.float32)
    m("fwd_train", 1, 256, dx, y, mean, inv, rm, rv, seen, i64(b))
    check(f"dice {dtype} forward", from_dev(cp, y, dtype), y_ref, TOL[dtype])
    assert np.all(cp.asnumpy(seen) == 1)
    assert rel_err(cp.asnumpy(rm), x.mean(axis=0)) < 1e-5 and rel_err(cp.asnumpy(rv), x.var(axis=0)) < 1e-5
    gx = empty(cp, (b, n), dtype)
    m("bwd", 1, 256, dx, to_dev(cp, g, dtype), mean, inv, gx, i64(b), i32(0))
    tol = TOL[dtype] * (1 if dtype == "float32" else 3)
    check(f"dice {dtype} input gradient", from_dev(cp, gx, dtype), gx_ref, tol)
    ye = empty(cp, (b, n), dtype)
    m("fwd_eval", 1, 256, dx, ye, rm, rv, seen, i64(b))  # running = this batch's statistics
    check(f"dice {dtype} eval", from_dev(cp, ye, dtype), y_ref, TOL[dtype])


# -- a DIN-style graph against the CpuExecutor ------------------------------------------------------
def din_graph(his: int = 4, v: int = 3) -> Graph:
    """DIN's attention and Dice layers; the user/good/category vectors are trainable projections of the
    dense features instead of embedding lookups (the embedding kernels have their own tests)."""
    w = 2 * v
    g = with_input(7, 1)
    add_node(g, "InnerProduct", ["dense"], ["user_vec"], {"num_output": v})
    for name in ("good", "cate"):
        add_node(g, "InnerProduct", ["dense"], [f"{name}_flat"], {"num_output": (his + 1) * v})
        add_node(g, "Reshape", [f"{name}_flat"], [f"emb_{name}"], {"leading_dim": v, "time_step": his + 1})
    add_node(g, "FusedReshapeConcat", ["emb_good", "emb_cate"], ["item_his", "item"])
    add_node(g, "Slice", ["item"], ["item1", "item2"], {"ranges": ((0, w), (0, w))})
    add_node(g, "Slice", ["item_his"], ["his1", "his2", "his3", "his4", "his5"], {"ranges": ((0, w),) * 5})
    add_node(g, "Scale", ["item1"], ["item_rep"], {"axis": 1, "factor": float(his)})
    add_node(g, "Slice", ["item_rep"], ["rep1", "rep2", "rep3"], {"ranges": ((0, w),) * 3})
    add_node(g, "Sub", ["rep1", "his1"], ["sub"])
    add_node(g, "ElementwiseMultiply", ["rep2", "his2"], ["mul"])
    add_node(g, "Concat", ["rep3", "his3", "sub", "mul"], ["att_in"])
    add_node(g, "InnerProduct", ["att_in"], ["att_fc1"], {"num_output": 7})
    add_node(g, "InnerProduct", ["att_fc1"], ["att_fc2"], {"num_output": 1})
    add_node(g, "Reshape", ["att_fc2"], ["att_score"], {"leading_dim": his})
    add_node(g, "Softmax", ["att_score"], ["att_weight"])
    add_node(g, "Scale", ["att_weight"], ["att_rep"], {"axis": 0, "factor": float(w)})
    add_node(g, "Reshape", ["his4"], ["his_row"], {"leading_dim": his * w})
    add_node(g, "ElementwiseMultiply", ["att_rep", "his_row"], ["weighted"])
    add_node(g, "Reshape", ["weighted"], ["weighted3"], {"leading_dim": w, "time_step": his})
    add_node(g, "ReduceSum", ["weighted3"], ["pool3"], {"axis": 1})
    add_node(g, "Reshape", ["pool3"], ["pool"], {"leading_dim": w})
    add_node(g, "Reshape", ["his5"], ["his3d"], {"leading_dim": w, "time_step": his})
    add_node(g, "ReduceMean", ["his3d"], ["mean3"], {"axis": 1})
    add_node(g, "Reshape", ["mean3"], ["his_mean"], {"leading_dim": w})
    add_node(g, "Concat", ["user_vec", "his_mean", "pool", "item2", "dense"], ["din_in"])
    add_node(g, "InnerProduct", ["din_in"], ["fc1"], {"num_output": 11})
    add_node(g, "PReLU_Dice", ["fc1"], ["dice1"], {"elu_alpha": 0.2, "eps": 1e-6})
    add_node(g, "InnerProduct", ["dice1"], ["fc2"], {"num_output": 5})
    add_node(g, "PReLU_Dice", ["fc2"], ["dice2"], {"elu_alpha": 0.2, "eps": 1e-6})
    add_node(g, "InnerProduct", ["dice2"], ["fc3"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["fc3", "label"], ["loss"])
    return g


def test_din_style_graph_trains_like_the_cpu() -> None:
    from hgc.codegen.lower import lower
    from hgc.ir.node import Attrs
    from hgc.ir.registry import get_op
    from hgc.passes.context import PassContext
    from hgc.passes.pipeline import run_pipeline
    from hgc.runtime.cpu.executor import CpuExecutor
    from hgc.runtime.optim.dense import make_dense_optimizer
    from tests.gpu.test_executor import initial_weights, make_batch

    g0 = din_graph()
    g = Graph({**dict(g0.meta), "optimizer": Attrs(optimizer_type="SGD", update_type="Local")})
    for n in g0.nodes():
        g.add(n)
    batch = 29
    res = run_pipeline(g, PassContext(batchsize=batch))
    graph = res.graph
    plan = lower(graph, res.plans)
    used = {graph.node(s.node).op for s in plan.forward if s.node}
    assert {"Scale", "FusedReshapeConcat", "Sub", "ElementwiseMultiply", "Softmax", "ReduceSum", "ReduceMean",
            "PReLU_Dice"} <= used
    flat = initial_weights(graph, seed=5)
    tables: dict = {}
    cpu = CpuExecutor(graph, copy.deepcopy(flat), copy.deepcopy(tables), seed=5)
    dev = CudaExecutor(plan, copy.deepcopy(flat), copy.deepcopy(tables), seed=5)
    b = make_batch(graph, batch, seed=20)
    out_c, out_g = cpu.forward(b, training=True), dev.forward(b, training=True)
    check("din step 1 loss", [out_g.losses["loss"]], [out_c.losses["loss"]], F32)
    for n in graph.nodes():
        if get_op(n.op).kind == "dense":
            for t in n.outputs:
                check(f"din activation {t}", out_g.tensors[t], out_c.tensors[t], F32)
    wg_c, _ = cpu.backward()
    wg_g, _ = dev.backward()
    for node, grads in wg_c.items():
        for i, gr in enumerate(grads):
            want = np.asarray(gr).reshape(wg_g[node][i].shape)
            if node in ("att_fc1", "att_fc2") and i == 1:
                # the attention scores go through a Softmax, which ignores a shift, and nothing nonlinear sits
                # between these biases and it: their gradients are zero but for rounding (~1e-10) on both
                # sides, so only their size is checked
                assert np.abs(wg_g[node][i]).max() < 1e-6 and np.abs(want).max() < 1e-6
                continue
            check(f"din dW {node}[{i}]", wg_g[node][i], want, F32)
    # three SGD steps on both sides, then an evaluation (Dice with its running statistics)
    cpu = CpuExecutor(graph, copy.deepcopy(flat), copy.deepcopy(tables), seed=5)
    dev = CudaExecutor(plan, copy.deepcopy(flat), copy.deepcopy(tables), seed=5)
    dense_opt = make_dense_optimizer("SGD", [w for ws in cpu.weights.values() for w in ws])
    lr = 0.05
    for step in range(3):
        b = make_batch(graph, batch, seed=30 + step)
        lc = cpu.forward(b, training=True).losses
        wg, _ = cpu.backward()
        grads = []
        for node, ws in cpu.weights.items():
            gs = wg.get(node, [np.zeros_like(x) for x in ws])
            grads += [np.asarray(gr, np.float32).reshape(w.shape) for w, gr in zip(ws, gs)]
        dense_opt.step(grads, lr)
        lg = dev.train_step(b, lr)
        check(f"din training step {step} loss", [lg["loss"]], [lc["loss"]], 1e-4)
    b = make_batch(graph, batch, seed=40)
    ec, eg_ = cpu.forward(b, training=False), dev.forward(b, training=False)
    check("din eval loss", [eg_.losses["loss"]], [ec.losses["loss"]], 1e-4)
    check("din eval dice1 (running statistics)", eg_.tensors["dice1"], ec.tensors["dice1"], 1e-4)
