"""The HugeCTR 2.3 Python interface: a JSON model configuration plus ``solver_parser_helper`` →
``Session``, with ``DataReader`` and ``ModelPrefetcher`` (model oversubscribing) for epoch-by-epoch control.

A ``Session`` loads the 2.x configuration (its ``solver`` section is ignored: the solver comes from
``solver_parser_helper``), compiles the graph through the pass pipeline and reaches the training runtime
the way ``Model`` does (:meth:`Session._runtime`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hgc.config import config
from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_float,
    as_instance,
    as_int,
    as_str,
    as_str_list,
    bad,
    reject_unknown,
    require_given,
)
from hgc.frontend.enums import LrPolicy_t, MetricsType, to_enum
from hgc.frontend.low_level import (
    CompileOnlyRuntime,
    DataReader,
    DataReader32,
    DataReader64,
    LearningRateScheduler,
    ModelPrefetcher,
    TrainingRuntime,
    check_files_exist,
)
from hgc.frontend.solver import normalize_metrics, normalize_vvgpu
from hgc.frontend.target import active_target
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.passes.context import PassContext, PipelineResult


@dataclass
class SolverParser:
    """What ``solver_parser_helper`` returns: the 2.3 solver settings of a ``Session``."""

    seed: int = 0
    max_eval_batches: int = 100
    batchsize_eval: int = 16384
    batchsize: int = 16384
    model_file: str = ""
    embedding_files: list[str] = field(default_factory=list)
    vvgpu: list[list[int]] = field(default_factory=lambda: [[0]])
    use_mixed_precision: bool = False
    enable_tf32_compute: bool = False
    scaler: float = 1.0
    i64_input_key: bool = False
    use_algorithm_search: bool = True
    use_cuda_graph: bool = True
    repeat_dataset: bool = False
    lr_policy: LrPolicy_t = LrPolicy_t.fixed
    metrics_spec: dict[MetricsType, float] = field(default_factory=lambda: {MetricsType.AUC: 1.0})

    @property
    def world_size(self) -> int:
        return sum(len(node) for node in self.vvgpu)


def solver_parser_helper(seed: int = 0, max_eval_batches: int = 100, batchsize_eval: int = 16384,
                         batchsize: int = 16384, model_file: str = "", embedding_files: list[str] | None = None,
                         vvgpu: Any = None, use_mixed_precision: bool = False, enable_tf32_compute: bool = False,
                         scaler: float = 1.0, i64_input_key: bool = False, use_algorithm_search: bool = True,
                         use_cuda_graph: bool = True, repeat_dataset: bool = False, *,
                         lr_policy: LrPolicy_t = LrPolicy_t.fixed,
                         metrics_spec: Mapping[Any, float] | None = None) -> SolverParser:
    """The 2.3 solver: seed, evaluation batches, global batch sizes, a dense model file and embedding files
    to start from, GPUs (``vvgpu``), precision, key type and ``repeat_dataset`` (False: epoch mode, where
    file lists are set through the data readers). ``lr_policy`` and ``metrics_spec`` (keyword-only) are
    accepted as earlier 2.x releases took them."""
    w = "solver_parser_helper()"
    s = SolverParser(
        seed=as_int(w, "seed", seed, 0),
        max_eval_batches=as_int(w, "max_eval_batches", max_eval_batches, 1),
        batchsize_eval=as_int(w, "batchsize_eval", batchsize_eval, 1),
        batchsize=as_int(w, "batchsize", batchsize, 1),
        model_file=as_str(w, "model_file", model_file),
        embedding_files=as_str_list(w, "embedding_files", [] if embedding_files is None else embedding_files),
        vvgpu=normalize_vvgpu(w, [[0]] if vvgpu is None else vvgpu),
        use_mixed_precision=as_bool(w, "use_mixed_precision", use_mixed_precision),
        enable_tf32_compute=as_bool(w, "enable_tf32_compute", enable_tf32_compute),
        scaler=as_float(w, "scaler", scaler, above=0.0),
        i64_input_key=as_bool(w, "i64_input_key", i64_input_key),
        use_algorithm_search=as_bool(w, "use_algorithm_search", use_algorithm_search),
        use_cuda_graph=as_bool(w, "use_cuda_graph", use_cuda_graph),
        repeat_dataset=as_bool(w, "repeat_dataset", repeat_dataset),
        lr_policy=to_enum(LrPolicy_t, lr_policy, "lr_policy", w),
        metrics_spec=normalize_metrics(w, {MetricsType.AUC: 1.0} if metrics_spec is None else metrics_spec),
    )
    if s.use_mixed_precision and s.enable_tf32_compute:
        raise bad(w, "enable_tf32_compute", True, "TF32 compute cannot be combined with use_mixed_precision=True")
    for arg in ("batchsize", "batchsize_eval"):
        if getattr(s, arg) % s.world_size:
            raise bad(w, arg, getattr(s, arg), f"must be divisible by the total GPU count {s.world_size} "
                                               f"of vvgpu={s.vvgpu}")
    return s


def _load_config(where: str, config_file: Any, i64_input_key: bool) -> Any:
    path = as_str(where, "config_file", config_file, nonempty=True)
    if not os.path.isfile(path):
        raise bad(where, "config_file", path, "no such file")
    from hgc.ir.json_io import load_legacy_config

    return load_legacy_config(path, key_dtype="int64" if i64_input_key else "uint32")


def get_learning_rate_scheduler(config_file: str = REQUIRED) -> LearningRateScheduler:
    """The learning-rate schedule that a 2.x configuration's optimizer section describes (learning_rate,
    warmup_steps, decay_start, decay_steps, decay_power, end_lr)."""
    w = "get_learning_rate_scheduler()"
    require_given(w, {"config_file": config_file})
    cfg = _load_config(w, config_file, False)
    from hgc.runtime.lr_scheduler import LearningRateScheduler as Schedule

    o = cfg.optimizer
    return LearningRateScheduler(Schedule(o["learning_rate"], o.get("warmup_steps", 1), o.get("decay_start", 0),
                                          o.get("decay_steps", 1), o.get("decay_power", 2.0),
                                          o.get("end_lr", 0.0)))


class Session:
    """A 2.3 training session: ``Session(solver_config, config_file, use_model_oversubscriber=False,
    temp_embedding_dir="")``. With ``use_model_oversubscriber`` (also spelled ``use_model_prefetcher``)
    embedding tables larger than the GPUs are swapped per dataset through ``temp_embedding_dir``."""

    def __init__(self, solver_config: SolverParser = REQUIRED, config_file: str = REQUIRED,
                 use_model_oversubscriber: bool = False, temp_embedding_dir: str = "", **kwargs: Any) -> None:
        w = "Session()"
        reject_unknown(w, kwargs, ("use_model_prefetcher",))
        if "use_model_prefetcher" in kwargs:
            use_model_oversubscriber = kwargs["use_model_prefetcher"]
        require_given(w, {"solver_config": solver_config, "config_file": config_file})
        self.solver_config = as_instance(w, "solver_config", solver_config, SolverParser,
                                         "a hugectr.SolverParser (from solver_parser_helper)")
        self.use_model_oversubscriber = as_bool(w, "use_model_oversubscriber", use_model_oversubscriber)
        self.temp_embedding_dir = as_str(w, "temp_embedding_dir", temp_embedding_dir)
        self.config = _load_config(w, config_file, self.solver_config.i64_input_key)
        self._compile_only = config.compile_only
        self._session: TrainingRuntime | None = None
        s = self.solver_config
        if not self._compile_only:
            if self.use_model_oversubscriber and not os.path.isdir(self.temp_embedding_dir):
                raise bad(w, "temp_embedding_dir", self.temp_embedding_dir,
                          "model oversubscribing needs an existing, writable folder for its temporary files")
            for arg, paths in (("model_file", [s.model_file] if s.model_file else []),
                               ("embedding_files", s.embedding_files)):
                for p in paths:
                    if not os.path.exists(p):
                        raise bad("solver_parser_helper()", arg, p, "no such file or directory")
        n = len(self.embedding_names())
        if s.embedding_files and len(s.embedding_files) != n:
            raise bad("solver_parser_helper()", "embedding_files", s.embedding_files,
                      f"needs one file per embedding of {config_file} ({n})")
        from hgc.passes.pipeline import run_pipeline

        self._compiled: PipelineResult = run_pipeline(self.graph.copy(), self.pass_context())
        if self._compile_only:
            from hgc.frontend.model import COMPILED_MODELS

            COMPILED_MODELS.append(self)

    @classmethod
    def Create(cls, solver_config: SolverParser, config_file: str) -> Session:
        """The factory spelling of the constructor (2.x)."""
        return cls(solver_config, config_file)

    @property
    def graph(self) -> Graph:
        """The IR graph of the configuration (before passes); meta holds the model optimizer."""
        return self.config.graph

    @property
    def compiled(self) -> PipelineResult:
        return self._compiled

    def embedding_names(self) -> list[str]:
        return [n.name for n in self.graph.nodes() if get_op(n.op).kind == "embedding"]

    def pass_context(self) -> PassContext:
        s = self.solver_config
        return PassContext(vvgpu=[list(g) for g in s.vvgpu], batchsize=s.batchsize, batchsize_eval=s.batchsize_eval,
                           use_mixed_precision=s.use_mixed_precision, enable_tf32_compute=s.enable_tf32_compute,
                           target=active_target())

    def _runtime(self, where: str) -> TrainingRuntime:
        """The runtime that trains this session (the only place it is reached)."""
        if self._compile_only:
            return CompileOnlyRuntime(float(self.config.optimizer.get("learning_rate", 0.0)))
        if self._session is None:
            from hgc.frontend.runtime_bridge import make_session_runtime

            self._session = make_session_runtime(self)
        return self._session

    def train(self) -> bool:
        """One training iteration; False when the training source is exhausted (epoch mode)."""
        return bool(self._runtime("train").train())

    def eval(self) -> bool:
        """Evaluate one batch; False when the evaluation source is exhausted."""
        return bool(self._runtime("eval").eval())

    def get_eval_metrics(self) -> list[tuple[str, float]]:
        return list(self._runtime("get_eval_metrics").get_eval_metrics())

    def evaluation(self, export_predictions_out_file: str = "", export_labels_out_file: str = ""
                   ) -> list[tuple[str, float]]:
        """Evaluate the whole evaluation source and return the metrics; with both file names, also write
        the predictions and labels there."""
        w = "Session.evaluation()"
        pred = as_str(w, "export_predictions_out_file", export_predictions_out_file)
        label = as_str(w, "export_labels_out_file", export_labels_out_file)
        if bool(pred) != bool(label):
            raise bad(w, "export_labels_out_file" if pred else "export_predictions_out_file", label or pred,
                      "give both export file names or neither")
        return list(self._runtime("evaluation").evaluation(pred, label))

    def start_data_reading(self) -> None:
        self._runtime("start_data_reading").start_data_reading()

    def get_current_loss(self) -> float:
        return float(self._runtime("get_current_loss").get_current_loss())

    def download_params_to_files(self, prefix: str = REQUIRED, iter: int = REQUIRED) -> None:
        """Save the model (dense and sparse files named like snapshots: ``{prefix}..._{iter}.model``)."""
        w = "Session.download_params_to_files()"
        require_given(w, {"prefix": prefix, "iter": iter})
        prefix, iteration = as_str(w, "prefix", prefix), as_int(w, "iter", iter, 0)
        self._runtime("download_params_to_files").save_params_to_files(prefix, iteration)

    def set_learning_rate(self, lr: float = REQUIRED) -> None:
        w = "Session.set_learning_rate()"
        require_given(w, {"lr": lr})
        lr = as_float(w, "lr", lr, minimum=0.0)
        self._runtime("set_learning_rate").set_learning_rate(lr)

    def init_params(self, model_file: str = REQUIRED) -> None:
        """Load dense weights from ``model_file``."""
        w = "Session.init_params()"
        require_given(w, {"model_file": model_file})
        path = as_str(w, "model_file", model_file, nonempty=True)
        check_files_exist(w, "model_file", [path], self._compile_only)
        self._runtime("init_params").load_dense_weights(path, None)

    def get_params_num(self) -> int:
        """The number of dense and embedding parameters."""
        return int(self._runtime("get_params_num").get_params_num())

    def check_overflow(self) -> None:
        """Fail if an embedding holds more keys than its workspace allows."""
        self._runtime("check_overflow").check_overflow()

    def copy_weights_for_evaluation(self) -> None:
        self._runtime("copy_weights_for_evaluation").copy_weights_for_evaluation()

    def get_model_oversubscriber(self) -> ModelPrefetcher:
        """The model prefetcher (sessions created with ``use_model_oversubscriber=True``)."""
        if not self.use_model_oversubscriber:
            raise bad("Session.get_model_oversubscriber()", "use_model_oversubscriber", False,
                      "create the Session with use_model_oversubscriber=True")
        return ModelPrefetcher(self._runtime("get_model_oversubscriber").embedding_training_cache())

    get_model_prefetcher = get_model_oversubscriber

    def _reader(self, which: str) -> DataReader:
        cls = DataReader64 if self.solver_config.i64_input_key else DataReader32
        return cls(self._runtime(f"get_data_reader_{which}").data_reader(which))

    def get_data_reader_train(self) -> DataReader:
        return self._reader("train")

    def get_data_reader_eval(self) -> DataReader:
        return self._reader("eval")

    def __repr__(self) -> str:
        return f"Session({len(self.graph)} layers)"
