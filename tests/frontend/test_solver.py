import pytest

import hgc
from hgc.frontend.enums import AllReduceAlgo, DeviceLayout, LrPolicy_t, MetricsType

# facts §3.6 (solver_wrapper.hpp) and the 3.x argument list
SOLVER_DEFAULTS = {
    "model_name": "", "seed": 0, "lr_policy": LrPolicy_t.fixed, "lr": 0.001, "warmup_steps": 1, "decay_start": 0,
    "decay_steps": 1, "decay_power": 2.0, "end_lr": 0.0, "max_eval_batches": 100, "batchsize_eval": 2048,
    "batchsize": 2048, "vvgpu": [[0]], "repeat_dataset": True, "use_mixed_precision": False,
    "enable_tf32_compute": False, "scaler": 1.0, "metrics_spec": {MetricsType.AUC: 1.0}, "i64_input_key": False,
    "use_algorithm_search": True, "use_cuda_graph": True, "device_layout": DeviceLayout.LocalFirst,
    "use_holistic_cuda_graph": False, "use_overlapped_pipeline": False, "all_reduce_algo": AllReduceAlgo.NCCL,
    "grouped_all_reduce": False, "num_iterations_statistics": 20, "is_dlrm": False, "gen_loss_summary": True,
    "train_intra_iteration_overlap": False, "train_inter_iteration_overlap": False,
    "eval_intra_iteration_overlap": False, "eval_inter_iteration_overlap": False,
    "use_embedding_collection": False, "perf_logging": False, "drop_incomplete_batch": True, "kafka_brockers": "",
    "training_callbacks": [],
}


def test_create_solver_defaults():
    s = hgc.CreateSolver()
    for k, v in SOLVER_DEFAULTS.items():
        assert getattr(s, k) == v, k
    assert s.world_size == 1


def test_create_solver_seed_example():
    s = hgc.CreateSolver(max_eval_batches=300, batchsize_eval=16384, batchsize=16384, lr=0.001, vvgpu=[[0]],
                         repeat_dataset=True, i64_input_key=True)
    assert (s.max_eval_batches, s.batchsize, s.i64_input_key) == (300, 16384, True)


def test_vvgpu_nodes_and_flat_list():
    assert hgc.CreateSolver(vvgpu=[[0, 1], [1, 2]], batchsize=12, batchsize_eval=4).world_size == 4
    assert hgc.CreateSolver(vvgpu=[0, 2, 4, 7], batchsize=8, batchsize_eval=8).vvgpu == [[0, 2, 4, 7]]


def test_metrics_spec_keys_by_member_or_name():
    s = hgc.CreateSolver(metrics_spec={hgc.MetricsType.HitRate: 0.8, "AverageLoss": 0.0, MetricsType.AUC: 1.0})
    assert list(s.metrics_spec) == [MetricsType.AUC, MetricsType.AverageLoss, MetricsType.HitRate]


@pytest.mark.parametrize("kwargs, arg, rule", [
    ({"batchsize": 1000, "vvgpu": [[0, 1, 2]]}, "batchsize", "divisible by the total GPU count 3"),
    ({"batchsize": 0}, "batchsize", ">= 1"),
    ({"batchsize": 9, "batchsize_eval": 10, "vvgpu": [[0, 1, 2]]}, "batchsize_eval", "divisible"),
    ({"use_mixed_precision": True, "enable_tf32_compute": True}, "enable_tf32_compute", "use_mixed_precision"),
    ({"vvgpu": [[0], []]}, "vvgpu", "non-empty list of nodes"),
    ({"vvgpu": [[0, 0]]}, "vvgpu", "distinct GPU ids"),
    ({"vvgpu": "0"}, "vvgpu", "non-empty list"),
    ({"metrics_spec": {"Recall": 1.0}}, "metrics_spec", "MetricsType.AUC"),
    ({"metrics_spec": [MetricsType.AUC]}, "metrics_spec", "dict"),
    ({"lr": 0.0}, "lr", "> 0"),
    ({"lr": -3}, "lr", "> 0"),
    ({"warmup_steps": 0}, "warmup_steps", ">= 1"),
    ({"decay_power": 0.5}, "decay_power", ">= 1"),
    ({"batchsize": 2048.0}, "batchsize", "integer"),
    ({"repeat_dataset": 1}, "repeat_dataset", "True or False"),
    ({"lr_policy": "cosine"}, "lr_policy", "LrPolicy_t.fixed"),
    ({"device_layout": DeviceLayout.NODE_FIRST, "vvgpu": [[0, 1], [2]], "batchsize": 6, "batchsize_eval": 6},
     "vvgpu", "same number of GPUs"),
    ({"use_holistic_cuda_graph": True}, "use_holistic_cuda_graph", "use_cuda_graph=False"),
    ({"scaler": 0}, "scaler", "> 0"),
])
def test_create_solver_rejects(kwargs, arg, rule):
    with pytest.raises(ValueError, match=rf"CreateSolver\(\): argument '{arg}' = .* is not allowed: .*{rule}"):
        hgc.CreateSolver(**kwargs)


def test_create_solver_unknown_keyword():
    with pytest.raises(TypeError, match="kafka_brokers"):
        hgc.CreateSolver(kafka_brokers="h:9092")  # HugeCTR spells it kafka_brockers
    assert hgc.CreateSolver(kafka_brockers="h:9092").kafka_brockers == "h:9092"


def test_create_etc():
    etc = hgc.CreateETC(ps_types=[hgc.TrainPSType_t.Staged, hgc.TrainPSType_t.Cached],
                        sparse_models=["./wdl_0_sparse_model", "./wdl_1_sparse_model"],
                        local_paths=["./"], hcache_configs=["./hcache.json"])
    assert etc.use_embedding_training_cache and etc.ps_types[1] is hgc.TrainPSType_t.Cached
    with pytest.raises(ValueError, match="'local_paths' .*Cached"):
        hgc.CreateETC([hgc.TrainPSType_t.Cached], ["a"])
    with pytest.raises(ValueError, match="'sparse_models' .* one path per entry of ps_types"):
        hgc.CreateETC([hgc.TrainPSType_t.Staged], ["a", "b"])
    with pytest.raises(ValueError, match="'hcache_configs'"):
        hgc.CreateETC([hgc.TrainPSType_t.Cached] * 3, ["a", "b", "c"], ["./"], ["x", "y"])
    with pytest.raises(TypeError, match="missing required argument 'sparse_models'"):
        hgc.CreateETC(ps_types=[hgc.TrainPSType_t.Staged])


def test_async_param_seed_example():
    p = hgc.AsyncParam(32, 4, 716800, 2, 512, True, hgc.Alignment_t.Non)
    assert (p.num_threads, p.io_block_size, p.shuffle, p.aligned_type) == (32, 716800, True, hgc.Alignment_t.Non)
    assert (p.multi_hot_reader, p.is_dense_float) == (False, False)
    with pytest.raises(ValueError, match="'io_depth' = 0"):
        hgc.AsyncParam(32, 4, 716800, 0, 512, True, hgc.Alignment_t.Non)
    with pytest.raises(TypeError):
        hgc.AsyncParam(32, 4, 716800, 2, 512, True)


def test_hybrid_embedding_param_seed_example():
    p = hgc.HybridEmbeddingParam(2, -1, 0.01, 1.3e11, 1.9e11, 1.0, hgc.CommunicationType.IB_NVLink_Hier,
                                 hgc.HybridEmbeddingType.Distributed)
    a = p.to_attrs()
    assert a["communication_type"] == "IB_NVLink_Hier" and a["max_num_frequent_categories"] == 2
    assert a["max_all_to_all_bandwidth"] == 1.9e11
    with pytest.raises(ValueError, match="'p_dup_max' = 1.5"):
        hgc.HybridEmbeddingParam(2, -1, 1.5, 1.3e11, 1.9e11, 1.0, hgc.CommunicationType.IB_NVLink,
                                 hgc.HybridEmbeddingType.Distributed)
