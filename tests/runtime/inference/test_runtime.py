"""InferenceModel end to end on the cpu target: models trained with hgc, saved with save_params_to_files and
graph_to_json, then deployed; predictions must equal the trainer's evaluation-mode predictions on the same
samples, for every parameter-server configuration."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hgc
from hgc.config import config
from hgc.errors import DataError, NotBuiltError
from hgc.runtime.checkpoint import read_sparse_model, write_sparse_model
from tests.runtime.inference.deploy import (
    BATCH,
    EVAL_BATCHES,
    Deployed,
    params,
    parquet_data,
    predict,
    raw_data,
    rel,
    save,
)
from tests.runtime.tiny import SLOTS, Data, add_embeddings, add_wdl_dense, dlrm, make_data, train_steps, wdl

TOL = 1e-6


def _db(kind: str, **kw: object) -> hgc.inference.VolatileDatabaseParams:
    v = hgc.inference.VolatileDatabaseParams(**kw)
    v.type = kind
    return v


def _rocks(path: str, **kw: object) -> hgc.inference.PersistentDatabaseParams:
    pytest.importorskip("rocksdict", reason="the rocksdict package is missing (pip install 'hgc[hps]')")
    return hgc.inference.PersistentDatabaseParams(type="rocks_db", path=path, **kw)


BACKENDS = {
    "parallel_hash_map": lambda tmp, redis: {},
    "hash_map+cache": lambda tmp, redis: dict(volatile_db=_db("hash_map"), use_gpu_embedding_cache=True,
                                              cache_size_percentage=0.3, hit_rate_threshold=0.9),
    "redis+cache": lambda tmp, redis: dict(volatile_db=_db("redis_cluster", address=redis().address,
                                                           num_partitions=3, max_get_batch_size=7),
                                           use_gpu_embedding_cache=True, cache_size_percentage=0.5),
    "rocks_db only": lambda tmp, redis: dict(volatile_db=_db("disabled"), persistent_db=_rocks(tmp)),
    "partial hash_map+rocks_db": lambda tmp, redis: dict(
        volatile_db=_db("parallel_hash_map", num_partitions=2, initial_cache_rate=0.3,
                        cache_missed_embeddings=True, overflow_margin=6),
        persistent_db=_rocks(tmp, max_get_batch_size=5)),
    "partial redis+rocks_db+cache": lambda tmp, redis: dict(
        volatile_db=_db("redis_cluster", address=redis().address, initial_cache_rate=0.5, overflow_margin=8,
                        overflow_policy="evict_random"),
        persistent_db=_rocks(tmp), use_gpu_embedding_cache=True, cache_size_percentage=0.2,
        hit_rate_threshold=1.0),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_predict_equals_the_trainer_for_every_backend(tiny_wdl, tmp_path, request, backend):
    kw = BACKENDS[backend](str(tmp_path / "rocks"), lambda: request.getfixturevalue("redis"))
    got = predict(tiny_wdl, params(tiny_wdl, **kw))
    assert got.dtype == np.float32 and got.shape == (BATCH * EVAL_BATCHES, 1)
    assert rel(got, tiny_wdl.preds) < TOL
    baseline = predict(tiny_wdl, params(tiny_wdl))
    assert np.array_equal(got, baseline)  # the tiers change where rows come from, never their values


def test_predict_loops_over_the_dataset_and_evaluate_is_the_trainers_auc(tiny_wdl):
    model = hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl))
    out = model.predict(EVAL_BATCHES, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    n = 300  # samples in the evaluation file: rows n.. repeat rows 0..
    assert np.array_equal(out[n:], out[:BATCH * EVAL_BATCHES - n])
    short = model.predict(2, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert np.array_equal(short, out[:2 * BATCH])  # every call starts at the beginning
    auc = model.evaluate(EVAL_BATCHES, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert abs(auc - tiny_wdl.auc) < 1e-12 and 0.5 < auc < 1.0
    last = model.check_out_tensor("add")  # the logits of the last batch
    assert last.shape == (BATCH, 1)
    assert rel(1.0 / (1.0 + np.exp(-last.astype(np.float64))), tiny_wdl.preds[-BATCH:]) < TOL


def test_exported_predictions_agree(tiny_wdl):
    exported = np.loadtxt(tiny_wdl.exported).reshape(-1, 1)
    got = predict(tiny_wdl, params(tiny_wdl))
    assert exported.shape == got.shape and rel(got, exported) < 1e-5  # the export writes 6 significant digits


def test_mixed_precision_goes_through_the_compile_path(tiny_wdl):
    model = hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, use_mixed_precision=True))
    assert model._rt.compiled.plans["precision"].compute_dtype == "float16"
    out = model.predict(2, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert rel(out, tiny_wdl.preds[:2 * BATCH]) < TOL  # the cpu target computes in float32 regardless


def test_default_vector_for_keys_the_server_lacks(tiny_wdl, tmp_path):
    empty = []
    for i, path in enumerate(tiny_wdl.sparse):
        keys, vectors, slots = read_sparse_model(path, 1 if i == 0 else 4)
        target = str(tmp_path / f"empty{i}")
        write_sparse_model(target, keys[:0], vectors[:0], None if slots is None else slots[:0])
        empty.append(target)
    model = hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, sparse_model_files=empty,
                                                                default_value_for_each_table=[0.5, -0.25]))
    model.predict(1, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert (model.check_out_tensor("e_wide") == 1.0).all()  # sum over the wide slot's two keys of 0.5
    assert (model.check_out_tensor("e_deep") == -0.25).all()  # mean of one key per slot


def test_missing_keys_match_a_trainer_that_never_saw_them(tiny_wdl, tmp_path):
    """Half of each table removed: the trainer evaluating with those tables maps the lost keys to zero
    vectors, as the parameter server's default (0) does."""
    half = []
    for i, path in enumerate(tiny_wdl.sparse):
        keys, vectors, slots = read_sparse_model(path, 1 if i == 0 else 4)
        keep = np.arange(keys.shape[0]) % 2 == 0
        target = str(tmp_path / f"half{i}")
        write_sparse_model(target, keys[keep], vectors[keep], None if slots is None else slots[keep])
        half.append(target)
    got = predict(tiny_wdl, params(tiny_wdl, sparse_model_files=half), batches=3)
    with config.patch(target="cpu"):
        data = Data(tiny_wdl.source, tiny_wdl.source, "")
        fresh = wdl(data, model_name="tiny_wdl", max_eval_batches=3)
        fresh.load_dense_weights(tiny_wdl.dense)
        fresh.load_sparse_weights(half)
        ref = save(fresh, str(tmp_path), "fresh", tiny_wdl.source, hgc.DataReaderType_t.Norm, batches=3).preds
    assert rel(got, ref) < TOL and rel(got, tiny_wdl.preds[:3 * BATCH]) > 1e-3


# -- other models and data formats ---------------------------------------------------------------
def _deploy_dlrm(folder: str) -> Deployed:
    data = make_data(os.path.join(folder, "data"), seed=3)
    m = dlrm(data, model_name="tiny_dlrm", max_eval_batches=EVAL_BATCHES)
    train_steps(m, 15)
    return save(m, folder, "tiny_dlrm", data.test, hgc.DataReaderType_t.Norm)


def _deploy_i64(folder: str) -> Deployed:
    from hgc.tools import DataGenerator, DataGeneratorParams
    from tests.runtime.tiny import DENSE, NNZ

    train, test = os.path.join(folder, "file_list.txt"), os.path.join(folder, "file_list_test.txt")
    DataGenerator(DataGeneratorParams(
        format=hgc.DataReaderType_t.Norm, label_dim=1, dense_dim=DENSE, num_slot=len(SLOTS), i64_input_key=True,
        source=train, eval_source=test, slot_size_array=list(SLOTS), nnz_array=list(NNZ), num_files=2,
        eval_num_files=1, num_samples_per_file=300, learnable=True, seed=9)).generate()
    m = wdl(Data(train, test, folder), model_name="tiny_i64", max_eval_batches=EVAL_BATCHES, i64_input_key=True)
    train_steps(m, 15)
    return save(m, folder, "tiny_i64", test, hgc.DataReaderType_t.Norm, i64=True)


def _deploy_parquet(folder: str) -> Deployed:
    data = parquet_data(os.path.join(folder, "data"))
    solver = hgc.CreateSolver(model_name="tiny_parquet", max_eval_batches=EVAL_BATCHES, batchsize_eval=BATCH,
                              batchsize=BATCH, lr=0.01, vvgpu=[[0]], repeat_dataset=True, seed=1)
    reader = hgc.DataReaderParams(data_reader_type=hgc.DataReaderType_t.Parquet, source=[data.train],
                                  eval_source=data.test, check_type=hgc.Check_t.Non, num_workers=1,
                                  slot_size_array=list(SLOTS))
    m = hgc.Model(solver, reader, hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.Adam))
    m.add(hgc.Input(label_dim=1, label_name="label", dense_dim=3, dense_name="dense",
                    data_reader_sparse_param_array=[hgc.DataReaderSparseParam("wide", 1, True, 1),
                                                    hgc.DataReaderSparseParam("deep", 1, True, 2)]))
    add_embeddings(m)
    add_wdl_dense(m)
    m.compile()
    train_steps(m, 15)
    return save(m, folder, "tiny_parquet", data.test, hgc.DataReaderType_t.Parquet, slot_size_array=list(SLOTS))


def _deploy_one_hot_raw(folder: str) -> Deployed:
    from tests.runtime.embedding.test_embedding_types import one_hot_model

    train, test = raw_data(folder)
    m = one_hot_model((train, test), "LocalizedSlotSparseEmbeddingOneHot")
    train_steps(m, 15)
    return save(m, folder, "", test, hgc.DataReaderType_t.Raw, batches=8, slot_size_array=list(SLOTS))


@pytest.fixture(scope="module", params=["dlrm", "i64", "parquet", "one_hot_raw"])
def variant(request, tmp_path_factory) -> Deployed:
    make = {"dlrm": _deploy_dlrm, "i64": _deploy_i64, "parquet": _deploy_parquet,
            "one_hot_raw": _deploy_one_hot_raw}[request.param]
    with config.patch(target="cpu"):
        return make(str(tmp_path_factory.mktemp(request.param)))


def test_other_models_and_formats(variant, tmp_path):
    batches = variant.preds.shape[0] // BATCH if variant.fmt is not hgc.DataReaderType_t.Raw else None
    name = variant.name or "m"
    p = params(variant, model_name=name, volatile_db=_db("hash_map"), persistent_db=_rocks(str(tmp_path / "r")),
               use_gpu_embedding_cache=True, cache_size_percentage=0.5)
    model = hgc.inference.InferenceModel(variant.graph, p)
    check = hgc.Check_t.Sum if variant.fmt is hgc.DataReaderType_t.Norm else hgc.Check_t.Non
    if batches is None:  # Raw: 200 samples end in a short batch (8 rows), which the trainer returns alone
        rows = variant.preds.shape[0]
        got = model.predict(-(-rows // BATCH), variant.source, variant.fmt, check,
                            slot_size_array=variant.slot_size_array)[:rows]
    else:
        got = model.predict(batches, variant.source, variant.fmt, check,
                            slot_size_array=variant.slot_size_array or None)
    assert rel(got, variant.preds) < TOL


# -- bad inputs ------------------------------------------------------------------------------------
def test_wrong_model_name(tiny_wdl):
    with pytest.raises(ValueError, match=r"'model_name' = 'other' is not allowed: must be the model_name the graph "
                                         r"was saved with \('tiny_wdl' in .*tiny_wdl.json\)"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, model_name="other"))


def test_several_devices_are_not_built_yet(tiny_wdl):
    with pytest.raises(NotBuiltError, match=r"multi-GPU inference .*deployed_devices = \[0, 1\]"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, deployed_devices=[0, 1]))
    with pytest.raises(ValueError, match=r"'max_batchsize' = 33 .* divisible by the number of deployed devices \(2\)"):
        params(tiny_wdl, deployed_devices=[0, 1], max_batchsize=33)


def test_kafka_and_shared_memory_are_not_built_yet(tiny_wdl):
    u = hgc.UpdateSourceParams(type="kafka_message_queue", brokers="k1:9092")
    with pytest.raises(NotBuiltError, match="Apache Kafka .*k1:9092"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, update_source=u))
    with pytest.raises(NotBuiltError, match="multi_process_hash_map"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, volatile_db=_db("multi_process_hash_map")))


def test_bad_files(tiny_wdl, tmp_path):
    short = tmp_path / "short.model"
    with open(tiny_wdl.dense, "rb") as f:
        short.write_bytes(f.read()[:-4])
    with pytest.raises(DataError, match=r"short.model: dense model file holds \d+ bytes, but the network's"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, dense_model_file=str(short)))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_wdl.sparse[1], broken)
    os.remove(broken / "emb_vector")
    with pytest.raises(DataError, match="broken/emb_vector: file not found"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, sparse_model_files=[tiny_wdl.sparse[0],
                                                                                          str(broken)]))
    with pytest.raises(ValueError, match="'sparse_model_files' = .*none.* no such file or directory"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, sparse_model_files=[tiny_wdl.sparse[0],
                                                                                          str(tmp_path / "none")]))
    with pytest.raises(ValueError, match="'non_trainable_params_file' = .*nt.json.* no such file"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, non_trainable_params_file=str(tmp_path / "nt.json")))
    with pytest.raises(ValueError, match="'default_value_for_each_table' .* one value per embedding table \\(2\\)"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, default_value_for_each_table=[1, 2, 3]))
    with pytest.raises(ValueError, match="'volatile_db'/'persistent_db' = disabled/disabled"):
        hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl, volatile_db=_db("disabled")))


def test_check_out_tensor_errors(tiny_wdl):
    from hgc.errors import TrainingError

    model = hgc.inference.InferenceModel(tiny_wdl.graph, params(tiny_wdl))
    with pytest.raises(TrainingError, match="no batch has been run yet"):
        model.check_out_tensor("add")
    model.predict(1, tiny_wdl.source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    with pytest.raises(TrainingError, match="'wide' is a sparse input"):
        model.check_out_tensor("wide")
