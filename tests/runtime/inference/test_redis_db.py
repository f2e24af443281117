"""The redis_cluster database against a real redis-server (started per session on a free port; skipped when
redis-server is not installed)."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.inference.redis_db import RedisDatabase, parse_address
from tests.runtime.inference.db_contract import check_overflow, check_roundtrip, check_tables_are_separate
from tests.runtime.inference.deploy import free_port


@pytest.mark.parametrize("parts", [1, 3])
def test_contract(redis, parts):
    db = RedisDatabase(redis.address, num_partitions=parts, max_get_batch_size=19, max_set_batch_size=31)
    try:
        check_roundtrip(db, f"hgc_et.contract{parts}.t")
        check_tables_are_separate(db, f"hgc_et.sep{parts}.a", f"hgc_et.sep{parts}.b")
    finally:
        db.close()


@pytest.mark.parametrize("policy", ["evict_oldest", "evict_least_used", "evict_random"])
def test_overflow(redis, policy):
    db = RedisDatabase(redis.address, num_partitions=1, overflow_margin=10, overflow_policy=policy,
                       overflow_resolution_target=0.5)
    check_overflow(db, f"hgc_et.overflow.{policy}", policy)
    assert db.evicted == 6
    db.close()


def test_layout_and_clear_removes_stale_partitions(redis):
    import redis as redis_py

    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    db = RedisDatabase(redis.address, num_partitions=4)
    t = "hgc_et.layout.t"
    db.open_table(t, 2)
    db.clear(t)
    keys = np.arange(40, dtype=np.int64) * 3 + 1
    db.insert(t, keys, np.ones((40, 2), np.float32))
    assert sum(client.hlen(f"{t}/p{i}") for i in range(4)) == 40
    field = (1).to_bytes(8, "little")
    raw = client.hget(next(f"{t}/p{i}" for i in range(4) if client.hexists(f"{t}/p{i}", field)), field)
    assert np.frombuffer(raw, "<f4").tolist() == [1.0, 1.0]
    client.hset(f"{t}/p9", b"x", b"y")  # left over from a run with more partitions
    db.clear(t)
    assert not client.keys(f"{t}/*")
    db.close()
    client.close()


def test_two_clients_share_the_tables(redis):
    a = RedisDatabase(redis.address, num_partitions=2)
    b = RedisDatabase(redis.address, num_partitions=2)
    t = "hgc_et.shared.t"
    a.open_table(t, 3)
    b.open_table(t, 3)
    a.clear(t)
    a.insert(t, np.array([5, 6]), np.full((2, 3), 0.5, np.float32))
    found, got = b.fetch(t, np.array([6, 7, 5]))
    assert found.tolist() == [True, False, True] and (got == 0.5).all()
    a.close()
    b.close()


def test_vector_size_mismatch_is_a_data_error(redis):
    db = RedisDatabase(redis.address)
    t = "hgc_et.width.t"
    db.open_table(t, 2)
    db.clear(t)
    db.insert(t, np.array([1]), np.ones((1, 2), np.float32))
    db.open_table(t, 3)
    with pytest.raises(DataError, match="holds a vector of 8 bytes; the embedding's vectors of 3 float32"):
        db.fetch(t, np.array([1]))
    db.close()


def test_unreachable_address_names_it():
    pytest.importorskip("redis")
    port = free_port()
    with pytest.raises(ValueError, match=rf"'address' = '127.0.0.1:{port}' is not allowed: no Redis server answers"):
        RedisDatabase(f"127.0.0.1:{port}")


def test_parse_address():
    assert parse_address("a:1;b:2, c") == [("a", 1), ("b", 2), ("c", 6379)]
    for bad in ("", "a:0", "a:x", ":5"):
        with pytest.raises(ValueError, match="'address'"):
            parse_address(bad)


@pytest.fixture
def locked_redis(tmp_path):
    from tests.runtime.inference.deploy import redis_server

    yield from redis_server(str(tmp_path), "--requirepass", "s3cret")


def test_login(locked_redis):
    with pytest.raises(ValueError, match="'password' = '' is not allowed: the Redis server at .* needs a login"):
        RedisDatabase(locked_redis.address)
    with pytest.raises(ValueError, match="'user_name'/'password' = 'default'/\\*\\*\\*\\*\\* is not allowed: .* refused"):
        RedisDatabase(locked_redis.address, password="wrong")
    db = RedisDatabase(locked_redis.address, user_name="default", password="s3cret")
    check_roundtrip(db, "hgc_et.login.t", n=20)
    db.close()
