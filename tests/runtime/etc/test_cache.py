"""The pass flow of the embedding training cache on the cpu target: write back, load, rebuild, initial values
of new keys, keyset errors, the incremental model, dump() and save_params_to_files() with the cache, and
training on from an existing sparse model."""
from __future__ import annotations

import os

import numpy as np
import pytest

import hgc
from hgc.errors import DataError, TrainingError
from hgc.runtime import checkpoint as ck
from hgc.runtime.etc.init_stream import InitStream
from hgc.runtime.etc.keyset import write_keyset
from tests.runtime.etc._util import (
    Passes,
    deep_model,
    make_passes,
    session,
    table_by_key,
    train_plain,
    wdl_model,
)

STAGED, CACHED = hgc.TrainPSType_t.Staged, hgc.TrainPSType_t.Cached


def staged(tmp_path, n: int = 1, kind=STAGED):
    hc = tmp_path / "hc.json"
    hc.write_text('{"num_blocks": 2, "target_hit_rate": 0.9, "max_num_evict": 4}')
    return hgc.CreateETC(ps_types=[kind] * n, sparse_models=[str(tmp_path / f"sparse{i}") for i in range(n)],
                         local_paths=[str(tmp_path)] if kind is CACHED else None,
                         hcache_configs=[str(hc)] if kind is CACHED else None)


def run_pass(m: hgc.Model, source: str, keysets: list[str] | None) -> None:
    """The low-level loop of one pass (``keysets`` None: train on what the tables hold)."""
    if keysets is not None:
        m.get_embedding_training_cache().update(keysets)
    m.get_data_reader_train().set_source(source)
    sched = m.get_learning_rate_scheduler()
    while True:
        m.set_learning_rate(sched.get_next())
        if not m.train():
            break


@pytest.fixture()
def evicting(tmp_path) -> Passes:
    return make_passes(str(tmp_path), windows=(0, 200, 400, 0), width=200)


@pytest.mark.parametrize("kind", [STAGED, CACHED])
def test_write_back_load_and_rebuild(tmp_path, evicting, kind):
    m = deep_model(evicting, 1, staged(tmp_path, kind=kind), evicting.deep_keysets)
    s = session(m)
    table, opt, tc = s.trainer.tables["e_deep"], s.trainer.sparse_opts["e_deep"], s.etc.tables[0]
    run_pass(m, evicting.lists[0], [evicting.deep_keysets[0]])
    assert len(tc.ps) == 0 and table.size > 100  # nothing written back before the next pass
    pass0 = tc.ops.snapshot()
    run_pass(m, evicting.lists[1], [evicting.deep_keysets[1]])
    found, records = tc.ps.get(pass0.keys)  # pass 0's rows and Adam states reached the PS
    back = tc.codec.unpack(pass0.keys, records)
    assert found.all() and np.array_equal(back.vectors, pass0.vectors)
    assert np.array_equal(back.states[0], pass0.states[0]) and np.array_equal(back.states[1], pass0.states[1])
    assert tc.evictions == 0 and table.size > len(pass0)  # pass 1 fit next to pass 0
    written = tc.ops.snapshot()  # passes 0 and 1 are in the table; pass 2 does not fit next to them
    run_pass(m, evicting.lists[2], [evicting.deep_keysets[2]])
    assert tc.evictions == 1
    pass3 = np.fromfile(evicting.deep_keysets[3], np.uint32).astype(np.int64)
    known = tc.ps.contains(pass3)
    m.get_embedding_training_cache().update([evicting.deep_keysets[3]])  # pass 0's keys come back from the PS
    rows = table.hash.get_mark(pass3)
    assert known.sum() > 50 and (rows[known] >= 0).all() and (rows[~known] < 0).all()  # new keys: at first sight
    rows = rows[known]
    at = {int(k): i for i, k in enumerate(written.keys)}
    idx = np.array([at[int(k)] for k in pass3[known]])
    assert np.array_equal(table.rows[rows], written.vectors[idx])
    assert np.array_equal(opt.states()[1][rows], written.states[1][idx])
    if kind is CACHED:
        assert tc.ps.hit_rates and len(tc.ps.blocks) >= 1


def test_new_keys_start_where_a_big_table_would_start_them(tmp_path, evicting):
    m = deep_model(evicting, 1, staged(tmp_path), evicting.deep_keysets)
    s = session(m)
    for p in range(3):
        run_pass(m, evicting.lists[p], [evicting.deep_keysets[p]])
    m.get_embedding_training_cache().update([evicting.deep_keysets[3]])
    tc, table = s.etc.tables[0], s.trainer.tables["e_deep"]
    created = len(tc.ps)  # every key so far was new once
    stream = InitStream.of_table(s.trainer.seed, 0, 256, table.capacity)
    assert tc.evictions >= 1 and tc.shift == created - table.size
    assert np.array_equal(table.rows[table.size:table.size + 3], stream.rows(created, created + 3))


def test_a_pass_larger_than_its_table_fails_before_training(tmp_path, evicting):
    m = deep_model(evicting, 1, staged(tmp_path), evicting.deep_keysets)
    big = str(tmp_path / "big.keyset")
    write_keyset(big, np.arange(5000, 5400), "uint32")
    with pytest.raises(TrainingError, match=r"'e_deep': the pass of keyset .*big.keyset needs 400 rows "
                                            r"\(0 stored, 400 new\) but its training table holds 341"):
        m.get_embedding_training_cache().update(big)


def test_keyset_errors(tmp_path, evicting):
    m = deep_model(evicting, 1, staged(tmp_path), evicting.deep_keysets)
    cache = m.get_embedding_training_cache()
    bad = tmp_path / "bad.keyset"
    bad.write_bytes(b"\1\0\0\0\2\0")
    with pytest.raises(DataError, match=r"bad.keyset \(byte offset 4\): keyset file holds 6 bytes"):
        cache.update(str(bad))
    with pytest.raises(ValueError, match="keyset_file_list has 2 files; give one keyset file for all 1"):
        cache.update([evicting.deep_keysets[0]] * 2)
    with pytest.raises(ValueError, match="'keyset_file' = .*no such file"):
        cache.update(str(tmp_path / "missing.keyset"))


def test_incremental_model(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 60))
    local = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam, update_type=hgc.Update_t.Local)
    m = wdl_model(passes, staged(tmp_path, 2), passes.keysets, opt=local)
    run_pass(m, passes.lists[0], [passes.keysets[0]])
    first = m.get_incremental_model()
    assert len(first) == 2
    for (keys, vectors), name in zip(first, ["e_wide", "e_deep"]):
        k, v = table_by_key(m, name)
        assert keys.dtype == np.int64 and vectors.dtype == np.float32 and vectors.shape == (len(k), v.shape[1])
        assert np.array_equal(keys, k) and np.array_equal(vectors, v)  # every row is new
    assert all(len(k) == 0 for k, _ in m.get_incremental_model())  # nothing since
    before = {}
    for name in ["e_wide", "e_deep"]:
        k, v = table_by_key(m, name)
        before[name] = dict(zip(k.tolist(), v))
    run_pass(m, passes.lists[1], [passes.keysets[1]])
    second = m.get_embedding_training_cache().get_incremental_model()
    for (keys, vectors), name in zip(second, ["e_wide", "e_deep"]):
        k, v = table_by_key(m, name)
        changed = [i for i, key in enumerate(k.tolist())
                   if key not in before[name] or not np.array_equal(before[name][key], v[i])]
        assert np.array_equal(keys, k[changed]) and np.array_equal(vectors, v[changed])
        assert 0 < len(keys) < len(k)  # Local updates: rows pass 1 did not touch stay as they were


def test_dump_layout_equals_save_params_to_files(tmp_path):
    passes = make_passes(str(tmp_path))
    ref = wdl_model(passes)
    train_plain(ref, passes.lists)
    ref.save_params_to_files(str(tmp_path / "ref"), 11)
    m = wdl_model(passes, staged(tmp_path, 2), passes.keysets)
    m.fit(num_epochs=1, display=1000, eval_interval=1000)
    m.get_embedding_training_cache().dump()
    for i in range(2):
        etc_dir, ref_dir = str(tmp_path / f"sparse{i}"), str(tmp_path / f"ref{i}_sparse_11.model")
        plain = {"key", "emb_vector"} | ({"slot_id"} if i == 1 else set())
        assert set(os.listdir(ref_dir)) == plain and set(os.listdir(etc_dir)) == plain | {"Adam.m", "Adam.v"}
        k1, v1, s1 = ck.read_sparse_model(etc_dir, [1, 4][i])
        k2, v2, s2 = ck.read_sparse_model(ref_dir, [1, 4][i])
        o1, o2 = np.argsort(k1), np.argsort(k2)
        assert np.array_equal(k1[o1], k2[o2]) and np.array_equal(v1[o1], v2[o2])
        if i == 1:
            assert np.array_equal(s1[o1], s2[o2])


def test_save_params_to_files_with_the_cache(tmp_path):
    passes = make_passes(str(tmp_path))
    ref = wdl_model(passes)
    train_plain(ref, passes.lists)
    ref.save_params_to_files(str(tmp_path / "ref"), 3)
    m = wdl_model(passes, staged(tmp_path, 2), passes.keysets)
    m.fit(num_epochs=1, display=1000, eval_interval=1000, snapshot=2, snapshot_prefix=str(tmp_path / "snap"))
    assert not [f for f in os.listdir(tmp_path) if f.startswith("snap")]  # fit takes no snapshots with the cache
    m.save_params_to_files(str(tmp_path / "etc"), 3)
    names = sorted(f for f in os.listdir(tmp_path) if f.startswith("etc"))
    assert names == ["etc_dense_3.model", "etc_opt_dense_3.model"]  # no sparse files under the prefix
    for f in ("_dense_3.model", "_opt_dense_3.model"):
        assert (tmp_path / f"etc{f}").read_bytes() == (tmp_path / f"ref{f}").read_bytes()
    assert os.path.isdir(tmp_path / "sparse0") and os.path.isdir(tmp_path / "sparse1")  # updated in place


def test_training_on_from_an_existing_sparse_model(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 60, 30))
    a = wdl_model(passes, staged(tmp_path, 2), passes.keysets)
    run_pass(a, passes.lists[0], [passes.keysets[0]])
    run_pass(a, passes.lists[1], [passes.keysets[1]])
    a.get_embedding_training_cache().dump()
    b = wdl_model(passes, staged(tmp_path, 2), passes.keysets)  # the same folders: incremental training
    sb = session(b)
    assert [len(tc.ps) for tc in sb.etc.tables] == [len(tc.ps) for tc in session(a).etc.tables]
    assert sb.trainer.tables["e_deep"].size == 0  # nothing is loaded before a pass asks for it
    b.get_embedding_training_cache().update(passes.keysets[2])
    for tc_a, tc_b in zip(session(a).etc.tables, sb.etc.tables):
        snap = tc_b.ops.snapshot()
        found, records = tc_a.ps.get(snap.keys)
        want = tc_a.codec.unpack(snap.keys, records)
        assert found.all() and len(snap) > 0
        assert np.array_equal(snap.vectors, want.vectors) and np.array_equal(snap.states[1], want.states[1])
        assert np.array_equal(snap.slot_ids, want.slot_ids)
    run_pass(b, passes.lists[2], None)
    assert np.isfinite(b.get_current_loss())
