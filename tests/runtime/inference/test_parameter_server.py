from __future__ import annotations

import numpy as np
import pytest

import hgc
from hgc.errors import NotBuiltError
from hgc.runtime.inference.hash_map_db import HashMapDatabase
from hgc.runtime.inference.parameter_server import (
    ParameterServer,
    TableData,
    check_update_source,
    default_values,
    make_persistent,
    make_volatile,
    settings,
)

rocksdict = pytest.importorskip("rocksdict", reason="the rocksdict package is missing (pip install 'hgc[hps]')")


def table(n: int = 50, vec: int = 4, default: float = 0.0) -> TableData:
    rng = np.random.default_rng(n)
    keys = rng.choice(10_000, size=n, replace=False).astype(np.int64)
    return TableData("emb", vec, keys, rng.standard_normal((n, vec)).astype(np.float32), default)


def test_tiers_and_default_vector(tmp_path):
    t = table(default=-0.25)
    vol = HashMapDatabase("hash_map")
    per = make_persistent(settings(hgc.inference.PersistentDatabaseParams(type="rocks_db",
                                                                          path=str(tmp_path / "db"))))
    ps = ParameterServer("m", vol, per, initial_cache_rate=0.4)
    ps.load(t)
    assert vol.size(ps.table("emb")) == 20 and per.size(ps.table("emb")) == 50  # first 40 % in CPU memory
    ask = np.concatenate([t.keys[::-1], [10_001, -3]])
    vectors, found = ps.fetch("emb", ask)
    assert found.tolist() == [True] * 50 + [False, False]
    assert np.array_equal(vectors[:50], t.vectors[::-1]) and (vectors[50:] == -0.25).all()
    assert vol.size(ps.table("emb")) == 20  # cache_missed_embeddings is off
    ps.close()


def test_cache_missed_embeddings_fills_the_volatile_tier(tmp_path):
    t = table()
    vol = HashMapDatabase("hash_map")
    per = make_persistent(settings(hgc.inference.PersistentDatabaseParams(type="rocks_db",
                                                                          path=str(tmp_path / "db"))))
    ps = ParameterServer("m", vol, per, initial_cache_rate=0.0, cache_missed_embeddings=True)
    ps.load(t)
    assert vol.size(ps.table("emb")) == 0
    ps.fetch("emb", t.keys[:7])
    assert vol.size(ps.table("emb")) == 7
    found, vectors = vol.fetch(ps.table("emb"), t.keys[:7])
    assert found.all() and np.array_equal(vectors, t.vectors[:7])
    ps.close()


def test_volatile_only_with_a_partial_initial_cache_loses_the_rest():
    t = table()
    ps = ParameterServer("m", HashMapDatabase("parallel_hash_map", 3, threads=2), None, initial_cache_rate=0.5)
    ps.load(t)
    vectors, found = ps.fetch("emb", t.keys)
    assert found.tolist() == [True] * 25 + [False] * 25 and (vectors[25:] == 0).all()
    ps.close()


def test_reloading_replaces_a_table():
    t = table()
    ps = ParameterServer("m", HashMapDatabase("hash_map"), None)
    ps.load(t)
    ps.load(TableData("emb", 4, t.keys[:3], np.ones((3, 4), np.float32)))
    vectors, found = ps.fetch("emb", t.keys[:5])
    assert found.tolist() == [True] * 3 + [False] * 2 and (vectors[:3] == 1).all()


def test_factories_follow_the_settings(tmp_path):
    v = hgc.inference.VolatileDatabaseParams()
    v.type, v.num_partitions = hgc.DatabaseType_t.hash_map, 4
    assert make_volatile(settings(v), 8, 0).partitions == 1
    v.type = "parallel_hash_map"
    db = make_volatile(settings(v), 8, 0)
    assert db.kind == "parallel_hash_map" and db.partitions == 4
    db.close()
    v.type = "disabled"
    assert make_volatile(settings(v), 1, 0) is None
    v.type = hgc.DatabaseType_t.multi_process_hash_map
    with pytest.raises(NotBuiltError, match="multi_process_hash_map"):
        make_volatile(settings(v), 1, 0)
    v.type, v.update_filters = "hash_map", ["(unclosed"]
    with pytest.raises(ValueError, match="'update_filters' = .*'\\(unclosed' is not a regular expression"):
        make_volatile(settings(v), 1, 0)
    assert make_persistent(settings(hgc.inference.PersistentDatabaseParams())) is None
    with pytest.raises(ValueError, match="needs at least one database"):
        ParameterServer("m", None, None)


def test_update_sources():
    u = hgc.UpdateSourceParams()
    check_update_source(settings(u))  # null: nothing to follow
    u.type = hgc.UpdateSourceType_t.kafka_message_queue
    with pytest.raises(NotBuiltError, match="Apache Kafka message queue \\(brokers 127.0.0.1:9092\\)"):
        check_update_source(settings(u))


def test_default_values():
    assert default_values([0.5], 3) == [0.5, 0.5, 0.5]
    assert default_values([1, 2], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="'default_value_for_each_table' = \\[1.0, 2.0\\] .* one value per "
                                         "embedding table \\(3\\)"):
        default_values([1, 2], 3)
