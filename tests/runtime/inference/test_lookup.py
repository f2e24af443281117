from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from hgc.errors import TrainingError
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.inference.lookup import EmbeddingLookup, TableSpec, server_keys


def random_batch(rng: np.random.Generator, n: int, slots: int, max_nnz: int, high: int,
                 dtype: type = np.int64) -> SparseBatch:
    nnz = rng.integers(0, max_nnz + 1, size=n * slots)
    offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    return SparseBatch(offsets, rng.integers(0, high, size=int(offsets[-1])).astype(dtype), slots)


def table(keys: np.ndarray, vec: int,
          default: float) -> tuple[dict[int, np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(4)
    rows = {int(k): rng.standard_normal(vec).astype(np.float32) for k in keys}

    def source(ask: np.ndarray) -> np.ndarray:
        assert np.unique(ask).shape[0] == ask.shape[0], "keys asked twice in one batch"
        return np.stack([rows.get(int(k), np.full(vec, default, np.float32)) for k in ask]) if ask.size \
            else np.zeros((0, vec), np.float32)
    return rows, source


def reference(sparse: SparseBatch, rows: dict[int, np.ndarray], vec: int, default: float, mean: bool,
              keys: np.ndarray) -> np.ndarray:
    out = np.zeros((sparse.row_offsets.shape[0] - 1, vec))
    for s in range(out.shape[0]):
        seg = keys[sparse.row_offsets[s]:sparse.row_offsets[s + 1]]
        for k in seg:
            out[s] += rows.get(int(k), np.full(vec, default))
        if mean and seg.shape[0] > 1:
            out[s] /= seg.shape[0]
    return out.reshape(-1, sparse.slot_num, vec)


@pytest.mark.parametrize("combiner", ["sum", "mean"])
@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_hash_lookup_combines_like_training(combiner, dtype):
    rng = np.random.default_rng(11)
    sparse = random_batch(rng, 13, 3, 4, 60, dtype)
    rows, source = table(np.arange(0, 60, 2), 5, default=0.75)  # odd keys are missing
    emb = EmbeddingLookup(TableSpec("e", 5, combiner, False), source)
    out, saved = emb.forward(sparse, training=False)
    want = reference(sparse, rows, 5, 0.75, combiner == "mean", sparse.keys.astype(np.int64))
    assert out.dtype == np.float32 and out.shape == (13, 3, 5) and saved is None
    assert np.linalg.norm(out - want) / np.linalg.norm(want) < 1e-6
    with pytest.raises(TrainingError, match="does not train"):
        emb.forward(sparse, training=True)
    with pytest.raises(TrainingError, match="no backward"):
        emb.backward(None, out)


def test_one_hot_keys_take_their_slot_offset():
    spec = TableSpec("oh", 2, "sum", True, (4, 3, 5))
    sparse = SparseBatch(np.arange(7, dtype=np.int64), np.array([3, 0, 4, 1, 2, 0], np.uint32), 3)
    assert server_keys(spec, sparse).tolist() == [3, 4, 11, 1, 6, 7]
    rows, source = table(np.arange(12), 2, default=0.0)
    out, _ = EmbeddingLookup(spec, source).forward(sparse, training=False)
    assert np.array_equal(out.reshape(-1, 2), np.stack([rows[k] for k in (3, 4, 11, 1, 6, 7)]))
    bad = SparseBatch(np.arange(4, dtype=np.int64), np.array([0, 3, 1], np.uint32), 3)
    with pytest.raises(ValueError, match=r"embedding 'oh': key 3 of slot 1 is outside \[0, 3\) given by "
                                         r"slot_size_array \(sample 0\)"):
        server_keys(spec, bad)
    with pytest.raises(ValueError, match="the input has 2 slots but slot_size_array has 3 entries"):
        server_keys(spec, SparseBatch(np.arange(3, dtype=np.int64), np.zeros(2, np.uint32), 2))


def test_empty_batch_and_bad_offsets():
    _, source = table(np.arange(5), 3, default=1.0)
    emb = EmbeddingLookup(TableSpec("e", 3, "mean", False), source)
    out, _ = emb.forward(SparseBatch(np.zeros(9, np.int64), np.zeros(0, np.int64), 4), training=False)
    assert out.shape == (2, 4, 3) and not out.any()
    with pytest.raises(ValueError, match="row_offsets has 6 entries, not n·slot_num \\+ 1 with slot_num=2"):
        emb.forward(SparseBatch(np.zeros(6, np.int64), np.zeros(0, np.int64), 2), training=False)
