"""The embedding training cache through the public API: CreateETC → Model(..., etc=...) → fit() over
(file list, keyset) passes, Model.set_source(source, keyset, eval_source), get_embedding_training_cache()
(update / dump / get_incremental_model), Model.get_incremental_model(), save_params_to_files(), the argument
rules, compile-only, and the 2.3 Session's model prefetcher."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import numpy as np
import pytest

import hgc
from hgc.config import config
from hgc.runtime import checkpoint as ck
from tests.runtime.etc._util import (
    BATCH,
    dense_weights,
    make_passes,
    session,
    table_by_key,
    train_plain,
    wdl_model,
)

STAGED, CACHED = hgc.TrainPSType_t.Staged, hgc.TrainPSType_t.Cached


@pytest.fixture(autouse=True)
def _cpu() -> Iterator[None]:
    with config.patch(target="cpu"):
        yield


def etc(tmp_path, kinds=(STAGED, STAGED)):
    hc = tmp_path / "hc.json"
    hc.write_text(json.dumps({"num_blocks": 2, "target_hit_rate": 0.8, "max_num_evict": 3}))
    cached = CACHED in kinds
    return hgc.CreateETC(ps_types=list(kinds), sparse_models=[str(tmp_path / f"wdl{i}_sparse") for i in range(2)],
                         local_paths=[str(tmp_path)] if cached else None, hcache_configs=[str(hc)] if cached else None)


def test_continuous_training_flow(tmp_path, capsys):
    passes = make_passes(str(tmp_path))
    m = wdl_model(passes, etc(tmp_path, (CACHED, STAGED)), passes.keysets[:2])  # sources: passes 0 and 1
    m.fit(num_epochs=1, display=1000, eval_interval=3)
    out = capsys.readouterr().out
    assert len(re.findall(r"ETC: embedding 'e_deep': pass .*file_list\.[01]\.keyset", out)) == 2
    assert re.search(r"Evaluation, AUC: [\d.]+", out)  # evaluation runs between passes' batches
    updated = m.get_incremental_model()
    assert [len(u) for u in updated] == [2, 2]
    (wk, wv), (dk, dv) = updated
    assert wv.shape == (len(wk), 1) and dv.shape == (len(dk), 4) and wk.dtype == np.int64
    assert np.array_equal(table_by_key(m, "e_deep")[0], dk)  # everything is new after the first fit
    m.set_source(source=passes.lists[2:], keyset=passes.keysets[2:], eval_source=passes.eval_list)
    m.fit(num_epochs=1, display=1000, eval_interval=1000)
    out = capsys.readouterr().out
    assert re.findall(r"pass .*file_list\.(\d)\.keyset", out)[::2] == ["2", "3"]
    assert session(m).trainer.iteration == 12
    m.save_params_to_files(str(tmp_path / "wdl"))
    assert os.path.exists(tmp_path / "wdl_dense_0.model") and not os.path.exists(tmp_path / "wdl0_sparse_0.model")
    keys, vectors, slots = ck.read_sparse_model(str(tmp_path / "wdl1_sparse"), 4)
    k, v = table_by_key(m, "e_deep")
    order = np.argsort(keys)
    assert slots is not None and np.array_equal(keys[order], k) and np.array_equal(vectors[order], v)


def test_low_level_cache_object_equals_plain_training(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 50, 100))
    ref = wdl_model(passes)
    train_plain(ref, passes.lists)
    m = wdl_model(passes, etc(tmp_path), passes.keysets)
    cache = m.get_embedding_training_cache()
    assert isinstance(cache, hgc.EmbeddingTrainingCache)
    sched, reader = m.get_learning_rate_scheduler(), m.get_data_reader_train()
    for file_list, keyset in zip(passes.lists, passes.keysets):
        reader.set_source(file_list)
        cache.update(keyset)
        while True:
            m.set_learning_rate(sched.get_next())
            if not m.train():
                break
    for a, b in zip(dense_weights(m), dense_weights(ref)):
        assert np.array_equal(a, b)
    got = cache.get_incremental_model()
    for (keys, vectors), name in zip(got, ["e_wide", "e_deep"]):
        k, v = table_by_key(ref, name)
        assert np.array_equal(keys, k) and np.array_equal(vectors, v)
    cache.dump()
    assert sorted(os.listdir(tmp_path / "wdl0_sparse")) == ["Adam.m", "Adam.v", "emb_vector", "key"]


def test_argument_rules(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0,))
    solver = hgc.CreateSolver(batchsize=BATCH, batchsize_eval=BATCH, vvgpu=[[0]], repeat_dataset=True)
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source=passes.lists,
                                  keyset=passes.keysets, eval_source=passes.eval_list, check_type=hgc.Check_t.Sum)
    m = hgc.Model(solver, reader, hgc.CreateOptimizer(), etc=etc(tmp_path))
    from tests.runtime.tiny import add_embeddings, add_input, add_wdl_dense

    add_input(m)
    add_embeddings(m)
    add_wdl_dense(m)
    m.compile()
    with pytest.raises(ValueError, match="'solver.repeat_dataset' = True .* epoch mode"):
        m.fit(max_iter=10)
    no_keysets = wdl_model(passes, etc(tmp_path), [])
    with pytest.raises(ValueError, match="needs one keyset file per source"):
        no_keysets.fit(num_epochs=1)
    with pytest.raises(ValueError, match="give lists"):
        no_keysets.set_source(passes.lists[0], passes.eval_list)
    with pytest.raises(ValueError, match="'keyset_file'"):
        no_keysets.get_embedding_training_cache().update([])


def test_compile_only_runs_the_etc_script():
    solver = hgc.CreateSolver(batchsize=BATCH, batchsize_eval=BATCH, vvgpu=[[0]], repeat_dataset=False)
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Norm, source=["a.txt", "b.txt"],
                                  keyset=["a.keyset", "b.keyset"], eval_source="e.txt", check_type=hgc.Check_t.Sum)
    from hgc.frontend import model as model_module
    from tests.runtime.tiny import add_embeddings, add_input, add_wdl_dense

    n = len(model_module.COMPILED_MODELS)
    with config.patch(compile_only=True):
        m = hgc.Model(solver, reader, hgc.CreateOptimizer(),
                      etc=hgc.CreateETC(ps_types=[STAGED] * 2, sparse_models=["s0", "s1"]))
        add_input(m)
        add_embeddings(m)
        add_wdl_dense(m)
        m.compile()
        m.fit(num_epochs=1)
        cache = m.get_embedding_training_cache()
        cache.update("a.keyset")
        cache.dump()
        assert cache.get_incremental_model() == [] and m.get_incremental_model() == []
    del model_module.COMPILED_MODELS[n:]


def session_config(passes) -> dict:
    from tests.frontend.test_session_runtime import config as wdl_config

    class Data:
        train, test = passes.lists[0], passes.eval_list

    return wdl_config(Data)


def test_2_3_model_prefetcher(tmp_path):
    passes = make_passes(str(tmp_path), windows=(0, 60, 0))
    cfg = tmp_path / "wdl.json"
    cfg.write_text(json.dumps(session_config(passes)))
    solver = hgc.solver_parser_helper(seed=4, batchsize=BATCH, batchsize_eval=BATCH, repeat_dataset=False)

    def run(prefetching: bool, prefix: str) -> None:
        sess = hgc.Session(solver, str(cfg), prefetching, str(tmp_path))
        lr = hgc.get_learning_rate_scheduler(str(cfg))
        train_reader = sess.get_data_reader_train()
        prefetcher = sess.get_model_oversubscriber() if prefetching else None
        steps = 0
        for file_list, keyset in zip(passes.lists, passes.keysets):
            train_reader.set_file_list_source(file_list)
            if prefetcher is not None:
                prefetcher.update(keyset)
            while True:
                sess.set_learning_rate(lr.get_next())
                if not sess.train():
                    break
                steps += 1
        sess.download_params_to_files(prefix, steps)

    run(False, str(tmp_path / "plain"))
    run(True, str(tmp_path / "prefetch"))
    for name in ("_dense_9.model", "_opt_dense_9.model"):
        assert (tmp_path / f"plain{name}").read_bytes() == (tmp_path / f"prefetch{name}").read_bytes()
    for i, vec in ((0, 1), (1, 4)):
        k1, v1, _ = ck.read_sparse_model(str(tmp_path / f"plain{i}_sparse_9.model"), vec)
        k2, v2, _ = ck.read_sparse_model(str(tmp_path / f"prefetch{i}_sparse_9.model"), vec)
        o1, o2 = np.argsort(k1), np.argsort(k2)
        assert np.array_equal(k1[o1], k2[o2]) and np.array_equal(v1[o1], v2[o2])
    assert not os.path.exists(tmp_path / "prefetch0_opt_sparse_9.model")  # the cache saves no sparse states
