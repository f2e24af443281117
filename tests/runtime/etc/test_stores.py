"""Records, the growable key index, and the two record stores (host memory, memory-mapped file)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from hgc.runtime.dist.shard import RowsState
from hgc.runtime.etc.key_index import KeyIndex
from hgc.runtime.etc.records import RowCodec
from hgc.runtime.etc.stores import FileStore, MemoryStore


def rows(rng: np.random.Generator, n: int, vec: int, kinds: int, lazy: bool) -> RowsState:
    return RowsState(rng.integers(-2**40, 2**40, n), rng.normal(size=(n, vec)).astype(np.float32),
                     rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
                     [rng.normal(size=(n, vec)).astype(np.float32) for _ in range(kinds)],
                     rng.integers(1, 2**63, n, dtype=np.uint64) if lazy else None)


@pytest.mark.parametrize("kinds,lazy", [(0, False), (1, False), (2, True)])
def test_codec_round_trip_is_bit_exact(kinds, lazy):
    rng = np.random.default_rng(kinds)
    r = rows(rng, 13, 5, kinds, lazy)
    codec = RowCodec(5, kinds, lazy)
    rec = codec.pack(r)
    assert rec.shape == (13, 5 * (1 + kinds) + 2 + (2 if lazy else 0)) and rec.dtype == np.float32
    back = codec.unpack(r.keys, rec)
    assert np.array_equal(back.keys, r.keys) and np.array_equal(back.vectors, r.vectors)
    assert np.array_equal(back.slot_ids, r.slot_ids) and np.array_equal(codec.slot_ids(rec), r.slot_ids)
    assert all(np.array_equal(a, b) for a, b in zip(back.states, r.states))
    assert (back.prev_time is None) == (not lazy)
    if lazy:
        assert np.array_equal(back.prev_time, r.prev_time)
    assert np.array_equal(codec.vectors(rec), r.vectors)
    with pytest.raises(ValueError, match="optimizer state kind"):
        RowCodec(5, kinds + 1, lazy).pack(r)


def test_key_index_grows_and_keeps_slots():
    idx = KeyIndex("t")
    rng = np.random.default_rng(1)
    keys = rng.permutation(5000).astype(np.int64) * 7919 - 10**6
    first = idx.insert(keys[:700])
    assert np.array_equal(first, np.arange(700))
    again = idx.insert(np.concatenate([keys[300:2600], keys[:10]]))  # present keys keep their slots
    assert np.array_equal(again[:400], np.arange(300, 700)) and np.array_equal(again[-10:], np.arange(10))
    assert np.array_equal(again[400:2300], np.arange(700, 2600))
    assert len(idx) == 2600 and np.array_equal(idx.keys(), keys[:2600])
    assert np.array_equal(idx.lookup(keys[2595:2605]), [2595, 2596, 2597, 2598, 2599, -1, -1, -1, -1, -1])


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_store_put_get_overwrite_and_iterate(tmp_path, kind):
    width = 7
    store = MemoryStore("t", width) if kind == "memory" else FileStore("t", width, str(tmp_path))
    rng = np.random.default_rng(2)
    keys = rng.permutation(3000).astype(np.int64) + 11
    recs = rng.normal(size=(3000, width)).astype(np.float32)
    store.put(keys[:1200], recs[:1200])
    store.put(keys[1000:], recs[1000:] + 1)  # 200 overwritten, 1800 new (the matrix grows)
    assert len(store) == 3000
    expect = recs.copy()
    expect[1000:] += 1
    probe = np.concatenate([keys[[5, 1100, 2999]], [-1, 10]])
    found, got = store.get(probe)
    assert found.tolist() == [True, True, True, False, False]
    assert np.array_equal(got[:3], expect[[5, 1100, 2999]]) and not got[3:].any()
    assert store.contains(keys[:3]).all() and not store.contains(np.array([0, 5])).any()
    parts = list(store.chunks(rows=1024))
    assert [len(k) for k, _ in parts] == [1024, 1024, 952]
    assert np.array_equal(np.concatenate([k for k, _ in parts]), keys)  # first-insertion order
    assert np.array_equal(np.concatenate([r for _, r in parts]), expect)
    store.close()


def test_file_store_lives_in_its_local_folder_and_is_removed(tmp_path):
    store = FileStore("emb/0", 3, str(tmp_path))
    store.put(np.arange(10), np.ones((10, 3), np.float32))
    assert os.path.dirname(store.folder) == str(tmp_path) and os.path.basename(store.folder).startswith("hgc_etc_emb_0")
    assert os.path.getsize(store.path) >= 10 * 3 * 4
    store.close()
    assert not os.path.exists(store.folder)
    with pytest.raises(ValueError, match="local_paths entry .* not an existing folder"):
        FileStore("t", 3, str(tmp_path / "missing"))
