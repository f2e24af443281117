"""The four sparse embedding ops, named as Embedding_t: one sparse input (B, slot_num, max nnz) of keys,
one output (B, slot_num, embedding_vec_size) float32 — each slot's key vectors combined by ``combiner``.

DistributedSlotSparseEmbeddingHash and LocalizedSlotSparseEmbeddingHash hash keys to rows;
``slot_size_array`` is optional for them. LocalizedSlotSparseEmbeddingOneHot and HybridSparseEmbedding
index rows directly and require ``slot_size_array`` (one size per slot) and one-hot input (max nnz 1);
Hybrid also needs the SGD optimizer. ``optimizer`` is an Attrs of OptParams fields or None (use the
model's); ``hybrid_embedding_param`` an Attrs of HybridEmbeddingParam fields or None (the defaults).
The runtime owns lookup, update and placement: these ops have no reference semantics.

Sizing (facts §2.3): max_vocabulary_size_per_gpu = ⌊MB·2²⁰ / ((1 + S)·4·embedding_vec_size)⌋ with
S = :func:`state_copies` of the optimizer; the global size multiplies it by the GPU count.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hgc.ir.node import Attrs
from hgc.ir.ops._common import non_negative, one_of, require, static
from hgc.ir.ops._numeric import is_int
from hgc.ir.registry import Attr, OpDef, register
from hgc.ir.types import TensorType

EMBEDDING_TYPES = ("DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash",
                   "LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")
NEEDS_SLOT_SIZES = ("LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")
MAX_VEC_SIZE = 1024

OPTIMIZER_TYPES = ("Adam", "AdaGrad", "MomentumSGD", "Nesterov", "RMSProp", "Ftrl", "SGD")
UPDATE_TYPES = ("Global", "Local", "LazyGlobal")
OPT_FIELDS = ("optimizer_type", "update_type", "beta1", "beta2", "epsilon", "initial_accu_value",
              "momentum_factor", "atomic_update", "lambda1", "lambda2", "beta")
#: Optimizer used for sizing when an embedding carries none (CreateOptimizer's defaults).
DEFAULT_OPTIMIZER = Attrs(optimizer_type="Adam", update_type="Global")

#: HybridEmbeddingParam fields with HugeCTR's defaults, in argument order.
HYBRID_DEFAULTS = {"max_num_frequent_categories": 1, "max_num_infrequent_samples": -1, "p_dup_max": 0.01,
                   "max_all_reduce_bandwidth": 1.3e11, "max_all_to_all_bandwidth": 2.6e11,
                   "efficiency_bandwidth_ratio": 1.0, "communication_type": "NVLink_SingleNode",
                   "hybrid_embedding_type": "Distributed"}
COMM_TYPES = {"IB_NVLink_Hier": "IB_NVLink_Hierarchical", "IB_NVLink": "IB_NVLink",
              "NVLink_SingleNode": "NVLink_SingleNode"}  # IR name → JSON string


def state_copies(optimizer_type: str, update_type: str = "Global") -> int:
    """Optimizer state arrays kept per embedding weight (the S of the workspace formula)."""
    counts = {"Adam": 2, "AdaGrad": 1, "MomentumSGD": 1, "Nesterov": 1, "RMSProp": 1, "Ftrl": 2, "SGD": 0}
    if optimizer_type not in counts:
        raise ValueError(f"optimizer_type '{optimizer_type}' is not one of {list(counts)}")
    if update_type not in UPDATE_TYPES:
        raise ValueError(f"update_type '{update_type}' is not one of {list(UPDATE_TYPES)}")
    if optimizer_type == "Adam" and update_type == "LazyGlobal":
        return 3  # LazyGlobal keeps one more array: the step of each row's last update
    return counts[optimizer_type]


def vocabulary_per_gpu(workspace_mb: float, vec_size: int, copies: int) -> int:
    return int(workspace_mb * 1024 * 1024 // ((1 + copies) * 4 * vec_size))


def workspace_for(vocab_per_gpu: int, vec_size: int, copies: int) -> int:
    """The smallest whole MB holding ``vocab_per_gpu`` rows and their optimizer states."""
    return math.ceil(vocab_per_gpu * vec_size * 4 * (1 + copies) / 2**20)


def max_vocabulary_size_global(attrs: Mapping[str, Any], world_size: int = 1,
                               model_optimizer: Mapping[str, Any] | None = None) -> int:
    """max_vocabulary_size_global of an embedding node: its own optimizer, else ``model_optimizer``,
    else CreateOptimizer's default (Adam, Global)."""
    opt = attrs["optimizer"] or model_optimizer or DEFAULT_OPTIMIZER
    copies = state_copies(opt["optimizer_type"], opt.get("update_type", "Global"))
    return vocabulary_per_gpu(attrs["workspace_size_per_gpu_in_mb"], attrs["embedding_vec_size"],
                              copies) * world_size


# -- attribute rules -----------------------------------------------------------------------------
def vec_size_rule(v: Any) -> str | None:
    return None if is_int(v) and 0 < v <= MAX_VEC_SIZE else f"must be an integer in [1, {MAX_VEC_SIZE}]"


def slot_sizes_rule(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and all(is_int(i) and i > 0 for i in v)
    return None if ok else "must be a list of integers > 0 (one vocabulary size per slot)"


def optimizer_rule(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        return "must be None or a mapping of OptParams fields"
    extra = sorted(set(v) - set(OPT_FIELDS))
    if extra:
        return f"has unknown fields {extra}; allowed: {list(OPT_FIELDS)}"
    if v.get("optimizer_type") not in OPTIMIZER_TYPES:
        return f"optimizer_type must be one of {list(OPTIMIZER_TYPES)}, got {v.get('optimizer_type')!r}"
    upd = v.get("update_type", "Global")
    if upd not in UPDATE_TYPES:
        return f"update_type must be one of {list(UPDATE_TYPES)}, got {upd!r}"
    if upd == "LazyGlobal" and v["optimizer_type"] != "Adam":
        return f"update_type 'LazyGlobal' works only with Adam, got {v['optimizer_type']!r}"
    return None


def hybrid_rule(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, Mapping):
        return "must be None or a mapping of HybridEmbeddingParam fields"
    extra = sorted(set(v) - set(HYBRID_DEFAULTS))
    if extra:
        return f"has unknown fields {extra}; allowed: {list(HYBRID_DEFAULTS)}"
    if v.get("communication_type", "NVLink_SingleNode") not in COMM_TYPES:
        return f"communication_type must be one of {list(COMM_TYPES)}, got {v['communication_type']!r}"
    if v.get("hybrid_embedding_type", "Distributed") != "Distributed":
        return f"hybrid_embedding_type must be 'Distributed', got {v['hybrid_embedding_type']!r}"
    return None


EMBEDDING_ATTRS = (
    Attr("workspace_size_per_gpu_in_mb", 0, non_negative, "MB per GPU for rows and optimizer states"),
    Attr("embedding_vec_size", check=vec_size_rule, doc="length of each embedding vector"),
    Attr("combiner", check=one_of("sum", "mean"), doc="how the vectors of one slot are combined"),
    Attr("slot_size_array", (), slot_sizes_rule, "vocabulary size of each slot"),
    Attr("optimizer", None, optimizer_rule, "OptParams fields, or None for the model's optimizer"),
    Attr("hybrid_embedding_param", None, hybrid_rule, "HybridEmbeddingParam fields (Hybrid only)"),
)


# -- inference -----------------------------------------------------------------------------------
def make_infer(op: str) -> Any:
    def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
        (x,) = xs
        require(x.sparse and x.rank == 3, f"input must be a sparse input tensor (B, slots, nnz), got {x}")
        slots = static(x.shape[1], "slot count")
        sizes = attrs["slot_size_array"]
        if op in NEEDS_SLOT_SIZES:
            require(len(sizes) > 0, f"{op} requires slot_size_array (one vocabulary size per slot)")
            require(x.shape[2] == 1, f"{op} takes one-hot input (one key per slot), got max nnz {x.shape[2]}")
        if sizes:
            require(len(sizes) == slots, f"slot_size_array has {len(sizes)} entries but the input has "
                                         f"{slots} slots: {list(sizes)}")
        opt = attrs["optimizer"]
        if op == "HybridSparseEmbedding" and opt is not None:
            require(opt["optimizer_type"] == "SGD",
                    f"HybridSparseEmbedding trains only with SGD, got optimizer_type {opt['optimizer_type']!r}")
        return [TensorType((x.shape[0], slots, attrs["embedding_vec_size"]), "float32")]
    return infer


# -- JSON ----------------------------------------------------------------------------------------
def make_json_write(op: str) -> Any:
    def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
        p: dict[str, Any] = {"workspace_size_per_gpu_in_mb": attrs["workspace_size_per_gpu_in_mb"],
                             "max_vocabulary_size_global": max_vocabulary_size_global(attrs),
                             "embedding_vec_size": attrs["embedding_vec_size"],
                             "combiner": attrs["combiner"]}
        if attrs["slot_size_array"]:
            p["slot_size_array"] = list(attrs["slot_size_array"])
        if op == "HybridSparseEmbedding":
            h = {**HYBRID_DEFAULTS, **(attrs["hybrid_embedding_param"] or {})}
            p.update({k: h[k] for k in HYBRID_DEFAULTS})
            p["communication_type"] = COMM_TYPES[h["communication_type"]]
        return {"sparse_embedding_hparam": p}
    return json_write


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes from an embedding entry's ``sparse_embedding_hparam`` (HugeCTR's or hgc's JSON).

    Entries without ``workspace_size_per_gpu_in_mb`` (legacy files give a vocabulary size) get the
    smallest workspace holding that vocabulary, sized with the entry's optimizer block if present.
    """
    p = d["sparse_embedding_hparam"]
    comb = p["combiner"]
    out: dict[str, Any] = {"embedding_vec_size": p["embedding_vec_size"],
                           "combiner": {0: "sum", 1: "mean"}.get(comb, comb)}
    if "workspace_size_per_gpu_in_mb" in p:
        out["workspace_size_per_gpu_in_mb"] = p["workspace_size_per_gpu_in_mb"]
    else:
        vocab = p.get("max_vocabulary_size_per_gpu", p.get("max_vocabulary_size_global"))
        if vocab is not None:
            opt = d.get("optimizer") or {}
            copies = state_copies(opt.get("type", "Adam"), opt.get("update_type", "Global"))
            out["workspace_size_per_gpu_in_mb"] = workspace_for(vocab, p["embedding_vec_size"], copies)
    if "slot_size_array" in p:
        out["slot_size_array"] = tuple(p["slot_size_array"])
    hybrid = {k: p[k] for k in HYBRID_DEFAULTS if k in p}
    if hybrid:
        if "communication_type" in hybrid:
            by_json = {v: k for k, v in COMM_TYPES.items()}
            hybrid["communication_type"] = by_json.get(hybrid["communication_type"], hybrid["communication_type"])
        out["hybrid_embedding_param"] = Attrs(hybrid)
    return out


for _op in EMBEDDING_TYPES:
    register(OpDef(
        name=_op,
        kind="embedding",
        attrs=EMBEDDING_ATTRS,
        infer=make_infer(_op),
        json_write=make_json_write(_op),
        json_read=json_read,
        doc=__doc__ or "",
    ))
