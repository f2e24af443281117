"""What every parameter-server database must do, checked the same way for each backend."""
from __future__ import annotations

import numpy as np

from hgc.runtime.inference.database import Database


def random_table(seed: int, n: int, vec: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.choice(np.arange(-(2 ** 40), 2 ** 40, 2 ** 20, dtype=np.int64), size=n, replace=False)
    return keys, rng.standard_normal((n, vec)).astype(np.float32)


def check_roundtrip(db: Database, table: str, vec: int = 3, n: int = 257) -> None:
    """Insert, fetch in another order with absent keys mixed in, overwrite, clear."""
    keys, vecs = random_table(len(table), n, vec)
    db.open_table(table, vec)
    db.clear(table)
    db.insert(table, keys, vecs)
    assert db.size(table) == n
    rng = np.random.default_rng(1)
    order = rng.permutation(n)
    absent = np.array([7, -7, 2 ** 62 + 1], np.int64)
    half = n // 2
    ask = np.concatenate([keys[order[:half]], absent, keys[order[half:]]])
    found, got = db.fetch(table, ask)
    assert found.tolist() == [True] * half + [False] * 3 + [True] * (n - half)
    assert got.dtype == np.float32 and np.array_equal(got, vecs[order])
    found, got = db.fetch(table, absent)
    assert not found.any() and got.shape == (0, vec)
    found, got = db.fetch(table, np.zeros(0, np.int64))
    assert found.shape == (0,) and got.shape == (0, vec)
    new = vecs[:10] * -2.0 + 0.25
    db.insert(table, keys[:10], new)  # overwrite: same size
    assert db.size(table) == n
    assert np.array_equal(db.fetch(table, keys[:10])[1], new)
    db.clear(table)
    assert db.size(table) == 0 and not db.fetch(table, keys[:5])[0].any()


def check_tables_are_separate(db: Database, a: str, b: str) -> None:
    ka, va = random_table(5, 20, 2)
    db.open_table(a, 2)
    db.open_table(b, 4)
    db.clear(a)
    db.clear(b)
    db.insert(a, ka, va)
    db.insert(b, ka[:5], np.ones((5, 4), np.float32))
    assert db.size(a) == 20 and db.size(b) == 5
    assert np.array_equal(db.fetch(a, ka)[1], va)
    assert np.array_equal(db.fetch(b, ka)[1], np.ones((5, 4), np.float32))


def check_overflow(db: Database, table: str, policy: str) -> None:
    """One partition, margin 10, target 0.5: the 11th key shrinks it to 5; which 5 depends on ``policy``.
    The database must have been made with that margin, target and policy (and one partition)."""
    db.open_table(table, 1)
    db.clear(table)
    for k in range(10):  # key k written at time k
        db.insert(table, np.array([k], np.int64), np.array([[float(k)]], np.float32))
    for _ in range(2):
        db.fetch(table, np.array([0, 1, 2], np.int64))  # read the three oldest keys
    db.insert(table, np.array([10], np.int64), np.array([[10.0]], np.float32))
    assert db.size(table) == 5
    found, got = db.fetch(table, np.arange(11, dtype=np.int64))
    kept = np.flatnonzero(found).tolist()
    assert got[:, 0].tolist() == [float(k) for k in kept]
    if policy == "evict_oldest":
        assert kept == [6, 7, 8, 9, 10]
    elif policy == "evict_least_used":
        assert kept[:3] == [0, 1, 2] and 10 in kept and len(kept) == 5
    else:
        assert len(kept) == 5
