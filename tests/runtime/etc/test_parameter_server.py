"""The Staged and Cached parameter servers: the Cached-PS's three phases (insertion into free blocks, eviction of
the oldest block while the hit rate is below target, freezing after max_num_evict), blocks smaller than a
query, keys moving between blocks, and agreement with the Staged-PS under any sequence of reads and writes."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.etc.config import CacheSettings
from hgc.runtime.etc.parameter_server import CachedPS, StagedPS

W = 5


def recs(keys: np.ndarray, salt: float = 0.0) -> np.ndarray:
    k = np.asarray(keys, np.float32)[:, None]
    return (k * 0.001 + np.arange(W, dtype=np.float32) * 0.37 + np.float32(salt)).astype(np.float32)


def cached(tmp_path, blocks: int, rate: float, evict: int, capacity: int) -> CachedPS:
    return CachedPS("t", W, str(tmp_path), CacheSettings(blocks, rate, evict), capacity)


def test_phases_insert_evict_freeze(tmp_path):
    ps = cached(tmp_path, 2, 0.8, 1, 50)
    keys = np.arange(300, dtype=np.int64)
    ps.put(keys, recs(keys))
    assert ps.cached_keys == 0 and len(ps) == 300
    a = np.arange(0, 40)
    assert np.array_equal(ps.fetch(a), recs(a)) and ps.cached_keys == 40  # phase 1: a free block
    ps.fetch(a)  # every key hits: nothing changes
    assert ps.hit_rates == [0.0, 1.0] and len(ps.blocks) == 1
    b = np.arange(100, 180)  # larger than a block: its first 50 keys are cached, the rest read from the file
    assert np.array_equal(ps.fetch(b), recs(b))
    assert ps.cached_keys == 90 and len(ps.blocks) == 2 and not ps.frozen
    ps.put(a[:5], recs(a[:5], 1.0))  # writes go to the block holding the key, not the file
    assert np.array_equal(ps.file.get(a[:5])[1], recs(a[:5]))
    c = np.arange(200, 240)  # all blocks taken, hit rate 0 < 0.8: the oldest block (a) is evicted
    assert np.array_equal(ps.fetch(c), recs(c))
    assert ps.num_evict == 1 and ps.cached_keys == 90 and ps.frozen
    assert np.array_equal(ps.file.get(a[:5])[1], recs(a[:5], 1.0))  # the evicted block went to the file
    ps.fetch(a)  # frozen: no more evictions, values still right
    assert ps.num_evict == 1 and ps.cached_keys == 90
    assert np.array_equal(ps.get(a)[1][:5], recs(a[:5], 1.0))
    ps.close()


def test_hit_rate_at_target_keeps_the_cache(tmp_path):
    ps = cached(tmp_path, 1, 0.5, 5, 100)
    keys = np.arange(100, dtype=np.int64)
    ps.put(keys, recs(keys))
    ps.fetch(keys[:40])
    ps.fetch(keys[20:60])  # hit rate 0.5, not below the target: no eviction
    assert ps.num_evict == 0 and ps.cached_keys == 40
    ps.fetch(keys[30:90])  # 10/60 hits: evict and cache this pass
    assert ps.num_evict == 1 and ps.cached_keys == 60
    ps.close()


def test_keys_move_between_blocks_and_empty_blocks_go(tmp_path):
    ps = cached(tmp_path, 3, 1.0, 0, 1000)
    keys = np.arange(100, dtype=np.int64)
    ps.put(keys, recs(keys))
    ps.fetch(keys[0:40])
    ps.fetch(keys[20:60])
    assert [b.held for b in ps.blocks] == [20, 40] and ps.cached_keys == 60  # no key cached twice
    ps.fetch(keys[0:70])
    assert [b.held for b in ps.blocks] == [70] and ps.num_evict == 0
    assert np.array_equal(ps.get(keys)[1], recs(keys))
    ps.close()


@pytest.mark.parametrize("settings", [(1, 1.0, 100), (2, 0.7, 3), (3, 0.2, 0)])
def test_cached_agrees_with_staged_under_random_traffic(tmp_path, settings):
    rng = np.random.default_rng(sum(int(s * 10) for s in settings))
    staged = StagedPS("t", W)
    ps = cached(tmp_path, *settings, capacity=37)
    for step in range(40):
        keys = np.unique(rng.integers(0, 150, rng.integers(1, 60)))
        if step % 3 == 0 or len(staged) == 0:
            r = recs(keys, float(step))
            staged.put(keys, r)
            ps.put(keys, r)
        else:
            known = keys[staged.contains(keys)]
            assert np.array_equal(ps.contains(keys), staged.contains(keys))
            assert np.array_equal(ps.fetch(known), staged.fetch(known))
    probe = np.arange(-5, 160)
    f1, r1 = staged.get(probe)
    f2, r2 = ps.get(probe)
    assert np.array_equal(f1, f2) and np.array_equal(r1, r2)
    c1, c2 = list(staged.chunks(16)), list(ps.chunks(16))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(c1, c2))
    assert len(c1) == len(c2) and ps.num_evict <= settings[2]
    ps.close()


def test_block_capacity_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="block capacity must be >= 1"):
        cached(tmp_path, 1, 0.5, 1, 0)
