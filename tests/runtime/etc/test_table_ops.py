"""What the cache does to a training table: snapshot, append, rebuild, free rows, one-hot overwrite; on a host
table and, through DeviceTable / DeviceSparseOptimizer, on the fake device table of tests/runtime/fake_cuda.py."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.errors import NotBuiltError
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.etc.table_ops import DeviceTableOps, HostTableOps, table_ops
from hgc.runtime.optim.sparse import make_sparse_optimizer
from hgc.runtime.target import DeviceSparseOptimizer, DeviceTable
from tests.runtime.fake_cuda import FakeTable, dev

VEC, CAP = 3, 20


def trained_table(opt_type: str = "Adam", update: str = "LazyGlobal", seed: int = 4) -> tuple[EmbeddingTable, object]:
    """A hash table with 7 keys and a few optimizer steps on them."""
    table = EmbeddingTable("t", VEC, CAP, "sum", (), False, rng=np.random.default_rng(seed))
    opt = make_sparse_optimizer(opt_type, CAP, VEC, update_type=update, initial_accu_value=0.25)
    keys = np.array([50, 7, 9, 50, 3, 11, 12, 13, 7], np.int64)
    table.forward(SparseBatch(np.arange(10, dtype=np.int64), keys, 1), training=True)
    rng = np.random.default_rng(seed + 1)
    for _ in range(2):
        rows = np.unique(rng.integers(0, 7, 4))
        opt.update(table.rows, rows, rng.normal(size=(rows.size, VEC)).astype(np.float32), 0.1)
    return table, opt


def new_rows(n: int, kinds: int, lazy: bool, base: int = 1000) -> RowsState:
    rng = np.random.default_rng(base)
    return RowsState(np.arange(base, base + n, dtype=np.int64), rng.normal(size=(n, VEC)).astype(np.float32),
                     np.arange(n, dtype=np.uint64) % 3, [rng.random((n, VEC)).astype(np.float32) for _ in range(kinds)],
                     np.arange(2, 2 + n, dtype=np.uint64) if lazy else None)


def device_ops(monkeypatch: pytest.MonkeyPatch, table: EmbeddingTable, opt: object) -> DeviceTableOps:
    """The fake device table, with the two things the cache uses that the fake lacks (a clear and the
    LazyGlobal step array) patched in."""
    monkeypatch.setattr(FakeTable, "clear", lambda self: self.host.hash.clear(), raising=False)
    monkeypatch.setattr(FakeTable, "prev_time", property(lambda self: dev(self.opt.prev_time)), raising=False)
    emb = FakeTable(table, opt)
    ops = table_ops(DeviceTable(emb), DeviceSparseOptimizer(emb))
    assert isinstance(ops, DeviceTableOps)
    return ops


def check_ops(ops, table: EmbeddingTable, opt) -> None:
    before = ops.snapshot()
    assert ops.size() == 7 and np.array_equal(before.keys, [50, 7, 9, 3, 11, 12, 13])
    assert np.array_equal(ops.resident_keys(), before.keys) and np.array_equal(before.vectors, table.rows[:7])
    assert np.array_equal(before.states[1], opt.states()[1][:7]) and np.array_equal(before.prev_time, opt.prev_time[:7])
    extra = new_rows(4, 2, True)
    ops.append(extra)
    assert ops.size() == 11 and np.array_equal(table.rows[7:11], extra.vectors)
    assert np.array_equal(opt.states()[0][7:11], extra.states[0]) and np.array_equal(opt.prev_time[7:11], [2, 3, 4, 5])
    assert np.array_equal(table.slot_ids()[7:11], extra.slot_ids)
    assert np.array_equal(ops.snapshot().keys[:7], before.keys)  # old rows untouched
    keep = RowsState.concat([before.take(np.array([5, 0])), extra.take(np.array([2]))])
    ops.rebuild(keep)
    assert ops.size() == 3 and np.array_equal(ops.resident_keys(), [12, 50, 1002])
    assert np.array_equal(table.rows[:3], keep.vectors) and np.array_equal(opt.states()[1][:3], keep.states[1])
    assert not opt.states()[0][3:].any() and (opt.prev_time[3:] == 1).all()
    assert np.array_equal(opt.prev_time[:3], keep.prev_time) and np.array_equal(table.slot_ids(), keep.slot_ids)
    assert table.hash.get_mark(np.array([7, 12])).tolist() == [-1, 0]  # evicted keys are gone
    fresh = np.full((CAP - 3, VEC), 0.5, np.float32)
    ops.set_free_rows(3, fresh)
    assert (table.rows[3:] == 0.5).all() and np.array_equal(table.rows[:3], keep.vectors)


def test_host_ops():
    table, opt = trained_table()
    ops = table_ops(table, opt)
    assert isinstance(ops, HostTableOps) and ops.lazy and ops.n_states == 2 and not ops.one_hot
    check_ops(ops, table, opt)


def test_device_ops_on_the_fake_device(monkeypatch):
    table, opt = trained_table()
    ops = device_ops(monkeypatch, table, opt)
    assert ops.lazy and ops.n_states == 2 and not ops.one_hot
    check_ops(ops, table, opt)


def test_adagrad_rows_start_from_the_initial_accumulator():
    table, opt = trained_table("AdaGrad", "Local")
    ops = table_ops(table, opt)
    assert ops.state_fill == 0.25 and not ops.lazy
    ops.rebuild(ops.snapshot().take(np.array([1])))
    assert (opt.states()[0][1:] == np.float32(0.25)).all()


def test_one_hot_overwrite_sets_rows_and_states():
    table = EmbeddingTable("o", VEC, None, "sum", (4, 6), True, rng=np.random.default_rng(1))
    opt = make_sparse_optimizer("Adam", 10, VEC, update_type="Local")
    ops = table_ops(table, opt)
    assert ops.one_hot and ops.size() == 10 and np.array_equal(ops.resident_keys(), np.arange(10))
    r = new_rows(2, 2, False, base=0)
    r = RowsState(np.array([8, 2]), r.vectors, r.slot_ids, r.states, None)
    ops.overwrite(r)
    assert np.array_equal(table.rows[[8, 2]], r.vectors) and np.array_equal(opt.states()[1][[8, 2]], r.states[1])


def test_other_tables_are_not_built():
    with pytest.raises(NotBuiltError, match="sharded over several GPUs"):
        table_ops(object(), None)
