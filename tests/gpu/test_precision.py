"""Mixed precision (fp16, and bf16 as hgc's extension), loss scaling and TF32 on the cuda target, against the
cpu target in float32: every weighted op and the fused FC group forward + backward (relative error < 1e-2),
whole DLRM / WDL steps, the cuBLAS GemmEx dispatch, the low-precision weight copy, the loss scale
(gradients × scaler, updates ÷ scaler), 100 training steps tracking the fp32 loss curve, and TF32 math
being both accurate and actually used. Every measured error is also written to $OUT/precision.txt."""
from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.gpu._util import bf16_to_f32, f32_to_bf16, from_dev, gpu, quantize, rel_err, to_dev

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.lower import lower
from hgc.codegen.plan import ExecutablePlan
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs
from hgc.ir.registry import get_op
from hgc.passes.context import PassContext
from hgc.passes.pipeline import run_pipeline
from hgc.runtime.cpu.executor import CpuExecutor
from hgc.runtime.cuda import blas
from hgc.runtime.cuda.executor import CudaExecutor
from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.embedding.table import EmbeddingTable
from tests.codegen.test_lower import dlrm_graph
from tests.codegen.test_lower_precision import WEIGHTED, add_weighted, wdl_graph
from tests.passes._graphs import embedding, with_input

LOW = ("float16", "bfloat16")
TOL = 1e-2
REPORT = Path(os.environ.get("OUT") or tempfile.gettempdir()) / "precision.txt"


def report(line: str) -> None:
    with REPORT.open("a") as f:
        f.write(line + "\n")


# -- setup ------------------------------------------------------------------------------------------
def with_optimizer(g: Graph, **opt: object) -> Graph:
    out = Graph({**dict(g.meta), "optimizer": Attrs(opt)})
    for n in g.nodes():
        out.add(n)
    return out


def compile_graph(g: Graph, dtype: str, batch: int, tf32: bool = False) -> tuple[Graph, ExecutablePlan]:
    ctx = PassContext(batchsize=batch, use_mixed_precision=dtype in LOW, enable_tf32_compute=tf32,
                      compute_dtype="bfloat16" if dtype == "bfloat16" else "float32")
    res = run_pipeline(g, ctx)
    return res.graph, lower(res.graph, res.plans)


def initial_weights(graph: Graph, seed: int) -> dict[str, list[np.ndarray]]:
    out = {}
    for i, n in enumerate(graph.nodes()):
        op = get_op(n.op)
        types = [graph.tensor_type(t) for t in n.inputs]
        if op.kind in ("dense", "loss") and op.weights(n.attrs, types):
            ws = op.init(n.attrs, types, np.random.default_rng([seed, i]))
            out[n.name] = [np.asarray(w, np.float32) for w in ws]
    return out


def tables_for(graph: Graph, plan: ExecutablePlan, seed: int) -> dict[str, EmbeddingTable]:
    out = {}
    for i, n in enumerate(x for x in graph.nodes() if get_op(x.op).kind == "embedding"):
        spec = next(e for e in plan.embeddings if e.name == n.name)
        out[n.name] = EmbeddingTable(n.name, spec.vec_size, None if spec.slot_size_array else spec.capacity,
                                     spec.combiner, spec.slot_size_array, spec.one_hot,
                                     rng=np.random.default_rng([seed, i]))
    return out


def make_batch(graph: Graph, n: int, rng: np.random.Generator, teacher: np.ndarray | None = None,
               sizes: tuple[int, ...] = ()) -> Batch:
    """Random dense features and keys (1..nnz keys per slot; one key in [0, sizes[s]) with ``sizes``);
    labels random, or from a linear teacher on the dense features plus a per-key term (learnable)."""
    inp = next(x for x in graph.nodes() if x.op == "Input").attrs
    dense = rng.uniform(-1, 1, (n, inp["dense_dim"])).astype(np.float32)
    sparse, key_term = [], np.zeros(n)
    for s in inp["sparse"]:
        slots, nnz = s["slot_num"], max(s["nnz_per_slot"])
        counts = rng.integers(1, nnz + 1, n * slots)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        keys = rng.integers(0, 40, int(offsets[-1])).astype(np.int64)
        if sizes:
            keys = np.stack([rng.integers(0, z, n) for z in sizes], axis=1).reshape(-1)
        per_row = np.add.reduceat(((keys % 5) - 2.0) * 0.25, offsets[:-1])
        key_term += per_row.reshape(n, slots).sum(axis=1)
        sparse.append(SparseBatch(offsets, keys, slots))
    if teacher is None:
        label = (rng.random((n, sum(inp["label_dims"]))) < 0.5).astype(np.float32)
    else:
        score = dense @ teacher[:dense.shape[1]] + key_term + 0.3 * rng.normal(size=n)
        label = (score > 0).astype(np.float32).reshape(n, 1)
    return Batch(n, label, dense, sparse)


def select_rows(b: Batch, idx: np.ndarray) -> Batch:
    """The samples ``idx`` of a batch (labels, dense features and each sample's keys)."""
    sparse = []
    for sb in b.sparse:
        s, ro = sb.slot_num, sb.row_offsets
        rows = [(ro[i * s + j], ro[i * s + j + 1]) for i in idx for j in range(s)]
        counts = np.array([e - a for a, e in rows], np.int64)
        keys = np.concatenate([sb.keys[a:e] for a, e in rows]) if rows else sb.keys[:0]
        sparse.append(SparseBatch(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), keys, s))
    return Batch(len(idx), b.label[idx], b.dense[idx], sparse)


def relu_margin(graph: Graph, weights: dict[str, list[np.ndarray]], values: dict) -> np.ndarray:
    """Per sample: the smallest |pre-activation| / (its unit's spread) over every ReLU of the graph."""
    from hgc.ir.ops.fused_fc import members

    pre: list[np.ndarray] = []
    for n in graph.nodes():
        if n.op == "ReLU":
            pre.append(np.asarray(values[n.inputs[0]], np.float64))
        elif n.op in ("FusedInnerProduct", "GroupFusedInnerProduct"):
            layers = members(n.attrs) if n.op == "GroupFusedInnerProduct" else [dict(n.attrs)]
            ins = [n.inputs[0], *n.outputs[:-1]]
            for i, layer in enumerate(layers):
                if layer["act_type"] == "Relu":
                    w, b = (np.asarray(x, np.float64) for x in weights[n.name][2 * i:2 * i + 2])
                    x = np.asarray(values[ins[i]], np.float64).reshape(-1, w.shape[0])
                    pre.append(x @ w + b.reshape(1, -1))
    rows = len(next(iter(v for v in values.values() if isinstance(v, np.ndarray))))
    margin = np.full(rows, np.inf)
    for z in pre:
        z = z.reshape(rows, -1)
        margin = np.minimum(margin, np.min(np.abs(z) / (z.std(axis=0) + 1e-12), axis=1))
    return margin


def well_conditioned(g32: Graph, w: dict, tables: dict, pool: Batch, n: int, thr: float = 0.03) -> Batch:
    """``n`` samples of ``pool`` whose ReLU pre-activations all sit at least ``thr`` spreads away from 0
    (in float32). Nearer to 0, the rounding of a reduced-precision forward decides the ReLU mask and the
    gradient jumps by a whole term: that discontinuity, not the kernels' arithmetic, would dominate.
    The forward over the pool inserts its keys into ``tables`` itself (hash tables hand out rows in the order
    keys are first seen): executors made from copies of ``tables`` afterwards map every key of the chosen
    samples to the row it had here, so their pre-activations are the ones measured."""
    cpu = CpuExecutor(g32, copy.deepcopy(w), tables, seed=3)
    margin = relu_margin(g32, w, cpu.forward(pool, training=True).tensors)
    idx = np.nonzero(margin > thr)[0][:n]
    assert len(idx) == n, f"only {len(idx)} of {pool.n} pool samples are {thr} spreads from every ReLU edge"
    return select_rows(pool, idx)


def read(ex: CudaExecutor, tensor: str, kind: str = "activation") -> np.ndarray:
    """A view of the last forward/backward as float64 (bf16 views hold bits)."""
    return from_dev(cp, ex.tensor(tensor, kind), ex.bindings[(tensor, kind)].dtype)


def pair(make: Callable[[], Graph], dtype: str, batch: int, tf32: bool = False, seed: int = 5,
         pool_seed: int | None = None) -> tuple[Graph, ExecutablePlan, CpuExecutor, CudaExecutor, Batch | None]:
    """The cpu target in float32 and the cuda target in ``dtype`` on the same weights and tables, and
    (with ``pool_seed``) a well-conditioned batch of ``batch`` samples for them."""
    g_low, plan = compile_graph(make(), dtype, batch, tf32)
    g32, plan32 = compile_graph(make(), "float32", batch)
    w = initial_weights(g_low, seed)
    tables = tables_for(g32, plan32, seed)
    b = None
    if pool_seed is not None:
        # whole models: a rounded bf16 forward moves pre-activations by up to ~0.04 spreads (Interaction
        # outputs feed the top MLP), so keep samples 0.08 spreads from every ReLU edge
        pool = make_batch(g32, 60 * batch, np.random.default_rng(pool_seed))
        b = well_conditioned(g32, w, tables, pool, batch, thr=0.08)
    cpu = CpuExecutor(g32, copy.deepcopy(w), copy.deepcopy(tables), seed=3)
    ex = CudaExecutor(plan, copy.deepcopy(w), copy.deepcopy(tables), seed=3)
    return g_low, plan, cpu, ex, b


def compare_step(name: str, dtype: str, g: Graph, plan: ExecutablePlan, cpu: CpuExecutor, ex: CudaExecutor,
                 batch: Batch, tensors: tuple[str, ...]) -> dict[str, float]:
    """One forward + backward on both targets: errors of the losses, ``tensors``, dW and embedding grads."""
    out_c, out_g = cpu.forward(batch, training=True), ex.forward(batch, training=True)
    errs = {f"loss {k}": abs(out_g.losses[k] - v) / max(abs(v), 1e-30) for k, v in out_c.losses.items()}
    for t in tensors:
        assert plan.binding(t).dtype == dtype, f"{t} is not computed in {dtype}"
        errs[t] = rel_err(read(ex, t), np.asarray(out_c.tensors[t], np.float64).reshape(ex.tensor(t).shape))
    wc, ec = cpu.backward()
    wg, eg = ex.backward()
    for node, grads in wc.items():
        for i, gr in enumerate(grads):
            errs[f"dW {node}[{i}]"] = rel_err(wg[node][i], np.asarray(gr).reshape(wg[node][i].shape))
    for t, (rows, gr) in ec.items():
        assert np.array_equal(eg[t][0], rows)
        errs[f"dE {t}"] = rel_err(eg[t][1], gr)
    worst = max(errs, key=errs.get)
    report(f"{name:28s} {dtype:9s} worst {errs[worst]:.2e} ({worst}); "
           + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
    return errs


# -- ops ----------------------------------------------------------------------------------------------
SIZES = (5, 7, 9)


def op_graph(op: str) -> Graph:
    """One-hot embedding rows (B, 3, 6) -> Reshape 'x' (B, 18) -> <op> 'y' -> fc 'logit' -> BCE. The op's
    input gradient comes back as the embedding's row gradients."""
    g = with_input(2, 1, [("keys", len(SIZES), 1)])
    embedding(g, "LocalizedSlotSparseEmbeddingOneHot", "keys", "emb", 6, sizes=SIZES,
              optimizer={"optimizer_type": "SGD", "update_type": "Local"})
    add_node(g, "Reshape", ["emb"], ["x"], {"leading_dim": 6 * len(SIZES)})
    add_weighted(g, op, "x")
    return g


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("op", WEIGHTED)
def test_weighted_op_forward_backward_matches_the_cpu(op: str, dtype: str) -> None:
    """The op's inputs are exact in ``dtype`` (embedding rows and weights rounded to it beforehand), so the
    errors are the op's own: output y, dW, dx (embedding row gradients), and the head layer after it.
    Samples sit away from the ReLU edges (see well_conditioned)."""
    g_low, plan = compile_graph(op_graph(op), dtype, 131)
    g32, plan32 = compile_graph(op_graph(op), "float32", 131)
    w = {k: [quantize(x, dtype).astype(np.float32) for x in ws] for k, ws in initial_weights(g_low, 5).items()}
    tables = tables_for(g32, plan32, 5)
    for t in tables.values():
        t.rows[...] = quantize(t.rows, dtype)
    rng = np.random.default_rng(1)
    pool = make_batch(g_low, 20 * 131, rng, sizes=SIZES)
    # mostly positive labels: the bias gradients (column sums) do not cancel down to rounding noise
    pool = Batch(pool.size, (rng.random(pool.label.shape) < 0.85).astype(np.float32), pool.dense, pool.sparse)
    b = well_conditioned(g32, w, tables, pool, 131)
    cpu = CpuExecutor(g32, copy.deepcopy(w), copy.deepcopy(tables), seed=3)
    ex = CudaExecutor(plan, copy.deepcopy(w), copy.deepcopy(tables), seed=3)
    errs = compare_step(op, dtype, g_low, plan, cpu, ex, b, ("x", "y"))
    assert errs["x"] == 0.0, "the op's input is not exact"
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"{op} in {dtype}: relative errors over {TOL}: {bad}"


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("model", ["dlrm", "wdl"])
def test_whole_model_step_matches_the_cpu(model: str, dtype: str) -> None:
    make = dlrm_graph if model == "dlrm" else wdl_graph
    g, plan, cpu, ex, b = pair(make, dtype, 96, pool_seed=2)
    tensors = ("emb", "logit") if model == "dlrm" else ("deep", "wide", "logit")
    errs = compare_step(model, dtype, g, plan, cpu, ex, b, tensors)
    # every layer of a deep chain rounds activations and gradients again: 1e-2 for fp16, 2e-2 for bf16
    # (8 significant bits)
    tol = TOL if dtype == "float16" else 2 * TOL
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"{model} in {dtype}: relative errors over {tol}: {bad}"


# -- GEMM dispatch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ab", LOW)
@pytest.mark.parametrize("c_dtype", ["same", "float32"])
@pytest.mark.parametrize("transa,transb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_ex_half_inputs_accumulate_in_fp32(ab: str, c_dtype: str, transa: bool, transb: bool) -> None:
    rng = np.random.default_rng(7)
    m, n, k = 37, 29, 53
    c_dt = ab if c_dtype == "same" else "float32"
    a = rng.standard_normal((k, m) if transa else (m, k))
    b = rng.standard_normal((n, k) if transb else (k, n))
    c0 = rng.standard_normal((m, n))
    da, db, dc = to_dev(cp, a, ab), to_dev(cp, b, ab), to_dev(cp, c0, c_dt)
    blas.gemm_ex(da.data.ptr, db.data.ptr, dc.data.ptr, m, n, k, m if transa else k, k if transb else n, n,
                 transa, transb, 1.5, 0.5, ab, c_dt)
    qa, qb = quantize(a, ab), quantize(b, ab)
    want = 1.5 * (qa.T if transa else qa) @ (qb.T if transb else qb) + 0.5 * quantize(c0, c_dt)
    err = rel_err(from_dev(cp, dc, c_dt), want)
    tol = 1e-5 if c_dt == "float32" else (2e-3 if ab == "float16" else 1e-2)
    assert err < tol, f"{ab} x {ab} -> {c_dt}: {err}"


@pytest.mark.parametrize("dtype", LOW)
def test_low_copy_follows_the_master_weights(dtype: str) -> None:
    """The optimizer kernel refreshes the half copy with the update, and set_weights refreshes it too."""
    g, plan, _, ex, _ = pair(dlrm_graph, dtype, 32)
    bits = np.uint16 if dtype == "bfloat16" else np.float16

    def expected() -> np.ndarray:
        m = cp.asnumpy(ex.master)
        return f32_to_bf16(m) if dtype == "bfloat16" else m.astype(np.float16)

    assert np.array_equal(cp.asnumpy(ex.master_lp).view(bits), expected())
    b = make_batch(g, 32, np.random.default_rng(4))
    ex.train_step(b, 0.01, scaler=512.0)
    assert np.array_equal(cp.asnumpy(ex.master_lp).view(bits), expected())
    ex.set_weights(initial_weights(g, 11))
    assert np.array_equal(cp.asnumpy(ex.master_lp).view(bits), expected())


# -- loss scaling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", LOW)
def test_loss_scale_multiplies_gradients_and_updates_divide_it(dtype: str) -> None:
    def make() -> Graph:
        return with_optimizer(dlrm_graph(), optimizer_type="SGD", update_type="Local")

    g, plan, _, ex1, _ = pair(make, dtype, 64)
    _, _, _, ex2, _ = pair(make, dtype, 64)
    b = make_batch(g, 64, np.random.default_rng(3))
    w0 = ex1.get_weights()
    ex1.forward(b, training=True)
    ex2.forward(b, training=True)
    e0 = {k: e.dump()[1] for k, e in ex1.embeddings.items()}  # after the forward inserted the batch's keys
    g1, eg1 = ex1.backward(scaler=1.0)
    g2, eg2 = ex2.backward(scaler=1024.0)
    for node in g1:
        for i in range(len(g1[node])):
            assert rel_err(g2[node][i] / 1024.0, g1[node][i]) < TOL, f"dW {node}[{i}] is not scaled by 1024"
    for t in eg1:
        assert rel_err(eg2[t][1] / 1024.0, eg1[t][1]) < TOL
    ex1.update(0.05, scaler=1.0)
    ex2.update(0.05, scaler=1024.0)
    w1, w2 = ex1.get_weights(), ex2.get_weights()
    for node in w0:
        for i in range(len(w0[node])):
            d1, d2 = w1[node][i] - w0[node][i], w2[node][i] - w0[node][i]
            assert rel_err(d2, d1) < TOL, f"update of {node}[{i}] is not unscaled"
    for t in e0:
        d1, d2 = ex1.embeddings[t].dump()[1] - e0[t], ex2.embeddings[t].dump()[1] - e0[t]
        assert rel_err(d2, d1) < TOL
    report(f"{'loss scale 1024':28s} {dtype:9s} scaled grads and unscaled updates agree with scaler=1")


def test_regularizer_term_is_not_divided_by_the_loss_scale() -> None:
    def make() -> Graph:
        g = with_optimizer(dlrm_graph(), optimizer_type="SGD", update_type="Local")
        out = Graph(g.meta)
        for n in g.nodes():
            if n.op == "BinaryCrossEntropyLoss":
                n = n.replace(attrs=Attrs({**dict(n.attrs), "use_regularizer": True, "regularizer_type": "L2",
                                           "lambda": 0.5}))
            out.add(n)
        return out

    g, plan, _, ex1, _ = pair(make, "float32", 48)
    _, _, _, ex2, _ = pair(make, "float32", 48)
    assert plan.regularizer == ("L2", 0.5)
    b = make_batch(g, 48, np.random.default_rng(8))
    w0 = ex1.get_weights()
    for ex, s in ((ex1, 1.0), (ex2, 256.0)):
        ex.forward(b, training=True)
        ex.backward(scaler=s)
        ex.update(0.05, scaler=s)
    w1, w2 = ex1.get_weights(), ex2.get_weights()
    for node in w0:
        for i in range(len(w0[node])):
            assert rel_err(w2[node][i] - w0[node][i], w1[node][i] - w0[node][i]) < 1e-4


# -- training ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["dlrm", "wdl"])
def test_mixed_precision_training_tracks_the_fp32_loss_curve(model: str) -> None:
    """100 steps of Adam (epsilon 1e-4, as HugeCTR advises for fp16) on learnable data: fp16 with
    scaler=1024 stays within 0.01 of the fp32 loss on average (0.03 at worst), bf16 within 0.02 (0.05)."""
    base = dlrm_graph if model == "dlrm" else wdl_graph
    def make() -> Graph:
        return with_optimizer(base(), optimizer_type="Adam", update_type="Local", epsilon=1e-4)

    g32, plan32 = compile_graph(make(), "float32", 256)
    w = initial_weights(g32, 21)
    tables = tables_for(g32, plan32, 21)
    rng = np.random.default_rng(9)
    teacher = rng.standard_normal(64)
    batches = [make_batch(g32, 256, np.random.default_rng([9, s]), teacher) for s in range(100)]
    curves = {}
    for dtype, scaler in (("float32", 1.0), ("float16", 1024.0), ("bfloat16", 1024.0)):
        _, plan = compile_graph(make(), dtype, 256)
        ex = CudaExecutor(plan, copy.deepcopy(w), copy.deepcopy(tables), seed=3)
        curves[dtype] = np.array([ex.train_step(b, 0.01, scaler=scaler)["loss"] for b in batches])
    ref = curves["float32"]
    assert np.all(np.isfinite(ref)) and ref[-10:].mean() < ref[:5].mean() - 0.03, f"fp32 did not learn: {ref}"
    for dtype, (mean_tol, max_tol) in (("float16", (0.01, 0.03)), ("bfloat16", (0.02, 0.05))):
        d = np.abs(curves[dtype] - ref)
        report(f"train {model} 100 steps{'':9s} {dtype:9s} mean |dloss| {d.mean():.4f} max {d.max():.4f} "
               f"(fp32 {ref[0]:.4f} -> {ref[-10:].mean():.4f}, {dtype} -> {curves[dtype][-10:].mean():.4f})")
        assert np.all(np.isfinite(curves[dtype])), f"{dtype} loss became NaN/inf"
        assert d.mean() < mean_tol and d.max() < max_tol, f"{dtype} loss curve drifts from fp32: {d}"


# -- TF32 -------------------------------------------------------------------------------------------------
def _gemm32(a: object, b: object, compute: str) -> object:
    m, k = a.shape
    n = b.shape[1]
    c = cp.zeros((m, n), cp.float32)
    blas.gemm_ex(a.data.ptr, b.data.ptr, c.data.ptr, m, n, k, k, n, n, False, False, 1.0, 0.0, "float32",
                 "float32", compute)
    return c


def test_tf32_math_is_used_and_accurate() -> None:
    # 1 + 2^-13 is a float32 value that TF32 (10 mantissa bits) rounds to 1: the product shows which ran
    n = 256
    a = cp.full((n, n), 1.0 + 2.0 ** -13, cp.float32)
    ones = cp.ones((n, n), cp.float32)
    exact = cp.asnumpy(_gemm32(a, ones, "float32"))
    tf32 = cp.asnumpy(_gemm32(a, ones, "tf32"))
    assert np.all(exact == np.float32(n * (1 + 2.0 ** -13)))
    used = float(np.mean(tf32 == np.float32(n)))
    assert used > 0.99, f"TF32 compute did not round the inputs (fraction rounded {used})"
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((301, 257)), rng.standard_normal((257, 199))
    want = x.astype(np.float32).astype(np.float64) @ y.astype(np.float32).astype(np.float64)
    dx, dy = cp.asarray(x, cp.float32), cp.asarray(y, cp.float32)
    e32 = rel_err(cp.asnumpy(_gemm32(dx, dy, "float32")), want)
    etf = rel_err(cp.asnumpy(_gemm32(dx, dy, "tf32")), want)
    assert e32 < 1e-5 and 1e-6 < etf < TOL, (e32, etf)
    # and it is faster: 4096^3 on tensor cores vs the fp32 pipes
    big = cp.asarray(rng.standard_normal((4096, 4096)), cp.float32)
    times = {}
    for compute in ("float32", "tf32"):
        _gemm32(big, big, compute)
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(5):
            _gemm32(big, big, compute)
        stop.record()
        stop.synchronize()
        times[compute] = cp.cuda.get_elapsed_time(start, stop) / 5
    for low in LOW:  # half inputs, fp32 accumulation, half output: what mixed-precision FC layers run
        h = to_dev(cp, cp.asnumpy(big), low)
        c = cp.zeros_like(h)

        def half_gemm() -> None:
            blas.gemm_ex(h.data.ptr, h.data.ptr, c.data.ptr, 4096, 4096, 4096, 4096, 4096, 4096, False, False,
                         1.0, 0.0, low, low)  # noqa: B023

        half_gemm()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(5):
            half_gemm()
        stop.record()
        stop.synchronize()
        times[low] = cp.cuda.get_elapsed_time(start, stop) / 5
    report(f"{'TF32 gemm':28s} {'tf32':9s} rel err {etf:.1e} (fp32 {e32:.1e}); 4096^3 ms: "
           + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))
    assert times["tf32"] < 0.7 * times["float32"], times
    assert times["float16"] < times["tf32"] and times["bfloat16"] < times["tf32"], times


@pytest.mark.parametrize("model", ["dlrm", "wdl"])
def test_tf32_model_step_matches_the_cpu(model: str) -> None:
    make = dlrm_graph if model == "dlrm" else wdl_graph
    g, plan, cpu, ex, b = pair(make, "float32", 80, tf32=True, pool_seed=6)
    from tests.codegen.test_lower_precision import gemms

    assert {x.compute_type for x in gemms(plan)} == {"tf32"}
    errs = compare_step(f"{model} (TF32)", "float32", g, plan, cpu, ex, b, ("logit",))
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, bad


def test_bf16_bits_helpers_round_trip() -> None:
    x = np.float32([1.0, -2.5, 3.0e-3, 65504.0])
    assert np.array_equal(bf16_to_f32(f32_to_bf16(x)), quantize(x, "bfloat16").astype(np.float32))
    dev = cp.asarray(x)
    out = cp.zeros(4, cp.uint16)
    blas.round_to_low(dev, out, "bfloat16")
    assert np.array_equal(cp.asnumpy(out), f32_to_bf16(x))
    h = cp.zeros(4, cp.float16)
    blas.round_to_low(dev, h, "float16")
    assert np.array_equal(cp.asnumpy(h), x.astype(np.float16))
