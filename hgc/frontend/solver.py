"""Training resources: ``CreateSolver`` → ``Solver``, ``CreateETC`` → ``EmbeddingTrainingCacheParams``, and the
MLPerf parameter records ``AsyncParam`` and ``HybridEmbeddingParam``.

Defaults are HugeCTR's (facts §3.6 and the 3.x argument lists). ``vvgpu`` is a list of nodes, each a list of
GPU ids; a flat list of ids (``[0, 2, 4, 7]``) means one node with those GPUs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_float,
    as_int,
    as_str,
    as_str_list,
    bad,
    is_int,
    require_given,
)
from hgc.frontend.enums import (
    Alignment_t,
    AllReduceAlgo,
    CommunicationType,
    DeviceLayout,
    HybridEmbeddingType,
    LrPolicy_t,
    MetricsType,
    TrainPSType_t,
    to_enum,
)
from hgc.ir.node import Attrs


@dataclass
class Solver:
    """What ``CreateSolver`` returns: the training resources and schedule of a ``Model``."""

    model_name: str = ""
    seed: int = 0
    lr_policy: LrPolicy_t = LrPolicy_t.fixed
    lr: float = 0.001
    warmup_steps: int = 1
    decay_start: int = 0
    decay_steps: int = 1
    decay_power: float = 2.0
    end_lr: float = 0.0
    max_eval_batches: int = 100
    batchsize_eval: int = 2048
    batchsize: int = 2048
    vvgpu: list[list[int]] = field(default_factory=lambda: [[0]])
    repeat_dataset: bool = True
    use_mixed_precision: bool = False
    enable_tf32_compute: bool = False
    scaler: float = 1.0
    metrics_spec: dict[MetricsType, float] = field(default_factory=lambda: {MetricsType.AUC: 1.0})
    i64_input_key: bool = False
    use_algorithm_search: bool = True
    use_cuda_graph: bool = True
    device_layout: DeviceLayout = DeviceLayout.LocalFirst
    use_holistic_cuda_graph: bool = False
    use_overlapped_pipeline: bool = False
    all_reduce_algo: AllReduceAlgo = AllReduceAlgo.NCCL
    grouped_all_reduce: bool = False
    num_iterations_statistics: int = 20
    is_dlrm: bool = False
    gen_loss_summary: bool = True
    train_intra_iteration_overlap: bool = False
    train_inter_iteration_overlap: bool = False
    eval_intra_iteration_overlap: bool = False
    eval_inter_iteration_overlap: bool = False
    use_embedding_collection: bool = False
    perf_logging: bool = False
    drop_incomplete_batch: bool = True
    kafka_brockers: str = ""
    training_callbacks: list[Any] = field(default_factory=list)
    hgc_low_precision: str = "float16"

    @property
    def world_size(self) -> int:
        """Total GPU count over all nodes."""
        return sum(len(node) for node in self.vvgpu)

    @property
    def compute_dtype(self) -> str:
        """The dtype dense layers compute in: float32, or the mixed-precision dtype (hgc_low_precision)."""
        return self.hgc_low_precision if self.use_mixed_precision else "float32"


#: Spellings ``hgc_low_precision`` accepts → the dtype they mean.
LOW_PRECISION = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def normalize_low_precision(where: str, value: Any, mixed: bool) -> str:
    """``hgc_low_precision`` as "float16" | "bfloat16"; bfloat16 needs ``use_mixed_precision=True``."""
    if not isinstance(value, str) or value.lower() not in LOW_PRECISION:
        raise bad(where, "hgc_low_precision", value, f"must be one of {sorted(LOW_PRECISION)}")
    dtype = LOW_PRECISION[value.lower()]
    if dtype != "float16" and not mixed:
        raise bad(where, "hgc_low_precision", value, "selects the mixed-precision dtype, so it needs "
                                                     "use_mixed_precision=True")
    return dtype


def normalize_vvgpu(where: str, vvgpu: Any) -> list[list[int]]:
    """``vvgpu`` as a non-empty list of non-empty GPU-id lists; a flat id list is one node."""
    rule = "must be a non-empty list of nodes, each a non-empty list of distinct GPU ids >= 0 (e.g. [[0, 1]])"
    if not isinstance(vvgpu, (list, tuple)) or not vvgpu:
        raise bad(where, "vvgpu", vvgpu, rule)
    if all(is_int(g) for g in vvgpu):
        vvgpu = [vvgpu]
    out = []
    for node in vvgpu:
        if (not isinstance(node, (list, tuple)) or not node
                or not all(is_int(g) and g >= 0 for g in node) or len(set(node)) != len(node)):
            raise bad(where, "vvgpu", vvgpu, rule)
        out.append([int(g) for g in node])
    return out


def normalize_metrics(where: str, spec: Any) -> dict[MetricsType, float]:
    """``metrics_spec`` as {MetricsType: threshold}; keys may be members or their names."""
    if not isinstance(spec, Mapping):
        raise bad(where, "metrics_spec", spec, "must be a dict {MetricsType: float}, e.g. {MetricsType.AUC: 1.0}")
    out: dict[MetricsType, float] = {}
    for k, v in spec.items():
        key = to_enum(MetricsType, k, "metrics_spec", where)
        out[key] = as_float(where, f"metrics_spec[{key!r}]", v)
    return dict(sorted(out.items(), key=lambda kv: list(MetricsType).index(kv[0])))


def CreateSolver(model_name: str = "", seed: int = 0, lr_policy: LrPolicy_t = LrPolicy_t.fixed, lr: float = 0.001,
                 warmup_steps: int = 1, decay_start: int = 0, decay_steps: int = 1, decay_power: float = 2.0,
                 end_lr: float = 0.0, max_eval_batches: int = 100, batchsize_eval: int = 2048,
                 batchsize: int = 2048, vvgpu: Any = None, repeat_dataset: bool = True,
                 use_mixed_precision: bool = False, enable_tf32_compute: bool = False, scaler: float = 1.0,
                 metrics_spec: Mapping[Any, float] | None = None, i64_input_key: bool = False,
                 use_algorithm_search: bool = True, use_cuda_graph: bool = True,
                 device_layout: DeviceLayout = DeviceLayout.LocalFirst, use_holistic_cuda_graph: bool = False,
                 use_overlapped_pipeline: bool = False, all_reduce_algo: AllReduceAlgo = AllReduceAlgo.NCCL,
                 grouped_all_reduce: bool = False, num_iterations_statistics: int = 20, is_dlrm: bool = False,
                 gen_loss_summary: bool = True, train_intra_iteration_overlap: bool = False,
                 train_inter_iteration_overlap: bool = False, eval_intra_iteration_overlap: bool = False,
                 eval_inter_iteration_overlap: bool = False, use_embedding_collection: bool = False,
                 perf_logging: bool = False, drop_incomplete_batch: bool = True, kafka_brockers: str = "",
                 training_callbacks: list[Any] | None = None, hgc_low_precision: str = "fp16") -> Solver:
    """The training resources: GPUs (``vvgpu``), global batch sizes, the learning-rate schedule (``lr`` with
    warmup and polynomial decay), precision, evaluation metrics (``metrics_spec``; an AUC value is a stop
    threshold), the key type (``i64_input_key``) and HugeCTR's performance switches. ``batchsize`` and
    ``batchsize_eval`` are global and must divide evenly over all GPUs. ``kafka_brockers`` keeps HugeCTR's
    spelling.

    Precision: ``use_mixed_precision=True`` computes activations, and the GEMMs on weight copies, in fp16
    with fp32 accumulation; fp32 master weights take the updates, with gradients divided by ``scaler``
    (the loss gradient is multiplied by it). ``enable_tf32_compute=True`` runs fp32 GEMMs with TF32 math
    (not together with mixed precision). hgc extension: ``hgc_low_precision="bf16"`` (or "bfloat16") makes
    mixed precision use bfloat16 instead of fp16 ("fp16", the default, is HugeCTR's behaviour).
    """
    w = "CreateSolver()"
    s = Solver(
        model_name=as_str(w, "model_name", model_name),
        seed=as_int(w, "seed", seed, 0),
        lr_policy=to_enum(LrPolicy_t, lr_policy, "lr_policy", w),
        lr=as_float(w, "lr", lr, above=0.0),
        warmup_steps=as_int(w, "warmup_steps", warmup_steps, 1),
        decay_start=as_int(w, "decay_start", decay_start, 0),
        decay_steps=as_int(w, "decay_steps", decay_steps, 1),
        decay_power=as_float(w, "decay_power", decay_power, minimum=1.0),
        end_lr=as_float(w, "end_lr", end_lr, minimum=0.0),
        max_eval_batches=as_int(w, "max_eval_batches", max_eval_batches, 1),
        batchsize_eval=as_int(w, "batchsize_eval", batchsize_eval, 1),
        batchsize=as_int(w, "batchsize", batchsize, 1),
        vvgpu=normalize_vvgpu(w, [[0]] if vvgpu is None else vvgpu),
        repeat_dataset=as_bool(w, "repeat_dataset", repeat_dataset),
        use_mixed_precision=as_bool(w, "use_mixed_precision", use_mixed_precision),
        enable_tf32_compute=as_bool(w, "enable_tf32_compute", enable_tf32_compute),
        scaler=as_float(w, "scaler", scaler, above=0.0),
        metrics_spec=normalize_metrics(w, {MetricsType.AUC: 1.0} if metrics_spec is None else metrics_spec),
        i64_input_key=as_bool(w, "i64_input_key", i64_input_key),
        use_algorithm_search=as_bool(w, "use_algorithm_search", use_algorithm_search),
        use_cuda_graph=as_bool(w, "use_cuda_graph", use_cuda_graph),
        device_layout=to_enum(DeviceLayout, device_layout, "device_layout", w),
        use_holistic_cuda_graph=as_bool(w, "use_holistic_cuda_graph", use_holistic_cuda_graph),
        use_overlapped_pipeline=as_bool(w, "use_overlapped_pipeline", use_overlapped_pipeline),
        all_reduce_algo=to_enum(AllReduceAlgo, all_reduce_algo, "all_reduce_algo", w),
        grouped_all_reduce=as_bool(w, "grouped_all_reduce", grouped_all_reduce),
        num_iterations_statistics=as_int(w, "num_iterations_statistics", num_iterations_statistics, 1),
        is_dlrm=as_bool(w, "is_dlrm", is_dlrm),
        gen_loss_summary=as_bool(w, "gen_loss_summary", gen_loss_summary),
        train_intra_iteration_overlap=as_bool(w, "train_intra_iteration_overlap", train_intra_iteration_overlap),
        train_inter_iteration_overlap=as_bool(w, "train_inter_iteration_overlap", train_inter_iteration_overlap),
        eval_intra_iteration_overlap=as_bool(w, "eval_intra_iteration_overlap", eval_intra_iteration_overlap),
        eval_inter_iteration_overlap=as_bool(w, "eval_inter_iteration_overlap", eval_inter_iteration_overlap),
        use_embedding_collection=as_bool(w, "use_embedding_collection", use_embedding_collection),
        perf_logging=as_bool(w, "perf_logging", perf_logging),
        drop_incomplete_batch=as_bool(w, "drop_incomplete_batch", drop_incomplete_batch),
        kafka_brockers=as_str(w, "kafka_brockers", kafka_brockers),
        training_callbacks=_callbacks(w, training_callbacks),
        hgc_low_precision=normalize_low_precision(w, hgc_low_precision, bool(use_mixed_precision)),
    )
    if s.use_mixed_precision and s.enable_tf32_compute:
        raise bad(w, "enable_tf32_compute", True, "TF32 compute cannot be combined with use_mixed_precision=True")
    for arg in ("batchsize", "batchsize_eval"):
        if getattr(s, arg) % s.world_size:
            raise bad(w, arg, getattr(s, arg), f"must be divisible by the total GPU count {s.world_size} "
                                               f"of vvgpu={s.vvgpu}")
    if s.device_layout is DeviceLayout.NODE_FIRST and len({len(n) for n in s.vvgpu}) > 1:
        raise bad(w, "vvgpu", s.vvgpu, "with device_layout=DeviceLayout.NODE_FIRST every node needs the same "
                                       "number of GPUs")
    if s.use_holistic_cuda_graph and (s.use_cuda_graph or not s.use_overlapped_pipeline):
        raise bad(w, "use_holistic_cuda_graph", True,
                  "needs use_cuda_graph=False and use_overlapped_pipeline=True")
    return s


def _callbacks(where: str, callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise bad(where, "training_callbacks", callbacks, "must be a list of callback objects")
    return list(callbacks)


# -- embedding training cache ---------------------------------------------------------------------
@dataclass
class EmbeddingTrainingCacheParams:
    """What ``CreateETC`` returns: one parameter-server kind and one table path per embedding."""

    ps_types: list[TrainPSType_t] = field(default_factory=list)
    sparse_models: list[str] = field(default_factory=list)
    local_paths: list[str] = field(default_factory=list)
    hcache_configs: list[str] = field(default_factory=list)

    @property
    def use_embedding_training_cache(self) -> bool:
        return bool(self.ps_types)


def CreateETC(ps_types: Any = REQUIRED, sparse_models: Any = REQUIRED, local_paths: Any = None,
              hcache_configs: Any = None) -> EmbeddingTrainingCacheParams:
    """Embedding training cache settings: per embedding table a parameter-server kind (``Staged``: whole table
    in host memory, ``Cached``: a host cache over SSD) and the table's path (existing → incremental
    training). ``Cached`` tables also need ``local_paths`` (one per MPI rank) and ``hcache_configs`` (one
    for all Cached tables, or one each).
    """
    w = "CreateETC()"
    require_given(w, {"ps_types": ps_types, "sparse_models": sparse_models})
    if not isinstance(ps_types, (list, tuple)) or not ps_types:
        raise bad(w, "ps_types", ps_types, "must be a non-empty list of TrainPSType_t")
    types = [to_enum(TrainPSType_t, t, "ps_types", w) for t in ps_types]
    models = as_str_list(w, "sparse_models", sparse_models)
    if len(models) != len(types):
        raise bad(w, "sparse_models", sparse_models, f"needs one path per entry of ps_types ({len(types)})")
    paths = as_str_list(w, "local_paths", [] if local_paths is None else local_paths)
    configs = as_str_list(w, "hcache_configs", [] if hcache_configs is None else hcache_configs)
    cached = types.count(TrainPSType_t.Cached)
    if cached:
        if not paths:
            raise bad(w, "local_paths", paths, "is required when ps_types holds TrainPSType_t.Cached")
        if len(configs) not in (1, cached):
            raise bad(w, "hcache_configs", configs,
                      f"needs one configuration for all {cached} Cached tables, or one each")
    return EmbeddingTrainingCacheParams(types, models, paths, configs)


# -- MLPerf parameter records -----------------------------------------------------------------------
@dataclass
class AsyncParam:
    """Settings of the asynchronous Raw reader (``DataReaderType_t.RawAsync``; MLPerf use)."""

    num_threads: int
    num_batches_per_thread: int
    io_block_size: int
    io_depth: int
    io_alignment: int
    shuffle: bool
    aligned_type: Alignment_t
    multi_hot_reader: bool = False
    is_dense_float: bool = False

    def __post_init__(self) -> None:
        w = "AsyncParam()"
        for arg in ("num_threads", "num_batches_per_thread", "io_block_size", "io_depth", "io_alignment"):
            setattr(self, arg, as_int(w, arg, getattr(self, arg), 1))
        self.shuffle = as_bool(w, "shuffle", self.shuffle)
        self.aligned_type = to_enum(Alignment_t, self.aligned_type, "aligned_type", w)
        self.multi_hot_reader = as_bool(w, "multi_hot_reader", self.multi_hot_reader)
        self.is_dense_float = as_bool(w, "is_dense_float", self.is_dense_float)


def default_async_param() -> AsyncParam:
    """The AsyncParam a DataReaderParams holds when none is given (HugeCTR's binding default)."""
    return AsyncParam(16, 4, 512000, 4, 512, False, Alignment_t.Non)


@dataclass
class HybridEmbeddingParam:
    """Settings of ``Embedding_t.HybridSparseEmbedding`` (frequent categories replicated, others sharded)."""

    max_num_frequent_categories: int
    max_num_infrequent_samples: int
    p_dup_max: float
    max_all_reduce_bandwidth: float
    max_all_to_all_bandwidth: float
    efficiency_bandwidth_ratio: float
    communication_type: CommunicationType
    hybrid_embedding_type: HybridEmbeddingType

    def __post_init__(self) -> None:
        w = "HybridEmbeddingParam()"
        self.max_num_frequent_categories = as_int(w, "max_num_frequent_categories",
                                                  self.max_num_frequent_categories, 0)
        self.max_num_infrequent_samples = as_int(w, "max_num_infrequent_samples",
                                                 self.max_num_infrequent_samples, -1)
        self.p_dup_max = as_float(w, "p_dup_max", self.p_dup_max, minimum=0.0, maximum=1.0)
        for arg in ("max_all_reduce_bandwidth", "max_all_to_all_bandwidth", "efficiency_bandwidth_ratio"):
            setattr(self, arg, as_float(w, arg, getattr(self, arg), above=0.0))
        self.communication_type = to_enum(CommunicationType, self.communication_type, "communication_type", w)
        self.hybrid_embedding_type = to_enum(HybridEmbeddingType, self.hybrid_embedding_type,
                                             "hybrid_embedding_type", w)

    def to_attrs(self) -> Attrs:
        """The IR form: every field, enum members by name."""
        return Attrs({
            "max_num_frequent_categories": self.max_num_frequent_categories,
            "max_num_infrequent_samples": self.max_num_infrequent_samples,
            "p_dup_max": self.p_dup_max,
            "max_all_reduce_bandwidth": self.max_all_reduce_bandwidth,
            "max_all_to_all_bandwidth": self.max_all_to_all_bandwidth,
            "efficiency_bandwidth_ratio": self.efficiency_bandwidth_ratio,
            "communication_type": self.communication_type.name,
            "hybrid_embedding_type": self.hybrid_embedding_type.name,
        })
