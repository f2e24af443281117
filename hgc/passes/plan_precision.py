"""PlanPrecision: the compute dtype of every tensor, and where Casts must run.

Without mixed precision everything floating-point is float32. With ``ctx.use_mixed_precision``
(float16) or a float16/bfloat16 ``ctx.compute_dtype`` (that dtype; it wins over the float16 default of
mixed precision), the low dtype is used where HugeCTR allows half precision:

* dense ops in HugeCTR's mixed-precision layer list (``MIXED_PRECISION_OPS``, plus
  GroupFusedInnerProduct, which is made of FusedInnerProducts) whose registry traits do not say
  ``fp32_only``; every other dense op computes in float32;
* the dense input tensor and the embedding outputs (the tables themselves stay float32). Under bfloat16
  the dense input stays float32 (the host has no bfloat16 type): its readers get a Cast point, so the
  conversion runs on the device;
* never labels, never loss values: a loss computes and reports in float32, and reads its prediction
  in the low dtype only when the loss is in the list (BinaryCrossEntropyLoss);
* key (integer) tensors keep their dtype; a Cast node writes the low dtype and reads what it gets.

A Cast point is recorded wherever a node reads a floating tensor in a dtype other than the tensor's.
The graph is not rewritten (node types stay as the frontend declared them); codegen and the runtime
read ``ctx.plans["precision"]``: lowering converts at each Cast point (forward and gradient), runs the
GEMMs of low-precision nodes on low-precision weight copies with float32 accumulation, and keeps float32
master weights and weight gradients. ``tf32`` is set when ``ctx.enable_tf32_compute`` asks for TF32 GEMMs
and the run is in full precision (float32 GEMMs then use TF32 tensor-core math).

Preconditions: fusions are done (FusedInnerProduct/GroupFusedInnerProduct exist). Ordering: last in
the default pipeline.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.passes._kinds import FLOAT_DTYPES, is_embedding, is_input, is_loss, op_traits
from hgc.passes.context import PassContext, PassResult

NAME = "PlanPrecision"

#: Layers HugeCTR runs in mixed precision (facts §1.0), plus the grouped fused FC this compiler makes.
MIXED_PRECISION_OPS = frozenset({
    "BatchNorm", "LayerNorm", "BinaryCrossEntropyLoss", "Cast", "Concat", "Dropout", "ELU", "InnerProduct",
    "Interaction", "ReLU", "Reshape", "Select", "Sigmoid", "Slice", "WeightMultiply", "MultiHeadAttention",
    "FmOrder2", "Add", "ReduceSum", "Softmax", "ElementwiseMultiply", "FusedInnerProduct", "MultiCross", "MLP",
    "SequenceMask", "GroupFusedInnerProduct"})

LOW_DTYPES = ("float16", "bfloat16")


def low_dtype(ctx: PassContext) -> str:
    """The half-precision dtype this run computes in, or "float32" when it runs in full precision."""
    if ctx.compute_dtype not in ("float32", *LOW_DTYPES):
        raise ValueError(f"compute_dtype = {ctx.compute_dtype!r} is not allowed: must be one of "
                         f"['float32', 'float16', 'bfloat16']")
    if ctx.compute_dtype in LOW_DTYPES:
        return ctx.compute_dtype
    return "float16" if ctx.use_mixed_precision else "float32"


def allows_low_precision(op: str) -> bool:
    return op in MIXED_PRECISION_OPS and "fp32_only" not in op_traits(op)


@dataclass(frozen=True)
class CastPoint:
    """``consumer`` reads ``tensor`` (its input number ``index``) converted from ``src`` to ``dst``."""

    tensor: str
    consumer: str
    index: int
    src: str
    dst: str


@dataclass(frozen=True)
class PrecisionPlan(Mapping[str, str]):
    """tensor name → compute dtype (a read-only mapping), plus node dtypes and the Cast points."""

    compute_dtype: str
    tf32: bool
    tensors: tuple[tuple[str, str], ...]
    nodes: tuple[tuple[str, str], ...]
    casts: tuple[CastPoint, ...]
    _index: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", dict(self.tensors))

    def __getitem__(self, tensor: str) -> str:
        return self._index[tensor]

    def __iter__(self) -> Iterator[str]:
        return (t for t, _ in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def node_dtype(self, node: str) -> str:
        return dict(self.nodes)[node]


def _is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def _node_dtype(node: Node, low: str) -> str:
    """The dtype a node computes (and writes its floating outputs) in."""
    if low == "float32" or is_loss(node):
        return "float32"
    if is_input(node) or is_embedding(node):
        return low
    return low if allows_low_precision(node.op) else "float32"


def _labels(graph: Graph) -> set[str]:
    """Label tensors: the Input's label names, and whatever an Input feeds a loss as its label."""
    out: set[str] = set()
    for node in graph.nodes():
        if is_input(node):
            out.update(node.attrs.get("label_names", ()))
        elif is_loss(node):
            out.update(t for t in node.inputs[1:] if is_input(graph.producer(t)))
    return out


def _output_dtypes(node: Node, low: str, labels: set[str]) -> list[str]:
    compute = _node_dtype(node, low)
    out = []
    for t, ty in zip(node.outputs, node.types):
        if ty.sparse or not _is_float(ty.dtype):
            out.append(ty.dtype)
        elif t in labels or (is_input(node) and low == "bfloat16"):
            out.append("float32")
        else:
            out.append(compute)
    return out


def _wanted_input_dtype(node: Node, index: int, have: str, low: str) -> str:
    if node.op == "Cast":
        return have
    if is_loss(node):
        if index > 0:  # labels
            return "float32"
        return low if low != "float32" and allows_low_precision(node.op) else "float32"
    return _node_dtype(node, low)


def plan(graph: Graph, ctx: PassContext) -> PrecisionPlan:
    low = low_dtype(ctx)
    tensors: dict[str, str] = {}
    nodes: list[tuple[str, str]] = []
    casts: list[CastPoint] = []
    labels = _labels(graph)
    for node in graph.nodes():
        for i, t in enumerate(node.inputs):
            have = tensors[t]
            ty = graph.tensor_type(t)
            if ty.sparse or not _is_float(have):
                continue
            want = _wanted_input_dtype(node, i, have, low)
            if want != have:
                casts.append(CastPoint(t, node.name, i, have, want))
        nodes.append((node.name, _node_dtype(node, low)))
        tensors.update(zip(node.outputs, _output_dtypes(node, low, labels)))
    return PrecisionPlan(low, bool(ctx.enable_tf32_compute and low == "float32"),
                         tuple(tensors.items()), tuple(nodes), tuple(casts))


def run(graph: Graph, ctx: PassContext) -> PassResult:
    p = plan(graph, ctx)
    ctx.plans["precision"] = p
    kinds = Counter("low" if d in LOW_DTYPES else "float32" if d == "float32" else "other" for d in p.values())
    return PassResult(graph, False, {"low_precision_tensors": kinds["low"], "float32_tensors": kinds["float32"],
                                     "casts": len(p.casts)})
