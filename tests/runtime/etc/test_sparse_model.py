"""The training cache's sparse model folder: save_params_to_files' key / emb_vector / slot_id files plus
HugeCTR's per-key optimizer state files, written atomically in chunks and read back with size checks."""
from __future__ import annotations

import os

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime import checkpoint as ck
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.etc.records import RowCodec
from hgc.runtime.etc.sparse_model import STATE_FILES, read_chunks, write_folder
from hgc.runtime.etc.stores import MemoryStore

VEC = 3


def filled_store(n: int, kinds: int, lazy: bool) -> tuple[MemoryStore, RowCodec, RowsState]:
    rng = np.random.default_rng(n)
    codec = RowCodec(VEC, kinds, lazy)
    rows = RowsState(rng.permutation(n).astype(np.int64) * 13 - 40, rng.normal(size=(n, VEC)).astype(np.float32),
                     rng.integers(0, 26, n).astype(np.uint64),
                     [rng.random((n, VEC)).astype(np.float32) for _ in range(kinds)],
                     rng.integers(2, 9, n).astype(np.uint64) if lazy else None)
    store = MemoryStore("t", codec.width)
    store.put(rows.keys, codec.pack(rows))
    return store, codec, rows


def test_layout_equals_save_params_to_files(tmp_path):
    store, codec, rows = filled_store(50, 2, False)
    etc_dir, ck_dir = str(tmp_path / "etc"), str(tmp_path / "ck")
    write_folder(etc_dir, lambda: store.chunks(rows=16), codec, STATE_FILES["Adam"], localized=True)
    ck.write_sparse_model(ck_dir, rows.keys, rows.vectors, rows.slot_ids)
    assert sorted(os.listdir(etc_dir)) == ["Adam.m", "Adam.v", "emb_vector", "key", "slot_id"]
    for name in ("key", "emb_vector", "slot_id"):
        assert (tmp_path / "etc" / name).read_bytes() == (tmp_path / "ck" / name).read_bytes()
    keys, vectors, slots = ck.read_sparse_model(etc_dir, VEC)  # the usual reader takes it
    assert np.array_equal(keys, rows.keys) and np.array_equal(vectors, rows.vectors)
    assert np.array_equal(slots, rows.slot_ids)
    m = np.fromfile(os.path.join(etc_dir, "Adam.m"), np.float32).reshape(-1, VEC)
    assert np.array_equal(m, rows.states[0])


@pytest.mark.parametrize("optimizer,kinds,lazy", [("Adam", 2, True), ("MomentumSGD", 1, False), ("SGD", 0, False)])
def test_round_trip(tmp_path, optimizer, kinds, lazy):
    store, codec, rows = filled_store(40, kinds, lazy)
    path = str(tmp_path / "m")
    write_folder(path, lambda: store.chunks(rows=7), codec, STATE_FILES[optimizer], localized=False)
    assert not os.path.exists(os.path.join(path, "slot_id"))  # distributed embeddings have none
    parts = list(read_chunks(path, codec, optimizer, 0.0, rows=9))
    assert [len(k) for k, _ in parts] == [9, 9, 9, 9, 4]
    back = codec.unpack(np.concatenate([k for k, _ in parts]), np.concatenate([r for _, r in parts]))
    assert np.array_equal(back.keys, rows.keys) and np.array_equal(back.vectors, rows.vectors)
    assert all(np.array_equal(a, b) for a, b in zip(back.states, rows.states))
    assert not back.slot_ids.any()
    if lazy:
        assert (back.prev_time == 1).all()  # HugeCTR's files have no place for LazyGlobal steps


def test_missing_state_files_load_initial_states_and_replace_in_place(tmp_path):
    rng = np.random.default_rng(1)
    keys, vectors = np.arange(6, dtype=np.int64), rng.normal(size=(6, VEC)).astype(np.float32)
    path = str(tmp_path / "plain")
    ck.write_sparse_model(path, keys, vectors)
    codec = RowCodec(VEC, 1, False)
    (k, r), = list(read_chunks(path, codec, "AdaGrad", 0.5))
    assert np.array_equal(k, keys) and (codec.unpack(k, r).states[0] == 0.5).all()
    write_folder(path, lambda: iter([(k, r)]), codec, STATE_FILES["AdaGrad"], localized=False)  # replaces it
    assert sorted(os.listdir(path)) == ["AdaGrad.accm", "emb_vector", "key"]


def test_inconsistent_files_name_the_file(tmp_path):
    store, codec, _ = filled_store(10, 2, False)
    path = tmp_path / "m"
    write_folder(str(path), store.chunks, codec, STATE_FILES["Adam"], localized=True)
    (path / "Adam.v").write_bytes((path / "Adam.v").read_bytes()[:-4])
    with pytest.raises(DataError, match="Adam.v.*rows of keys and this file are not consistent"):
        list(read_chunks(str(path), codec, "Adam", 0.0))
    os.unlink(path / "Adam.v")
    with pytest.raises(DataError, match=r"not \['Adam.v'\]"):
        list(read_chunks(str(path), codec, "Adam", 0.0))
    (path / "key").write_bytes(b"\0" * 13)
    with pytest.raises(DataError, match="not a whole number of int64 keys") as e:
        list(read_chunks(str(path), codec, "Adam", 0.0))
    assert e.value.offset == 8
    with pytest.raises(DataError, match="sparse model folder not found"):
        list(read_chunks(str(tmp_path / "none"), codec, "Adam", 0.0))
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_folder(str(tmp_path / "file"), store.chunks, codec, (), localized=False)
