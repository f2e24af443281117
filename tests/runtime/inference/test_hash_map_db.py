from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.inference.database import partition_of
from hgc.runtime.inference.hash_map_db import HashMapDatabase
from tests.runtime.inference.db_contract import (
    check_overflow,
    check_roundtrip,
    check_tables_are_separate,
    random_table,
)


@pytest.mark.parametrize("kind, parts, threads", [("hash_map", 1, 1), ("parallel_hash_map", 5, 3)])
def test_contract(kind, parts, threads):
    db = HashMapDatabase(kind, parts, threads=threads, max_get_batch_size=17, max_set_batch_size=23)
    try:
        check_roundtrip(db, "m.t")
        check_tables_are_separate(db, "m.a", "m.b")
    finally:
        db.close()


def test_partitions_spread_the_keys():
    db = HashMapDatabase("parallel_hash_map", 4, threads=2)
    keys, vecs = random_table(2, 400, 2)
    db.open_table("t", 2)
    db.insert("t", keys, vecs)
    sizes = [s.size for s in db.parts["t"]]
    assert sum(sizes) == 400 and min(sizes) > 50
    for p, store in enumerate(db.parts["t"]):
        assert (partition_of(store.keys[:store.size], 4) == p).all()
    assert HashMapDatabase("hash_map", 4).partitions == 1  # the plain hash map has one partition
    db.close()


@pytest.mark.parametrize("policy", ["evict_oldest", "evict_least_used", "evict_random"])
def test_overflow(policy):
    db = HashMapDatabase("hash_map", 1, overflow_margin=10, overflow_policy=policy, overflow_resolution_target=0.5)
    check_overflow(db, "t", policy)
    assert db.evicted == 6


def test_refresh_time_after_fetch_protects_read_keys():
    def run(refresh: bool) -> list[int]:
        db = HashMapDatabase("hash_map", 1, overflow_margin=10, overflow_resolution_target=0.5,
                             refresh_time_after_fetch=refresh)
        db.open_table("t", 1)
        for k in range(10):
            db.insert("t", np.array([k]), np.array([[k]], np.float32))
        db.fetch("t", np.array([0, 1]))
        db.insert("t", np.array([10]), np.array([[10]], np.float32))
        return np.flatnonzero(db.fetch("t", np.arange(11))[0]).tolist()
    assert run(False) == [6, 7, 8, 9, 10]
    assert run(True) == [0, 1, 8, 9, 10]


def test_overflow_per_partition_and_in_chunks():
    db = HashMapDatabase("parallel_hash_map", 2, overflow_margin=30, overflow_resolution_target=0.5,
                         max_set_batch_size=7)
    keys, vecs = random_table(9, 200, 2)
    db.open_table("t", 2)
    db.insert("t", keys, vecs)
    assert all(s.size <= 30 for s in db.parts["t"]) and db.size("t") >= 30
    found, got = db.fetch("t", keys)
    assert np.array_equal(got, vecs[found])
    db.close()


def test_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind='redis_cluster' is not allowed"):
        HashMapDatabase("redis_cluster")
