import os

import numpy as np
import pytest

import hgc
from hgc.inference import (
    InferenceModel,
    InferenceParams,
    PersistentDatabaseParams,
    UpdateSourceParams,
    VolatileDatabaseParams,
)

REQUIRED = {"model_name": "wdl", "max_batchsize": 64, "hit_rate_threshold": 0.5,
            "dense_model_file": "wdl_dense_0.model", "sparse_model_files": ["wdl0_sparse_0.model", "wdl1_sparse_0.model"],
            "use_gpu_embedding_cache": True, "cache_size_percentage": 0.5, "i64_input_key": False}


def test_inference_params_defaults():
    p = InferenceParams(**REQUIRED)
    expected = {
        "device_id": 0, "use_mixed_precision": False, "scaler": 1.0, "use_algorithm_search": True,
        "use_cuda_graph": True, "number_of_worker_buffers_in_pool": 2, "number_of_refresh_buffers_in_pool": 1,
        "thread_pool_size": 16, "cache_refresh_percentage_per_iteration": 0.0, "deployed_devices": [0],
        "default_value_for_each_table": [0.0], "maxnum_des_feature_per_sample": 26, "refresh_delay": 0.0,
        "refresh_interval": 0.0, "maxnum_catfeature_query_per_table_per_sample": [26],
        "embedding_vecsize_per_table": [128], "embedding_table_names": [""], "network_file": "", "label_dim": 1,
        "slot_num": 10, "non_trainable_params_file": "", "use_static_table": False,
        "embedding_cache_type": "dynamic", "use_context_stream": True, "fuse_embedding_table": False,
        "use_hctr_cache_implementation": True, "init_ec": True, "enable_pagelock": False, "fp8_quant": False,
    }
    for k, v in expected.items():
        assert getattr(p, k) == v, k
    assert p.volatile_db == VolatileDatabaseParams() and p.persistent_db == PersistentDatabaseParams()
    assert p.update_source == UpdateSourceParams()


@pytest.mark.parametrize("kwargs, arg, rule", [
    ({"max_batchsize": 63, "deployed_devices": [0, 1]}, "max_batchsize", "divisible by the number of deployed"),
    ({"hit_rate_threshold": 1.5}, "hit_rate_threshold", "<= 1.0"),
    ({"cache_size_percentage": -0.1}, "cache_size_percentage", ">= 0.0"),
    ({"deployed_devices": [0, 0]}, "deployed_devices", "distinct GPU ids"),
    ({"embedding_cache_type": "lru"}, "embedding_cache_type", "dynamic"),
    ({"model_name": ""}, "model_name", "non-empty"),
])
def test_inference_params_rejects(kwargs, arg, rule):
    with pytest.raises(ValueError, match=rf"InferenceParams\(\): argument '{arg}' = .* is not allowed: .*{rule}"):
        InferenceParams(**{**REQUIRED, **kwargs})


def test_inference_params_required_and_unknown():
    args = dict(REQUIRED)
    del args["i64_input_key"]
    with pytest.raises(TypeError, match="missing required argument 'i64_input_key'"):
        InferenceParams(**args)
    with pytest.raises(TypeError, match="'max_batch_size'"):
        InferenceParams(**REQUIRED, max_batch_size=3)


def test_volatile_database_defaults_and_assignment():
    v = VolatileDatabaseParams()
    assert v.type is hgc.DatabaseType_t.parallel_hash_map
    assert v.overflow_margin == 2 ** 64 - 1 and v.overflow_resolution_target == 0.8
    assert v.overflow_policy is hgc.DatabaseOverflowPolicy_t.evict_oldest
    assert v.refresh_time_after_fetch is False and v.update_filters == [".+"] and v.initial_cache_rate == 1.0
    assert v.num_partitions == min(16, os.cpu_count() or 1)
    v.type = "redis_cluster"  # the seed's spelling
    assert v.type is hgc.DatabaseType_t.redis_cluster
    v.type = hgc.DatabaseType_t.hash_map
    v.algorithm = hgc.DatabaseHashMapAlgorithm_t.stl
    assert v.algorithm is hgc.DatabaseHashMapAlgorithm_t.STL
    v.address, v.num_partitions, v.max_get_batch_size = "10.0.0.1:7000", 8, 100000
    with pytest.raises(ValueError, match="'type' = .*rocks_db.* must be one of"):
        v.type = hgc.DatabaseType_t.rocks_db
    with pytest.raises(ValueError, match="'overflow_resolution_target' = 1.0"):
        v.overflow_resolution_target = 1.0
    with pytest.raises(AttributeError, match="no setting 'adress'"):
        v.adress = "x"
    with pytest.raises(TypeError, match="'partitions'"):
        VolatileDatabaseParams(partitions=3)
    assert VolatileDatabaseParams(num_partitions=3).num_partitions == 3


def test_persistent_and_update_source_defaults():
    p = PersistentDatabaseParams()
    assert p.type is hgc.DatabaseType_t.disabled and p.path == "/tmp/rocksdb" and p.num_threads == 16
    assert (p.read_only, p.max_get_batch_size, p.max_set_batch_size) == (False, 10000, 10000)
    p.type = hgc.DatabaseType_t.rocks_db
    with pytest.raises(ValueError, match="'type'"):
        p.type = "redis_cluster"
    u = UpdateSourceParams()
    assert u.type is hgc.UpdateSourceType_t.null and u.brokers == "127.0.0.1:9092"
    assert (u.poll_timeout_ms, u.max_receive_buffer_size, u.max_batch_size, u.failure_backoff_ms) == (500, 2000,
                                                                                                        1000, 50)
    u.type = hgc.UpdateSourceType_t.kafka_message_queue
    with pytest.raises(ValueError, match="'poll_timeout_ms' = 0"):
        u.poll_timeout_ms = 0


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A tiny model trained on the cpu target and saved (graph JSON, dense file, sparse folders)."""
    from tests.runtime.inference.deploy import deploy_wdl, params

    d = deploy_wdl(str(tmp_path_factory.mktemp("deployed")), steps=5)
    return d.graph, params(d), d.source


def test_inference_model_runs_and_checks_its_arguments(deployed):
    graph, params, source = deployed
    model = InferenceModel(graph, params)
    assert model.graph.node("data").outputs[0] == "label"
    out = model.predict(2, source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    assert out.shape == (64, 1) and out.dtype == np.float32 and ((out > 0) & (out < 1)).all()
    auc = model.evaluate(num_batches=3, source=source, data_reader_type="Norm", check_type=hgc.Check_t.Sum)
    assert 0.0 <= auc <= 1.0
    assert model.check_out_tensor("add").shape == (32, 1)
    with pytest.raises(ValueError, match="'slot_size_array' = \\[\\] is not allowed: is required for Parquet"):
        model.evaluate(num_batches=2, source=source, data_reader_type=hgc.DataReaderType_t.Parquet,
                       check_type=hgc.Check_t.Non)
    with pytest.raises(ValueError, match="'num_batches' = 0"):
        model.predict(0, source, hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    with pytest.raises(ValueError, match="'source' = 'missing.txt' .* no such file"):
        model.predict(1, "missing.txt", hgc.DataReaderType_t.Norm, hgc.Check_t.Sum)
    with pytest.raises(ValueError, match="'tensor_name' = 'fc9'"):
        model.check_out_tensor("fc9")
    with pytest.raises(TypeError, match="'batches'"):
        model.predict(num_batches=1, source=source, data_reader_type="Norm", check_type="Sum", batches=2)


def test_inference_model_checks_files(deployed, tmp_path):
    graph, params, _ = deployed
    with pytest.raises(ValueError, match="'model_config_path' = .* no such file"):
        InferenceModel(str(tmp_path / "none.json"), params)
    one = InferenceParams(**{**REQUIRED, "model_name": "tiny_wdl", "dense_model_file": params.dense_model_file,
                             "sparse_model_files": params.sparse_model_files[:1]})
    with pytest.raises(ValueError, match=r"'sparse_model_files' .* one sparse model per embedding .*\(2"):
        InferenceModel(graph, one)
    missing = InferenceParams(**{**REQUIRED, "sparse_model_files": params.sparse_model_files})
    with pytest.raises(ValueError, match="'dense_model_file' = 'wdl_dense_0.model' .* no such file"):
        InferenceModel(graph, missing)
    with pytest.raises(TypeError, match="'inference_params' must be a hugectr.inference.InferenceParams"):
        InferenceModel(graph, {"model_name": "wdl"})
