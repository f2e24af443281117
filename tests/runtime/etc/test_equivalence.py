"""Training through the embedding training cache equals training without it (same seed, same batches): the
same dense weights and the same embedding vector for every key, bit for bit.

* Tables that hold every key (no eviction): any optimizer, Global updates included, Staged and Cached PS
  (the Cached-PS evicting its host blocks), keysets in first-seen or sorted order, one keyset for both tables
  or one per table, one or two epochs.
* Training tables smaller than the model (rebuilt between passes): updates that touch only the rows of the
  batch (Local, LazyGlobal Adam, SGD, AdaGrad) stay exact.
* The cuda code path, on the fake device of tests/runtime/fake_cuda.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import hgc
from tests.runtime.etc._util import (
    WIDE_BASE,
    deep_model,
    dense_weights,
    make_passes,
    ps_by_key,
    session,
    table_by_key,
    train_plain,
    wdl_model,
)

STAGED, CACHED = hgc.TrainPSType_t.Staged, hgc.TrainPSType_t.Cached


def etc_params(tmp_path, kinds, blocks: int = 1, rate: float = 1.0, evict: int = 10):
    hc = tmp_path / "hc.json"
    hc.write_text(json.dumps({"num_blocks": blocks, "target_hit_rate": rate, "max_num_evict": evict}))
    cached = CACHED in kinds
    return hgc.CreateETC(ps_types=list(kinds), sparse_models=[str(tmp_path / f"sparse{i}") for i in range(len(kinds))],
                         local_paths=[str(tmp_path)] if cached else None, hcache_configs=[str(hc)] if cached else None)


def assert_same(m, ref, names) -> None:
    for a, b in zip(dense_weights(m), dense_weights(ref), strict=True):
        assert np.array_equal(a, b)
    for i, name in enumerate(names):
        k1, v1 = ps_by_key(m, i)
        k2, v2 = table_by_key(ref, name)
        assert np.array_equal(k1, k2) and np.array_equal(v1, v2)


@pytest.mark.parametrize("kinds,sorted_keysets", [((STAGED, STAGED), False), ((CACHED, CACHED), False),
                                                   ((STAGED, CACHED), True)])
def test_fit_equals_plain_training_when_tables_hold_everything(tmp_path, kinds, sorted_keysets):
    passes = make_passes(str(tmp_path), sorted_keysets=sorted_keysets)
    ref = wdl_model(passes)
    train_plain(ref, passes.lists)
    m = wdl_model(passes, etc_params(tmp_path, kinds), passes.keysets)
    m.fit(num_epochs=1, display=1000, eval_interval=1000)
    assert_same(m, ref, ["e_wide", "e_deep"])
    stats = session(m).etc.stats()
    assert all(s["evictions"] == 0 and s["rows"] > 150 for s in stats.values())
    wide_keys, deep_keys = ps_by_key(m, 0)[0], ps_by_key(m, 1)[0]
    assert (wide_keys >= WIDE_BASE).all() and (deep_keys < WIDE_BASE).all()  # a shared keyset loads no foreign keys


def test_two_epochs_and_a_momentum_optimizer(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 80))
    opt = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.MomentumSGD, momentum_factor=0.9)
    ref = wdl_model(passes, opt=opt)
    train_plain(ref, passes.lists, epochs=2)
    m = wdl_model(passes, etc_params(tmp_path, (STAGED, STAGED)), passes.keysets, opt=opt)
    m.fit(num_epochs=2, display=1000, eval_interval=1000)
    assert_same(m, ref, ["e_wide", "e_deep"])


def test_low_level_loop_with_one_keyset_per_table(tmp_path):
    passes = make_passes(str(tmp_path))
    ref = wdl_model(passes)
    train_plain(ref, passes.lists)
    m = wdl_model(passes, etc_params(tmp_path, (CACHED, STAGED), blocks=2, rate=0.5, evict=1), passes.keysets)
    cache = m.get_embedding_training_cache()
    sched, reader = m.get_learning_rate_scheduler(), m.get_data_reader_train()
    for source, wide, deep in zip(passes.lists, passes.wide_keysets, passes.deep_keysets):
        reader.set_source(source)
        cache.update([wide, deep])
        while True:
            m.set_learning_rate(sched.get_next())
            if not m.train():
                break
    assert_same(m, ref, ["e_wide", "e_deep"])


EVICTING = (0, 200, 400, 0, 200)  # windows of 200 keys: a 341-row table is rebuilt twice


@pytest.mark.parametrize("opt_type,update,kind,vec", [  # vec: 1 MB holds 341 rows, 3 MB 1023
    (hgc.Optimizer_t.Adam, hgc.Update_t.Local, STAGED, 256),
    (hgc.Optimizer_t.Adam, hgc.Update_t.LazyGlobal, CACHED, 256),
    (hgc.Optimizer_t.AdaGrad, hgc.Update_t.Global, STAGED, 384),
    (hgc.Optimizer_t.SGD, hgc.Update_t.Local, CACHED, 768),
])
def test_evicting_training_table_stays_exact(tmp_path, opt_type, update, kind, vec):
    passes = make_passes(str(tmp_path), windows=EVICTING, width=200)
    opt = hgc.CreateOptimizer(optimizer_type=opt_type, update_type=update, initial_accu_value=0.1)
    ref = deep_model(passes, 3, opt=opt, vec=vec)  # every key
    train_plain(ref, passes.lists)
    m = deep_model(passes, 1, etc_params(tmp_path, (kind,)), passes.deep_keysets, opt=opt, vec=vec)
    m.fit(num_epochs=1, display=1000, eval_interval=1000)
    assert session(m).trainer.tables["e_deep"].capacity < len(table_by_key(ref, "e_deep")[0])
    stats = session(m).etc.stats()["e_deep"]
    assert stats["evictions"] == 2
    if kind is CACHED:  # one host block: the reloads evicted it
        assert stats["cache_evictions"] >= 1 and len(stats["hit_rates"]) >= 2
    assert_same(m, ref, ["e_deep"])


def test_one_hot_table(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 100, 0))
    ref = deep_model(passes, 1, vec=4, one_hot_slots=(250, 250))
    train_plain(ref, passes.lists)
    m = deep_model(passes, 1, etc_params(tmp_path, (STAGED,)), passes.deep_keysets, vec=4,
                   one_hot_slots=(250, 250))
    m.fit(num_epochs=1, display=1000, eval_interval=1000)
    assert_same(m, ref, ["e_deep"])
    assert len(ps_by_key(m, 0)[0]) == 500  # every category of the one-hot table


def test_cuda_code_path_on_the_fake_device(tmp_path, monkeypatch):
    from tests.runtime.fake_cuda import FakeTable, dev, fake_cuda

    passes = make_passes(str(tmp_path), windows=EVICTING, width=200)
    opt = hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam, update_type=hgc.Update_t.LazyGlobal)
    ref = deep_model(passes, 3, opt=opt)
    train_plain(ref, passes.lists)
    monkeypatch.setattr(FakeTable, "clear", lambda self: self.host.hash.clear(), raising=False)
    monkeypatch.setattr(FakeTable, "prev_time", property(lambda self: dev(self.opt.prev_time)), raising=False)
    monkeypatch.setattr(FakeTable, "slot_sizes", property(lambda self: self.host.slot_sizes), raising=False)
    with fake_cuda(monkeypatch):
        m = deep_model(passes, 1, etc_params(tmp_path, (CACHED,)), passes.deep_keysets, opt=opt)
        m.fit(num_epochs=1, display=1000, eval_interval=1000)
        assert session(m).trainer.device and session(m).etc.stats()["e_deep"]["evictions"] == 2
        assert_same(m, ref, ["e_deep"])
