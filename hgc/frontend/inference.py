"""The inference API: ``InferenceParams``, the hierarchical parameter server's database settings
(``VolatileDatabaseParams``, ``PersistentDatabaseParams``, ``UpdateSourceParams``) and ``InferenceModel``.

Database settings are objects whose fields may be set after construction (``params.type =
hugectr.DatabaseType_t.rocks_db``, or the type's name as a string); every assignment is checked. Where the
3.x API text and the later bindings disagree on a default, the API text's argument list is followed
(``overflow_policy`` evict_oldest, ``update_filters`` [".+"], Kafka ``max_batch_size`` 1000).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_data_source_params,
    as_float,
    as_float_list,
    as_instance,
    as_int,
    as_int_list,
    as_str,
    as_str_list,
    bad,
    reject_unknown,
    require_given,
)
from hgc.frontend.enums import (
    Check_t,
    DatabaseHashMapAlgorithm_t,
    DatabaseOverflowPolicy_t,
    DatabaseType_t,
    DataReaderType_t,
    UpdateSourceType_t,
    to_enum,
)

Normaliser = Callable[[str, str, Any], Any]

VOLATILE_TYPES = ("disabled", "hash_map", "parallel_hash_map", "multi_process_hash_map", "redis_cluster")
PERSISTENT_TYPES = ("disabled", "rocks_db")
CACHE_TYPES = ("dynamic", "static", "uvm")


def _int(minimum: int | None = None) -> Normaliser:
    return lambda w, a, v: as_int(w, a, v, minimum)


def _unit() -> Normaliser:
    return lambda w, a, v: as_float(w, a, v, minimum=0.0, maximum=1.0)


def _str(w: str, a: str, v: Any) -> str:
    return as_str(w, a, v)


def _db_type(allowed: tuple[str, ...]) -> Normaliser:
    def norm(w: str, a: str, v: Any) -> DatabaseType_t:
        t = to_enum(DatabaseType_t, v, a, w)
        if t.name not in allowed:
            raise bad(w, a, v, f"must be one of {', '.join('DatabaseType_t.' + n for n in allowed)}")
        return t
    return norm


class _Settings:
    """A record of named settings with defaults; unknown names and bad values are rejected, also on
    assignment."""

    FIELDS: ClassVar[dict[str, tuple[Any, Normaliser]]] = {}

    def __init__(self, **kwargs: Any) -> None:
        reject_unknown(f"{type(self).__name__}()", kwargs, self.FIELDS)
        for name, (default, _) in self.FIELDS.items():
            value = kwargs[name] if name in kwargs else (default() if callable(default) else default)
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self).__name__
        if name not in self.FIELDS:
            raise AttributeError(f"{cls} has no setting '{name}'; settings: {', '.join(self.FIELDS)}")
        object.__setattr__(self, name, self.FIELDS[name][1](cls, name, value))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


class VolatileDatabaseParams(_Settings):
    """The CPU-memory tier of the parameter server: a hash map per process, a shared-memory map, or a Redis
    cluster (``address``, ``user_name``, ``password``); keys are spread over ``num_partitions``; a partition
    over ``overflow_margin`` entries is shrunk to ``overflow_resolution_target`` of it by
    ``overflow_policy``; ``initial_cache_rate`` of a table is loaded at start-up; ``update_filters`` are
    regular expressions choosing which models' Kafka updates apply."""

    FIELDS: ClassVar[dict[str, tuple[Any, Normaliser]]] = {
        "type": (DatabaseType_t.parallel_hash_map, _db_type(VOLATILE_TYPES)),
        "address": ("127.0.0.1:7000", _str),
        "user_name": ("default", _str),
        "password": ("", _str),
        "algorithm": (DatabaseHashMapAlgorithm_t.PHM,
                      lambda w, a, v: to_enum(DatabaseHashMapAlgorithm_t, v, a, w)),
        "num_partitions": (lambda: min(16, os.cpu_count() or 1), _int(1)),
        "allocation_rate": (256 * 1024 * 1024, _int(1)),
        "shared_memory_size": (16 * 1024 ** 3, _int(1)),
        "shared_memory_name": ("hctr_mp_hash_map_database", _str),
        "max_get_batch_size": (10000, _int(1)),
        "max_set_batch_size": (10000, _int(1)),
        "max_batch_size": (65536, _int(1)),
        "overflow_margin": (2 ** 64 - 1, _int(1)),
        "overflow_policy": (DatabaseOverflowPolicy_t.evict_oldest,
                            lambda w, a, v: to_enum(DatabaseOverflowPolicy_t, v, a, w)),
        "overflow_resolution_target": (0.8, lambda w, a, v: as_float(w, a, v, above=0.0, below=1.0)),
        "initial_cache_rate": (1.0, _unit()),
        "refresh_time_after_fetch": (False, as_bool),
        "cache_missed_embeddings": (False, as_bool),
        "update_filters": (lambda: [".+"], lambda w, a, v: as_str_list(w, a, v)),
    }


class PersistentDatabaseParams(_Settings):
    """The disk tier of the parameter server: a RocksDB database at ``path`` (created if missing), opened
    read-only on request, with ``num_threads`` threads and batched reads/writes."""

    FIELDS: ClassVar[dict[str, tuple[Any, Normaliser]]] = {
        "type": (DatabaseType_t.disabled, _db_type(PERSISTENT_TYPES)),
        "path": ("/tmp/rocksdb", _str),
        "num_threads": (16, _int(1)),
        "read_only": (False, as_bool),
        "max_get_batch_size": (10000, _int(1)),
        "max_set_batch_size": (10000, _int(1)),
        "max_batch_size": (65536, _int(1)),
        "update_filters": (lambda: [".+"], lambda w, a, v: as_str_list(w, a, v)),
    }


class UpdateSourceParams(_Settings):
    """Where online model updates come from: none (``null``) or an Apache Kafka queue (``brokers``,
    "host[:port][;host[:port]...]"); updates are dispatched after ``poll_timeout_ms`` or once
    ``max_receive_buffer_size`` arrived, in chunks of ``max_batch_size``, retried after
    ``failure_backoff_ms``."""

    FIELDS: ClassVar[dict[str, tuple[Any, Normaliser]]] = {
        "type": (UpdateSourceType_t.null, lambda w, a, v: to_enum(UpdateSourceType_t, v, a, w)),
        "brokers": ("127.0.0.1:9092", _str),
        "metadata_refresh_interval_ms": (30000, _int(1)),
        "receive_buffer_size": (262144, _int(1)),
        "poll_timeout_ms": (500, _int(1)),
        "max_receive_buffer_size": (2000, _int(1)),
        "max_batch_size": (1000, _int(1)),
        "failure_backoff_ms": (50, _int(0)),
        "max_commit_interval": (32, _int(1)),
    }


class InferenceParams:
    """Settings of an ``InferenceModel``: the model name (as in training), the global ``max_batchsize``
    (divisible over ``deployed_devices``), the GPU embedding cache (``use_gpu_embedding_cache``,
    ``cache_size_percentage``, refreshed when the hit rate falls below ``hit_rate_threshold``), the model
    files, key type, precision and the parameter-server tiers."""

    def __init__(self, model_name: str = REQUIRED, max_batchsize: int = REQUIRED, hit_rate_threshold: float = REQUIRED,
                 dense_model_file: str = REQUIRED, sparse_model_files: list[str] = REQUIRED, device_id: int = 0,
                 use_gpu_embedding_cache: bool = REQUIRED, cache_size_percentage: float = REQUIRED,
                 i64_input_key: bool = REQUIRED, use_mixed_precision: bool = False, scaler: float = 1.0,
                 use_algorithm_search: bool = True, use_cuda_graph: bool = True,
                 number_of_worker_buffers_in_pool: int = 2, number_of_refresh_buffers_in_pool: int = 1,
                 thread_pool_size: int = 16, cache_refresh_percentage_per_iteration: float = 0.0,
                 deployed_devices: list[int] | None = None, default_value_for_each_table: list[float] | None = None,
                 volatile_db: VolatileDatabaseParams | None = None,
                 persistent_db: PersistentDatabaseParams | None = None,
                 update_source: UpdateSourceParams | None = None, maxnum_des_feature_per_sample: int = 26,
                 refresh_delay: float = 0.0, refresh_interval: float = 0.0,
                 maxnum_catfeature_query_per_table_per_sample: list[int] | None = None,
                 embedding_vecsize_per_table: list[int] | None = None,
                 embedding_table_names: list[str] | None = None, network_file: str = "", label_dim: int = 1,
                 slot_num: int = 10, non_trainable_params_file: str = "", use_static_table: bool = False,
                 embedding_cache_type: str = "dynamic", use_context_stream: bool = True,
                 fuse_embedding_table: bool = False, use_hctr_cache_implementation: bool = True,
                 init_ec: bool = True, enable_pagelock: bool = False, fp8_quant: bool = False) -> None:
        w = "InferenceParams()"
        require_given(w, {"model_name": model_name, "max_batchsize": max_batchsize,
                          "hit_rate_threshold": hit_rate_threshold, "dense_model_file": dense_model_file,
                          "sparse_model_files": sparse_model_files, "use_gpu_embedding_cache": use_gpu_embedding_cache,
                          "cache_size_percentage": cache_size_percentage, "i64_input_key": i64_input_key})
        self.model_name = as_str(w, "model_name", model_name, nonempty=True)
        self.max_batchsize = as_int(w, "max_batchsize", max_batchsize, 1)
        self.hit_rate_threshold = as_float(w, "hit_rate_threshold", hit_rate_threshold, minimum=0.0, maximum=1.0)
        self.dense_model_file = as_str(w, "dense_model_file", dense_model_file)
        files = [sparse_model_files] if isinstance(sparse_model_files, str) else sparse_model_files
        self.sparse_model_files = as_str_list(w, "sparse_model_files", files)
        self.device_id = as_int(w, "device_id", device_id, 0)
        self.use_gpu_embedding_cache = as_bool(w, "use_gpu_embedding_cache", use_gpu_embedding_cache)
        self.cache_size_percentage = as_float(w, "cache_size_percentage", cache_size_percentage,
                                              minimum=0.0, maximum=1.0)
        self.i64_input_key = as_bool(w, "i64_input_key", i64_input_key)
        self.use_mixed_precision = as_bool(w, "use_mixed_precision", use_mixed_precision)
        self.scaler = as_float(w, "scaler", scaler, above=0.0)
        self.use_algorithm_search = as_bool(w, "use_algorithm_search", use_algorithm_search)
        self.use_cuda_graph = as_bool(w, "use_cuda_graph", use_cuda_graph)
        self.number_of_worker_buffers_in_pool = as_int(w, "number_of_worker_buffers_in_pool",
                                                       number_of_worker_buffers_in_pool, 1)
        self.number_of_refresh_buffers_in_pool = as_int(w, "number_of_refresh_buffers_in_pool",
                                                        number_of_refresh_buffers_in_pool, 1)
        self.thread_pool_size = as_int(w, "thread_pool_size", thread_pool_size, 1)
        self.cache_refresh_percentage_per_iteration = as_float(
            w, "cache_refresh_percentage_per_iteration", cache_refresh_percentage_per_iteration,
            minimum=0.0, maximum=1.0)
        devices = as_int_list(w, "deployed_devices", [0] if deployed_devices is None else deployed_devices, 0)
        if not devices or len(set(devices)) != len(devices):
            raise bad(w, "deployed_devices", deployed_devices, "must be a non-empty list of distinct GPU ids")
        self.deployed_devices = devices
        if self.max_batchsize % len(devices):
            raise bad(w, "max_batchsize", max_batchsize, f"must be divisible by the number of deployed devices "
                                                         f"({len(devices)})")
        self.default_value_for_each_table = as_float_list(
            w, "default_value_for_each_table", [0.0] if default_value_for_each_table is None
            else default_value_for_each_table)
        self.volatile_db = (VolatileDatabaseParams() if volatile_db is None else
                            as_instance(w, "volatile_db", volatile_db, VolatileDatabaseParams,
                                        "a hugectr.inference.VolatileDatabaseParams"))
        self.persistent_db = (PersistentDatabaseParams() if persistent_db is None else
                              as_instance(w, "persistent_db", persistent_db, PersistentDatabaseParams,
                                          "a hugectr.inference.PersistentDatabaseParams"))
        self.update_source = (UpdateSourceParams() if update_source is None else
                              as_instance(w, "update_source", update_source, UpdateSourceParams,
                                          "a hugectr.UpdateSourceParams"))
        self.maxnum_des_feature_per_sample = as_int(w, "maxnum_des_feature_per_sample",
                                                    maxnum_des_feature_per_sample, 0)
        self.refresh_delay = as_float(w, "refresh_delay", refresh_delay, minimum=0.0)
        self.refresh_interval = as_float(w, "refresh_interval", refresh_interval, minimum=0.0)
        self.maxnum_catfeature_query_per_table_per_sample = as_int_list(
            w, "maxnum_catfeature_query_per_table_per_sample",
            [26] if maxnum_catfeature_query_per_table_per_sample is None
            else maxnum_catfeature_query_per_table_per_sample, 0)
        self.embedding_vecsize_per_table = as_int_list(
            w, "embedding_vecsize_per_table", [128] if embedding_vecsize_per_table is None
            else embedding_vecsize_per_table, 1)
        self.embedding_table_names = as_str_list(w, "embedding_table_names", [""] if embedding_table_names is None
                                                 else embedding_table_names, nonempty_items=False)
        self.network_file = as_str(w, "network_file", network_file)
        self.label_dim = as_int(w, "label_dim", label_dim, 1)
        self.slot_num = as_int(w, "slot_num", slot_num, 1)
        self.non_trainable_params_file = as_str(w, "non_trainable_params_file", non_trainable_params_file)
        self.use_static_table = as_bool(w, "use_static_table", use_static_table)
        cache_type = str(getattr(embedding_cache_type, "name", embedding_cache_type))
        if cache_type.lower() not in CACHE_TYPES:
            raise bad(w, "embedding_cache_type", embedding_cache_type, f"must be one of {list(CACHE_TYPES)}")
        self.embedding_cache_type = cache_type.lower()
        self.use_context_stream = as_bool(w, "use_context_stream", use_context_stream)
        self.fuse_embedding_table = as_bool(w, "fuse_embedding_table", fuse_embedding_table)
        self.use_hctr_cache_implementation = as_bool(w, "use_hctr_cache_implementation",
                                                     use_hctr_cache_implementation)
        self.init_ec = as_bool(w, "init_ec", init_ec)
        self.enable_pagelock = as_bool(w, "enable_pagelock", enable_pagelock)
        self.fp8_quant = as_bool(w, "fp8_quant", fp8_quant)

    def __repr__(self) -> str:
        return (f"InferenceParams(model_name={self.model_name!r}, max_batchsize={self.max_batchsize}, "
                f"deployed_devices={self.deployed_devices})")


class InferenceModel:
    """Offline inference over Norm or Parquet data (and, an hgc extension, Raw data) with a trained model:
    ``InferenceModel(model_config_path, inference_params)``, where the configuration is the graph JSON of
    ``Model.graph_to_json``. The model is deployed when constructed: the files are read and the parameter
    server is filled (see :mod:`hgc.runtime.inference.runtime`)."""

    def __init__(self, model_config_path: str = REQUIRED, inference_params: InferenceParams = REQUIRED) -> None:
        w = "InferenceModel()"
        require_given(w, {"model_config_path": model_config_path, "inference_params": inference_params})
        path = as_str(w, "model_config_path", model_config_path, nonempty=True)
        if not os.path.isfile(path):
            raise bad(w, "model_config_path", path, "no such file")
        self.inference_params = as_instance(w, "inference_params", inference_params, InferenceParams,
                                            "a hugectr.inference.InferenceParams")
        p = self.inference_params
        for arg, files in (("dense_model_file", [p.dense_model_file]), ("sparse_model_files", p.sparse_model_files)):
            for f in files:
                if not os.path.exists(f):
                    raise bad("InferenceParams()", arg, f, "no such file or directory")
        from hgc.ir.json_io import load_graph_json
        from hgc.ir.registry import get_op

        self.model_config_path = path
        self.graph = load_graph_json(path, True, key_dtype="int64" if p.i64_input_key else "uint32")
        tables = [n.name for n in self.graph.nodes() if get_op(n.op).kind == "embedding"]
        if len(p.sparse_model_files) != len(tables):
            raise bad("InferenceParams()", "sparse_model_files", p.sparse_model_files,
                      f"needs one sparse model per embedding of {path} ({len(tables)}: {tables})")
        from hgc.runtime.inference.runtime import InferenceRuntime

        self._rt = InferenceRuntime(self.graph, p, path)

    def _runtime(self, where: str) -> Any:
        """The inference runtime (the only place it is reached)."""
        return self._rt

    def _data_args(self, where: str, num_batches: Any, source: Any, data_reader_type: Any, check_type: Any,
                   slot_size_array: Any, data_source_params: Any, reading_file_sequentially: Any) -> tuple:
        require_given(where, {"num_batches": num_batches, "source": source, "data_reader_type": data_reader_type,
                              "check_type": check_type})
        n = as_int(where, "num_batches", num_batches, 1)
        src = as_str(where, "source", source, nonempty=True)
        kind = to_enum(DataReaderType_t, data_reader_type, "data_reader_type", where)
        check = to_enum(Check_t, check_type, "check_type", where)
        sizes = as_int_list(where, "slot_size_array", [] if slot_size_array is None else slot_size_array, 1)
        if kind is DataReaderType_t.Parquet and not sizes:
            raise bad(where, "slot_size_array", sizes, "is required for Parquet data: the cardinality of every "
                                                       "sparse slot (its keys are offset by the sizes before it)")
        dsp = as_data_source_params(where, "data_source_params", data_source_params)
        seq = as_bool(where, "reading_file_sequentially", reading_file_sequentially)
        if not getattr(dsp, "use_hdfs", False) and not os.path.isfile(src):
            raise bad(where, "source", src, "no such file")
        return n, src, kind.name, check.name, sizes, dsp, seq

    def predict(self, num_batches: int = REQUIRED, source: str = REQUIRED,
                data_reader_type: DataReaderType_t = REQUIRED, check_type: Check_t = REQUIRED,
                slot_size_array: list[int] | None = None, data_source_params: Any = None,
                reading_file_sequentially: bool = True) -> Any:
        """Predictions for ``num_batches`` batches of ``max_batchsize`` samples of ``source`` (a file list;
        for Raw data the .bin file), as a float32 array (max_batchsize·num_batches, label_dim) in dataset order
        (wrapping around at its end)."""
        args = self._data_args("InferenceModel.predict()", num_batches, source, data_reader_type, check_type,
                               slot_size_array, data_source_params, reading_file_sequentially)
        return self._runtime("predict").predict(*args)

    def evaluate(self, num_batches: int = REQUIRED, source: str = REQUIRED,
                 data_reader_type: DataReaderType_t = REQUIRED, check_type: Check_t = REQUIRED,
                 slot_size_array: list[int] | None = None, data_source_params: Any = None,
                 reading_file_sequentially: bool = True) -> float:
        """The AUC over ``num_batches`` batches of the labelled ``source``."""
        args = self._data_args("InferenceModel.evaluate()", num_batches, source, data_reader_type, check_type,
                               slot_size_array, data_source_params, reading_file_sequentially)
        return float(self._runtime("evaluate").evaluate(*args))

    def check_out_tensor(self, tensor_name: str = REQUIRED) -> Any:
        """A tensor of the last inference step, as a numpy array."""
        w = "InferenceModel.check_out_tensor()"
        require_given(w, {"tensor_name": tensor_name})
        name = as_str(w, "tensor_name", tensor_name, nonempty=True)
        if not self.graph.has_tensor(name):
            raise bad(w, "tensor_name", name, f"is not a tensor of the model; tensors: {list(self.graph.tensors())}")
        return self._runtime("check_out_tensor").check_out_tensor(name)
