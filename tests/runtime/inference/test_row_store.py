from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.inference.row_store import RowStore, as_keys


def _random(rng: np.random.Generator, n: int, vec: int) -> tuple[np.ndarray, np.ndarray]:
    keys = rng.choice(np.arange(-5000, 5000, dtype=np.int64), size=n, replace=False)
    return keys, rng.standard_normal((n, vec)).astype(np.float32)


def test_upsert_find_read_and_growth():
    rng = np.random.default_rng(3)
    keys, vecs = _random(rng, 301, 5)
    s = RowStore("t", 5)
    for part in np.array_split(np.arange(301), 7):  # several growths of the arrays and the index
        s.upsert(keys[part], vecs[part], stamp=1)
    assert len(s) == 301
    rows = s.find(keys)
    assert (rows >= 0).all() and np.array_equal(s.read(rows), vecs)
    assert np.array_equal(s.find(np.array([5001, 99999], np.int64)), [-1, -1])
    new = rng.standard_normal((50, 5)).astype(np.float32)
    s.upsert(keys[:50], new, stamp=2)  # overwrite: no new rows
    assert len(s) == 301 and np.array_equal(s.read(s.find(keys[:50])), new)
    assert (s.stamps[s.find(keys[:50])] == 2).all() and (s.stamps[s.find(keys[50:])] == 1).all()


def test_read_counts_and_refreshes_stamps():
    s = RowStore("t", 2)
    s.upsert(np.arange(6), np.ones((6, 2)), stamp=1)
    rows = s.find(np.array([4, 1]))
    s.read(rows)
    s.read(rows[:1], stamp=9)
    assert s.counts[:6].tolist() == [0, 1, 0, 0, 2, 0]
    assert s.stamps[:6].tolist() == [1, 1, 1, 1, 9, 1]


def test_victims_by_policy_and_drop_keeps_the_rest():
    s = RowStore("t", 3)
    keys = np.array([10, 11, 12, 13, 14, 15], np.int64)
    vecs = np.arange(18, dtype=np.float32).reshape(6, 3) + 0.5
    for k, v, t in zip(keys, vecs, [5, 1, 4, 1, 3, 2]):
        s.upsert(k[None], v[None], stamp=t)
    s.read(s.find(np.array([11, 13, 15])))
    s.read(s.find(np.array([15])))
    rng = np.random.default_rng(0)
    assert s.keys[s.victims(3, "evict_oldest", rng)].tolist() == [11, 13, 15]  # stamps 1, 1, 2
    # reads: 11 → 1, 13 → 1, 15 → 2, others 0; ties by stamp: 14 (3), 12 (4), 10 (5)
    assert sorted(s.keys[s.victims(4, "evict_least_used", rng)].tolist()) == [10, 11, 12, 14]
    r = s.victims(4, "evict_random", rng)
    assert len(set(r.tolist())) == 4 and r.max() < 6
    with pytest.raises(ValueError, match="overflow policy 'lru' is not allowed"):
        s.victims(1, "lru", rng)
    s.drop(s.victims(2, "evict_oldest", rng))
    assert sorted(s.keys[:s.size].tolist()) == [10, 12, 14, 15]
    assert np.array_equal(s.read(s.find(np.array([15, 10]))), vecs[[5, 0]])
    assert s.find(np.array([11, 13])).tolist() == [-1, -1]
    assert s.shrink_to(10, "evict_oldest", rng) == 0 and s.shrink_to(1, "evict_oldest", rng) == 3
    assert s.keys[:s.size].tolist() == [10]


def test_keys_of_any_integer_type():
    assert as_keys(np.array([3, 4], np.uint32)).dtype == np.int64
    assert as_keys(np.array([2 ** 64 - 1], np.uint64)).tolist() == [-1]
    with pytest.raises(ValueError, match="integer array"):
        as_keys(np.array([1.0]))
