"""``Model``: records the layers a script adds as an IR graph, compiles it through the pass pipeline and
hands training to the runtime.

Every method that needs the runtime checks its arguments first and then goes through :meth:`Model._runtime`
(the one place the runtime is reached). Under ``hgc compile`` (``config.compile_only``) compiled models are
collected in :data:`COMPILED_MODELS` and the runtime is :class:`~hgc.frontend.low_level.CompileOnlyRuntime`,
so fit()/train()/eval()/… return at once.
"""
from __future__ import annotations

import os
from typing import Any

from hgc.config import config
from hgc.errors import GraphError
from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_data_source_params,
    as_float,
    as_float_list,
    as_instance,
    as_int,
    as_str,
    as_str_list,
    bad,
    reject_unknown,
    require_given,
)
from hgc.frontend.enums import LOSS_LAYERS, Tensor_t, to_enum
from hgc.frontend.layers import DenseLayer, GroupDenseLayer, Input, SparseEmbedding, ir_value
from hgc.frontend.low_level import (
    CompileOnlyRuntime,
    DataReader,
    DataReader32,
    DataReader64,
    EmbeddingTrainingCache,
    LearningRateScheduler,
    TrainingRuntime,
    check_files_exist,
)
from hgc.frontend.optimizer import OptParamsPy
from hgc.frontend.reader_params import DataReaderParams, check_reader_for_model
from hgc.frontend.solver import EmbeddingTrainingCacheParams, Solver
from hgc.frontend.summary import format_summary
from hgc.frontend.target import active_target
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.registry import get_op
from hgc.passes.context import PassContext, PipelineResult

#: Models compiled while ``config.compile_only`` was set (what ``hgc compile`` inspects).
COMPILED_MODELS: list[Any] = []



class Model:
    """A trainable model: ``Model(solver, reader_params, opt_params, etc=None)``, then ``add()`` an ``Input``,
    ``SparseEmbedding`` layers and ``DenseLayer``/``GroupDenseLayer`` layers ending in a loss, then
    ``compile()`` and ``fit()``."""

    def __init__(self, solver: Solver, reader_params: DataReaderParams, opt_params: OptParamsPy,
                 etc: EmbeddingTrainingCacheParams | None = None) -> None:
        w = "Model()"
        self.solver = as_instance(w, "solver", solver, Solver, "a hugectr.Solver (from CreateSolver)")
        self.reader_params = as_instance(w, "reader_params", reader_params, DataReaderParams,
                                         "a hugectr.DataReaderParams")
        self.opt_params = as_instance(w, "opt_params", opt_params, OptParamsPy,
                                      "a hugectr.OptParamsPy (from CreateOptimizer)")
        self.etc = as_instance(w, "etc", etc, EmbeddingTrainingCacheParams,
                               "a hugectr.EmbeddingTrainingCacheParams (from CreateETC)", allow_none=True)
        check_reader_for_model(self.reader_params, self.solver, self.etc)
        self._graph = Graph(meta={"model_name": self.solver.model_name, "optimizer": self.opt_params.to_attrs()})
        self._compiled: PipelineResult | None = None
        self._compile_only = False
        self._session: TrainingRuntime | None = None
        self.loss_weights: dict[str, float] = {}

    # -- building ---------------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The IR graph as the layers were added (before any pass)."""
        return self._graph

    @property
    def compiled(self) -> PipelineResult | None:
        """The pass pipeline's result, once compile() ran."""
        return self._compiled

    def _input_node(self) -> Node | None:
        return self._graph.node("data") if "data" in self._graph else None

    def embedding_names(self) -> list[str]:
        """The embeddings' output names, in the order they were added."""
        return [n.name for n in self._graph.nodes() if get_op(n.op).kind == "embedding"]

    def add(self, layer: Input | SparseEmbedding | DenseLayer | GroupDenseLayer) -> None:
        """Add an Input, a SparseEmbedding, a DenseLayer or a GroupDenseLayer (checked against the layers
        added before it; errors name the layer, its tensors and their shapes)."""
        if self._compiled is not None:
            raise GraphError(f"Model.add({type(layer).__name__}): the model is already compiled; add every layer "
                             f"before compile()")
        if isinstance(layer, Input):
            self._add_input(layer)
            return
        if not isinstance(layer, (SparseEmbedding, DenseLayer, GroupDenseLayer)):
            raise TypeError(f"Model.add() takes a hugectr.Input, SparseEmbedding, DenseLayer or GroupDenseLayer, "
                            f"got {type(layer).__name__} {layer!r}")
        inp = self._input_node()
        if inp is None:
            raise GraphError(f"Model.add({layer!r}): add the Input first; every other layer reads tensors that "
                             f"the Input or later layers produce")
        self._check_new_tops(layer)
        if isinstance(layer, SparseEmbedding):
            self._add_embedding(layer, inp)
        elif isinstance(layer, DenseLayer):
            self._add_dense(layer, inp)
        else:
            added: list[str] = []
            try:
                for bottoms, top, attrs in layer.members():
                    added.append(add_node(self._graph, "FusedInnerProduct", bottoms, [top], attrs).name)
            except Exception:
                for name in reversed(added):  # a group is added whole or not at all
                    self._graph.erase(name)
                raise

    def _check_new_tops(self, layer: SparseEmbedding | DenseLayer | GroupDenseLayer) -> None:
        """A top name another layer already produces is an error naming both layers."""
        if isinstance(layer, SparseEmbedding):
            op, tops = layer.embedding_type.name, [layer.sparse_embedding_name]
        elif isinstance(layer, DenseLayer):
            op, tops = layer.layer_type.name, layer.top_names
        else:
            op, tops = "FusedInnerProduct", layer.top_name_list
        for i, t in enumerate(tops):
            if self._graph.has_tensor(t):
                owner = self._graph.producer(t).label()
                raise GraphError(f"{op} layer '{tops[0] if op != 'FusedInnerProduct' else t}': top tensor '{t}' is "
                                 f"already produced by {owner}; top names must be unique")
            if t in tops[:i]:
                raise GraphError(f"{op} layer '{tops[0]}': top name '{t}' appears twice in {tops}")

    def _add_input(self, layer: Input) -> None:
        if self._input_node() is not None:
            raise GraphError(f"Model.add({layer!r}): the model already has an Input; a model takes exactly one")
        sparse = [Attrs(name=p.sparse_name, slot_num=p.slot_num, nnz_per_slot=tuple(p.nnz_list()),
                        is_fixed_length=p.is_fixed_length) for p in layer.data_reader_sparse_param_array]
        attrs = {"label_dims": tuple(layer.label_dims), "label_names": tuple(layer.label_names),
                 "dense_dim": layer.dense_dim, "dense_name": layer.dense_name, "sparse": tuple(sparse),
                 "key_dtype": "int64" if self.solver.i64_input_key else "uint32"}
        outputs = [*layer.label_names, layer.dense_name, *(s["name"] for s in sparse)]
        add_node(self._graph, "Input", [], outputs, attrs, name="data")

    def _add_embedding(self, layer: SparseEmbedding, inp: Node) -> None:
        sparse_names = [s["name"] for s in inp.attrs["sparse"]]
        if layer.bottom_name not in sparse_names:
            raise GraphError(f"{layer.embedding_type.name} layer '{layer.sparse_embedding_name}': bottom_name "
                             f"'{layer.bottom_name}' is not a sparse input of the Input; sparse inputs: "
                             f"{sparse_names}")
        add_node(self._graph, layer.embedding_type.name, [layer.bottom_name], [layer.sparse_embedding_name],
                 layer.to_attrs(), name=layer.sparse_embedding_name)

    def _add_dense(self, layer: DenseLayer, inp: Node) -> None:
        op_name = layer.layer_type.name
        label = f"{op_name} layer '{layer.top_names[0]}'"
        op = get_op(op_name)
        attrs = {a.name: ir_value(layer.args[a.name]) for a in op.attrs if a.name in layer.args}
        if op_name == "Interaction":
            if len(layer.top_names) not in (1, 2):
                raise GraphError(f"{label}: takes one top name, or two (the output and its gradient-buffer "
                                 f"alias for fused layers), got {layer.top_names}")
            attrs["num_tops"] = len(layer.top_names)
        if op_name in LOSS_LAYERS:
            labels = list(inp.attrs["label_names"])
            if len(layer.bottom_names) != 2 or layer.bottom_names[1] not in labels:
                raise GraphError(f"{label}: bottom_names must be [prediction, label] with the label one of the "
                                 f"Input's label tensors {labels}, got {layer.bottom_names}")
        add_node(self._graph, op_name, layer.bottom_names, layer.top_names, attrs)

    def construct_from_json(self, graph_config_file: str = REQUIRED, include_dense_network: bool = REQUIRED) -> None:
        """Build the model from a graph JSON file (``graph_to_json`` output). With
        ``include_dense_network=False`` only the Input and the embeddings are built, so a new dense network
        can be added on top."""
        w = "Model.construct_from_json()"
        require_given(w, {"graph_config_file": graph_config_file, "include_dense_network": include_dense_network})
        path = as_str(w, "graph_config_file", graph_config_file, nonempty=True)
        include = as_bool(w, "include_dense_network", include_dense_network)
        if not os.path.isfile(path):
            raise bad(w, "graph_config_file", path, "no such file")
        if self._compiled is not None or len(self._graph):
            raise GraphError(f"{w}: the model already has layers; construct from JSON into a new, empty Model")
        from hgc.ir.json_io import load_graph_json

        loaded = load_graph_json(path, include, key_dtype="int64" if self.solver.i64_input_key else "uint32")
        for node in loaded.nodes():
            self._graph.add(node)

    def graph_to_json(self, graph_config_file: str = REQUIRED) -> None:
        """Write the model graph as HugeCTR graph JSON (for continued training and inference)."""
        w = "Model.graph_to_json()"
        require_given(w, {"graph_config_file": graph_config_file})
        path = as_str(w, "graph_config_file", graph_config_file, nonempty=True)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise bad(w, "graph_config_file", path, f"its folder {parent} does not exist")
        from hgc.ir.json_io import write_graph_json

        write_graph_json(self._graph, path)

    # -- compiling ------------------------------------------------------------------------------------
    def pass_context(self) -> PassContext:
        """The pipeline options this model compiles with (GPUs, batch sizes, precision, target)."""
        s = self.solver
        return PassContext(vvgpu=[list(g) for g in s.vvgpu], batchsize=s.batchsize, batchsize_eval=s.batchsize_eval,
                           use_mixed_precision=s.use_mixed_precision, enable_tf32_compute=s.enable_tf32_compute,
                           compute_dtype=s.compute_dtype, target=active_target())

    def compile(self, loss_names: list[str] | None = None, loss_weights: list[float] | None = None) -> None:
        """Check the model and run the pass pipeline. Multi-task models may weight their losses:
        ``loss_names`` name each loss by its label tensor (or its top name), ``loss_weights`` give one weight
        each; unnamed losses weigh 1."""
        w = "Model.compile()"
        names = as_str_list(w, "loss_names", [] if loss_names is None else loss_names)
        weights = as_float_list(w, "loss_weights", [] if loss_weights is None else loss_weights)
        if len(names) != len(weights):
            raise bad(w, "loss_weights", weights, f"needs one weight per loss name; loss_names has {len(names)}")
        if self._input_node() is None:
            raise GraphError(f"{w}: the model has no Input layer")
        losses = [n for n in self._graph.nodes() if get_op(n.op).kind == "loss"]
        if not losses:
            raise GraphError(f"{w}: the model has no loss layer (BinaryCrossEntropyLoss, CrossEntropyLoss or "
                             f"MultiCrossEntropyLoss)")
        by_name = {n.inputs[1]: n.inputs[1] for n in losses}
        by_name.update({n.outputs[0]: n.inputs[1] for n in losses})
        table = {n.inputs[1]: 1.0 for n in losses}
        for name, weight in zip(names, weights):
            if name not in by_name:
                raise bad(w, "loss_names", name, f"must name a loss by its label tensor {sorted(table)} or its "
                                                 f"top name {[n.outputs[0] for n in losses]}")
            if weight < 0:
                raise bad(w, "loss_weights", weight, "must be >= 0")
            table[by_name[name]] = weight
        if len({by_name[n] for n in names}) != len(names):
            raise bad(w, "loss_names", names, "names each loss at most once")
        self._check_etc()
        from hgc.passes.pipeline import run_pipeline

        self._compiled = run_pipeline(self._graph.copy(), self.pass_context())
        self.loss_weights = table
        self._compile_only = config.compile_only
        if self._compile_only and not any(m is self for m in COMPILED_MODELS):
            COMPILED_MODELS.append(self)

    def _check_etc(self) -> None:
        etc = self.etc
        if etc is None or not etc.use_embedding_training_cache:
            return
        n = len(self.embedding_names())
        if len(etc.sparse_models) != n:
            raise bad("Model.compile()", "etc.sparse_models", etc.sparse_models,
                      f"needs one path per embedding table of the model ({n})")
        if etc.local_paths and len(etc.local_paths) != len(self.solver.vvgpu):
            raise bad("Model.compile()", "etc.local_paths", etc.local_paths,
                      f"needs one path per node (MPI rank) of vvgpu ({len(self.solver.vvgpu)})")

    def summary(self) -> None:
        """Print the layers as added: type, input names, output names, output shapes (batch as None)."""
        print(format_summary(self._graph, active_target()), end="")

    # -- the runtime ------------------------------------------------------------------------------------
    def _runtime(self, where: str) -> TrainingRuntime:
        """The runtime that trains this model (the only place the frontend reaches it)."""
        if self._compiled is None:
            raise RuntimeError(f"Model.{where}(): call Model.compile() first")
        if self._compile_only:
            return CompileOnlyRuntime(self.solver.lr)
        if self._session is None:
            from hgc.frontend.runtime_bridge import make_runtime

            session = make_runtime(self)
            if self.etc is not None and self.etc.use_embedding_training_cache:
                from hgc.runtime.etc import EtcConfig

                session.attach_etc(EtcConfig.from_params(self.etc), list(self.reader_params.keyset))
            self._session = session
        return self._session

    def fit(self, num_epochs: int = 0, max_iter: int = 2000, display: int = 200, eval_interval: int = 1000,
            snapshot: int = 10000, snapshot_prefix: str = "", data_source_params: Any = None) -> None:
        """Train: ``num_epochs`` epochs (``repeat_dataset=False``) or ``max_iter`` iterations
        (``repeat_dataset=True``), printing the loss every ``display`` iterations, evaluating every
        ``eval_interval`` and saving a snapshot (prefix ``snapshot_prefix``) every ``snapshot``."""
        w = "Model.fit()"
        num_epochs = as_int(w, "num_epochs", num_epochs, 0)
        max_iter = as_int(w, "max_iter", max_iter, 0)
        display = as_int(w, "display", display, 1)
        eval_interval = as_int(w, "eval_interval", eval_interval, 1)
        snapshot = as_int(w, "snapshot", snapshot, 1)
        snapshot_prefix = as_str(w, "snapshot_prefix", snapshot_prefix)
        data_source_params = as_data_source_params(w, "data_source_params", data_source_params)
        if self.solver.repeat_dataset and max_iter <= 0:
            raise bad(w, "max_iter", max_iter, "non-epoch mode (repeat_dataset=True) needs max_iter > 0")
        if not self.solver.repeat_dataset and num_epochs <= 0:
            raise bad(w, "num_epochs", num_epochs, "epoch mode (repeat_dataset=False) needs num_epochs > 0")
        if self.etc is not None and self.etc.use_embedding_training_cache and self.solver.repeat_dataset:
            raise bad(w, "solver.repeat_dataset", True, "fit() with the embedding training cache trains its "
                                                        "(source, keyset) passes in epoch mode: "
                                                        "CreateSolver(repeat_dataset=False)")
        self._runtime("fit").fit(num_epochs, max_iter, display, eval_interval, snapshot, snapshot_prefix,
                                 data_source_params)

    def load_dense_weights(self, dense_model_file: str = REQUIRED, data_source_params: Any = None) -> None:
        """Load dense weights from a dense model file (``{prefix}_dense_{iter}.model``)."""
        self._load_dense("load_dense_weights", "dense_model_file", dense_model_file, data_source_params)

    def load_dense_optimizer_states(self, dense_opt_states_file: str = REQUIRED,
                                    data_source_params: Any = None) -> None:
        """Load the dense optimizer states (``{prefix}_opt_dense_{iter}.model``)."""
        self._load_dense("load_dense_optimizer_states", "dense_opt_states_file", dense_opt_states_file,
                         data_source_params)

    def _load_dense(self, method: str, arg: str, path: Any, data_source_params: Any) -> None:
        w = f"Model.{method}()"
        require_given(w, {arg: path})
        path = as_str(w, arg, path, nonempty=True)
        dsp = as_data_source_params(w, "data_source_params", data_source_params)
        check_files_exist(w, arg, [path], self._compile_only, dsp)
        getattr(self._runtime(method), method)(path, dsp)

    def load_sparse_weights(self, sparse_embedding_files: list[str] | dict[str, str] = REQUIRED,
                            data_source_params: Any = None, **kwargs: Any) -> None:
        """Load embedding tables: a list with one sparse model folder per embedding (in the order added), or
        ``sparse_embedding_files_map`` {embedding name: folder} for some of them."""
        self._load_sparse("load_sparse_weights", "sparse_embedding_files", sparse_embedding_files,
                          data_source_params, kwargs)

    def load_sparse_optimizer_states(self, sparse_opt_states_files: list[str] | dict[str, str] = REQUIRED,
                                     data_source_params: Any = None, **kwargs: Any) -> None:
        """Load embedding optimizer states: a list with one file per embedding, or
        ``sparse_opt_states_files_map`` {embedding name: file}."""
        self._load_sparse("load_sparse_optimizer_states", "sparse_opt_states_files", sparse_opt_states_files,
                          data_source_params, kwargs)

    def _load_sparse(self, method: str, arg: str, files: Any, data_source_params: Any,
                     kwargs: dict[str, Any]) -> None:
        w = f"Model.{method}()"
        map_arg = f"{arg}_map"
        reject_unknown(w, kwargs, (map_arg,))
        if map_arg in kwargs:
            if files is not REQUIRED:
                raise TypeError(f"{w} got both '{arg}' and '{map_arg}'; give one")
            files, arg = kwargs[map_arg], map_arg
        require_given(w, {arg: files})
        dsp = as_data_source_params(w, "data_source_params", data_source_params)
        names = self.embedding_names()
        if isinstance(files, dict):
            for k, v in files.items():
                if k not in names:
                    raise bad(w, arg, files, f"key '{k}' is not an embedding of the model; embeddings: {names}")
                as_str(w, f"{arg}['{k}']", v, nonempty=True)
            table = dict(files)
        else:
            paths = as_str_list(w, arg, files)
            if len(paths) != len(names):
                raise bad(w, arg, files, f"needs one entry per embedding ({len(names)}: {names}), got {len(paths)}")
            table = dict(zip(names, paths))
        check_files_exist(w, arg, list(table.values()), self._compile_only, dsp)
        getattr(self._runtime(method), method)(table, dsp)

    def _embedding_arg(self, where: str, embedding_name: str | None) -> list[str]:
        names = self.embedding_names()
        if embedding_name is None:
            return names
        as_str(where, "embedding_name", embedding_name, nonempty=True)
        if embedding_name not in names:
            raise bad(where, "embedding_name", embedding_name, f"is not an embedding of the model; embeddings: "
                                                               f"{names}")
        return [embedding_name]

    def freeze_dense(self) -> None:
        """Stop updating the dense weights."""
        self._runtime("freeze_dense").freeze_dense()

    def unfreeze_dense(self) -> None:
        """Update the dense weights again."""
        self._runtime("unfreeze_dense").unfreeze_dense()

    def freeze_embedding(self, embedding_name: str | None = None) -> None:
        """Stop updating every embedding, or the one named ``embedding_name``."""
        names = self._embedding_arg("Model.freeze_embedding()", embedding_name)
        self._runtime("freeze_embedding").freeze_embedding(names)

    def unfreeze_embedding(self, embedding_name: str | None = None) -> None:
        """Update every embedding again, or the one named ``embedding_name``."""
        names = self._embedding_arg("Model.unfreeze_embedding()", embedding_name)
        self._runtime("unfreeze_embedding").unfreeze_embedding(names)

    def reset_learning_rate_scheduler(self, base_lr: float = REQUIRED, warmup_steps: int = 1, decay_start: int = 0,
                                      decay_steps: int = 1, decay_power: float = 2.0, end_lr: float = 0.0) -> None:
        """Restart the learning-rate schedule from step 0 with new parameters (for fine-tuning)."""
        w = "Model.reset_learning_rate_scheduler()"
        require_given(w, {"base_lr": base_lr})
        args = (as_float(w, "base_lr", base_lr, above=0.0), as_int(w, "warmup_steps", warmup_steps, 1),
                as_int(w, "decay_start", decay_start, 0), as_int(w, "decay_steps", decay_steps, 1),
                as_float(w, "decay_power", decay_power, minimum=1.0), as_float(w, "end_lr", end_lr, minimum=0.0))
        self._runtime("reset_learning_rate_scheduler").reset_learning_rate_scheduler(*args)

    def set_source(self, *args: Any, **kwargs: Any) -> None:
        """Set the data of the next epoch (epoch mode, ``repeat_dataset=False``). Two forms:
        ``set_source(source: str, eval_source: str)``, and with the embedding training cache
        ``set_source(source: List[str], keyset: List[str], eval_source: str)``."""
        w = "Model.set_source()"
        reject_unknown(w, kwargs, ("source", "keyset", "eval_source"))
        first = args[0] if args else kwargs.get("source", REQUIRED)
        names = ("source", "eval_source") if isinstance(first, str) else ("source", "keyset", "eval_source")
        if len(args) > len(names):
            raise TypeError(f"{w} takes at most {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in values:
                raise TypeError(f"{w} got multiple values for argument '{k}'")
            if k not in names:
                raise TypeError(f"{w}: argument '{k}' belongs to the list form set_source(source: List[str], "
                                f"keyset: List[str], eval_source: str)")
            values[k] = v
        require_given(w, {n: values.get(n, REQUIRED) for n in names})
        if self.solver.repeat_dataset:
            raise bad(w, "source", values["source"], "set_source is for epoch mode: CreateSolver(repeat_dataset=False)")
        eval_source = as_str(w, "eval_source", values["eval_source"], nonempty=True)
        using_etc = self.etc is not None and self.etc.use_embedding_training_cache
        if "keyset" in names:
            source = as_str_list(w, "source", values["source"])
            keyset = as_str_list(w, "keyset", values["keyset"])
            if not using_etc:
                raise bad(w, "source", source, "the list form needs the embedding training cache "
                                               "(Model(..., etc=CreateETC(...))); give one source string")
            if not source or len(keyset) != len(source):
                raise bad(w, "keyset", keyset, f"needs one keyset file per source ({len(source)})")
        else:
            source, keyset = [as_str(w, "source", values["source"], nonempty=True)], []
            if using_etc:
                raise bad(w, "source", source[0], "with the embedding training cache give lists: "
                                                  "set_source(source=[...], keyset=[...], eval_source=...)")
        for arg, paths in (("source", source), ("keyset", keyset), ("eval_source", [eval_source])):
            check_files_exist(w, arg, paths, self._compile_only)
        self._runtime("set_source").set_source(source, keyset, eval_source)

    # -- low-level training API ----------------------------------------------------------------------
    def get_learning_rate_scheduler(self) -> LearningRateScheduler:
        """The model's learning-rate schedule (see ``LearningRateScheduler.get_next``)."""
        return LearningRateScheduler(self._runtime("get_learning_rate_scheduler").learning_rate_scheduler())

    def _etc_required(self, where: str) -> None:
        if self.etc is None or not self.etc.use_embedding_training_cache:
            raise bad(f"Model.{where}()", "etc", self.etc, "needs the embedding training cache: "
                                                           "Model(..., etc=CreateETC(...))")

    def get_embedding_training_cache(self) -> EmbeddingTrainingCache:
        """The embedding training cache (models created with ``etc=CreateETC(...)``)."""
        self._etc_required("get_embedding_training_cache")
        return EmbeddingTrainingCache(
            self._runtime("get_embedding_training_cache").embedding_training_cache())

    def _reader(self, which: str) -> DataReader:
        cls = DataReader64 if self.solver.i64_input_key else DataReader32
        return cls(self._runtime(f"get_data_reader_{which}").data_reader(which))

    def get_data_reader_train(self) -> DataReader:
        """The training data reader (DataReader64 with 64-bit keys, else DataReader32)."""
        return self._reader("train")

    def get_data_reader_eval(self) -> DataReader:
        """The evaluation data reader."""
        return self._reader("eval")

    def start_data_reading(self) -> None:
        """Start the readers (non-epoch mode, before a hand-written training loop)."""
        self._runtime("start_data_reading").start_data_reading()

    def set_learning_rate(self, lr: float = REQUIRED) -> None:
        """The learning rate of the next iterations (with ``LearningRateScheduler.get_next``)."""
        w = "Model.set_learning_rate()"
        require_given(w, {"lr": lr})
        lr = as_float(w, "lr", lr, minimum=0.0)
        self._runtime("set_learning_rate").set_learning_rate(lr)

    def train(self) -> bool:
        """One training iteration on the next batch; False when the reader had no batch left."""
        return bool(self._runtime("train").train())

    def get_current_loss(self) -> float:
        """The loss of the last training iteration."""
        return float(self._runtime("get_current_loss").get_current_loss())

    def eval(self) -> bool:
        """Evaluate one batch (metrics accumulate until get_eval_metrics); False when none was left."""
        return bool(self._runtime("eval").eval())

    def get_eval_metrics(self) -> list[tuple[str, float]]:
        """The metrics over the batches evaluated since the last call, as (name, value) pairs."""
        return list(self._runtime("get_eval_metrics").get_eval_metrics())

    def get_incremental_model(self) -> list[tuple[Any, Any]]:
        """Per embedding table, (keys int64[N], vectors float32[N, vec]) updated since the last call
        (embedding training cache only)."""
        self._etc_required("get_incremental_model")
        return list(self._runtime("get_incremental_model").get_incremental_model())

    def save_params_to_files(self, prefix: str = REQUIRED, iter: int = 0) -> None:
        """Save dense weights and optimizer states and the embedding tables under HugeCTR's snapshot names:
        ``{prefix}_dense_{iter}.model``, ``{prefix}_opt_dense_{iter}.model``, and per embedding i the folder
        ``{prefix}{i}_sparse_{iter}.model`` and the file ``{prefix}{i}_opt_sparse_{iter}.model``.

        ``iter`` only names the files. ``fit`` numbers its snapshots 0-based, as HugeCTR does: the one taken
        after k training steps is named ``k - 1``. Give ``iter`` the same (steps done minus one) when the files
        should resume training: loading the optimizer-state files ``…opt…_{i}.model`` sets the step count (Adam's
        t, the learning-rate schedule) to ``i + 1``; a file name with no number restores no counters."""
        w = "Model.save_params_to_files()"
        require_given(w, {"prefix": prefix})
        prefix, iteration = as_str(w, "prefix", prefix), as_int(w, "iter", iter, 0)
        self._runtime("save_params_to_files").save_params_to_files(prefix, iteration)

    def export_predictions(self, output_prediction_file_name: str = REQUIRED,
                           output_label_file_name: str = REQUIRED) -> None:
        """Append the last evaluation batch's predictions and labels to two text files."""
        w = "Model.export_predictions()"
        require_given(w, {"output_prediction_file_name": output_prediction_file_name,
                          "output_label_file_name": output_label_file_name})
        pred = as_str(w, "output_prediction_file_name", output_prediction_file_name, nonempty=True)
        label = as_str(w, "output_label_file_name", output_label_file_name, nonempty=True)
        self._runtime("export_predictions").export_predictions(pred, label)

    def check_out_tensor(self, tensor_name: str = REQUIRED, tensor_type: Tensor_t = REQUIRED) -> Any:
        """The named tensor of the last step as a numpy array: from the training network (its gradient,
        ``Tensor_t.Train``) or the evaluation network (``Tensor_t.Evaluate``)."""
        w = "Model.check_out_tensor()"
        require_given(w, {"tensor_name": tensor_name, "tensor_type": tensor_type})
        name = as_str(w, "tensor_name", tensor_name, nonempty=True)
        which = to_enum(Tensor_t, tensor_type, "tensor_type", w)
        if not self._graph.has_tensor(name):
            raise bad(w, "tensor_name", name, f"is not a tensor of the model; tensors: {list(self._graph.tensors())}")
        return self._runtime("check_out_tensor").check_out_tensor(name, which.name)

    def __repr__(self) -> str:
        state = "compiled" if self._compiled is not None else "not compiled"
        return f"Model({self.solver.model_name!r}, {len(self._graph)} layers, {state})"
