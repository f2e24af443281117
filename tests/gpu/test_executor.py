"""Whole graphs on the cuda executor against the CpuExecutor: same weights, same tables, same batches —
losses, activations, dense and embedding gradients (fp32, relative error < 1e-5), evaluation, and a few
training steps with the optimizers applied on each side."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.gpu._util import gpu, rel_err

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.lower import lower
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs
from hgc.ir.registry import get_op
from hgc.passes.context import PassContext
from hgc.passes.pipeline import run_pipeline
from hgc.runtime.cpu.executor import CpuExecutor
from hgc.runtime.cuda.executor import CudaExecutor
from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.optim.dense import make_dense_optimizer
from hgc.runtime.optim.sparse import make_sparse_optimizer
from tests.codegen.test_lower import dlrm_graph, every_op_graph
from tests.passes._graphs import embedding, with_input

TOL = 1e-5


def no_dropout(g: Graph) -> Graph:
    """every_op_graph without its Dropout (random masks differ between targets) and Casts (fp16)."""
    out = Graph(g.meta)
    rename = {}
    for n in g.nodes():
        if n.op in ("Dropout", "Cast"):
            rename[n.outputs[0]] = rename.get(n.inputs[0], n.inputs[0])
            continue
        out.add(n.replace(inputs=tuple(rename.get(t, t) for t in n.inputs)))
    return out


def one_hot_graph() -> Graph:
    g = with_input(7, 1, [("keys", 3, 1)])
    embedding(g, "LocalizedSlotSparseEmbeddingOneHot", "keys", "emb", 5, sizes=(11, 6, 9),
              optimizer={"optimizer_type": "AdaGrad", "update_type": "Local", "initial_accu_value": 0.1,
                         "epsilon": 1e-7})
    add_node(g, "Reshape", ["emb"], ["flat"], {"leading_dim": 15})
    add_node(g, "Concat", ["flat", "dense"], ["cat"])
    add_node(g, "InnerProduct", ["cat"], ["h"], {"num_output": 9})
    add_node(g, "ReLU", ["h"], ["r"])
    add_node(g, "InnerProduct", ["r"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    return g


def dlrm_alias_graph() -> Graph:
    """DLRM as HugeCTR's fp16 scripts write it: a two-output Interaction whose alias feeds the next layer."""
    g = with_input(13, 1, [("keys", 4, 3)])
    embedding(g, "DistributedSlotSparseEmbeddingHash", "keys", "emb", 8, workspace=1)
    add_node(g, "InnerProduct", ["dense"], ["bot"], {"num_output": 8})
    add_node(g, "ReLU", ["bot"], ["bot_r"])
    add_node(g, "Interaction", ["bot_r", "emb"], ["inter", "inter_buf"], {"num_tops": 2})
    add_node(g, "FusedInnerProduct", ["inter", "inter_buf"], ["top"],
             {"num_output": 12, "pos_type": "Head", "act_type": "Relu"})
    add_node(g, "InnerProduct", ["top"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    return g


GRAPHS = {"dlrm": dlrm_graph, "every_op": lambda: no_dropout(every_op_graph()), "one_hot": one_hot_graph,
          "dlrm_alias": dlrm_alias_graph}


def make_batch(graph: Graph, n: int, seed: int) -> Batch:
    r = np.random.default_rng(seed)
    inp = next(x for x in graph.nodes() if x.op == "Input").attrs
    label = (r.random((n, sum(inp["label_dims"]))) < 0.5).astype(np.float32)
    dense = r.uniform(-1, 1, (n, inp["dense_dim"])).astype(np.float32)
    sparse = []
    for s in inp["sparse"]:
        slots, nnz = s["slot_num"], max(s["nnz_per_slot"])
        emb = next(x for x in graph.nodes() if x.inputs and x.inputs[0] == s["name"])
        sizes = emb.attrs.get("slot_size_array") or ()
        if nnz == 1 and sizes:
            keys = np.stack([r.integers(0, z, n) for z in sizes], axis=1).reshape(-1)
            offsets = np.arange(n * slots + 1)
        else:
            counts = r.integers(0, nnz + 1, n * slots)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            keys = r.integers(0, 12 if sizes else 40, int(offsets[-1]))  # sizes: the table has sum(sizes) rows
        sparse.append(SparseBatch(offsets.astype(np.int64), keys.astype(np.int64), slots))
    return Batch(n, label, dense, sparse)


def initial_weights(graph: Graph, seed: int) -> dict[str, list[np.ndarray]]:
    """Each weighted node's weights from its op's initialiser (float32), by node name."""
    out = {}
    for i, n in enumerate(graph.nodes()):
        op = get_op(n.op)
        types = [graph.tensor_type(t) for t in n.inputs]
        if op.kind in ("dense", "loss") and op.weights(n.attrs, types):
            out[n.name] = [np.asarray(w, np.float32) for w in op.init(n.attrs, types, np.random.default_rng([seed, i]))]
    return out


def with_optimizer(g: Graph, **opt: object) -> Graph:
    out = Graph({**dict(g.meta), "optimizer": Attrs(opt)})
    for n in g.nodes():
        out.add(n)
    return out


def setup(name: str, batch: int = 37, optimizer: dict | None = None) -> tuple:
    g = GRAPHS[name]()
    if optimizer:
        g = with_optimizer(g, **optimizer)
    res = run_pipeline(g, PassContext(batchsize=batch))
    graph = res.graph
    plan = lower(graph, res.plans)
    flat = initial_weights(graph, seed=3)
    tables = {}
    for i, n in enumerate(x for x in graph.nodes() if get_op(x.op).kind == "embedding"):
        spec = next(e for e in plan.embeddings if e.name == n.name)
        tables[n.name] = EmbeddingTable(n.name, spec.vec_size, None if spec.slot_size_array else spec.capacity,
                                        spec.combiner, spec.slot_size_array, spec.one_hot,
                                        rng=np.random.default_rng([3, i]))
    cpu = CpuExecutor(graph, copy.deepcopy(flat), copy.deepcopy(tables), seed=3)
    gpu_ex = CudaExecutor(plan, copy.deepcopy(flat), copy.deepcopy(tables), seed=3)
    return graph, plan, cpu, gpu_ex, flat


@pytest.mark.parametrize("name", list(GRAPHS))
def test_forward_backward_match_the_cpu(name: str) -> None:
    graph, _, cpu, gpu_ex, _ = setup(name)
    b = make_batch(graph, 37, seed=1)
    out_c = cpu.forward(b, training=True)
    out_g = gpu_ex.forward(b, training=True)
    for k, v in out_c.losses.items():
        assert abs(out_g.losses[k] - v) <= TOL * max(1.0, abs(v)), f"loss {k}: {out_g.losses[k]} vs {v}"
    for n in graph.nodes():
        if get_op(n.op).kind in ("dense", "embedding"):
            for t in n.outputs:
                assert rel_err(out_g.tensors[t], out_c.tensors[t]) < TOL, f"activation {t}"
    wg_c, eg_c = cpu.backward()
    wg_g, eg_g = gpu_ex.backward()
    for node, grads in wg_c.items():
        for i, g in enumerate(grads):
            assert rel_err(wg_g[node][i], np.asarray(g).reshape(wg_g[node][i].shape)) < TOL, f"dW {node}[{i}]"
    for name_, (rows, g) in eg_c.items():
        assert np.array_equal(eg_g[name_][0], rows), f"embedding rows of {name_}"
        assert rel_err(eg_g[name_][1], g) < TOL, f"embedding grads of {name_}"


@pytest.mark.parametrize("name", list(GRAPHS))
def test_evaluation_and_a_smaller_batch(name: str) -> None:
    graph, _, cpu, gpu_ex, _ = setup(name)
    cpu.forward(make_batch(graph, 37, seed=2), training=True)
    gpu_ex.forward(make_batch(graph, 37, seed=2), training=True)
    for n, seed in ((19, 3), (53, 4)):  # a short batch, then one larger than the plan's buffers
        b = make_batch(graph, n, seed)
        out_c, out_g = cpu.forward(b, training=False), gpu_ex.forward(b, training=False)
        for k, v in out_c.losses.items():
            assert abs(out_g.losses[k] - v) <= TOL * max(1.0, abs(v))


@pytest.mark.parametrize("name", list(GRAPHS))
def test_training_steps_match_the_cpu(name: str) -> None:
    # SGD for the dense weights: Adam's normalisation would turn rounding-level gradient differences into
    # full-size steps. Embeddings without their own optimizer use the model's (SGD, Local) too.
    graph, plan, cpu, gpu_ex, _ = setup(name, optimizer={"optimizer_type": "SGD", "update_type": "Local"})
    assert plan.optimizer_params["optimizer_type"] == "SGD"
    dense_w = [w for ws in cpu.weights.values() for w in ws]
    dense_opt = make_dense_optimizer("SGD", dense_w)
    sparse_opts = {}
    for e in plan.embeddings:
        o = dict(e.optimizer)
        sparse_opts[e.name] = make_sparse_optimizer(o["optimizer_type"], e.capacity, e.vec_size,
                                                    update_type=o["update_type"],
                                                    **{k: o[k] for k in ("beta1", "beta2", "epsilon",
                                                                         "initial_accu_value", "momentum_factor")})
    lr = 0.05
    for step in range(3):
        b = make_batch(graph, 37, seed=10 + step)
        lc = cpu.forward(b, training=True).losses
        wg, eg = cpu.backward()
        grads = [np.asarray(g, np.float32).reshape(w.shape) for node in cpu.weights
                 for w, g in zip(cpu.weights[node], wg.get(node, [np.zeros_like(w) for w in cpu.weights[node]]))]
        dense_opt.step(grads, lr)
        for name_, table in cpu.embeddings.items():
            rows, g = eg.get(name_, (np.zeros(0, np.int64), np.zeros((0, table.vec_size), np.float32)))
            sparse_opts[name_].update(table.rows, rows, g, lr)
        lg = gpu_ex.train_step(b, lr)
        for k in lc:
            assert abs(lg[k] - lc[k]) <= 1e-4 * max(1.0, abs(lc[k])), f"step {step} loss {k}"
    got = gpu_ex.get_weights()
    for node, ws in cpu.weights.items():
        for i, w in enumerate(ws):
            assert rel_err(got[node][i], w) < 1e-4, f"weight {node}[{i}] after 3 steps"
    for name_, table in cpu.embeddings.items():
        kc, vc = table.dump()
        kg, vg = gpu_ex.embeddings[name_].dump()
        assert np.array_equal(kg, kc) and rel_err(vg, vc) < 1e-4


def test_debug_mode_synchronizes_and_agrees() -> None:
    from hgc.config import config

    graph, _, cpu, gpu_ex, _ = setup("dlrm")
    b = make_batch(graph, 29, seed=5)
    with config.patch(debug=1):
        lg = gpu_ex.forward(b, training=True).losses
        wg_g, _ = gpu_ex.backward()
    lc = cpu.forward(b, training=True).losses
    wg_c, _ = cpu.backward()
    assert abs(lg["loss"] - lc["loss"]) <= TOL * max(1.0, abs(lc["loss"]))
    for node, grads in wg_c.items():
        assert rel_err(wg_g[node][0], np.asarray(grads[0]).reshape(wg_g[node][0].shape)) < TOL


def test_dropout_masks_follow_the_counter_rng() -> None:
    from hgc.runtime.cuda import rng

    g = with_input(13, 1)
    add_node(g, "InnerProduct", ["dense"], ["fc1"], {"num_output": 17})
    add_node(g, "Dropout", ["fc1"], ["drop"], {"dropout_rate": 0.3})
    add_node(g, "InnerProduct", ["drop"], ["logit"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["logit", "label"], ["loss"])
    res = run_pipeline(g, PassContext(batchsize=31))
    plan = lower(res.graph, res.plans)
    ex = CudaExecutor(plan, initial_weights(res.graph, 4), {}, seed=11)
    b = make_batch(res.graph, 31, seed=6)
    for step in (1, 2):
        out = ex.forward(b, training=True)
        keep = rng.dropout_keep(rng.step_seed(11, "drop", step), 31 * 17, 0.3).reshape(31, 17)
        want = out.tensors["fc1"] * keep / np.float32(0.7)
        assert rel_err(out.tensors["drop"], want) < 1e-6
        logit = np.asarray(out.tensors["logit"], np.float64)  # read before the backward reuses its buffer
        wg, _ = ex.backward()
        # the backward applies the same mask: dW of the first layer, recomputed on the host
        g_logit = (0.5 * (1 + np.tanh(0.5 * logit)) - b.label) / 31
        g_fc1 = (g_logit @ ex.get_weights()["logit"][0].T) * keep / 0.7
        assert rel_err(wg["fc1"][0], b.dense.astype(np.float64).T @ g_fc1) < 1e-5
    ev = ex.forward(b, training=False)
    assert np.array_equal(ev.tensors["drop"], ev.tensors["fc1"])
