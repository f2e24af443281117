"""GPU embedding tables against the cpu target's EmbeddingTable and SparseOptimizer: lookup + combine
(sum/mean, multi-hot, empty slots, unknown keys at evaluation), row assignment and dumps, one-hot
indexing and its range check, gradient reduction, and every sparse optimizer / Update_t."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.gpu._util import gpu, rel_err

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.codegen.plan import EmbeddingTableSpec, KernelSpec, Params
from hgc.runtime.cuda.embedding import DeviceEmbedding
from hgc.runtime.cuda.modules import Kernels
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.hash_table import TableFullError
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.optim.sparse import make_sparse_optimizer

HYPER = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "initial_accu_value": 0.05, "momentum_factor": 0.7}
_N = [0]


def make(vec: int, capacity: int, combiner: str = "sum", optimizer: str = "SGD", update: str = "Local",
         sizes: tuple[int, ...] = (), one_hot: bool = False, slot_num: int = 3,
         dtype: str = "float32") -> tuple[EmbeddingTable, DeviceEmbedding]:
    _N[0] += 1
    name = f"t{_N[0]}"
    upd = update if optimizer in ("MomentumSGD", "Nesterov", "Adam") else "Local"
    spec = KernelSpec("embedding", f"emb_{name}", Params(dtype=dtype, vec=vec, combiner=combiner,
                                                         optimizer=optimizer, update=upd, beta1=HYPER["beta1"],
                                                         beta2=HYPER["beta2"], epsilon=HYPER["epsilon"],
                                                         momentum_factor=HYPER["momentum_factor"]))
    kernels = Kernels()
    kernels.add(spec, ("lookup", "combine"))
    host = EmbeddingTable(name, vec, None if sizes else capacity, combiner, sizes, one_hot,
                          rng=np.random.default_rng(7))
    tspec = EmbeddingTableSpec(name, "X", "keys", "emb", vec, slot_num, combiner, host.capacity, tuple(sizes), one_hot,
                               Params({"optimizer_type": optimizer, "update_type": update, **HYPER}), spec.name,
                               dtype)
    return host, DeviceEmbedding.from_host(tspec, kernels, copy.deepcopy(host))


def batch(n: int, slots: int, max_nnz: int, key_range: int, seed: int, key_dtype: type = np.int64) -> SparseBatch:
    r = np.random.default_rng(seed)
    nnz = r.integers(0, max_nnz + 1, size=n * slots)
    offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    keys = r.integers(0, key_range, size=int(offsets[-1])).astype(key_dtype)
    return SparseBatch(offsets, keys, slots)


@pytest.mark.parametrize("combiner", ["sum", "mean"])
@pytest.mark.parametrize("key_dtype", [np.int64, np.uint32])
def test_hash_lookup_rows_and_dumps_match_the_cpu(combiner: str, key_dtype: type) -> None:
    host, dev = make(9, 500, combiner)
    first_slot: dict[int, int] = {}  # key -> the slot it was first seen in
    for step in range(3):
        sb = batch(37, 3, 4, 300, seed=step, key_dtype=key_dtype)
        seg = np.repeat(np.arange(37 * 3), np.diff(sb.row_offsets))
        for k, sg in zip(sb.keys.astype(np.int64), seg):
            first_slot.setdefault(int(k), int(sg % 3))
        want, saved = host.forward(sb, training=True)
        got = cp.asnumpy(dev.forward(sb, training=True))
        assert rel_err(got.reshape(want.shape), want) < 1e-6
        g = np.random.default_rng(50 + step).uniform(-1, 1, want.shape).astype(np.float32)
        rows_h, grads_h = host.backward(saved, g)
        rows_d, grads_d = dev.backward(cp.asarray(g.reshape(-1, 9)))
        assert np.array_equal(cp.asnumpy(rows_d), rows_h)
        assert rel_err(cp.asnumpy(grads_d), grads_h) < 1e-6
    kh, vh = host.dump()
    kd, vd = dev.dump()
    assert np.array_equal(kd, kh) and np.array_equal(vd, vh)
    assert np.array_equal(dev.slot_ids(), np.array([first_slot[int(k)] for k in kd], np.uint64))


def test_evaluation_does_not_insert_and_unknown_keys_are_zero() -> None:
    host, dev = make(6, 400, "mean")
    sb = batch(20, 3, 3, 100, seed=1)
    host.forward(sb, training=True)
    dev.forward(sb, training=True)
    size = dev.size
    ev = batch(29, 3, 5, 250, seed=2)  # mostly unseen keys
    want, _ = host.forward(ev, training=False)
    got = cp.asnumpy(dev.forward(ev, training=False))
    assert dev.size == size == host.size
    assert rel_err(got.reshape(want.shape), want) < 1e-6


def test_table_full() -> None:
    _, dev = make(4, 10)
    with pytest.raises(TableFullError):
        dev.forward(batch(30, 3, 3, 1000, seed=3), training=True)


def test_one_hot_indexing_and_range_check() -> None:
    sizes = (5, 7, 3)
    host, dev = make(8, 0, "sum", sizes=sizes, one_hot=True)
    r = np.random.default_rng(4)
    n = 31
    keys = np.stack([r.integers(0, s, n) for s in sizes], axis=1).reshape(-1).astype(np.int64)
    sb = SparseBatch(np.arange(n * 3 + 1, dtype=np.int64), keys, 3)
    want, saved = host.forward(sb, training=True)
    got = cp.asnumpy(dev.forward(sb, training=True))
    assert rel_err(got.reshape(want.shape), want) < 1e-6
    g = r.uniform(-1, 1, want.shape).astype(np.float32)
    rows_h, grads_h = host.backward(saved, g)
    rows_d, grads_d = dev.backward(cp.asarray(g.reshape(-1, 8)))
    assert np.array_equal(cp.asnumpy(rows_d), rows_h) and rel_err(cp.asnumpy(grads_d), grads_h) < 1e-6
    bad = keys.copy()
    bad[4] = 7  # slot 1 has 7 keys: 7 is out of range
    with pytest.raises(ValueError, match="outside"):
        dev.forward(SparseBatch(sb.row_offsets, bad, 3), training=True)


CASES = [("SGD", "Local"), ("AdaGrad", "Local"), ("MomentumSGD", "Local"), ("MomentumSGD", "Global"),
         ("Nesterov", "Local"), ("Nesterov", "Global"), ("Adam", "Local"), ("Adam", "Global"),
         ("Adam", "LazyGlobal")]


@pytest.mark.parametrize("optimizer,update", CASES)
def test_sparse_updates_match_the_cpu(optimizer: str, update: str) -> None:
    vec, cap = 7, 211
    host, dev = make(vec, cap, optimizer=optimizer, update=update)
    opt = make_sparse_optimizer(optimizer, cap, vec, update_type=update, **HYPER)
    r = np.random.default_rng(60)
    table = host.rows.copy()
    for step in range(4):
        rows = np.sort(r.choice(cap if step else cap // 2, size=23, replace=False)).astype(np.int64)
        grads = r.uniform(-1, 1, (23, vec)).astype(np.float32)
        opt.update(table, rows, grads, lr=0.05, scaler=2.0)
        dev.update(0.05, 2.0, cp.asarray(rows), cp.asarray(grads))
    assert rel_err(cp.asnumpy(dev.table), table) < 1e-5
    for got, want in zip(dev.state_arrays(), opt.states()):
        assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_outputs_and_gradients(dtype: str) -> None:
    from tests.gpu._util import from_dev, quantize, to_dev

    host, dev = make(12, 300, "mean", dtype=dtype)
    sb = batch(33, 3, 3, 200, seed=8)
    want, saved = host.forward(sb, training=True)
    got = from_dev(cp, dev.forward(sb, training=True), dtype)
    assert rel_err(got.reshape(want.shape), want) < 1e-2
    g = quantize(np.random.default_rng(9).uniform(-1, 1, want.shape), dtype)
    rows_h, grads_h = host.backward(saved, g.astype(np.float32))
    rows_d, grads_d = dev.backward(to_dev(cp, g.reshape(-1, 12), dtype))
    assert np.array_equal(cp.asnumpy(rows_d), rows_h) and rel_err(cp.asnumpy(grads_d), grads_h) < 1e-5
