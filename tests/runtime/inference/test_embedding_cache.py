from __future__ import annotations

import numpy as np

from hgc.runtime.inference.embedding_cache import EmbeddingCache

VEC = 3


class Server:
    """A parameter server of keys 0..99 (vector = key + column/10), default 0.5 for others; counts requests."""

    def __init__(self) -> None:
        self.asked: list[np.ndarray] = []

    def __call__(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.asked.append(np.array(keys))
        found = (keys >= 0) & (keys < 100)
        out = np.full((keys.shape[0], VEC), 0.5, np.float32)
        out[found] = self.vectors(keys[found])
        return out, found

    @staticmethod
    def vectors(keys: np.ndarray) -> np.ndarray:
        return (keys[:, None] + np.arange(VEC)[None, :] / 10).astype(np.float32)


def expected(keys: np.ndarray) -> np.ndarray:
    out = np.full((keys.shape[0], VEC), 0.5, np.float32)
    ok = (keys >= 0) & (keys < 100)
    out[ok] = Server.vectors(keys[ok])
    return out


def test_values_never_depend_on_the_cache():
    rng = np.random.default_rng(7)
    server = Server()
    cache = EmbeddingCache("t", VEC, 10, 0.8, server)
    for _ in range(30):
        keys = np.unique(rng.integers(-5, 110, size=rng.integers(1, 25)))
        assert np.array_equal(cache.lookup(keys), expected(keys))
        assert len(cache) <= 10
    assert 0 < cache.hits < cache.queries and cache.refreshes > 0
    assert sum(k.shape[0] for k in server.asked) == cache.queries - cache.hits  # only misses reach the server


def test_refresh_only_below_the_threshold_and_never_caches_missing_keys():
    server = Server()
    cache = EmbeddingCache("t", VEC, 4, 0.5, server)
    cache.lookup(np.array([1, 2, 200]))  # hit rate 0 < 0.5: 1 and 2 cached, 200 (missing) not
    assert sorted(cache.store.keys[:len(cache)].tolist()) == [1, 2]
    cache.lookup(np.array([1, 2, 3]))  # 2 of 3 hit: 0.67 >= 0.5, no refresh
    assert cache.last_hit_rate == 2 / 3 and sorted(cache.store.keys[:len(cache)].tolist()) == [1, 2]
    assert server.asked[-1].tolist() == [3]  # only the miss goes to the server
    cache.lookup(np.array([3, 4, 5, 6]))  # 0 hits: refresh with 4 keys into 4 rows: 1 and 2 are evicted
    held = sorted(cache.store.keys[:len(cache)].tolist())
    assert len(held) == 4 and held == [3, 4, 5, 6]
    assert cache.refreshes == 2


def test_eviction_keeps_the_hottest_rows():
    server = Server()
    cache = EmbeddingCache("t", VEC, 3, 1.0, server)
    for _ in range(5):
        cache.lookup(np.array([7]))  # 7 is hot
    cache.lookup(np.array([8, 9]))
    cache.lookup(np.array([10, 11]))  # full: evicts the two least read (8, 9), keeps 7
    assert sorted(cache.store.keys[:len(cache)].tolist()) == [7, 10, 11]


def test_warm_start_and_zero_capacity():
    server = Server()
    cache = EmbeddingCache("t", VEC, 2, 1.0, server)
    cache.warm(np.array([5, 6, 7]), Server.vectors(np.array([5, 6, 7])))
    assert sorted(cache.store.keys[:len(cache)].tolist()) == [5, 6]
    out = cache.lookup(np.array([5, 6]))
    assert cache.hit_rate == 1.0 and not server.asked and np.array_equal(out, expected(np.array([5, 6])))
    empty = EmbeddingCache("t", VEC, 0, 1.0, server)
    keys = np.array([1, 150])
    assert np.array_equal(empty.lookup(keys), expected(keys)) and len(empty) == 0
