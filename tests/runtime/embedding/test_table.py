from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.hash_table import TableFullError
from hgc.runtime.embedding.table import EmbeddingTable


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def make_sparse(nnz: np.ndarray, key_pool: np.ndarray, rng: np.random.Generator,
                dtype: type = np.int64) -> SparseBatch:
    offsets = np.concatenate([[0], np.cumsum(nnz.reshape(-1))]).astype(np.int64)
    keys = key_pool[rng.integers(0, key_pool.shape[0], size=int(offsets[-1]))].astype(dtype)
    return SparseBatch(offsets, keys, nnz.shape[1])


def reference_forward(table: EmbeddingTable, sparse: SparseBatch, row_of: dict[int, int],
                      mean: bool) -> np.ndarray:
    n_seg = sparse.row_offsets.shape[0] - 1
    out = np.zeros((n_seg, table.vec_size))
    for s in range(n_seg):
        ks = sparse.keys[sparse.row_offsets[s]:sparse.row_offsets[s + 1]].tolist()
        for k in ks:
            if k in row_of:
                out[s] += table.rows[row_of[k]].astype(np.float64)
        if mean and len(ks) > 1:
            out[s] /= len(ks)
    return out.reshape(-1, sparse.slot_num, table.vec_size)


def odd_nnz(rng: np.random.Generator, n: int, slots: int) -> np.ndarray:
    nnz = rng.integers(0, 4, size=(n, slots))
    nnz[0, :3] = [0, 1, 3]  # the three cases of the mean combiner, always present
    nnz[-1] = 0  # a padded row
    return nnz


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_forward_matches_a_direct_loop(combiner: str) -> None:
    rng = np.random.default_rng(11)
    table = EmbeddingTable("emb", 5, 97, combiner, rng=rng)
    pool = rng.integers(-10**12, 10**12, size=41)
    sparse = make_sparse(odd_nnz(rng, 9, 4), pool, rng)
    out, _ = table.forward(sparse, training=True)
    assert out.shape == (9, 4, 5) and out.dtype == np.float32
    keys, _ = table.hash.dump()
    row_of = {k: r for r, k in enumerate(keys.tolist())}
    assert rel_err(out, reference_forward(table, sparse, row_of, combiner == "mean")) < 1e-6
    assert np.all(out[0, 0] == 0) and np.all(out[-1] == 0)
    first = table.rows[row_of[int(sparse.keys[sparse.row_offsets[1]])]]
    np.testing.assert_array_equal(out[0, 1], first)  # nnz = 1: the vector itself, sum or mean


def test_eval_keeps_unknown_keys_out_of_the_table_but_in_the_mean() -> None:
    rng = np.random.default_rng(5)
    table = EmbeddingTable("emb", 3, 31, "mean", rng=rng)
    table.forward(SparseBatch(np.array([0, 2], np.int64), np.array([100, 200], np.int64), 1), training=True)
    sparse = SparseBatch(np.array([0, 3, 4, 4], np.int64), np.array([100, 999, 200, 777], np.int64), 1)
    out, _ = table.forward(sparse, training=False)
    assert len(table.hash) == 2
    r100, r200 = table.hash.get_mark(np.array([100, 200]))
    np.testing.assert_allclose(out[0, 0], (table.rows[r100] + table.rows[r200]) / 3, rtol=1e-6)
    np.testing.assert_array_equal(out[1, 0], 0)  # only an unknown key
    np.testing.assert_array_equal(out[2, 0], 0)  # no key


@pytest.mark.parametrize("combiner", ["sum", "mean"])
def test_backward_sums_duplicates_and_is_the_adjoint_of_forward(combiner: str) -> None:
    rng = np.random.default_rng(7)
    table = EmbeddingTable("emb", 6, 53, combiner, rng=rng)
    sparse = make_sparse(odd_nnz(rng, 7, 5), rng.integers(0, 10**9, size=13), rng, np.uint32)
    out, saved = table.forward(sparse, training=True)
    grad = rng.uniform(-1, 1, size=out.shape)
    rows, row_grads = table.backward(saved, grad)
    assert rows.dtype == np.int64 and row_grads.dtype == np.float32
    assert np.all(np.diff(rows) > 0)
    # direct: every key occurrence adds its slot's gradient (divided by nnz for mean)
    ref: dict[int, np.ndarray] = {}
    g2 = grad.reshape(-1, 6)
    key_rows = table.hash.get_mark(sparse.keys)
    for s in range(g2.shape[0]):
        lo, hi = sparse.row_offsets[s], sparse.row_offsets[s + 1]
        for j in range(lo, hi):
            scale = 1.0 / (hi - lo) if combiner == "mean" and hi - lo > 1 else 1.0
            ref[int(key_rows[j])] = ref.get(int(key_rows[j]), 0.0) + g2[s] * scale
    np.testing.assert_array_equal(rows, sorted(ref))
    assert rel_err(row_grads, np.stack([ref[r] for r in rows.tolist()])) < 1e-6
    # out is linear in the table, so <out, grad> = <table rows, row grads>
    lhs = float(np.sum(out.astype(np.float64) * grad))
    rhs = float(np.sum(table.rows[rows].astype(np.float64) * row_grads))
    assert abs(lhs - rhs) <= 1e-5 * max(1.0, abs(lhs))


def test_backward_of_an_eval_pass_skips_unknown_keys() -> None:
    table = EmbeddingTable("emb", 2, 7, "sum", rng=np.random.default_rng(0))
    table.forward(SparseBatch(np.array([0, 1], np.int64), np.array([4], np.int64), 1), training=True)
    _, saved = table.forward(SparseBatch(np.array([0, 2], np.int64), np.array([4, 9], np.int64), 1), False)
    rows, g = table.backward(saved, np.array([[[0.5, -2.0]]]))
    np.testing.assert_array_equal(rows, [0])
    np.testing.assert_allclose(g, [[0.5, -2.0]])


def test_training_inserts_in_order_and_reports_a_full_table() -> None:
    table = EmbeddingTable("deep_data", 4, 5, "sum", rng=np.random.default_rng(1))
    table.forward(SparseBatch(np.array([0, 2, 3], np.int64), np.array([8, 6, 8], np.int64), 1), True)
    np.testing.assert_array_equal(table.dump()[0], [8, 6])
    with pytest.raises(TableFullError, match="deep_data"):
        table.forward(SparseBatch(np.array([0, 4], np.int64), np.array([1, 2, 3, 4], np.int64), 1), True)


def test_hash_rows_start_uniform_in_plus_minus_0_05() -> None:
    table = EmbeddingTable("emb", 9, 1001, rng=np.random.default_rng(2))
    assert table.rows.dtype == np.float32 and table.rows.shape == (1001, 9)
    assert np.abs(table.rows).max() <= 0.05 and np.abs(table.rows).max() > 0.049
    assert abs(float(table.rows.mean())) < 0.002


def test_slot_blocks_start_uniform_in_their_own_range() -> None:
    sizes = (3, 400, 0, 25)
    table = EmbeddingTable("emb", 7, None, slot_size_array=sizes, rng=np.random.default_rng(4))
    assert table.capacity == 428
    bounds = [np.sqrt(1.0 / s) for s in (3, 400, 25)]
    for block, b in zip((table.rows[:3], table.rows[3:403], table.rows[403:]), bounds):
        assert np.abs(block).max() <= b + 1e-7 and np.abs(block).max() > 0.8 * b
    with pytest.raises(ValueError, match="capacity=9"):
        EmbeddingTable("emb", 7, 9, slot_size_array=sizes)


def test_one_hot_indexes_rows_by_key_plus_slot_offset() -> None:
    sizes = (4, 1, 6)
    table = EmbeddingTable("onehot", 3, None, "sum", sizes, one_hot=True, rng=np.random.default_rng(6))
    assert table.hash is None and table.size == 11
    keys = np.array([3, 0, 5, 0, 0, 2], np.uint32)  # two samples, one key per slot
    out, saved = table.forward(SparseBatch(np.arange(7, dtype=np.int64), keys, 3), training=True)
    np.testing.assert_array_equal(out.reshape(-1, 3), table.rows[[3, 4, 10, 0, 4, 7]])
    rows, g = table.backward(saved, np.ones((2, 3, 3)))
    np.testing.assert_array_equal(rows, [0, 3, 4, 7, 10])
    np.testing.assert_allclose(g[2], [2, 2, 2])  # row 4 (slot 1, key 0) is hit twice
    with pytest.raises(ValueError, match=r"key 6 of slot 2 is outside \[0, 6\)"):
        table.forward(SparseBatch(np.arange(4, dtype=np.int64), np.array([0, 0, 6], np.int64), 3), True)
    with pytest.raises(ValueError, match="3 entries"):
        table.forward(SparseBatch(np.arange(3, dtype=np.int64), np.array([0, 0], np.int64), 2), True)


def test_a_new_key_in_several_slots_keeps_the_slot_it_was_first_seen_in() -> None:
    # 3 samples x 3 slots; key 7 first appears in slot 2 of sample 0, later in slots 0 and 1; key 5 first in
    # slot 1 of sample 1 (after an empty slot 0), then slot 0 of sample 2
    table = EmbeddingTable("emb", 3, 40, "sum", rng=np.random.default_rng(4))
    nnz = np.array([[1, 0, 2], [0, 2, 1], [3, 1, 0]])
    offsets = np.concatenate([[0], np.cumsum(nnz.reshape(-1))]).astype(np.int64)
    keys = np.array([9, 11, 7, 5, 7, 13, 7, 5, 9, 7], np.int64)
    table.forward(SparseBatch(offsets, keys, 3), True)
    got = dict(zip(table.dump()[0].tolist(), table.slot_ids().tolist()))
    assert got == {9: 0, 11: 2, 7: 2, 5: 1, 13: 2}
    table.forward(SparseBatch(np.array([0, 1, 2, 3], np.int64), np.array([13, 17, 9], np.int64), 3), True)
    got = dict(zip(table.dump()[0].tolist(), table.slot_ids().tolist()))
    assert got[13] == 2 and got[17] == 1 and got[9] == 0  # known keys keep their slot; new ones get theirs


def test_dump_and_load_round_trip_with_slot_ids() -> None:
    rng = np.random.default_rng(8)
    src = EmbeddingTable("emb", 4, 50, "sum", rng=rng)
    offsets = np.array([0, 2, 3, 3, 5], np.int64)  # 2 samples × 2 slots
    src.forward(SparseBatch(offsets, np.array([10, 11, 20, 12, 21], np.int64), 2), True)
    keys, vectors = src.dump()
    np.testing.assert_array_equal(keys, [10, 11, 20, 12, 21])
    np.testing.assert_array_equal(src.slot_ids(), np.array([0, 0, 1, 1, 1], np.uint64))
    np.testing.assert_array_equal(vectors, src.rows[:5])
    dst = EmbeddingTable("emb", 4, 50, "sum", rng=np.random.default_rng(99))
    dst.load(keys[::-1], vectors[::-1], src.slot_ids()[::-1])
    np.testing.assert_array_equal(dst.dump()[0], keys[::-1])
    for k in keys.tolist():
        r_src, r_dst = src.hash.get_mark(np.array([k]))[0], dst.hash.get_mark(np.array([k]))[0]
        np.testing.assert_array_equal(src.rows[r_src], dst.rows[r_dst])
    np.testing.assert_array_equal(dst.slot_ids(), np.array([1, 1, 1, 0, 0], np.uint64))
    with pytest.raises(ValueError, match="not consistent"):
        dst.load(keys, vectors[:3])
    one_hot = EmbeddingTable("oh", 2, None, "sum", (2, 3), one_hot=True, rng=rng)
    np.testing.assert_array_equal(one_hot.slot_ids(), np.array([0, 0, 1, 1, 1], np.uint64))
    one_hot.load(np.array([4, 1]), np.array([[1, 2], [3, 4]], np.float32))
    np.testing.assert_array_equal(one_hot.dump()[1][[4, 1]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="outside the one-hot table"):
        one_hot.load(np.array([5]), np.zeros((1, 2), np.float32))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="combiner='max'"):
        EmbeddingTable("emb", 4, 10, "max")
    with pytest.raises(ValueError, match="embedding_vec_size=0"):
        EmbeddingTable("emb", 0, 10)
    with pytest.raises(ValueError, match="needs a slot_size_array"):
        EmbeddingTable("emb", 4, 10, one_hot=True)
    with pytest.raises(ValueError, match="capacity=None"):
        EmbeddingTable("emb", 4)
