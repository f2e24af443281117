"""The layer records a ``Model`` is built from: ``Input``, ``SparseEmbedding``, ``DenseLayer`` and
``GroupDenseLayer``. Constructing one checks its arguments' types and spelling; shape rules are checked by
``Model.add``, where the input tensors are known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hgc.frontend._args import (
    REQUIRED,
    as_bool,
    as_float,
    as_float_list,
    as_instance,
    as_int,
    as_int_list,
    as_str,
    as_str_list,
    bad,
    is_int,
    reject_unknown,
    require_given,
)
from hgc.frontend.enums import (
    Activation_t,
    Embedding_t,
    FcPosition_t,
    GroupLayer_t,
    HugeCTREnum,
    Initializer_t,
    Layer_t,
    Regularizer_t,
    to_enum,
)
from hgc.frontend.optimizer import OptParamsPy
from hgc.frontend.reader_params import DataReaderSparseParam
from hgc.frontend.solver import HybridEmbeddingParam


# -- Input ------------------------------------------------------------------------------------------
class Input:
    """The data layer: label tensor(s), the dense-feature tensor and the sparse inputs.

    ``label_dim``/``label_name`` are an int and a name, or (multi-task data) a list of widths and a list of
    names of the same length; ``label_dims``/``label_names`` are accepted as the list spellings.
    ``dense_dim`` may be 0 (no dense features). ``data_reader_sparse_param_array`` lists the sparse inputs.
    """

    def __init__(self, label_dim: int | list[int] = REQUIRED, label_name: str | list[str] = REQUIRED,
                 dense_dim: int = REQUIRED, dense_name: str = REQUIRED,
                 data_reader_sparse_param_array: list[DataReaderSparseParam] | None = None,
                 **kwargs: Any) -> None:
        w = "Input()"
        reject_unknown(w, kwargs, ("label_dims", "label_names"))
        for alias, arg in (("label_dims", "label_dim"), ("label_names", "label_name")):
            if alias in kwargs:
                if (label_dim if arg == "label_dim" else label_name) is not REQUIRED:
                    raise TypeError(f"{w} got both '{arg}' and '{alias}'; give one")
                if arg == "label_dim":
                    label_dim = kwargs[alias]
                else:
                    label_name = kwargs[alias]
        require_given(w, {"label_dim": label_dim, "label_name": label_name, "dense_dim": dense_dim,
                          "dense_name": dense_name})
        if is_int(label_dim) != isinstance(label_name, str):
            raise bad(w, "label_name", label_name, f"must be a name for label_dim={label_dim!r} (an int), or a "
                                                  f"list of names for a list of label dims")
        if is_int(label_dim):
            self.label_dims = [as_int(w, "label_dim", label_dim, 1)]
            self.label_names = [as_str(w, "label_name", label_name, nonempty=True)]
        else:
            self.label_dims = as_int_list(w, "label_dim", label_dim, 1)
            self.label_names = as_str_list(w, "label_name", label_name)
            if not self.label_dims or len(self.label_dims) != len(self.label_names):
                raise bad(w, "label_name", label_name, f"needs one name per label dim {self.label_dims} "
                                                      f"(and at least one)")
        self.dense_dim = as_int(w, "dense_dim", dense_dim, 0)
        self.dense_name = as_str(w, "dense_name", dense_name, nonempty=True)
        params = [] if data_reader_sparse_param_array is None else data_reader_sparse_param_array
        if not isinstance(params, (list, tuple)):
            raise bad(w, "data_reader_sparse_param_array", params, "must be a list of DataReaderSparseParam")
        self.data_reader_sparse_param_array = [
            as_instance(w, "data_reader_sparse_param_array", p, DataReaderSparseParam,
                        "a list of hugectr.DataReaderSparseParam") for p in params]

    @property
    def label_dim(self) -> int | list[int]:
        return self.label_dims[0] if len(self.label_dims) == 1 else list(self.label_dims)

    @property
    def label_name(self) -> str | list[str]:
        return self.label_names[0] if len(self.label_names) == 1 else list(self.label_names)

    def __repr__(self) -> str:
        sparse = [p.sparse_name for p in self.data_reader_sparse_param_array]
        return (f"Input(label_dim={self.label_dim!r}, label_name={self.label_name!r}, dense_dim={self.dense_dim}, "
                f"dense_name={self.dense_name!r}, sparse={sparse})")


# -- SparseEmbedding --------------------------------------------------------------------------------
class SparseEmbedding:
    """An embedding table over one sparse input: each slot's key vectors combined by ``combiner``.

    ``workspace_size_per_gpu_in_mb`` budgets rows and optimizer states per GPU; ``slot_size_array`` gives
    per-slot vocabularies (required by the OneHot and Hybrid types); ``optimizer`` overrides the model's
    optimizer for this table; ``hybrid_embedding_param`` configures HybridSparseEmbedding.
    """

    def __init__(self, embedding_type: Embedding_t = REQUIRED, workspace_size_per_gpu_in_mb: int = 0,
                 embedding_vec_size: int = REQUIRED, combiner: str = REQUIRED, sparse_embedding_name: str = REQUIRED,
                 bottom_name: str = REQUIRED, slot_size_array: list[int] | None = None,
                 optimizer: OptParamsPy | None = None,
                 hybrid_embedding_param: HybridEmbeddingParam | None = None) -> None:
        w = "SparseEmbedding()"
        require_given(w, {"embedding_type": embedding_type, "embedding_vec_size": embedding_vec_size,
                          "combiner": combiner, "sparse_embedding_name": sparse_embedding_name,
                          "bottom_name": bottom_name})
        self.embedding_type = to_enum(Embedding_t, embedding_type, "embedding_type", w)
        self.workspace_size_per_gpu_in_mb = as_int(w, "workspace_size_per_gpu_in_mb",
                                                   workspace_size_per_gpu_in_mb, 0)
        self.embedding_vec_size = as_int(w, "embedding_vec_size", embedding_vec_size, 1)
        if combiner not in ("sum", "mean"):
            raise bad(w, "combiner", combiner, "must be 'sum' or 'mean'")
        self.combiner = combiner
        self.sparse_embedding_name = as_str(w, "sparse_embedding_name", sparse_embedding_name, nonempty=True)
        self.bottom_name = as_str(w, "bottom_name", bottom_name, nonempty=True)
        self.slot_size_array = as_int_list(w, "slot_size_array", [] if slot_size_array is None else slot_size_array,
                                           1)
        self.optimizer = as_instance(w, "optimizer", optimizer, OptParamsPy, "a hugectr.OptParamsPy (from "
                                     "CreateOptimizer)", allow_none=True)
        self.hybrid_embedding_param = as_instance(w, "hybrid_embedding_param", hybrid_embedding_param,
                                                  HybridEmbeddingParam, "a hugectr.HybridEmbeddingParam",
                                                  allow_none=True)

    def to_attrs(self) -> dict[str, Any]:
        """The embedding node's attributes (IR contract)."""
        return {
            "workspace_size_per_gpu_in_mb": self.workspace_size_per_gpu_in_mb,
            "embedding_vec_size": self.embedding_vec_size,
            "combiner": self.combiner,
            "slot_size_array": tuple(self.slot_size_array),
            "optimizer": None if self.optimizer is None else self.optimizer.to_attrs(),
            "hybrid_embedding_param": (None if self.hybrid_embedding_param is None
                                       else self.hybrid_embedding_param.to_attrs()),
        }

    def __repr__(self) -> str:
        return (f"SparseEmbedding({self.embedding_type!r}, {self.bottom_name!r} -> {self.sparse_embedding_name!r}, "
                f"embedding_vec_size={self.embedding_vec_size}, combiner={self.combiner!r})")


# -- DenseLayer -------------------------------------------------------------------------------------
@dataclass
class DenseLayerComputeConfig:
    """Compute options of a dense layer: overlap weight-gradient work (``async_wgrad``) and fuse the
    weight/bias gradient computation (``fuse_wb``)."""

    async_wgrad: bool = False
    fuse_wb: bool = False


def _ranges(where: str, v: Any) -> list[tuple[int, int]]:
    ok = isinstance(v, (list, tuple)) and all(
        isinstance(r, (list, tuple)) and len(r) == 2 and all(is_int(i) for i in r) for r in v)
    if not ok:
        raise bad(where, "ranges", v, "must be a list of (start, end) integer pairs")
    return [(int(a), int(b)) for a, b in v]


def _activation_list(where: str, v: Any) -> list[Activation_t]:
    if not isinstance(v, (list, tuple)):
        raise bad(where, "activations", v, "must be a list of Activation_t")
    return [to_enum(Activation_t, a, "activations", where) for a in v]


def _bool_list(where: str, v: Any) -> list[bool]:
    if not isinstance(v, (list, tuple)):
        raise bad(where, "biases", v, "must be a list of True/False")
    return [as_bool(where, "biases", b) for b in v]


def _compute_config(where: str, v: Any) -> DenseLayerComputeConfig:
    if v is None:
        return DenseLayerComputeConfig()
    return as_instance(where, "compute_config", v, DenseLayerComputeConfig, "a hugectr.DenseLayerComputeConfig")


def _enum(cls: type[HugeCTREnum]) -> Any:
    return lambda where, arg, v: to_enum(cls, v, arg, where)


_INT = lambda where, arg, v: as_int(where, arg, v)
_FLOAT = lambda where, arg, v: as_float(where, arg, v)
_BOOL = as_bool
_INTS = lambda where, arg, v: as_int_list(where, arg, v)

#: Every DenseLayer keyword after layer_type/bottom_names/top_names: (default, normaliser(where, arg, v)).
#: Defaults follow facts §1.1 except ``leading_dim``, whose default is the 3.x argument list's 1.
DENSE_ARGS: dict[str, tuple[Any, Any]] = {
    "factor": (1.0, _FLOAT),
    "eps": (1e-5, _FLOAT),
    "gamma_init_type": (Initializer_t.Default, _enum(Initializer_t)),
    "beta_init_type": (Initializer_t.Default, _enum(Initializer_t)),
    "dropout_rate": (0.5, _FLOAT),
    "elu_alpha": (1.0, _FLOAT),
    "num_output": (1, _INT),
    "weight_init_type": (Initializer_t.Default, _enum(Initializer_t)),
    "bias_init_type": (Initializer_t.Default, _enum(Initializer_t)),
    "num_layers": (0, _INT),
    "leading_dim": (1, _INT),
    "time_step": (0, _INT),
    "batchsize": (1, _INT),
    "SeqLength": (1, _INT),
    "vector_size": (1, _INT),
    "selected": (False, _BOOL),
    "selected_slots": ([], _INTS),
    "ranges": ([], lambda where, arg, v: _ranges(where, v)),
    "indices": ([], _INTS),
    "weight_dims": ([], _INTS),
    "projection_dim": (0, _INT),
    "out_dim": (0, _INT),
    "axis": (1, _INT),
    "max_sequence_len_from": (1, _INT),
    "max_sequence_len_to": (1, _INT),
    "num_attention_heads": (1, _INT),
    "transpose_b": (False, _BOOL),
    "target_weight_vec": ([], lambda where, arg, v: as_float_list(where, arg, v)),
    "use_regularizer": (False, _BOOL),
    "regularizer_type": (Regularizer_t.L1, _enum(Regularizer_t)),
    "lambda": (0.0, _FLOAT),
    "pos_type": (FcPosition_t.Non, _enum(FcPosition_t)),
    "act_type": (Activation_t.Relu, _enum(Activation_t)),
    "num_outputs": ([], _INTS),
    "use_bias": (True, _BOOL),
    "activations": ([], lambda where, arg, v: _activation_list(where, v)),
    "biases": ([], lambda where, arg, v: _bool_list(where, v)),
    "compute_config": (None, lambda where, arg, v: _compute_config(where, v)),
    "shape": ([], _INTS),
    "dim": (0, _INT),
    "index": ([], _INTS),
}


def ir_value(v: Any) -> Any:
    """A DenseLayer value as an IR attribute: enum members by name, lists as tuples (recursively)."""
    if isinstance(v, HugeCTREnum):
        return v.name
    if isinstance(v, (list, tuple)):
        return tuple(ir_value(x) for x in v)
    return v


class DenseLayer:
    """A dense layer or loss: ``layer_type`` (a ``Layer_t``) reading ``bottom_names`` and writing ``top_names``.

    Every other argument is a keyword from :data:`DENSE_ARGS`; ``lambda`` is a Python keyword, so it is passed
    as ``**{"lambda": 0.01}``. Each layer type reads the arguments that apply to it and ignores the rest,
    as in HugeCTR. The values are kept as attributes (``layer.num_output``, ``getattr(layer, "lambda")``).
    """

    def __init__(self, layer_type: Layer_t = REQUIRED, bottom_names: list[str] = REQUIRED,
                 top_names: list[str] = REQUIRED, **kwargs: Any) -> None:
        w = "DenseLayer()"
        reject_unknown(w, kwargs, DENSE_ARGS)
        require_given(w, {"layer_type": layer_type, "bottom_names": bottom_names, "top_names": top_names})
        if isinstance(layer_type, (Embedding_t, GroupLayer_t)):
            use = "SparseEmbedding" if isinstance(layer_type, Embedding_t) else "GroupDenseLayer"
            raise bad(w, "layer_type", layer_type, f"must be a Layer_t member; {layer_type!r} is added with "
                                                   f"hugectr.{use}")
        self.layer_type = to_enum(Layer_t, layer_type, "layer_type", w)
        self.bottom_names = as_str_list(w, "bottom_names", [bottom_names] if isinstance(bottom_names, str)
                                        else bottom_names)
        self.top_names = as_str_list(w, "top_names", [top_names] if isinstance(top_names, str) else top_names)
        if not self.bottom_names:
            raise bad(w, "bottom_names", bottom_names, "must name at least one input tensor")
        if not self.top_names:
            raise bad(w, "top_names", top_names, "must name at least one output tensor")
        self.args: dict[str, Any] = {}
        for arg, (default, norm) in DENSE_ARGS.items():
            value = norm(w, arg, kwargs[arg]) if arg in kwargs else norm(w, arg, default)
            self.args[arg] = value
            setattr(self, arg, value)

    def __repr__(self) -> str:
        return f"DenseLayer({self.layer_type!r}, bottom_names={self.bottom_names}, top_names={self.top_names})"


# -- GroupDenseLayer --------------------------------------------------------------------------------
class GroupDenseLayer:
    """A chain of fused fully connected layers (``GroupLayer_t.GroupFusedInnerProduct``): the first reads
    ``bottom_name_list`` (one tensor, or two after a two-output Interaction), each next one the previous
    output; ``num_outputs[i]`` is the width of layer i, written to ``top_name_list[i]``. Every layer but the
    last uses ReLU; the last uses ``last_act_type``. ``bottom_name`` is accepted for ``bottom_name_list``.
    """

    def __init__(self, group_layer_type: GroupLayer_t = REQUIRED, bottom_name_list: list[str] = REQUIRED,
                 top_name_list: list[str] = REQUIRED, num_outputs: list[int] = REQUIRED,
                 last_act_type: Activation_t = Activation_t.Relu, **kwargs: Any) -> None:
        w = "GroupDenseLayer()"
        reject_unknown(w, kwargs, ("bottom_name",))
        if "bottom_name" in kwargs:
            if bottom_name_list is not REQUIRED:
                raise TypeError(f"{w} got both 'bottom_name_list' and 'bottom_name'; give one")
            bottom_name_list = kwargs["bottom_name"]
        require_given(w, {"group_layer_type": group_layer_type, "bottom_name_list": bottom_name_list,
                          "top_name_list": top_name_list, "num_outputs": num_outputs})
        self.group_layer_type = to_enum(GroupLayer_t, group_layer_type, "group_layer_type", w)
        bottoms = [bottom_name_list] if isinstance(bottom_name_list, str) else bottom_name_list
        self.bottom_name_list = as_str_list(w, "bottom_name_list", bottoms)
        if len(self.bottom_name_list) not in (1, 2):
            raise bad(w, "bottom_name_list", bottom_name_list, "must name one input tensor, or two (an "
                                                               "Interaction's output and its gradient buffer)")
        self.top_name_list = as_str_list(w, "top_name_list", top_name_list)
        self.num_outputs = as_int_list(w, "num_outputs", num_outputs, 1)
        if len(self.top_name_list) < 2:
            raise bad(w, "top_name_list", top_name_list, "a group needs at least two layers (one top name each)")
        if len(self.num_outputs) != len(self.top_name_list):
            raise bad(w, "num_outputs", num_outputs, f"needs one width per layer: top_name_list has "
                                                     f"{len(self.top_name_list)} names")
        self.last_act_type = to_enum(Activation_t, last_act_type, "last_act_type", w)

    def members(self) -> list[tuple[list[str], str, dict[str, Any]]]:
        """(bottoms, top, FusedInnerProduct attributes) of each layer of the group, in order."""
        out = []
        last = len(self.top_name_list) - 1
        for i, (top, n) in enumerate(zip(self.top_name_list, self.num_outputs)):
            pos = FcPosition_t.Head if i == 0 else FcPosition_t.Tail if i == last else FcPosition_t.Body
            act = self.last_act_type if i == last else Activation_t.Relu
            bottoms = list(self.bottom_name_list) if i == 0 else [self.top_name_list[i - 1]]
            out.append((bottoms, top, {"num_output": n, "pos_type": pos.name, "act_type": act.name}))
        return out

    def __repr__(self) -> str:
        return (f"GroupDenseLayer({self.group_layer_type!r}, bottom_name_list={self.bottom_name_list}, "
                f"top_name_list={self.top_name_list}, num_outputs={self.num_outputs})")
