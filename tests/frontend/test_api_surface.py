"""Every name the two seed documents use exists, with the documented arguments, under hgc and hugectr."""
import inspect
import subprocess
import sys

import pytest

import hgc
from hgc.frontend.layers import DENSE_ARGS

# `hugectr.X` / `hugectr.X.Y` names written in seeds/003 and seeds/000 (grep -o "hugectr\.[A-Za-z_.]*").
SEED_NAMES = """
Activation_t.Non Activation_t.Relu Alignment_t.Auto Alignment_t.Non AsyncParam Check_t Check_t.Non Check_t.Sum
CommunicationType.IB_NVLink_Hier CreateETC CreateOptimizer CreateSolver DataReader32.is_eof DataReader32.set_source
DataReader64.is_eof DataReader64.set_source DataReaderParams DataReaderSparseParam DataReaderType_t
DataReaderType_t.Norm DataReaderType_t.Parquet DataReaderType_t.Raw DatabaseHashMapAlgorithm_t
DatabaseOverflowPolicy_t DatabaseType_t DatabaseType_t.hash_map DatabaseType_t.parallel_hash_map
DatabaseType_t.rocks_db DenseLayer Distribution_t.PowerLaw Distribution_t.Uniform ElementWiseMultiply
EmbeddingTraingCache.update EmbeddingTrainingCacheParams Embedding_t.DistributedSlotSparseEmbeddingHash
Embedding_t.HybridSparseEmbedding Embedding_t.LocalizedSlotSparseEmbeddingHash
Embedding_t.LocalizedSlotSparseEmbeddingOneHot GroupDenseLayer GroupLayer_t.GroupFusedInnerProduct
HybridEmbeddingParam HybridEmbeddingType.Distributed Initializer_t.Default Initializer_t.Uniform
Initializer_t.XavierNorm Initializer_t.XavierUniform Initializer_t.Zero Input Layer_t.Add Layer_t.BatchNorm
Layer_t.BinaryCrossEntropyLoss Layer_t.Cast Layer_t.Concat Layer_t.CrossEntropyLoss Layer_t.Dropout Layer_t.ELU
Layer_t.FmOrder2 Layer_t.FusedInnerProduct Layer_t.FusedReshapeConcat Layer_t.FusedReshapeConcatGeneral
Layer_t.GRU Layer_t.Gather Layer_t.InnerProduct Layer_t.Interaction Layer_t.MultiCross
Layer_t.MultiCrossEntropyLoss Layer_t.PReLU_Dice Layer_t.ReLU Layer_t.ReduceMean Layer_t.ReduceSum
Layer_t.Reshape Layer_t.Scale Layer_t.Sigmoid Layer_t.Slice Layer_t.Softmax Layer_t.Sub Layer_t.WeightMultiply
LearningRateScheduler.get_next MetricsType.AUC MetricsType.AverageLoss MetricsType.HitRate Model Model.add
Model.compile Model.construct_from_json Model.eval Model.export_predictions Model.fit Model.freeze_dense
Model.freeze_embedding Model.get_current_loss Model.get_data_reader_eval Model.get_data_reader_train
Model.get_embedding_training_cache Model.get_eval_metrics Model.get_incremental_model
Model.get_learning_rate_scheduler Model.graph_to_json Model.load_dense_optimizer_states Model.load_dense_weights
Model.load_sparse_optimizer_states Model.load_sparse_weights Model.reset_learning_rate_scheduler
Model.save_params_to_files Model.set_learning_rate Model.set_source Model.start_data_reading Model.summary
Model.train Model.unfreeze_dense Model.unfreeze_embedding OptParamsPy Optimizer_t.Adagrad Optimizer_t.Adam
Optimizer_t.MomentumSGD Optimizer_t.Nesterov Optimizer_t.SGD PowerLaw_t.Long PowerLaw_t.Medium PowerLaw_t.Short
PowerLaw_t.Specific Regularizer_t.L1 Regularizer_t.L2 Solver SparseEmbedding TrainPSType_t.Cached
TrainPSType_t.Staged UpdateSourceParams UpdateSourceType_t UpdateSourceType_t.kafka_message_queue
Update_t.Global Update_t.LazyGlobal Update_t.Local data.DataSource data.DataSource.move_to_local
data.DataSourceParams inference.InferenceModel inference.InferenceModel.evaluate inference.InferenceModel.predict
inference.InferenceParams inference.PersistentDatabaseParams inference.VolatileDatabaseParams solver_parser_helper
tools.DataGenerator tools.DataGenerator.generate tools.DataGeneratorParams
""".split()  # noqa: SIM905  (the grep output, as is)

# Names the seeds write without the module prefix (X_t.Y in prose, `params.type = ...` values, 2.3 classes).
PROSE_NAMES = """
AllReduceAlgo.NCCL AllReduceAlgo.OneShot CommunicationType.IB_NVLink CommunicationType.NVLink_SingleNode
DataReaderType_t.RawAsync DeviceLayout.LocalFirst DeviceLayout.NODE_FIRST FcPosition_t.Body FcPosition_t.Head
FcPosition_t.Isolated FcPosition_t.Non FcPosition_t.Tail LrPolicy_t.fixed DatabaseType_t.disabled
DatabaseType_t.redis_cluster DatabaseOverflowPolicy_t.evict_oldest DatabaseOverflowPolicy_t.evict_random
UpdateSourceType_t.null Session DataReader ModelPrefetcher EmbeddingTrainingCache
Layer_t.ElementwiseMultiply Layer_t.GroupFusedInnerProduct Optimizer_t.AdaGrad MetricsType.NDCG MetricsType.SMAPE
Tensor_t.Train Tensor_t.Evaluate
""".split()  # noqa: SIM905


def resolve(root, dotted):
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", SEED_NAMES + PROSE_NAMES)
def test_seed_name_exists(name):
    import hugectr

    assert resolve(hgc, name) is resolve(hugectr, name)


def test_alias_spellings_are_the_same_member():
    assert hgc.Optimizer_t.Adagrad is hgc.Optimizer_t.AdaGrad and hgc.Optimizer_t.Adagrad.name == "AdaGrad"
    assert hgc.ElementWiseMultiply is hgc.Layer_t.ElementwiseMultiply
    assert hgc.Layer_t.ElementWiseMultiply.name == "ElementwiseMultiply"
    assert hgc.EmbeddingTraingCache is hgc.EmbeddingTrainingCache
    assert hgc.UpdateSourceParams is hgc.inference.UpdateSourceParams


def params(fn):
    return set(inspect.signature(fn).parameters)


# arguments each seed argument list documents
DOCUMENTED = {
    hgc.CreateSolver: """model_name seed lr_policy lr warmup_steps decay_start decay_steps decay_power end_lr
        max_eval_batches batchsize_eval batchsize vvgpu repeat_dataset use_mixed_precision enable_tf32_compute
        scaler metrics_spec i64_input_key use_algorithm_search use_cuda_graph device_layout use_holistic_cuda_graph
        use_overlapped_pipeline all_reduce_algo grouped_all_reduce num_iterations_statistics is_dlrm
        kafka_brockers""",
    hgc.CreateETC: "ps_types sparse_models local_paths hcache_configs",
    hgc.AsyncParam: "num_threads num_batches_per_thread io_block_size io_depth io_alignment shuffle aligned_type",
    hgc.HybridEmbeddingParam: """max_num_frequent_categories max_num_infrequent_samples p_dup_max
        max_all_reduce_bandwidth max_all_to_all_bandwidth efficiency_bandwidth_ratio communication_type
        hybrid_embedding_type""",
    hgc.DataReaderParams: """data_reader_type source keyset eval_source check_type cache_eval_data num_samples
        eval_num_samples float_label_dense num_workers slot_size_array async_param""",
    hgc.CreateOptimizer: "optimizer_type update_type beta1 beta2 epsilon momentum_factor atomic_update",
    hgc.Input: "label_dim label_name dense_dim dense_name data_reader_sparse_param_array",
    hgc.DataReaderSparseParam: "sparse_name nnz_per_slot is_fixed_length slot_num",
    hgc.SparseEmbedding: """embedding_type workspace_size_per_gpu_in_mb embedding_vec_size combiner
        sparse_embedding_name bottom_name slot_size_array optimizer hybrid_embedding_param""",
    hgc.GroupDenseLayer: "group_layer_type bottom_name_list top_name_list num_outputs last_act_type",
    hgc.Model: "solver reader_params opt_params etc",
    hgc.Model.compile: "loss_names loss_weights",
    hgc.Model.fit: "num_epochs max_iter display eval_interval snapshot snapshot_prefix data_source_params",
    hgc.Model.graph_to_json: "graph_config_file",
    hgc.Model.construct_from_json: "graph_config_file include_dense_network",
    hgc.Model.load_dense_weights: "dense_model_file data_source_params",
    hgc.Model.load_dense_optimizer_states: "dense_opt_states_file data_source_params",
    hgc.Model.load_sparse_weights: "sparse_embedding_files data_source_params",
    hgc.Model.load_sparse_optimizer_states: "sparse_opt_states_files data_source_params",
    hgc.Model.freeze_embedding: "embedding_name",
    hgc.Model.unfreeze_embedding: "embedding_name",
    hgc.Model.reset_learning_rate_scheduler: "base_lr warmup_steps decay_start decay_steps decay_power end_lr",
    hgc.Model.set_learning_rate: "lr",
    hgc.Model.save_params_to_files: "prefix iter",
    hgc.Model.export_predictions: "output_prediction_file_name output_label_file_name",
    hgc.DataReader32.set_source: "file_name",
    hgc.EmbeddingTrainingCache.update: "keyset_file",
    hgc.inference.InferenceParams: """model_name max_batchsize hit_rate_threshold dense_model_file
        sparse_model_files use_gpu_embedding_cache cache_size_percentage i64_input_key use_mixed_precision
        use_algorithm_search use_cuda_graph deployed_devices""",
    hgc.inference.InferenceModel: "model_config_path inference_params",
    hgc.inference.InferenceModel.predict: "num_batches source data_reader_type check_type slot_size_array",
    hgc.inference.InferenceModel.evaluate: "num_batches source data_reader_type check_type slot_size_array",
    hgc.solver_parser_helper: """seed max_eval_batches batchsize_eval batchsize model_file embedding_files vvgpu
        use_mixed_precision enable_tf32_compute scaler i64_input_key use_algorithm_search use_cuda_graph
        repeat_dataset""",
    hgc.Session: "solver_config config_file use_model_oversubscriber temp_embedding_dir",
}


@pytest.mark.parametrize("fn", list(DOCUMENTED), ids=lambda f: f.__qualname__)
def test_documented_arguments(fn):
    missing = set(DOCUMENTED[fn].split()) - params(fn)
    assert not missing, f"{fn.__qualname__} lacks {missing}"


def test_dense_layer_takes_every_documented_keyword():
    seed = """factor eps gamma_init_type beta_init_type dropout_rate elu_alpha num_output weight_init_type
        bias_init_type num_layers leading_dim selected selected_slots ranges weight_dims out_dim axis time_step
        batchsize SeqLength vector_size indices target_weight_vec use_regularizer regularizer_type lambda
        pos_type act_type""".split()  # noqa: SIM905
    assert set(seed) <= set(DENSE_ARGS)
    layer = hgc.DenseLayer(hgc.Layer_t.ReLU, ["a"], ["b"], **{k: DENSE_ARGS[k][0] for k in seed})
    assert getattr(layer, "lambda") == 0.0


def test_database_settings_fields():
    v = hgc.inference.VolatileDatabaseParams()
    for f in ("type", "algorithm", "num_partitions", "address", "user_name", "password", "max_get_batch_size",
              "max_set_batch_size", "overflow_margin", "overflow_policy", "overflow_resolution_target",
              "initial_cache_rate", "refresh_time_after_fetch", "update_filters"):
        assert hasattr(v, f)
    p = hgc.inference.PersistentDatabaseParams()
    for f in ("type", "path", "num_threads", "read_only", "max_get_batch_size", "max_set_batch_size",
              "update_filters"):
        assert hasattr(p, f)
    u = hgc.UpdateSourceParams()
    for f in ("type", "brokers", "poll_timeout_ms", "max_receive_buffer_size", "max_batch_size",
              "failure_backoff_ms"):
        assert hasattr(u, f)


def test_hugectr_alias_shares_module_objects():
    import hugectr.inference
    from hugectr.tools import DataGenerator

    import hugectr

    assert hugectr is hgc
    assert hugectr.inference is hgc.inference
    assert DataGenerator is hgc.tools.DataGenerator
    solver = hugectr.CreateSolver()
    assert isinstance(solver, hgc.Solver) and isinstance(hgc.CreateSolver(), hugectr.Solver)
    assert sys.modules["hugectr.frontend.model"] is sys.modules["hgc.frontend.model"]


def test_hugectr_alias_for_a_submodule_imported_later():
    code = ("import sys, hugectr; assert 'hgc.ir.dot' not in sys.modules; "
            "import hugectr.ir.dot as a; import hgc.ir.dot as b; assert a is b; "
            "from hugectr.frontend.enums import Layer_t; assert Layer_t is hugectr.Layer_t; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=_root(), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _root():
    import pathlib

    return str(pathlib.Path(__file__).resolve().parents[2])


def _norm_reader(**kw):
    return hgc.DataReaderParams(hgc.DataReaderType_t.Norm, "a.txt", eval_source="b.txt",
                                check_type=hgc.Check_t.Sum, **kw)


UNKNOWN_KEYWORD = {
    "CreateSolver": lambda: hgc.CreateSolver(bogus_arg=1),
    "CreateETC": lambda: hgc.CreateETC([hgc.TrainPSType_t.Staged], ["a"], bogus_arg=1),
    "AsyncParam": lambda: hgc.AsyncParam(1, 1, 1, 1, 1, False, hgc.Alignment_t.Non, bogus_arg=1),
    "HybridEmbeddingParam": lambda: hgc.HybridEmbeddingParam(1, -1, 0.01, 1e11, 1e11, 1.0,
                                                             hgc.CommunicationType.IB_NVLink,
                                                             hgc.HybridEmbeddingType.Distributed, bogus_arg=1),
    "CreateOptimizer": lambda: hgc.CreateOptimizer(bogus_arg=1),
    "DataReaderParams": lambda: _norm_reader(bogus_arg=1),
    "DataReaderSparseParam": lambda: hgc.DataReaderSparseParam("s", 1, True, 1, bogus_arg=1),
    "Input": lambda: hgc.Input(1, "l", 1, "d", bogus_arg=1),
    "SparseEmbedding": lambda: hgc.SparseEmbedding(hgc.Embedding_t.DistributedSlotSparseEmbeddingHash, 1, 4, "sum",
                                                   "e", "s", bogus_arg=1),
    "DenseLayer": lambda: hgc.DenseLayer(hgc.Layer_t.ReLU, ["a"], ["b"], bogus_arg=1),
    "GroupDenseLayer": lambda: hgc.GroupDenseLayer(hgc.GroupLayer_t.GroupFusedInnerProduct, ["a"], ["b", "c"],
                                                   [2, 1], bogus_arg=1),
    "Model": lambda: hgc.Model(hgc.CreateSolver(), _norm_reader(), hgc.CreateOptimizer(), bogus_arg=1),
    "Model.compile": lambda: hgc.Model(hgc.CreateSolver(), _norm_reader(), hgc.CreateOptimizer()).compile(
        bogus_arg=1),
    "solver_parser_helper": lambda: hgc.solver_parser_helper(bogus_arg=1),
    "InferenceParams": lambda: hgc.InferenceParams("m", 1, 0.5, "d", ["s"], use_gpu_embedding_cache=False,
                                                   cache_size_percentage=0.1, i64_input_key=False, bogus_arg=1),
    "VolatileDatabaseParams": lambda: hgc.VolatileDatabaseParams(bogus_arg=1),
    "PersistentDatabaseParams": lambda: hgc.PersistentDatabaseParams(bogus_arg=1),
    "UpdateSourceParams": lambda: hgc.UpdateSourceParams(bogus_arg=1),
}


@pytest.mark.parametrize("name", list(UNKNOWN_KEYWORD))
def test_unknown_keyword_is_a_type_error_naming_it(name):
    with pytest.raises(TypeError, match="bogus_arg"):
        UNKNOWN_KEYWORD[name]()
