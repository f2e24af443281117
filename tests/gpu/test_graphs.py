"""CUDA-graph replay of the training step against eager execution, and the fused embedding path the graphs
capture against the tables' host API.

* Whole models: two executors with the same weights and tables train on the same batches, one eagerly, one
  replaying CUDA graphs (``use_cuda_graph``); losses of every step, the dense weights and the tables agree
  (HugeCTR's atomic SGD sums in no fixed order: relative error < 1e-5); other optimizers reduce in key order,
  so two graphed runs agree bit for bit. Dropout keeps drawing new masks between replays (its launches run
  eagerly between the graphs); a batch of another size falls back to eager steps and comes back to the
  graph. A table error recorded on the device (a one-hot key out of range) raises with the losses, or at a
  later step when nobody reads them.
* Tables: forward_device + prepare + backward_update (what train_step runs) against forward + backward +
  update (the host API the cpu-target comparisons use), for every optimizer and Update_t, hash and
  one-hot tables, sum and mean, atomic and reduced SGD, float16 gradients.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.gpu._util import gpu, rel_err

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.plan import EmbeddingTableSpec, KernelSpec, Params
from hgc.runtime.cuda import graph as cuda_graph
from hgc.runtime.cuda.embedding import DeviceEmbedding
from hgc.runtime.cuda.modules import Kernels
from hgc.runtime.cuda.staging import device_sparse, to_device
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.table import EmbeddingTable
from tests.codegen.test_lower import every_op_graph
from tests.gpu.test_executor import GRAPHS, make_batch, setup

TOL = 1e-5
MODELS = dict(GRAPHS, every_op_dropout=every_op_graph)
OPTIMIZERS = {"sgd": {"optimizer_type": "SGD", "update_type": "Local"},
              "adam": {"optimizer_type": "Adam", "update_type": "Local", "beta1": 0.9, "beta2": 0.999,
                       "epsilon": 1e-7}}


def pair(name: str, opt: str) -> tuple:
    """(graph, eager executor, graphed executor) with identical weights and tables."""
    GRAPHS.setdefault(name, MODELS[name])
    graph, _, _, eager, _ = setup(name, optimizer=OPTIMIZERS[opt])
    _, _, _, graphed, _ = setup(name, optimizer=OPTIMIZERS[opt])
    graphed.use_cuda_graph = True
    return graph, eager, graphed


def close(b: np.ndarray, a: np.ndarray) -> bool:
    """b equals a to TOL, NaNs in the same places (a model may diverge; the replay must diverge alike)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    ok = ~np.isnan(a)
    return not ok.any() or rel_err(b[ok], a[ok]) < TOL


def same_state(eager, graphed) -> None:
    we, wg = eager.get_weights(), graphed.get_weights()
    for node in we:
        for i, (a, b) in enumerate(zip(we[node], wg[node])):
            assert close(b, a), f"weight {node}[{i}]"
    for name, emb in eager.embeddings.items():
        ke, ve = emb.dump()
        kg, vg = graphed.embeddings[name].dump()
        assert np.array_equal(kg, ke), f"keys of {name}"
        assert close(vg, ve), f"table {name}"


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(MODELS))
def test_graph_replay_equals_eager(name: str, opt: str) -> None:
    graph, eager, graphed = pair(name, opt)
    lr = 0.003 if name == "every_op_dropout" else 0.03  # its Dropout → MultiCross chain diverges at 0.03
    for step in range(7):
        b = make_batch(graph, 37, seed=200 + step)
        le = eager.train_step(b, lr)
        lg = graphed.train_step(b, lr)
        for k in le:
            assert close(np.float64(lg[k]), np.float64(le[k])), f"step {step} loss {k}: {lg[k]} vs {le[k]}"
    assert not graphed._graph_error, graphed._graph_error
    assert graphed._graphs, "no step was captured"
    g = next(iter(graphed._graphs.values()))
    assert g.graphs >= 1
    if name == "every_op_dropout":  # Dropout (new seed every step) and the dense optimizer run eagerly
        assert g.eager >= 3
    same_state(eager, graphed)


def test_a_batch_of_another_size_runs_eagerly_and_the_graph_comes_back() -> None:
    graph, eager, graphed = pair("dlrm", "adam")
    sizes = [37, 37, 37, 37, 19, 37, 37, 19, 19, 19, 37]
    for step, n in enumerate(sizes):
        b = make_batch(graph, n, seed=300 + step)
        le, lg = eager.train_step(b, 0.02), graphed.train_step(b, 0.02)
        for k in le:
            assert abs(lg[k] - le[k]) <= TOL * max(1.0, abs(le[k])), f"step {step} (n={n})"
    assert len(graphed._graphs) == 2  # one per batch size
    same_state(eager, graphed)


def test_device_batches_and_host_batches_train_alike() -> None:
    graph, a, b = pair("one_hot", "adam")
    b.use_cuda_graph = False
    for step in range(4):
        batch = make_batch(graph, 37, seed=400 + step)
        la = a.train_step(batch, 0.05)
        lb = b.train_step(to_device(b, batch), 0.05)
        for k in la:
            assert abs(la[k] - lb[k]) <= TOL * max(1.0, abs(la[k]))
    same_state(a, b)


def test_errors_recorded_on_the_device_raise_with_the_losses() -> None:
    graph, _, ex = pair("one_hot", "sgd")
    b = make_batch(graph, 37, seed=5)
    b.sparse[0].keys[4] = 10_000  # outside every slot of the one-hot table
    losses = ex.train_step(b, 0.01)
    with pytest.raises(ValueError, match="outside"):
        losses[next(iter(losses))]


def test_an_error_stops_training_without_reading_the_losses() -> None:
    graph, _, ex = pair("one_hot", "sgd")
    b = make_batch(graph, 37, seed=5)
    b.sparse[0].keys[4] = 10_000
    ex.train_step(b, 0.01)
    good = make_batch(graph, 37, seed=6)
    with pytest.raises(ValueError, match="outside"):
        for _ in range(3):
            cp.cuda.Device().synchronize()
            ex.train_step(good, 0.01)


def test_graphed_runs_are_reproducible_bit_for_bit() -> None:
    runs = []
    for _ in range(2):
        graph, _, ex = pair("dlrm", "adam")
        runs.append(([ex.train_step(make_batch(graph, 37, seed=900 + i), 0.02)["loss"] for i in range(6)],
                     {k: e.dump() for k, e in ex.embeddings.items()}))
    assert runs[0][0] == runs[1][0]
    for k, (keys, vecs) in runs[0][1].items():
        assert np.array_equal(keys, runs[1][1][k][0]) and np.array_equal(vecs, runs[1][1][k][1])


def test_segments_keep_per_step_scalars_out_of_graphs() -> None:
    _, _, ex = pair("every_op_dropout", "adam")
    units = cuda_graph.step_units(ex.plan)
    runs = cuda_graph.segments(units)
    eager_ops = [op for cap, run in runs if not cap for _, op in run]
    assert eager_ops and all(cuda_graph.volatile(op) for op in eager_ops)
    names = {a.name for op in eager_ops for a in getattr(op, "args", ()) if a.kind == "runtime"}
    assert any(n.startswith("seed:") for n in names) and "alpha" in names
    assert all(not n.startswith("seed:") for n in cuda_graph.baked([op for _, op in units]))


# -- the fused table path ----------------------------------------------------------------------------------
HYPER = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "initial_accu_value": 0.05, "momentum_factor": 0.7}
CASES = [("SGD", "Local", True), ("SGD", "Local", False), ("AdaGrad", "Local", True), ("MomentumSGD", "Local", True),
         ("MomentumSGD", "Global", True), ("Nesterov", "Local", True), ("Nesterov", "Global", True),
         ("Adam", "Local", True), ("Adam", "Global", True), ("Adam", "LazyGlobal", True)]
_N = [0]


def tables(vec: int, optimizer: str, update: str, atomic: bool, one_hot: bool, combiner: str,
           dtype: str = "float32") -> tuple[DeviceEmbedding, DeviceEmbedding]:
    _N[0] += 1
    name = f"g{_N[0]}"
    upd = update if optimizer in ("MomentumSGD", "Nesterov", "Adam") else "Local"
    spec = KernelSpec("embedding", f"emb_{name}", Params(dtype=dtype, vec=vec, combiner=combiner, optimizer=optimizer,
                                                         update=upd, **{k: HYPER[k] for k in
                                                                        ("beta1", "beta2", "epsilon",
                                                                         "momentum_factor")}))
    kernels = Kernels()
    kernels.add(spec, ("combine",))
    sizes = (11, 6, 9) if one_hot else ()
    host = EmbeddingTable(name, vec, None if one_hot else 300, combiner, sizes, one_hot,
                          rng=np.random.default_rng(17))
    tspec = EmbeddingTableSpec(name, "X", "keys", "emb", vec, 3, combiner, host.capacity, sizes, one_hot,
                               Params({"optimizer_type": optimizer, "update_type": update, "atomic_update": atomic,
                                       **HYPER}), spec.name, dtype)
    return (DeviceEmbedding.from_host(tspec, kernels, copy.deepcopy(host)),
            DeviceEmbedding.from_host(tspec, kernels, copy.deepcopy(host)))


def keys_batch(n: int, one_hot: bool, seed: int) -> SparseBatch:
    r = np.random.default_rng(seed)
    if one_hot:
        keys = np.stack([r.integers(0, s, n) for s in (11, 6, 9)], axis=1).reshape(-1)
        return SparseBatch(np.arange(n * 3 + 1, dtype=np.int64), keys.astype(np.int64), 3)
    nnz = r.integers(0, 4, n * 3)
    offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    return SparseBatch(offsets, r.integers(0, 150, int(offsets[-1])).astype(np.int64), 3)  # many repeats


@pytest.mark.parametrize("optimizer,update,atomic", CASES)
@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("vec", [7, 16])  # 16: vectorised kernels (atomic SGD adds float4 at once on sm_90)
def test_fused_update_equals_backward_then_update(optimizer: str, update: str, atomic: bool, one_hot: bool,
                                                  vec: int) -> None:
    a, b = tables(vec, optimizer, update, atomic, one_hot, "mean" if not one_hot else "sum")
    lr, scaler = 0.05, 2.0
    for step in range(4):
        sb = keys_batch(29, one_hot, 500 + step)
        out_a = a.forward(sb, training=True)
        out_b = b.forward_device(device_sparse(sb), True)
        assert rel_err(cp.asnumpy(out_b), cp.asnumpy(out_a)) < 1e-6
        g = cp.asarray(np.random.default_rng(600 + step).uniform(-1, 1, out_a.shape).astype(np.float32))
        a.backward(g)
        a.update(lr, scaler)
        b.prepare(lr, scaler)
        b.backward_update(g)
    assert rel_err(cp.asnumpy(b.table), cp.asnumpy(a.table)) < TOL
    for sa, sb_ in zip(a.state_arrays(), b.state_arrays()):
        assert rel_err(sb_, sa) < TOL
    ka, _ = a.dump()
    kb, _ = b.dump()
    assert np.array_equal(ka, kb) and np.array_equal(a.slot_ids(), b.slot_ids())
    assert b.size == a.size


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_fused_update_with_half_gradients(dtype: str) -> None:
    from tests.gpu._util import to_dev

    a, b = tables(12, "Adam", "Local", True, False, "sum", dtype)
    for step in range(3):
        sb = keys_batch(31, False, 700 + step)
        out_a = a.forward(sb, training=True)
        b.forward_device(device_sparse(sb), True)
        g = to_dev(cp, np.random.default_rng(800 + step).uniform(-1, 1, out_a.shape), dtype)
        a.backward(g)
        a.update(0.01, 1.0)
        b.prepare(0.01, 1.0)
        b.backward_update(g)
    assert rel_err(cp.asnumpy(b.table), cp.asnumpy(a.table)) < TOL
    for sa, sb_ in zip(a.state_arrays(), b.state_arrays()):
        assert rel_err(sb_, sa) < TOL


def test_a_full_table_raises_at_check() -> None:
    a, _ = tables(4, "SGD", "Local", True, False, "sum")
    sb = SparseBatch(np.arange(0, 361, 3, dtype=np.int64), np.arange(360, dtype=np.int64), 3)  # 360 keys > 300 rows
    a.forward_device(device_sparse(sb), True)
    from hgc.runtime.embedding.hash_table import TableFullError

    with pytest.raises(TableFullError):
        a.check()
    a.check()  # reported once
