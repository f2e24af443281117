"""Lower an optimized graph (and the plans of the pass pipeline) into an ExecutablePlan.

Per node, in graph order, the forward operations; then, in reverse order, the backward operations of every
node some gradient reaches; then the optimizer steps. What each op becomes:

* FC family (InnerProduct, FusedInnerProduct, GroupFusedInnerProduct): cuBLAS GEMMs with the ``bias_act``
  epilogue (bias + ReLU) fused after the forward GEMM; backward: the bias gradient as a column reduction
  whose pass over the output gradient also applies dReLU in place, then dW and dx as GEMMs.
* Column reductions (bias and weight gradients of FC, MultiCross, WeightMultiply): two launches, partial
  sums per row chunk into a scratch view, then a fixed-order sum per column added into the weight
  gradient (:meth:`_Lowering.column_sum`): fast at any width, and bit-for-bit reproducible (no atomics).
* MultiCross v1: ``multi_cross`` row kernels (all layers' forward in one launch; backward one launch
  per layer plus the weight-gradient finish); v2: GEMMs plus ``multi_cross`` elementwise kernels.
* MatrixMultiply: :class:`StridedGemm` calls (one batched GEMM per product and gradient). GRU: the input
  projections of all steps as one GEMM, then per step a GEMM with the recurrent weights and the ``gru``
  gate kernel; backward through time per step (gate kernel + GEMM), weight gradients as whole-sequence GEMMs.
* Embeddings: :class:`EmbeddingCall` operations the runtime carries out with the table's ``embedding``
  kernels (hash lookup/insert, fused combine, gradient segment reduction, sparse optimizer update).
* Interaction: tensor-core (WMMA) kernels for float16/bfloat16 with d % 16 == 0 and at most 32 vectors per
  sample, one warp per sample; else float kernels, one block per sample (:func:`interaction_config`).
* Everything else: one launch of its kernel family per pass (see ``templates/*.cu.j2``).

Buffers: a tensor's activation and gradient views sit where ``plans["buffers"]`` put them; views that
the buffer plan cannot see get their own buffer: the Input's tensors, outputs the producer's own backward
reads (FC outputs under ReLU, Softmax outputs, member outputs of a group, alias sources), gradients
without readers and scratch arrays. Reshape (non-selected) and an Interaction's second output are aliases.

Gradients accumulate: the first backward operation to write a tensor's gradient stores, later ones add
(``acc``), so nothing needs zeroing except the dense weight gradients (one memset per step). Ops without
a template yet raise :class:`hgc.errors.NotBuiltError` naming the kernel.

Precision (``plans["precision"]``): every view has its tensor's planned dtype and every kernel is
instantiated for the dtype its node computes in. Where a node reads a tensor in another dtype (a Cast
point), its forward first converts the tensor into a scratch view (``elementwise`` cast) and its backward
writes that input's gradient into a scratch view of the same dtype, converted and added into the tensor's
gradient afterwards. GEMMs: ``GemmCall.dtype`` is the type of A and B (half types accumulate in float32);
a weight operand of a float16/bfloat16 GEMM is read from the low-precision copy of the weights, which the
dense optimizer refreshes from the float32 master weights in the same kernel (``half_copy``; its launch
gets ``Arg("weights", value=<low dtype>)``, the flat low-precision buffer). Weight gradients stay float32.
``compute_type="tf32"`` marks float32 GEMMs that may use TF32 tensor cores (``enable_tf32_compute``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hgc.codegen.plan import (
    ITEMSIZE,
    Arg,
    BufferBinding,
    EmbeddingCall,
    EmbeddingTableSpec,
    ExecutablePlan,
    Extent,
    GemmCall,
    InputBinding,
    KernelLaunch,
    KernelSpec,
    LaunchConfig,
    Memset,
    Op,
    Params,
    PlanNode,
    StateSpec,
    Step,
    StridedGemm,
    WeightSlot,
    describe,
)
from hgc.errors import NotBuiltError
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.ops.embeddings import state_copies, vocabulary_per_gpu
from hgc.ir.registry import get_op
from hgc.ir.types import TensorType

FLOATS = ("float32", "float16", "bfloat16")
ONE_HOT = ("LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")
EMBEDDING_OPTIMIZERS = ("SGD", "AdaGrad", "MomentumSGD", "Nesterov", "Adam")
DENSE_OPTIMIZERS = ("SGD", "MomentumSGD", "Nesterov", "Adam", "AdaGrad", "Ftrl")
HYPER = ("beta1", "beta2", "epsilon", "initial_accu_value", "momentum_factor", "lambda1", "lambda2", "beta")
HYPER_DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7, "initial_accu_value": 0.0,
                  "momentum_factor": 0.0, "lambda1": 0.0, "lambda2": 0.0, "beta": 0.0}
ELEMENTWISE_BLOCK = 256
MAX_BLOCKS = 8192
SMEM_LIMIT = 48 * 1024
WEIGHT_ALIGN = 32  # elements: every weight starts on a 128-byte boundary of the flat buffer

#: Ops lowered here, and the template each needs (for error messages and ``hgc compile``).
TEMPLATE_OF = {
    "ReLU": "elementwise", "ELU": "elementwise", "Sigmoid": "elementwise", "Add": "elementwise",
    "Sub": "elementwise", "ElementwiseMultiply": "elementwise", "Cast": "elementwise",
    "Dropout": "elementwise",
    "InnerProduct": "bias_act", "FusedInnerProduct": "bias_act", "GroupFusedInnerProduct": "bias_act",
    "Interaction": "interaction", "FmOrder2": "fm_order2", "ReduceSum": "reduce", "ReduceMean": "reduce",
    "Softmax": "softmax", "Concat": "concat_slice", "Slice": "concat_slice",
    "FusedReshapeConcat": "concat_slice",
    "FusedReshapeConcatGeneral": "concat_slice", "Reshape": "concat_slice", "MultiCross": "multi_cross",
    "BatchNorm": "batch_norm", "BinaryCrossEntropyLoss": "loss", "CrossEntropyLoss": "loss",
    "MultiCrossEntropyLoss": "loss",
    "Select": "select", "Gather": "select", "Scale": "select", "SequenceMask": "elementwise",
    "WeightMultiply": "weight_multiply", "LayerNorm": "layer_norm", "PReLU_Dice": "dice", "GRU": "gru",
}


def canonical_optimizer(name: Any) -> str:
    """Optimizer_t spelling as the templates use it ('Adagrad' -> 'AdaGrad'); unknown names pass through."""
    for canon in (*DENSE_OPTIMIZERS, "RMSProp"):
        if str(name).lower() == canon.lower():
            return canon
    return str(name)


def i64(e: Extent | int) -> Arg:
    return Arg("int", value=e if isinstance(e, Extent) else Extent.const(e), ctype="long long")


def i32(v: int) -> Arg:
    return Arg("int", value=Extent.const(int(v)), ctype="int")


def f32(v: float) -> Arg:
    return Arg("float", value=float(v), ctype="float")


def runtime(name: str, ctype: str = "float") -> Arg:
    return Arg("runtime", name, ctype=ctype)


NULL = Arg("null")


#: cuBLAS's fast (vectorised, tensor-core) GEMM kernels need rows that start on 16-byte boundaries: an FC
#: whose input rows are not a multiple of 16 bytes long (W&D and DCN: 26 x 16 + 13 = 429 columns) multiplies
#: a copy with padded rows instead (the H200 ran those GEMMs at 70 TFLOP/s against 750 for aligned ones).
GEMM_ROW_ALIGN = 16


#: FCs with at most this many outputs run on the fc_narrow kernels (one pass over x) instead of cuBLAS.
NARROW_FC = 4


def padded_width(width: int, dtype: str) -> int:
    """``width`` rounded up to whole 16-byte rows of ``dtype``."""
    per = GEMM_ROW_ALIGN // ITEMSIZE[dtype]
    return -(-width // per) * per


def elementwise_launch(items: Extent) -> LaunchConfig:
    return LaunchConfig((ELEMENTWISE_BLOCK, 1, 1), items, ELEMENTWISE_BLOCK, MAX_BLOCKS)


def rows_launch(rows: Extent) -> LaunchConfig:
    """A warp per row: blocks of (32, 8) threads, 8 rows per block."""
    return LaunchConfig((32, 8, 1), rows, 8, MAX_BLOCKS)


def columns_launch(cols: int) -> LaunchConfig:
    """Column reductions: blocks of (32, 8) threads, one block per 32 columns."""
    return LaunchConfig((32, 8, 1), Extent.const(cols), 32, MAX_BLOCKS)


SINGLE_BLOCK = LaunchConfig((1024, 1, 1), Extent.const(1), 1, 1)

#: Two-stage column reductions (bias and weight gradients; the prelude's ``col_partials``/``col_finish``):
#: about this many blocks of (32, 8) threads in stage 1 at the plan's batch, at least this many rows per
#: chunk, at most this many chunks (the partial sums are chunks x columns float32 values).
COLUMN_BLOCKS = 4096
COLUMN_MIN_ROWS = 64
COLUMN_MAX_PARTS = 256


def column_parts(rows: int, cols: int) -> int:
    """Row chunks (stage 1's grid y) of a column reduction of ``rows`` x ``cols`` values.

    Enough blocks to fill the GPU however few the columns (DLRM's 65,536 x 1024 bias gradient: 32 column
    tiles x 128 chunks of 512 rows, the shape benchmarks/micro.py measured). The count is fixed in the plan,
    so the summation order, hence every bit of the result, does not depend on anything but the data."""
    tiles = max(1, -(-cols // 32))
    return max(1, min(COLUMN_MAX_PARTS, -(-COLUMN_BLOCKS // tiles), -(-max(rows, 1) // COLUMN_MIN_ROWS)))


def column_parts_launch(cols: int, parts: int) -> LaunchConfig:
    """Stage 1 of a column reduction: blocks of (32, 8), grid (tiles of 32 columns, ``parts`` chunks)."""
    return LaunchConfig((32, 8, 1), Extent.const(cols), 32, MAX_BLOCKS, grid_y=parts)


def row_parts(rows: int) -> int:
    """Row chunks of a row kernel that also forms column partial sums (MultiCross v1's backward: one
    block of 8 warps per chunk, grid x = the count): chunks of at least ``COLUMN_MIN_ROWS`` rows, at most
    ``COLUMN_MAX_PARTS`` of them. Fixed in the plan, like :func:`column_parts`: the summation order, hence
    every bit of the result, depends on the data and the batch only."""
    return max(1, min(COLUMN_MAX_PARTS, -(-max(rows, 1) // COLUMN_MIN_ROWS)))


def row_parts_launch(parts: int) -> LaunchConfig:
    """Blocks of (32, 8) threads, exactly ``parts`` of them (block k takes row chunk k)."""
    return LaunchConfig((32, 8, 1), Extent.const(parts), 1, parts)


def interaction_smem(d: int, f: int) -> tuple[int, int]:
    """Dynamic shared memory (bytes) of the interaction kernels: forward n rows padded to d + 1 floats;
    backward the pair gradients as NG x NG floats (NG = n rounded up to 4) and the n x d rows (n = f + 1)."""
    n = f + 1
    ng = -(-n // 4) * 4
    return n * (d + 1) * 4, (ng * ng + n * d) * 4


#: Warps per block of the tensor-core interaction kernels (one sample per warp at a time).
INTERACTION_WARPS = 4
#: Most rows per sample (n = f + 1) the tensor-core interaction kernels take: two 16-row tiles.
INTERACTION_TC_ROWS = 32


@dataclass(frozen=True)
class InteractionConfig:
    """How the interaction kernels of one (dtype, d, f) are built and launched: ``tc`` selects the
    tensor-core kernels (template parameter), ``block`` threads per block, ``per_block`` samples a block
    takes per grid step, and the dynamic shared memory (bytes) of the forward and the backward."""

    tc: bool
    block: int
    per_block: int
    fwd_smem: int
    bwd_smem: int


def interaction_tc_smem(d: int, f: int) -> tuple[int, int]:
    """Dynamic shared memory per warp (bytes) of the tensor-core interaction kernels, as the template lays it
    out: rows padded to NR = n rounded up to 16 and to d + 8 halves; forward the float Gram (NR x (NR + 4))
    over the rows; backward the rows, then the NR x (NR + 8) pair gradients or one float column tile of
    the result (NR x 20) in the same place."""
    nr = -(-(f + 1) // 16) * 16
    rows = nr * (d + 8) * 2
    return max(rows, nr * (nr + 4) * 4), rows + max(nr * (nr + 8) * 2, nr * 20 * 4)


def interaction_config(dtype: str, d: int, f: int) -> InteractionConfig:
    """The tensor-core kernels for float16/bfloat16 with d % 16 == 0 and at most 32 rows per sample (one warp
    per sample, INTERACTION_WARPS per block, fewer when a warp's shared memory is large); else the float
    kernels of one block (128 threads) per sample (:func:`interaction_smem`)."""
    if dtype in ("float16", "bfloat16") and d % 16 == 0 and f + 1 <= INTERACTION_TC_ROWS:
        fwd, bwd = interaction_tc_smem(d, f)
        warps = min(INTERACTION_WARPS, SMEM_LIMIT // max(fwd, bwd))
        if warps > 0:
            return InteractionConfig(True, 32 * warps, warps, warps * fwd, warps * bwd)
    fwd, bwd = interaction_smem(d, f)
    return InteractionConfig(False, 128, 1, fwd, bwd)


@dataclass
class _Phase:
    ops: list[Op] = field(default_factory=list)

    def add(self, *ops: Op) -> None:
        self.ops.extend(ops)


class _Lowering:
    def __init__(self, graph: Graph, plans: Mapping[str, Any], batch: int, passes: tuple[str, ...]) -> None:
        self.graph = graph
        self.plans = plans
        self.batch = batch
        self.passes = passes
        self.nodes = graph.nodes()
        self.types: dict[str, TensorType] = graph.tensors()
        self.producer = {t: n for n in self.nodes for t in n.outputs}
        self.precision = plans.get("precision")
        self.specs: dict[tuple[str, Params], tuple[str, list[str]]] = {}
        self.private: set[str] = set()  # activations that must not share a buffer
        self.private_grads: set[str] = set()  # gradients that must not share a buffer
        self.aliases: dict[str, str] = {}
        self.scratch: dict[str, tuple[tuple[Extent, ...], str]] = {}
        self.states: dict[str, StateSpec] = {}
        self.grad_written: set[str] = set()
        self.grad_used: set[str] = set()
        self.needs_grad = self._needs_grad()
        self.weights = self._weights()
        self.embeddings: list[EmbeddingTableSpec] = []
        self.cast_points: dict[str, list[Any]] = {}
        for c in getattr(self.precision, "casts", ()):
            self.cast_points.setdefault(c.consumer, []).append(c)
        # while one node is lowered: tensors it reads converted (tensor -> (scratch view, dtype)), and the
        # scratch gradients its backward wrote for them (tensor -> scratch name)
        self._reads: dict[str, tuple[str, str]] = {}
        self._cast_grads: dict[str, str] = {}

    # -- facts -----------------------------------------------------------------------------------
    def dtype(self, t: str) -> str:
        if t in self._reads:
            return self._reads[t][1]
        if self.precision is not None and t in self.precision:
            return str(self.precision[t])
        return self.types[t].dtype

    def numel(self, t: str) -> Extent:
        return Extent.of_shape(self.types[t].shape)

    def width(self, t: str) -> int:
        w = self.types[t].shape[-1]
        if not isinstance(w, int):
            raise NotBuiltError(f"a batch-dependent last dimension ({self.types[t]})", f"tensor '{t}'")
        return w

    def rows(self, t: str) -> Extent:
        return Extent.of_shape(self.types[t].shape[:-1])

    def _needs_grad(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for n in self.nodes:
            op = get_op(n.op)
            trainable = op.kind == "embedding" or bool(self._specs_of(n))
            upstream = any(out.get(t, False) for t in n.inputs)
            for t in n.outputs:
                ty = self.types[t]
                out[t] = (op.kind != "input" and not ty.sparse and ty.dtype in FLOATS
                          and (trainable or upstream))
        return out

    def _specs_of(self, n: Node) -> list[Any]:
        op = get_op(n.op)
        if op.kind not in ("dense", "loss"):
            return []
        return list(op.weights(n.attrs, [self.types[t] for t in n.inputs]))

    def _weights(self) -> list[WeightSlot]:
        slots, offset = [], 0
        for n in self.nodes:
            for i, s in enumerate(self._specs_of(n)):
                slot = WeightSlot(n.name, i, s.name, tuple(int(d) for d in s.shape), offset)
                slots.append(slot)
                offset += -(-slot.size // WEIGHT_ALIGN) * WEIGHT_ALIGN
        return slots

    # -- builders --------------------------------------------------------------------------------
    def spec(self, template: str, node: Node | str, **params: Any) -> str:
        """The name of the KernelSpec (template, params), shared by every node that needs the same module."""
        key = (template, Params(params))
        if key not in self.specs:
            self.specs[key] = (f"hgc_{template}_{len(self.specs)}", [])
        name, nodes = self.specs[key]
        who = node if isinstance(node, str) else node.name
        if who not in nodes:
            nodes.append(who)
        return name

    def act(self, t: str) -> Arg:
        if t in self._reads:
            return Arg("scratch", self._reads[t][0])
        return Arg("act", t)

    def gy(self, t: str) -> Arg | None:
        """The gradient view of output ``t`` when some reader wrote it, else None."""
        if t in self.grad_written:
            self.grad_used.add(t)
            return Arg("grad", t)
        return None

    def gx(self, t: str) -> tuple[Arg, int] | None:
        """(gradient view of input ``t``, acc flag) when ``t`` takes a gradient; marks it written."""
        if not self.needs_grad.get(t, False):
            return None
        if t in self._reads:  # read converted: the gradient goes to a scratch view first (see _cast_back)
            name, dt = self._reads[t]
            acc = 1 if t in self._cast_grads else 0
            self._cast_grads[t] = f"{name}/grad"
            self.scratch[f"{name}/grad"] = (tuple(Extent.of_dim(d) for d in self.types[t].shape), dt)
            return Arg("scratch", f"{name}/grad"), acc
        acc = 1 if t in self.grad_written else 0
        self.grad_written.add(t)
        self.grad_used.add(t)
        return Arg("grad", t), acc

    def new_scratch(self, node: Node, what: str, shape: tuple[Extent, ...], dtype: str = "float32") -> Arg:
        name = f"{node.name}/{what}"
        self.scratch[name] = (shape, dtype)
        return Arg("scratch", name)

    def column_sum(self, n: Node, tag: str, spec: str, rows: Extent, cols: int, part_fn: str,
                   part_args: Sequence[Arg], part_tail: Sequence[Arg], finish_fn: str,
                   finish_args: Sequence[Arg]) -> tuple[KernelLaunch, KernelLaunch]:
        """The two launches of a deterministic column reduction over ``rows`` x ``cols`` values.

        Stage 1 ``part_fn(*part_args, partials, *part_tail)`` writes one float32 partial sum per column and
        row chunk into the scratch view ``<node>/<tag>`` (chunks x cols); stage 2 ``finish_fn(partials,
        chunks, *finish_args)`` adds each column's partials, in chunk order, into its destination."""
        parts = column_parts(rows.num * self.batch // rows.den + rows.fixed, cols)
        part = self.new_scratch(n, tag, (Extent.const(parts), Extent.const(cols)))
        return (self.launch(spec, part_fn, [*part_args, part, *part_tail], column_parts_launch(cols, parts)),
                self.launch(spec, finish_fn, [part, i32(parts), *finish_args], columns_launch(cols)))

    def state(self, name: str, size: int, init: float = 0.0) -> Arg:
        self.states[name] = StateSpec(name, size, init)
        return Arg("state", name)

    def w(self, node: Node, i: int) -> Arg:
        return Arg("weight", node.name, i)

    def wg(self, node: Node, i: int) -> Arg:
        return Arg("wgrad", node.name, i)

    @staticmethod
    def launch(spec: str, fn: str, args: Sequence[Arg], cfg: LaunchConfig, mode: str = "any") -> KernelLaunch:
        return KernelLaunch(spec, fn, tuple(args), cfg, mode)

    def require_fp32(self, node: Node, tensors: Sequence[str], what: str) -> None:
        bad = [t for t in tensors if self.dtype(t) != "float32"]
        if bad:
            raise NotBuiltError(f"{what} in {self.dtype(bad[0])} on the cuda target", node.label())

    # -- precision -------------------------------------------------------------------------------
    def low_dtype(self) -> str:
        """float16 / bfloat16 when the run computes in half precision, else float32."""
        return self.precision.compute_dtype if self.precision is not None else "float32"

    def _cast_spec(self, n: Node, src: str, dst: str) -> str:
        return self.spec("elementwise", n, op="cast", dtype=src, dst_dtype=dst)

    def _begin_reads(self, n: Node, ph: _Phase | None) -> None:
        """Route the node's converted inputs to scratch views; with ``ph``, emit the forward conversions."""
        self._reads, self._cast_grads = {}, {}
        for c in self.cast_points.get(n.name, ()):
            if c.tensor in self._reads:
                continue
            name = f"{n.name}/as_{c.dst}:{c.tensor}"
            if ph is not None:
                self.scratch[name] = (tuple(Extent.of_dim(d) for d in self.types[c.tensor].shape), c.dst)
                size = self.numel(c.tensor)
                ph.add(self.launch(self._cast_spec(n, c.src, c.dst), "fwd",
                                   [self.act(c.tensor), Arg("scratch", name), i64(size)],
                                   elementwise_launch(size)))
            self._reads[c.tensor] = (name, c.dst)

    def _end_forward_reads(self, n: Node, ph: _Phase) -> None:
        """An output aliasing a converted input gets its own buffer: the conversion writes it directly."""
        reads, self._reads = self._reads, {}
        for y in n.outputs:
            src = self.aliases.get(y)
            if src not in reads:
                continue
            del self.aliases[y]
            tmp = Arg("scratch", reads[src][0])
            for i, op in enumerate(ph.ops):
                if isinstance(op, KernelLaunch) and op.function == "fwd" and op.args[1] == tmp:
                    ph.ops[i] = replace(op, args=(op.args[0], self.act(y), *op.args[2:]))
            if not any(tmp in getattr(op, "args", ()) for op in ph.ops):
                del self.scratch[tmp.name]

    def _cast_back(self, n: Node, ph: _Phase) -> None:
        """Add the scratch gradients of converted inputs into the inputs' own gradients."""
        reads, grads = self._reads, self._cast_grads
        self._reads, self._cast_grads = {}, {}
        for t, g in grads.items():
            tgt = self.gx(t)
            if tgt is None:
                continue
            size = self.numel(t)
            ph.add(self.launch(self._cast_spec(n, self.dtype(t), reads[t][1]), "bwd",
                               [Arg("scratch", g), tgt[0], i64(size), i32(tgt[1])], elementwise_launch(size)))

    def operand_dtype(self, a: Arg) -> str | None:
        """The element type of a GEMM operand; None for a weight (read in the GEMM's type)."""
        if a.kind in ("act", "grad"):
            return self.dtype(a.name)
        if a.kind == "scratch":
            return self.scratch[a.name][1]
        if a.kind == "wgrad":
            return "float32"
        return None

    def typed_gemm(self, g: GemmCall) -> GemmCall:
        """``g`` with ``dtype`` (type of A and B) and ``compute_type`` from its operands and the plan."""
        ab = {d for d in (self.operand_dtype(g.a), self.operand_dtype(g.b)) if d is not None}
        if len(ab) > 1:
            raise ValueError(f"GEMM {describe(g)}: A and B have different dtypes {sorted(ab)}")
        dt = ab.pop() if ab else "float32"
        c = self.operand_dtype(g.c) or "float32"
        if c != dt and not (c == "float32" and dt in ("float16", "bfloat16")):
            raise ValueError(f"GEMM {describe(g)}: C is {c} for {dt} inputs")
        tf32 = dt == "float32" and bool(getattr(self.precision, "tf32", False))
        return replace(g, dtype=dt, compute_type="tf32" if tf32 else "float32")

    def _typed_steps(self, steps: list[Step]) -> list[Step]:
        return [replace(s, ops=tuple(self.typed_gemm(op) if isinstance(op, GemmCall) else op for op in s.ops))
                for s in steps]

    # -- entry -----------------------------------------------------------------------------------
    def run(self) -> ExecutablePlan:
        fwd: list[Step] = []
        for n in self.nodes:
            ph = _Phase()
            self.forward(n, ph)
            if ph.ops:
                fwd.append(Step(n.name, tuple(ph.ops)))
        bwd: list[Step] = []
        if self.weights:
            bwd.append(Step("", (Memset(Arg("wgrads")),)))
        for n in reversed(self.nodes):
            ph = _Phase()
            self.backward(n, ph)
            if ph.ops:
                bwd.append(Step(n.name, tuple(ph.ops)))
        fwd, bwd = self._typed_steps(fwd), self._typed_steps(bwd)
        opt = self.optimizer_steps()
        return ExecutablePlan(
            nodes=tuple(PlanNode(n.name, n.op, get_op(n.op).kind, n.inputs, n.outputs, Params(n.attrs))
                        for n in self.nodes),
            kernels=tuple(KernelSpec(t, name, p, tuple(nodes), self.passes)
                          for (t, p), (name, nodes) in self.specs.items()),
            buffers=self.bindings(),
            forward=tuple(fwd), backward=tuple(bwd), optimizer=tuple(opt),
            weights=tuple(self.weights), embeddings=tuple(self.embeddings), inputs=self.input_binding(),
            losses=tuple((n.name, n.outputs[0]) for n in self.nodes if get_op(n.op).kind == "loss"),
            batch=self.batch, states=tuple(self.states.values()),
            optimizer_params=Params(self.model_optimizer()), regularizer=self.regularizer(),
            compute_dtype=self.precision.compute_dtype if self.precision is not None else "float32",
            passes=self.passes)

    def input_binding(self) -> InputBinding:
        for n in self.nodes:
            if n.op == "Input":
                a = n.attrs
                labels = tuple(zip(a["label_names"], a["label_dims"]))
                return InputBinding(labels, a["dense_name"], a["dense_dim"],
                                    tuple((s["name"], s["slot_num"]) for s in a["sparse"]))
        return InputBinding((), "", 0, ())

    def model_optimizer(self) -> dict[str, Any]:
        opt = dict(self.graph.meta.get("optimizer") or {"optimizer_type": "Adam", "update_type": "Global"})
        kind = canonical_optimizer(opt.get("optimizer_type", "Adam"))
        out: dict[str, Any] = {"optimizer_type": kind, "update_type": str(opt.get("update_type", "Global"))}
        for k in HYPER:
            out[k] = float(opt.get(k, HYPER_DEFAULTS[k]))
        return out

    def regularizer(self) -> tuple[str, float]:
        for n in self.nodes:
            if get_op(n.op).kind == "loss" and n.attrs.get("use_regularizer"):
                return str(n.attrs["regularizer_type"]), float(n.attrs["lambda"])
        return "none", 0.0

    # -- buffers ---------------------------------------------------------------------------------
    def bindings(self) -> tuple[BufferBinding, ...]:
        plan = self.plans.get("buffers")
        index: dict[tuple[str, str], int] = {}
        next_id = 0
        if plan is not None:
            for lt in plan.lifetimes:
                index[(lt.tensor, lt.kind)] = lt.buffer
            next_id = len(plan.buffer_bytes)
        out: list[BufferBinding] = []

        def shape_of(t: str) -> tuple[Extent, ...]:
            return tuple(Extent.of_dim(d) for d in self.types[t].shape)

        act_buffer: dict[str, int] = {}
        for n in self.nodes:
            for t in n.outputs:
                ty = self.types[t]
                if ty.sparse or ty.dtype not in FLOATS or t in self.aliases:
                    continue
                b = index.get((t, "activation"))
                if b is None or t in self.private or n.op == "Input":
                    b, next_id = next_id, next_id + 1
                act_buffer[t] = b
                out.append(BufferBinding(t, "activation", b, shape_of(t), self.dtype(t)))
        for t, src in self.aliases.items():
            root = src
            while root in self.aliases:
                root = self.aliases[root]
            out.append(BufferBinding(t, "activation", act_buffer[root], shape_of(t), self.dtype(t), root))
        for n in self.nodes:
            for t in n.outputs:
                if t not in self.grad_used:
                    continue
                b = index.get((t, "gradient"))
                if b is None or t in self.private_grads:
                    b, next_id = next_id, next_id + 1
                out.append(BufferBinding(t, "gradient", b, shape_of(t), self.dtype(t)))
        for name, (shape, dtype) in self.scratch.items():
            out.append(BufferBinding(name, "scratch", next_id, shape, dtype))
            next_id += 1
        return tuple(out)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, n: Node, ph: _Phase) -> None:
        op = get_op(n.op)
        if op.kind == "input":
            return
        if op.kind == "embedding":
            self.embedding(n, ph)
            return
        fn = getattr(self, f"fwd_{n.op}", None)
        if fn is None:
            raise NotBuiltError(f"a CUDA kernel for {n.op} (forward and backward)", n.label())
        self._begin_reads(n, ph)
        try:
            fn(n, ph)
            self._end_forward_reads(n, ph)
        finally:
            self._reads = {}

    def backward(self, n: Node, ph: _Phase) -> None:
        op = get_op(n.op)
        if op.kind == "input":
            return
        if op.kind != "loss" and not any(t in self.grad_written for t in n.outputs):
            return
        if op.kind == "embedding":
            if self.gy(n.outputs[0]) is not None:
                emb = next(e for e in self.embeddings if e.name == n.name)
                ph.add(EmbeddingCall(n.name, "backward", n.inputs[0], n.outputs[0], emb.spec))
            return
        self._begin_reads(n, None)
        try:
            getattr(self, f"bwd_{n.op}")(n, ph)
            self._cast_back(n, ph)
        finally:
            self._reads, self._cast_grads = {}, {}

    # embeddings ----------------------------------------------------------------------------------
    def embedding(self, n: Node, ph: _Phase) -> None:
        a = n.attrs
        opt = dict(a["optimizer"]) if a.get("optimizer") else self.model_optimizer()
        kind = canonical_optimizer(opt.get("optimizer_type", "Adam"))
        upd = str(opt.get("update_type", "Global"))
        if kind not in EMBEDDING_OPTIMIZERS:
            raise NotBuiltError(f"the {kind} optimizer for embeddings on the cuda target", n.label())
        hyper = {k: float(opt.get(k, HYPER_DEFAULTS[k])) for k in HYPER}
        sizes = tuple(int(s) for s in (a.get("slot_size_array") or ()))
        if n.op == "DistributedSlotSparseEmbeddingHash" or not sizes:
            world = 1
            if "placement" in self.plans:
                world = self.plans["placement"].world_size
            capacity = vocabulary_per_gpu(a["workspace_size_per_gpu_in_mb"], a["embedding_vec_size"],
                                          state_copies(kind, upd)) * world
            table_sizes: tuple[int, ...] = ()
        else:
            capacity, table_sizes = sum(sizes), sizes
        out = n.outputs[0]
        # Its own buffers, live for the whole step: a table sharded over several GPUs writes this output
        # before the forward starts and reads its gradient after the backward ends (in place, no copies).
        self.private.add(out)
        self.private_grads.add(out)
        spec = self.spec("embedding", n, dtype=self.dtype(out), vec=int(a["embedding_vec_size"]),
                         combiner=a["combiner"], optimizer=kind,
                         update=upd if kind in ("MomentumSGD", "Nesterov", "Adam") else "Local",
                         beta1=hyper["beta1"], beta2=hyper["beta2"], epsilon=hyper["epsilon"],
                         momentum_factor=hyper["momentum_factor"])
        self.embeddings.append(EmbeddingTableSpec(
            n.name, n.op, n.inputs[0], out, int(a["embedding_vec_size"]), int(self.types[out].shape[1]),
            a["combiner"], int(capacity), table_sizes, n.op in ONE_HOT,
            Params({"optimizer_type": kind, "update_type": upd, **hyper,
                    "atomic_update": bool(opt.get("atomic_update", True))}), spec, self.dtype(out)))
        ph.add(EmbeddingCall(n.name, "forward", n.inputs[0], out, spec))

    # elementwise ---------------------------------------------------------------------------------
    def _unary(self, n: Node, ph: _Phase, op: str, **params: Any) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec = self.spec("elementwise", n, op=op, dtype=self.dtype(x), **params)
        ph.add(self.launch(spec, "fwd", [self.act(x), self.act(y), i64(self.numel(y))],
                           elementwise_launch(self.numel(y))))

    def _unary_bwd(self, n: Node, ph: _Phase, op: str, **params: Any) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        spec = self.spec("elementwise", n, op=op, dtype=self.dtype(x), **params)
        ph.add(self.launch(spec, "bwd", [self.act(x), g, tgt[0], i64(self.numel(x)), i32(tgt[1])],
                           elementwise_launch(self.numel(x))))

    def fwd_ReLU(self, n: Node, ph: _Phase) -> None:
        self._unary(n, ph, "relu")

    def bwd_ReLU(self, n: Node, ph: _Phase) -> None:
        self._unary_bwd(n, ph, "relu")

    def fwd_ELU(self, n: Node, ph: _Phase) -> None:
        self._unary(n, ph, "elu", alpha=float(n.attrs["elu_alpha"]))

    def bwd_ELU(self, n: Node, ph: _Phase) -> None:
        self._unary_bwd(n, ph, "elu", alpha=float(n.attrs["elu_alpha"]))

    def fwd_Sigmoid(self, n: Node, ph: _Phase) -> None:
        self._unary(n, ph, "sigmoid")

    def bwd_Sigmoid(self, n: Node, ph: _Phase) -> None:
        self._unary_bwd(n, ph, "sigmoid")

    def _nary_spec(self, n: Node) -> str:
        op = {"Add": "add", "ElementwiseMultiply": "mul", "Sub": "sub"}[n.op]
        params: dict[str, Any] = {"op": op, "dtype": self.dtype(n.outputs[0])}
        if op != "sub":
            params["arity"] = len(n.inputs)
        return self.spec("elementwise", n, **params)

    def fwd_Add(self, n: Node, ph: _Phase) -> None:
        y = n.outputs[0]
        args = [self.act(t) for t in n.inputs] + [self.act(y), i64(self.numel(y))]
        ph.add(self.launch(self._nary_spec(n), "fwd", args, elementwise_launch(self.numel(y))))

    fwd_Sub = fwd_Add
    fwd_ElementwiseMultiply = fwd_Add

    def bwd_Add(self, n: Node, ph: _Phase) -> None:
        y = n.outputs[0]
        g = self.gy(y)
        if g is None:
            return
        targets = [self.gx(t) for t in n.inputs]
        if all(t is None for t in targets):
            return
        args = [self.act(t) for t in n.inputs] if n.op == "ElementwiseMultiply" else []
        args.append(g)
        for t in targets:
            args += [NULL, i32(0)] if t is None else [t[0], i32(t[1])]
        args.append(i64(self.numel(y)))
        ph.add(self.launch(self._nary_spec(n), "bwd", args, elementwise_launch(self.numel(y))))

    bwd_Sub = bwd_Add
    bwd_ElementwiseMultiply = bwd_Add

    def fwd_Cast(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec = self.spec("elementwise", n, op="cast", dtype=self.dtype(x), dst_dtype=self.dtype(y))
        ph.add(self.launch(spec, "fwd", [self.act(x), self.act(y), i64(self.numel(y))],
                           elementwise_launch(self.numel(y))))

    def bwd_Cast(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        spec = self.spec("elementwise", n, op="cast", dtype=self.dtype(x), dst_dtype=self.dtype(y))
        ph.add(self.launch(spec, "bwd", [g, tgt[0], i64(self.numel(x)), i32(tgt[1])],
                           elementwise_launch(self.numel(x))))

    def _dropout_spec(self, n: Node) -> str:
        return self.spec("elementwise", n, op="dropout", dtype=self.dtype(n.inputs[0]),
                         rate=float(n.attrs["dropout_rate"]))

    def fwd_Dropout(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec = self._dropout_spec(n)
        cfg = elementwise_launch(self.numel(y))
        ph.add(self.launch(spec, "fwd", [self.act(x), self.act(y), i64(self.numel(y)),
                                         runtime(f"seed:{n.name}", "unsigned long long")], cfg, "train"),
               self.launch(spec, "copy", [self.act(x), self.act(y), i64(self.numel(y))], cfg, "eval"))

    def bwd_Dropout(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        spec = self._dropout_spec(n)
        ph.add(self.launch(spec, "bwd", [g, tgt[0], i64(self.numel(x)), runtime(f"seed:{n.name}",
                                                                                   "unsigned long long"),
                                         i32(tgt[1])], elementwise_launch(self.numel(x))))

    # fully connected ---------------------------------------------------------------------------
    def aligned_rows(self, n: Node, ph: _Phase, x: str, tag: str) -> tuple[Arg, int]:
        """The GEMM operand for activation ``x`` (rows x width) and its row length: itself when its rows are
        whole 16-byte units, else a copy (added to ``ph``) into the scratch view ``<node>/<tag>`` with rows
        padded by zeros to padded_width."""
        k, dt = self.width(x), self.dtype(x)
        kp = padded_width(k, dt)
        if kp == k:
            return self.act(x), k
        rows = self.rows(x)
        pad = self.new_scratch(n, tag, (rows, Extent.const(kp)), dt)
        ph.add(self.copy(n, self.act(x), pad, dt, rows, k, k, kp, zeros=kp - k))
        return pad, kp

    def padded_weight(self, n: Node, ph: _Phase, wi: int, k: int, kp: int, m: int, dt: str, tag: str) -> Arg:
        """Weight ``wi`` (k x m) of the GEMM type ``dt``, as a scratch copy with kp - k zero rows appended (so
        that a GEMM can run over kp, a multiple of 16 bytes, instead of k)."""
        src = Arg("weight", n.name, wi, "low") if dt in ("float16", "bfloat16") else self.w(n, wi)
        pad = self.new_scratch(n, tag, (Extent.const(kp), Extent.const(m)), dt)
        ph.add(self.copy(n, src, pad, dt, Extent.const(1), k * m, 0, 0, zeros=(kp - k) * m))
        return pad

    def _narrow_spec(self, n: Node, x: str, y: str, act: str) -> str:
        return self.spec("fc_narrow", n, dtype=self.dtype(x), ydtype=self.dtype(y), k=self.width(x),
                         m=self.width(y), act=act)

    def _fc_forward(self, n: Node, ph: _Phase, x: str, y: str, wi: int, act: str) -> None:
        k, m = self.width(x), self.width(y)
        rows = self.rows(x)
        if act == "Relu":
            self.private.add(y)
        if m <= NARROW_FC:
            ph.add(self.launch(self._narrow_spec(n, x, y, act), "fwd",
                               [self.act(x), self.w(n, wi), self.w(n, wi + 1), self.act(y), i64(rows)],
                               rows_launch(rows)))
            return
        spec = self.spec("bias_act", n, dtype=self.dtype(y), act=act)
        epi = self.launch(spec, "fwd", [self.act(y), self.w(n, wi + 1), i64(rows), i32(m)],
                          elementwise_launch(rows * m))
        xa, kp = self.aligned_rows(n, ph, x, f"rows{wi}")
        # cuBLAS's fast kernels also want the reduced dimension in whole 16-byte units: x's zero columns meet
        # zero weight rows
        wa = self.w(n, wi) if kp == k else self.padded_weight(n, ph, wi, k, kp, m, self.dtype(x), f"wpad{wi}")
        ph.add(GemmCall(xa, wa, self.act(y), rows, Extent.const(m), Extent.const(kp), epilogue=epi,
                        a_ld=Extent.const(kp)))

    def _fc_backward(self, n: Node, ph: _Phase, x: str, y: str, wi: int, act: str, g: Arg,
                     dx: tuple[Arg, int] | None) -> None:
        k, m = self.width(x), self.width(y)
        rows = self.rows(x)
        spec = self.spec("bias_act", n, dtype=self.dtype(y), act=act)
        # dReLU (in place on g) fused into the bias gradient's pass over g
        relu = act == "Relu"
        ph.add(*self.column_sum(n, f"bias_partials{wi + 1}", spec, rows, m,
                                "drelu_bias_part" if relu else "bias_part", [self.act(y), g] if relu else [g],
                                [i64(rows), i32(m)], "bias_finish", [self.wg(n, wi + 1), i32(m)]))
        if m <= NARROW_FC:
            narrow = self._narrow_spec(n, x, y, act)
            ph.add(*self.column_sum(n, f"wgrad_partials{wi}", narrow, rows, k * m, "wgrad_part",
                                    [self.act(x), g], [i64(rows)], "wgrad_finish", [self.wg(n, wi)]))
            if dx is not None:
                ph.add(self.launch(narrow, "dgrad", [g, self.w(n, wi), dx[0], i64(rows), i32(dx[1])],
                                   elementwise_launch(rows * k)))
            return
        xa, kp = self.aligned_rows(n, ph, x, f"rows{wi}")  # copied again: scratch does not outlive a phase
        ph.add(GemmCall(xa, g, self.wg(n, wi), Extent.const(k), Extent.const(m), rows, transa=True, beta=1.0,
                        a_ld=Extent.const(kp)))
        if dx is None:
            return
        if kp == k:
            ph.add(GemmCall(g, self.w(n, wi), dx[0], rows, Extent.const(k), Extent.const(m), transb=True,
                            beta=float(dx[1])))
            return
        # dx over kp columns (the zero weight rows give zeros) into padded rows, then into its own view
        dt = self.dtype(x)
        wa = self.padded_weight(n, ph, wi, k, kp, m, dt, f"wpad{wi}")
        gpad = self.new_scratch(n, f"grad_rows{wi}", (rows, Extent.const(kp)), dt)
        ph.add(GemmCall(g, wa, gpad, rows, Extent.const(kp), Extent.const(m), transb=True, c_ld=Extent.const(kp)),
               self.copy(n, gpad, dx[0], dt, rows, k, kp, k, acc=dx[1]))

    def fwd_InnerProduct(self, n: Node, ph: _Phase) -> None:
        self._fc_forward(n, ph, n.inputs[0], n.outputs[0], 0, "Non")

    def bwd_InnerProduct(self, n: Node, ph: _Phase) -> None:
        g = self.gy(n.outputs[0])
        if g is not None:
            self._fc_backward(n, ph, n.inputs[0], n.outputs[0], 0, "Non", g, self.gx(n.inputs[0]))

    def fwd_FusedInnerProduct(self, n: Node, ph: _Phase) -> None:
        self._fc_forward(n, ph, n.inputs[0], n.outputs[0], 0, n.attrs["act_type"])

    def bwd_FusedInnerProduct(self, n: Node, ph: _Phase) -> None:
        g = self.gy(n.outputs[0])
        if g is not None:
            x = n.inputs[0]
            self._fc_backward(n, ph, x, n.outputs[0], 0, n.attrs["act_type"], g, self.gx(x))

    def _members(self, n: Node) -> list[dict[str, Any]]:
        from hgc.ir.ops.fused_fc import members

        return members(n.attrs)

    def fwd_GroupFusedInnerProduct(self, n: Node, ph: _Phase) -> None:
        x = n.inputs[0]
        for i, (m, y) in enumerate(zip(self._members(n), n.outputs)):
            self._fc_forward(n, ph, x, y, 2 * i, m["act_type"])
            self.private.add(y)  # the next member's dW reads it in the backward
            x = y

    def bwd_GroupFusedInnerProduct(self, n: Node, ph: _Phase) -> None:
        members = self._members(n)
        ins = [n.inputs[0], *n.outputs[:-1]]
        has = [t in self.grad_written for t in n.outputs]
        for i in reversed(range(len(members))):
            if not has[i]:
                continue
            y = n.outputs[i]
            self.grad_written.add(y)
            g = self.gy(y)
            assert g is not None
            if i > 0:
                prev = n.outputs[i - 1]
                dx: tuple[Arg, int] | None = (Arg("grad", prev), 1 if has[i - 1] else 0)
                self.grad_written.add(prev)
                self.grad_used.add(prev)
                has[i - 1] = True
            else:
                dx = self.gx(n.inputs[0])
            self._fc_backward(n, ph, ins[i], y, 2 * i, members[i]["act_type"], g, dx)

    # interaction -----------------------------------------------------------------------------
    def _interaction(self, n: Node) -> tuple[str, InteractionConfig]:
        """(spec, launch configuration): see interaction_config."""
        x, e = n.inputs
        d, f = self.width(x), int(self.types[e].shape[1])
        cfg = interaction_config(self.dtype(x), d, f)
        spec = self.spec("interaction", n, dtype=self.dtype(x), d=d, f=f, tc=cfg.tc)
        most = max(cfg.fwd_smem, cfg.bwd_smem)
        if most > SMEM_LIMIT:
            raise NotBuiltError(f"Interaction with {f + 1} vectors of width {d} ({most} bytes of "
                                f"shared memory per sample; the kernel stages at most {SMEM_LIMIT})", n.label())
        return spec, cfg

    def fwd_Interaction(self, n: Node, ph: _Phase) -> None:
        spec, cfg = self._interaction(n)
        x, e = n.inputs
        y = n.outputs[0]
        batch = Extent.of_dim(self.types[x].shape[0])
        launch = LaunchConfig((cfg.block, 1, 1), batch, cfg.per_block, MAX_BLOCKS, smem=cfg.fwd_smem)
        ph.add(self.launch(spec, "fwd", [self.act(x), self.act(e), self.act(y), i64(batch)], launch))
        for alias in n.outputs[1:]:
            self.aliases[alias] = y
            self.private.add(y)

    def bwd_Interaction(self, n: Node, ph: _Phase) -> None:
        spec, cfg = self._interaction(n)
        x, e = n.inputs
        g = self.gy(n.outputs[0])
        if g is None:
            return
        gx, ge = self.gx(x), self.gx(e)
        if gx is None and ge is None:
            return
        batch = Extent.of_dim(self.types[x].shape[0])
        launch = LaunchConfig((cfg.block, 1, 1), batch, cfg.per_block, MAX_BLOCKS, smem=cfg.bwd_smem)
        ph.add(self.launch(spec, "bwd", [self.act(x), self.act(e), g, gx[0] if gx else NULL,
                                         ge[0] if ge else NULL, i64(batch), i32(gx[1] if gx else 0),
                                         i32(ge[1] if ge else 0)], launch))

    # fm, reduce, softmax -------------------------------------------------------------------------
    def fwd_FmOrder2(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        k = int(n.attrs["out_dim"])
        spec = self.spec("fm_order2", n, dtype=self.dtype(x), k=k, slots=self.width(x) // k)
        batch = self.rows(x)
        ph.add(self.launch(spec, "fwd", [self.act(x), self.act(y), i64(batch)],
                           elementwise_launch(batch * k)))

    def bwd_FmOrder2(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        k = int(n.attrs["out_dim"])
        spec = self.spec("fm_order2", n, dtype=self.dtype(x), k=k, slots=self.width(x) // k)
        batch = self.rows(x)
        ph.add(self.launch(spec, "bwd", [self.act(x), g, tgt[0], i64(batch), i32(tgt[1])],
                           elementwise_launch(batch * k)))

    def _reduce_dims(self, n: Node) -> tuple[str, Extent, Extent, Extent]:
        x = n.inputs[0]
        shape, axis = self.types[x].shape, int(n.attrs["axis"])
        op = "mean" if n.op == "ReduceMean" else "sum"
        spec = self.spec("reduce", n, dtype=self.dtype(x), op=op)
        return (spec, Extent.of_shape(shape[:axis]), Extent.of_shape(shape[axis:axis + 1]),
                Extent.of_shape(shape[axis + 1:]))

    def fwd_ReduceSum(self, n: Node, ph: _Phase) -> None:
        spec, outer, red, inner = self._reduce_dims(n)
        y = n.outputs[0]
        args = [self.act(n.inputs[0]), self.act(y), i64(outer), i64(red), i64(inner)]
        ph.add(self.launch(spec, "fwd", args, elementwise_launch(self.numel(y))))

    fwd_ReduceMean = fwd_ReduceSum

    def bwd_ReduceSum(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        spec, outer, red, inner = self._reduce_dims(n)
        ph.add(self.launch(spec, "bwd", [g, tgt[0], i64(outer), i64(red), i64(inner), i32(tgt[1])],
                           elementwise_launch(self.numel(x))))

    bwd_ReduceMean = bwd_ReduceSum

    def _softmax_spec(self, n: Node) -> str:
        x = n.inputs[0]
        if len(n.inputs) == 1:
            return self.spec("softmax", n, dtype=self.dtype(x), masked=False)
        shape, mshape = self.types[x].shape, self.types[n.inputs[1]].shape
        if len(shape) > 4:
            raise NotBuiltError(f"masked Softmax on rank-{len(shape)} scores", n.label())
        if self.dtype(n.inputs[1]) != self.dtype(x):
            raise NotBuiltError("masked Softmax with a mask dtype other than the scores'", n.label())
        mid = [self._static(d, n) for d in shape[1:-1]] + [1] * (4 - len(shape))
        mmid = [self._static(d, n) for d in mshape[1:-1]] + [1] * (4 - len(shape))
        return self.spec("softmax", n, dtype=self.dtype(x), masked=True, factor=float(n.attrs["factor"]),
                         d1=mid[0], d2=mid[1], mb=int(mshape[0] == 1 and shape[0] != 1), m1=mmid[0],
                         m2=mmid[1])

    @staticmethod
    def _static(d: Any, n: Node) -> int:
        if not isinstance(d, int):
            raise NotBuiltError("masked Softmax with a batch-dependent inner dimension", n.label())
        return d

    def fwd_Softmax(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec = self._softmax_spec(n)
        args = [self.act(x)] + [self.act(t) for t in n.inputs[1:]] + [self.act(y), i64(self.rows(x)),
                                                                     i32(self.width(x))]
        ph.add(self.launch(spec, "fwd", args, rows_launch(self.rows(x))))
        self.private.add(y)

    def bwd_Softmax(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        ph.add(self.launch(self._softmax_spec(n), "bwd", [self.act(y), g, tgt[0], i64(self.rows(x)),
                                                          i32(self.width(x)), i32(tgt[1])],
                           rows_launch(self.rows(x))))

    # copies ------------------------------------------------------------------------------------
    def copy(self, n: Node, src: Arg, dst: Arg, dtype: str, n0: Extent, n2: Extent | int, s0: int, d0: int,
             soff: int = 0, doff: int = 0, acc: int = 0, n1: int = 1, s1: int = 0,
             d1: int = 0, zeros: int = 0) -> KernelLaunch:
        """dst[doff + o*d0 + j*d1 + c] (+)= src[soff + o*s0 + j*s1 + c] for o < n0, j < n1, c < n2, and 0 for
        n2 <= c < n2 + zeros."""
        spec = self.spec("concat_slice", n, dtype=dtype)
        n2e = n2 if isinstance(n2, Extent) else Extent.const(n2)
        if n2e.num and (n0.num or zeros):
            raise ValueError(f"{n.label()}: a copy cannot scale with the batch in two dimensions")
        total = n2e * (n0.fixed * n1) if n2e.num else n0 * (n1 * (n2e.fixed + zeros))
        return self.launch(spec, "copy", [src, dst, i64(n0), i64(n1), i64(n2e), i64(zeros), i64(s0), i64(s1),
                                          i64(soff), i64(d0), i64(d1), i64(doff), i32(acc)], elementwise_launch(total))

    def _concat_layout(self, n: Node) -> tuple[Extent, list[int], int]:
        """(rows, per-input widths, output width) viewing every input as (rows, width_i)."""
        axis = int(n.attrs["axis"])
        shape = self.types[n.inputs[0]].shape
        if len(shape) == 2 or axis == 2:
            rows = Extent.of_shape(shape[:-1])
            widths = [self.width(t) for t in n.inputs]
        else:  # 3-D along axis 1: (B, s_i, v) -> rows of s_i*v
            rows = Extent.of_dim(shape[0])
            widths = [int(self.types[t].shape[1]) * self.width(t) for t in n.inputs]
        return rows, widths, sum(widths)

    def fwd_Concat(self, n: Node, ph: _Phase) -> None:
        rows, widths, total = self._concat_layout(n)
        y, off = n.outputs[0], 0
        for t, w in zip(n.inputs, widths):
            ph.add(self.copy(n, self.act(t), self.act(y), self.dtype(y), rows, w, w, total, doff=off))
            off += w

    def bwd_Concat(self, n: Node, ph: _Phase) -> None:
        g = self.gy(n.outputs[0])
        if g is None:
            return
        rows, widths, total = self._concat_layout(n)
        off = 0
        for t, w in zip(n.inputs, widths):
            tgt = self.gx(t)
            if tgt is not None:
                ph.add(self.copy(n, g, tgt[0], self.dtype(t), rows, w, total, w, soff=off, acc=tgt[1]))
            off += w

    def fwd_Slice(self, n: Node, ph: _Phase) -> None:
        x = n.inputs[0]
        rows, width = self.rows(x), self.width(x)
        for (a, b), y in zip(n.attrs["ranges"], n.outputs):
            ph.add(self.copy(n, self.act(x), self.act(y), self.dtype(y), rows, b - a, width, b - a, soff=a))

    def bwd_Slice(self, n: Node, ph: _Phase) -> None:
        x = n.inputs[0]
        parts = [((a, b), self.gy(y)) for (a, b), y in zip(n.attrs["ranges"], n.outputs)]
        parts = [(r, g) for r, g in parts if g is not None]
        tgt = self.gx(x) if parts else None
        if tgt is None:
            return
        if not tgt[1]:
            ph.add(Memset(tgt[0]))
        rows, width = self.rows(x), self.width(x)
        for (a, b), g in parts:
            ph.add(self.copy(n, g, tgt[0], self.dtype(x), rows, b - a, b - a, width, doff=a, acc=1))

    def _frc(self, n: Node) -> tuple[Extent, int, list[int], int]:
        shape = self.types[n.inputs[0]].shape
        widths = [self.width(t) for t in n.inputs]
        return Extent.of_dim(shape[0]), int(shape[1]), widths, sum(widths)

    def fwd_FusedReshapeConcat(self, n: Node, ph: _Phase) -> None:
        b, s, widths, total = self._frc(n)
        item, ad = n.outputs
        off = 0
        for t, v in zip(n.inputs, widths):
            dt = self.dtype(t)
            ph.add(self.copy(n, self.act(t), self.act(item), dt, b, v, s * v, (s - 1) * total, doff=off,
                             n1=s - 1, s1=v, d1=total),
                   self.copy(n, self.act(t), self.act(ad), dt, b, v, s * v, total, soff=(s - 1) * v,
                             doff=off))
            off += v

    def bwd_FusedReshapeConcat(self, n: Node, ph: _Phase) -> None:
        b, s, widths, total = self._frc(n)
        item, ad = n.outputs
        gi, ga = self.gy(item), self.gy(ad)
        if gi is None and ga is None:
            return
        for o, g in ((item, gi), (ad, ga)):
            if g is None:  # the other output's gradient alone reaches the inputs; this part is zero
                self.grad_written.add(o)
                self.grad_used.add(o)
                ph.add(Memset(Arg("grad", o)))
        gi, ga = Arg("grad", item), Arg("grad", ad)
        off = 0
        for t, v in zip(n.inputs, widths):
            tgt = self.gx(t)
            if tgt is not None:
                dt = self.dtype(t)
                ph.add(self.copy(n, gi, tgt[0], dt, b, v, (s - 1) * total, s * v, soff=off, acc=tgt[1],
                                 n1=s - 1, s1=total, d1=v),
                       self.copy(n, ga, tgt[0], dt, b, v, total, s * v, soff=off, doff=(s - 1) * v,
                                 acc=tgt[1]))
            off += v

    def fwd_FusedReshapeConcatGeneral(self, n: Node, ph: _Phase) -> None:
        b, s, widths, total = self._frc(n)
        y, off = n.outputs[0], 0
        for t, v in zip(n.inputs, widths):
            ph.add(self.copy(n, self.act(t), self.act(y), self.dtype(t), b * s, v, v, total, doff=off))
            off += v

    def bwd_FusedReshapeConcatGeneral(self, n: Node, ph: _Phase) -> None:
        g = self.gy(n.outputs[0])
        if g is None:
            return
        b, s, widths, total = self._frc(n)
        off = 0
        for t, v in zip(n.inputs, widths):
            tgt = self.gx(t)
            if tgt is not None:
                ph.add(self.copy(n, g, tgt[0], self.dtype(t), b * s, v, total, v, soff=off, acc=tgt[1]))
            off += v

    def fwd_Reshape(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        if not n.attrs["selected"]:
            self.aliases[y] = x
            return
        shape = self.types[x].shape
        slots_in, v = int(shape[1]), int(shape[2])
        slots = list(n.attrs["selected_slots"]) or list(range(slots_in))
        b = Extent.of_dim(shape[0])
        for q, s in enumerate(slots):
            ph.add(self.copy(n, self.act(x), self.act(y), self.dtype(y), b, v, slots_in * v, len(slots) * v,
                             soff=s * v, doff=q * v))

    def bwd_Reshape(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        if not n.attrs["selected"]:
            ph.add(self.copy(n, g, tgt[0], self.dtype(x), Extent.const(1), self.numel(x), 0, 0, acc=tgt[1]))
            return
        shape = self.types[x].shape
        slots_in, v = int(shape[1]), int(shape[2])
        slots = list(n.attrs["selected_slots"]) or list(range(slots_in))
        if not tgt[1]:
            ph.add(Memset(tgt[0]))
        b = Extent.of_dim(shape[0])
        for q, s in enumerate(slots):
            ph.add(self.copy(n, g, tgt[0], self.dtype(x), b, v, len(slots) * v, slots_in * v, soff=q * v,
                             doff=s * v, acc=1))

    # multi cross -------------------------------------------------------------------------------
    def fwd_MultiCross(self, n: Node, ph: _Phase) -> None:
        x0, y = n.inputs[0], n.outputs[0]
        width, rows, layers = self.width(x0), self.rows(x0), int(n.attrs["num_layers"])
        k = int(n.attrs["projection_dim"])
        spec = self._cross_spec(n)
        dt = self.dtype(x0)
        xs = [self.act(x0)] + [self.new_scratch(n, f"x{l}", (rows, Extent.const(width)), dt)
                               for l in range(1, layers)] + [self.act(y)]
        if not k:  # every layer in one launch; s_l = x_l . w_l saved per layer for the backward
            ss = [self.new_scratch(n, f"s{l}", (rows,)) for l in range(layers)]
            ws = [self.w(n, i) for i in range(2 * layers)]
            ph.add(self.launch(spec, "v1_fwd_all", [self.act(x0), *ws, *xs[1:], *ss, i64(rows)],
                               rows_launch(rows)))
            return
        for l in range(layers):
            h = self.new_scratch(n, f"h{l}", (rows, Extent.const(k)), dt)
            z = self.new_scratch(n, f"z{l}", (rows, Extent.const(width)), dt)
            ph.add(GemmCall(xs[l], self.w(n, 3 * l), h, rows, Extent.const(k), Extent.const(width)),
                   GemmCall(h, self.w(n, 3 * l + 1), z, rows, Extent.const(width), Extent.const(k)),
                   self.launch(spec, "v2_combine",
                               [self.act(x0), z, self.w(n, 3 * l + 2), xs[l], xs[l + 1], i64(rows)],
                               elementwise_launch(rows * width)))

    def _cross_spec(self, n: Node) -> str:
        """The multi_cross module of ``n``: v1 modules also carry the layer count (for ``v1_fwd_all``)."""
        x0 = n.inputs[0]
        if int(n.attrs["projection_dim"]):
            return self.spec("multi_cross", n, dtype=self.dtype(x0), n=self.width(x0))
        return self.spec("multi_cross", n, dtype=self.dtype(x0), n=self.width(x0),
                         layers=int(n.attrs["num_layers"]))

    def bwd_MultiCross(self, n: Node, ph: _Phase) -> None:
        x0, y = n.inputs[0], n.outputs[0]
        dy = self.gy(y)
        if dy is None:
            return
        width, rows, layers = self.width(x0), self.rows(x0), int(n.attrs["num_layers"])
        k = int(n.attrs["projection_dim"])
        spec = self._cross_spec(n)
        xs = [self.act(x0)] + [Arg("scratch", f"{n.name}/x{l}") for l in range(1, layers)]
        dt = self.dtype(x0)
        dx0 = self.new_scratch(n, "dx0", (rows, Extent.const(width)), dt)
        ew = elementwise_launch(rows * width)
        if not k:
            # one launch per layer (row kernel + weight-gradient partials per row chunk), then the partials'
            # sum; layer 0 writes the input's gradient itself (dx0 + dy), so no finish pass
            parts = row_parts(rows.num * self.batch // rows.den + rows.fixed)
            part = self.new_scratch(n, "wgrad_partials", (Extent.const(parts), Extent.const(2 * width)))
            tgt = self.gx(x0)
            for l in reversed(range(layers)):
                acc = 0 if l == layers - 1 else 1
                gx, gacc = (tgt[0], i32(tgt[1])) if l == 0 and tgt is not None else (NULL, i32(0))
                ph.add(self.launch(spec, "v1_bwd", [self.act(x0), xs[l], dy, Arg("scratch", f"{n.name}/s{l}"),
                                                    self.w(n, 2 * l), dx0, i32(acc), gx, gacc, part, i64(rows)],
                                   row_parts_launch(parts)),
                       self.launch(spec, "v1_wgrad_finish", [part, i32(parts), self.wg(n, 2 * l),
                                                             self.wg(n, 2 * l + 1)], columns_launch(2 * width)))
            return
        for l in reversed(range(layers)):
            acc = 0 if l == layers - 1 else 1
            h, z = Arg("scratch", f"{n.name}/h{l}"), Arg("scratch", f"{n.name}/z{l}")
            dz = self.new_scratch(n, "dz", (rows, Extent.const(width)), dt)
            dh = self.new_scratch(n, "dh", (rows, Extent.const(k)), dt)
            red = self.spec("reduce", n, dtype=self.dtype(x0), op="sum")
            ph.add(self.launch(spec, "v2_bwd", [dy, self.act(x0), z, dz, dx0, i32(acc), i64(rows)], ew),
                   GemmCall(dz, self.w(n, 3 * l + 1), dh, rows, Extent.const(k), Extent.const(width),
                            transb=True),
                   GemmCall(xs[l], dh, self.wg(n, 3 * l), Extent.const(width), Extent.const(k), rows,
                            transa=True, beta=1.0),
                   GemmCall(h, dz, self.wg(n, 3 * l + 1), Extent.const(k), Extent.const(width), rows,
                            transa=True, beta=1.0),
                   *self.column_sum(n, "bias_partials", red, rows, width, "colsum_part", [dz],
                                    [i64(rows), i32(width)], "colsum_finish",
                                    [self.wg(n, 3 * l + 2), i32(width)]),
                   GemmCall(dh, self.w(n, 3 * l), dy, rows, Extent.const(width), Extent.const(k),
                            transb=True, beta=1.0))
        tgt = self.gx(x0)
        if tgt is not None:
            ph.add(self.launch(spec, "finish", [dx0, dy, tgt[0], i64(rows), i32(tgt[1])], ew))

    # batch norm --------------------------------------------------------------------------------
    def _bn(self, n: Node) -> tuple[str, int, Extent]:
        x = n.inputs[0]
        width = self.width(x)
        spec = self.spec("batch_norm", n, dtype=self.dtype(x), n=width, eps=float(n.attrs["eps"]),
                         factor=float(n.attrs["factor"]))
        return spec, width, self.rows(x)

    def fwd_BatchNorm(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec, width, rows = self._bn(n)
        mean, invstd = (self.new_scratch(n, "mean", (Extent.const(width),)),
                        self.new_scratch(n, "invstd", (Extent.const(width),)))
        rm, rv = self.state(f"{n.name}/mean", width, 0.0), self.state(f"{n.name}/var", width, 1.0)
        ph.add(self.launch(spec, "fwd_train", [self.act(x), self.w(n, 0), self.w(n, 1), self.act(y), mean,
                                               invstd, rm, rv, i64(rows)],
                           elementwise_launch(Extent.const(width)), "train"),
               self.launch(spec, "fwd_eval", [self.act(x), self.w(n, 0), self.w(n, 1), self.act(y), rm, rv,
                                              i64(rows)], elementwise_launch(rows * width), "eval"))

    def bwd_BatchNorm(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g = self.gy(y)
        if g is None:
            return
        spec, width, rows = self._bn(n)
        tgt = self.gx(x)
        ph.add(self.launch(spec, "bwd", [self.act(x), g, self.w(n, 0), Arg("scratch", f"{n.name}/mean"),
                                         Arg("scratch", f"{n.name}/invstd"), tgt[0] if tgt else NULL,
                                         self.wg(n, 0), self.wg(n, 1), i64(rows), i32(tgt[1] if tgt else 0)],
                           elementwise_launch(Extent.const(width))))

    # losses ------------------------------------------------------------------------------------
    def _loss_spec(self, n: Node) -> tuple[str, list[Arg]]:
        pred, label = n.inputs
        self.require_fp32(n, [label], "loss labels")
        if n.op == "BinaryCrossEntropyLoss":
            return self.spec("loss", n, op="bce", dtype=self.dtype(pred)), []
        if n.op == "CrossEntropyLoss":
            return self.spec("loss", n, op="ce", dtype=self.dtype(pred), label_width=self.width(label)), []
        tw = tuple(float(v) for v in n.attrs["target_weight_vec"])
        return (self.spec("loss", n, op="multi", dtype=self.dtype(pred), width=self.width(pred)),
                [Arg("const", value=tw)])

    def _loss_fwd(self, n: Node, ph: _Phase) -> None:
        pred, label = n.inputs
        spec, extra = self._loss_spec(n)
        ph.add(self.launch(spec, "fwd", [self.act(pred), self.act(label), *extra, self.act(n.outputs[0]),
                                         i64(self.rows(pred))], SINGLE_BLOCK))

    def _loss_bwd(self, n: Node, ph: _Phase) -> None:
        pred, label = n.inputs
        tgt = self.gx(pred)
        if tgt is None:
            return
        spec, extra = self._loss_spec(n)
        rows = self.rows(pred)
        ph.add(self.launch(spec, "bwd", [self.act(pred), self.act(label), *extra, tgt[0], i64(rows),
                                         runtime(f"loss_weight:{n.name}"), i32(tgt[1])],
                           elementwise_launch(self.numel(pred))))

    fwd_BinaryCrossEntropyLoss = fwd_CrossEntropyLoss = fwd_MultiCrossEntropyLoss = _loss_fwd
    bwd_BinaryCrossEntropyLoss = bwd_CrossEntropyLoss = bwd_MultiCrossEntropyLoss = _loss_bwd

    # index selection, repetition, masks, feature weights (select / elementwise / weight_multiply) -----
    def _select_view(self, n: Node) -> tuple[Extent, Extent, Extent, tuple[int, ...]]:
        """(outer, D, inner, index): the input seen as (outer, D, inner), the output as (outer, Q, inner)."""
        x = n.inputs[0]
        shape = self.types[x].shape
        if n.op == "Gather":
            return (Extent.const(1), Extent.of_dim(shape[0]), Extent.const(self.width(x)),
                    tuple(int(i) for i in n.attrs["indices"]))
        if n.op == "Select":
            dim = int(n.attrs["dim"])
            return (Extent.of_shape(shape[:dim]), Extent.of_dim(shape[dim]), Extent.of_shape(shape[dim + 1:]),
                    tuple(int(i) for i in n.attrs["index"]))
        k = int(n.attrs["factor"])  # Scale: every element (axis 0) or every row (axis 1) read k times
        if int(n.attrs["axis"]) == 0:
            return self.numel(x), Extent.const(1), Extent.const(1), (0,) * k
        return self.rows(x), Extent.const(1), Extent.const(self.width(x)), (0,) * k

    def _select_spec(self, n: Node, index: tuple[int, ...]) -> str:
        readers: list[list[int]] = [[] for _ in range(max(index) + 1)]
        for q, d in enumerate(index):
            readers[d].append(q)
        offsets = [0]
        for r in readers:
            offsets.append(offsets[-1] + len(r))
        return self.spec("select", n, dtype=self.dtype(n.inputs[0]), index=index, inv_off=tuple(offsets),
                         inv_q=tuple(q for r in readers for q in r))

    def fwd_Select(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        outer, d, inner, index = self._select_view(n)
        args = [self.act(x), self.act(y), i64(outer), i64(d), i64(inner)]
        ph.add(self.launch(self._select_spec(n, index), "fwd", args, elementwise_launch(self.numel(y))))

    def bwd_Select(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        outer, d, inner, index = self._select_view(n)
        args = [g, tgt[0], i64(outer), i64(d), i64(inner), i32(tgt[1])]
        ph.add(self.launch(self._select_spec(n, index), "bwd", args, elementwise_launch(self.numel(x))))

    fwd_Gather = fwd_Scale = fwd_Select
    bwd_Gather = bwd_Scale = bwd_Select

    def fwd_SequenceMask(self, n: Node, ph: _Phase) -> None:
        src, dst = n.inputs
        y = n.outputs[0]
        if len({self.dtype(src), self.dtype(dst), self.dtype(y)}) > 1:
            raise NotBuiltError("SequenceMask with lengths in another dtype than its mask", n.label())
        spec = self.spec("elementwise", n, op="sequence_mask", dtype=self.dtype(y),
                         f=int(n.attrs["max_sequence_len_from"]), t=int(n.attrs["max_sequence_len_to"]))
        batch = Extent.of_dim(self.types[src].shape[0])
        ph.add(self.launch(spec, "fwd", [self.act(src), self.act(dst), self.act(y), i64(batch)],
                           elementwise_launch(self.numel(y))))

    def bwd_SequenceMask(self, n: Node, ph: _Phase) -> None:
        """The sequence lengths take no gradient: nothing to do."""

    def _wm_spec(self, n: Node) -> str:
        s, k = n.attrs["weight_dims"]
        return self.spec("weight_multiply", n, dtype=self.dtype(n.inputs[0]), s=int(s), k=int(k))

    def fwd_WeightMultiply(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        args = [self.act(x), self.w(n, 0), self.act(y), i64(self.rows(x))]
        ph.add(self.launch(self._wm_spec(n), "fwd", args, elementwise_launch(self.numel(y))))

    def bwd_WeightMultiply(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g = self.gy(y)
        if g is None:
            return
        spec, rows = self._wm_spec(n), self.rows(x)
        ph.add(*self.column_sum(n, "wgrad_partials", spec, rows, self.width(y), "wgrad_part",
                                [self.act(x), g], [i64(rows)], "wgrad_finish", [self.wg(n, 0)]))
        tgt = self.gx(x)
        if tgt is not None:
            ph.add(self.launch(spec, "bwd_x", [g, self.w(n, 0), tgt[0], i64(rows), i32(tgt[1])],
                               elementwise_launch(self.numel(x))))

    # layer norm, dice ----------------------------------------------------------------------------
    def _ln(self, n: Node) -> tuple[str, Extent, int, Arg, Arg]:
        x = n.inputs[0]
        spec = self.spec("layer_norm", n, dtype=self.dtype(x), eps=float(n.attrs["eps"]))
        rows = self.rows(x)
        return spec, rows, self.width(x), Arg("scratch", f"{n.name}/mean"), Arg("scratch", f"{n.name}/invstd")

    def fwd_LayerNorm(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec, rows, cols, mean, invstd = self._ln(n)
        self.new_scratch(n, "mean", (rows,))
        self.new_scratch(n, "invstd", (rows,))
        ph.add(self.launch(spec, "fwd", [self.act(x), self.w(n, 0), self.w(n, 1), self.act(y), mean, invstd,
                                         i64(rows), i32(cols)], rows_launch(rows)))

    def bwd_LayerNorm(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g = self.gy(y)
        if g is None:
            return
        spec, rows, cols, mean, invstd = self._ln(n)
        ph.add(self.launch(spec, "wgrad", [self.act(x), g, mean, invstd, self.wg(n, 0), self.wg(n, 1),
                                           i64(rows), i32(cols)], columns_launch(cols)))
        tgt = self.gx(x)
        if tgt is not None:
            ph.add(self.launch(spec, "bwd_x", [self.act(x), g, self.w(n, 0), mean, invstd, tgt[0], i64(rows),
                                               i32(cols), i32(tgt[1])], rows_launch(rows)))

    def _dice(self, n: Node) -> tuple[str, int, Extent]:
        from hgc.ir.ops.prelu_dice import DICE_MOMENTUM

        x = n.inputs[0]
        width = self.width(x)
        spec = self.spec("dice", n, dtype=self.dtype(x), n=width, alpha=float(n.attrs["elu_alpha"]),
                         eps=float(n.attrs["eps"]), momentum=float(DICE_MOMENTUM))
        return spec, width, Extent.of_dim(self.types[x].shape[0])

    def fwd_PReLU_Dice(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec, width, rows = self._dice(n)
        mean, invstd = (self.new_scratch(n, "mean", (Extent.const(width),)),
                        self.new_scratch(n, "invstd", (Extent.const(width),)))
        rm, rv = self.state(f"{n.name}/running_mean", width), self.state(f"{n.name}/running_var", width)
        seen = self.state(f"{n.name}/updates", width)
        cfg = elementwise_launch(Extent.const(width))
        x_, y_ = self.act(x), self.act(y)
        ph.add(self.launch(spec, "fwd_train", [x_, y_, mean, invstd, rm, rv, seen, i64(rows)], cfg, "train"),
               self.launch(spec, "fwd_eval", [x_, y_, rm, rv, seen, i64(rows)], cfg, "eval"))

    def bwd_PReLU_Dice(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g, tgt = self.gy(y), self.gx(x)
        if g is None or tgt is None:
            return
        spec, width, rows = self._dice(n)
        ph.add(self.launch(spec, "bwd", [self.act(x), g, Arg("scratch", f"{n.name}/mean"),
                                         Arg("scratch", f"{n.name}/invstd"), tgt[0], i64(rows), i32(tgt[1])],
                           elementwise_launch(Extent.const(width))))

    # matrix multiply, GRU (cuBLAS through StridedGemm) ------------------------------------------
    def _mm_dims(self, n: Node) -> tuple[Extent, Extent, Extent, Extent]:
        """(batch, m, k, n) with A_i (m, k), B_i (k, n) and C_i (m, n)."""
        sa, sb = self.types[n.inputs[0]].shape, self.types[n.inputs[1]].shape
        if len(sa) == 2 and len(sb) == 3:  # (m, k) x (k, g, h): B read as (k, g*h)
            return Extent.const(1), Extent.of_dim(sa[0]), Extent.of_dim(sa[1]), Extent.of_shape(sb[1:])
        batch = Extent.of_shape(sa[:-2])
        dims = Extent.of_dim(sa[-2]), Extent.of_dim(sa[-1]), Extent.of_dim(sb[-1])
        if batch != Extent.const(1) and any(d.num for d in dims):
            raise NotBuiltError("batched MatrixMultiply with batch-dependent matrix sizes", n.label())
        return (batch, *dims)

    @staticmethod
    def _stride(batch: Extent, rows: Extent, cols: Extent) -> Extent:
        return Extent.const(0) if batch == Extent.const(1) else Extent.const(rows.fixed * cols.fixed)

    def fwd_MatrixMultiply(self, n: Node, ph: _Phase) -> None:
        a, b = n.inputs
        y = n.outputs[0]
        if self.dtype(a) != self.dtype(b) or self.dtype(a) != self.dtype(y):
            raise NotBuiltError("MatrixMultiply with operands of different dtypes", n.label())
        bt, m, k, nn = self._mm_dims(n)
        st = self._stride
        ph.add(StridedGemm(self.act(a), self.act(b), self.act(y), m, nn, k, bt, st(bt, m, k), st(bt, k, nn),
                           st(bt, m, nn)))

    def bwd_MatrixMultiply(self, n: Node, ph: _Phase) -> None:
        a, b = n.inputs
        g = self.gy(n.outputs[0])
        if g is None:
            return
        bt, m, k, nn = self._mm_dims(n)
        st = self._stride
        da = self.gx(a)
        if da is not None:  # dA (m, k) = g (m, n) . B^T
            ph.add(StridedGemm(g, self.act(b), da[0], m, k, nn, bt, st(bt, m, nn), st(bt, k, nn),
                               st(bt, m, k), transb=True, beta=float(da[1])))
        db = self.gx(b)
        if db is not None:  # dB (k, n) = A^T . g
            ph.add(StridedGemm(self.act(a), g, db[0], k, nn, m, bt, st(bt, m, k), st(bt, m, nn),
                               st(bt, k, nn), transa=True, beta=float(db[1])))

    def _gru(self, n: Node) -> tuple[str, int, int, int, int]:
        a = n.attrs
        x, y = n.inputs[0], n.outputs[0]
        self.require_fp32(n, [x, y], "GRU")
        batch, steps, vec, hid = (int(a["batchsize"]), int(a["SeqLength"]), int(a["vector_size"]),
                                  int(a["num_output"]))
        rows = Extent.of_dim(self.types[x].shape[0])
        if rows.at(self.batch) != steps * batch:
            raise NotBuiltError(f"GRU on {rows.at(self.batch)} input rows at per-GPU batch {self.batch} "
                                f"(it reads SeqLength*batchsize = {steps}*{batch} rows)", n.label())
        spec = self.spec("gru", n, dtype=self.dtype(x), n=batch, h=hid, v=vec, steps=steps)
        return spec, batch, steps, vec, hid

    def fwd_GRU(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        spec, nb, steps, vec, hid = self._gru(n)
        c = Extent.const
        xw = self.new_scratch(n, "xw", (c(steps * nb), c(3 * hid)))
        hr = self.new_scratch(n, "hr", (c(nb), c(3 * hid)))
        save = self.new_scratch(n, "gates", (c(steps * nb), c(4 * hid)))
        w = self.w(n, 0)
        ph.add(StridedGemm(self.act(x), w, xw, c(steps * nb), c(3 * hid), c(vec), transb=True))
        for t in range(steps):
            if t:
                ph.add(StridedGemm(self.act(y), w, hr, c(nb), c(3 * hid), c(hid),
                                   offset_a=c((t - 1) * nb * hid), offset_b=c(3 * hid * vec), transb=True))
            ph.add(self.launch(spec, "fwd", [xw, hr, w, self.act(y), save, i32(t)],
                               elementwise_launch(c(nb * hid))))
        self.private.add(y)  # the backward reads every hidden state

    def bwd_GRU(self, n: Node, ph: _Phase) -> None:
        x, y = n.inputs[0], n.outputs[0]
        g = self.gy(y)
        if g is None:
            return
        spec, nb, steps, vec, hid = self._gru(n)
        c = Extent.const
        da = Arg("scratch", f"{n.name}/xw")  # the input projections are not needed any more
        save = Arg("scratch", f"{n.name}/gates")
        dh = self.new_scratch(n, "dh", (c(nb), c(hid)))
        dm = self.new_scratch(n, "dm", (c(steps * nb), c(3 * hid)))
        w, wg = self.w(n, 0), self.wg(n, 0)
        for t in reversed(range(steps)):
            ph.add(self.launch(spec, "bwd", [g, self.act(y), save, dh, da, dm, i32(t)],
                               elementwise_launch(c(nb * hid))))
            if t:  # dh_{t-1} += dm_t R
                ph.add(StridedGemm(dm, w, dh, c(nb), c(hid), c(3 * hid), offset_a=c(t * nb * 3 * hid),
                                   offset_b=c(3 * hid * vec), beta=1.0))
        ph.add(StridedGemm(da, self.act(x), wg, c(3 * hid), c(vec), c(steps * nb), transa=True, beta=1.0))
        if steps > 1:  # dR += dm[1:]^T h[:-1]
            ph.add(StridedGemm(dm, self.act(y), wg, c(3 * hid), c(hid), c((steps - 1) * nb), transa=True,
                               offset_a=c(nb * 3 * hid), offset_c=c(3 * hid * vec), beta=1.0))
        ph.add(self.launch(spec, "bias_grad", [da, wg, i64(steps * nb)], columns_launch(3 * hid)))
        tgt = self.gx(x)
        if tgt is not None:
            ph.add(StridedGemm(da, w, tgt[0], c(steps * nb), c(vec), c(3 * hid), beta=float(tgt[1])))

    # optimizer ---------------------------------------------------------------------------------
    def optimizer_steps(self) -> list[Step]:
        steps: list[Step] = []
        if self.weights:
            opt = self.model_optimizer()
            kind = opt["optimizer_type"]
            if kind not in DENSE_OPTIMIZERS:
                raise NotBuiltError(f"the {kind} optimizer on the cuda target", "the dense weights")
            reg, _ = self.regularizer()
            total = self.weights[-1].offset + self.weights[-1].size
            count = -(-total // WEIGHT_ALIGN) * WEIGHT_ALIGN
            low = self.low_dtype()
            half = low if low in ("float16", "bfloat16") else False
            spec = self.spec("optimizer", "optimizer", kind=kind, reg=reg, half_copy=half,
                             **{k: opt[k] for k in ("beta1", "beta2", "epsilon", "momentum_factor", "lambda1",
                                                    "lambda2", "beta")})
            n_states = {"SGD": 0, "MomentumSGD": 1, "Nesterov": 1, "AdaGrad": 1, "Adam": 2, "Ftrl": 2}[kind]
            init = opt["initial_accu_value"] if kind == "AdaGrad" else 0.0
            s0 = self.state("optimizer/s0", count, init) if n_states >= 1 else NULL
            s1 = self.state("optimizer/s1", count, 0.0) if n_states >= 2 else NULL
            steps.append(Step("optimizer", (self.launch(spec, "step", [
                Arg("weights"), Arg("wgrads"), s0, s1, Arg("weights", value=half) if half else NULL, i64(count),
                runtime("lr"), runtime("alpha"),
                runtime("inv_scaler"), runtime("reg_scale")], elementwise_launch(Extent.const(count))),)))
        for e in self.embeddings:
            steps.append(Step(e.name, (EmbeddingCall(e.name, "update", e.input, e.output, e.spec),)))
        return steps


def lower(graph: Graph, plans: Mapping[str, Any] | None = None, *, batch: int | None = None,
          passes: Sequence[str] = ()) -> ExecutablePlan:
    """The ExecutablePlan of ``graph`` (optimized by the pass pipeline; ``plans`` = PipelineResult.plans).

    ``batch`` is the per-GPU batch the buffers are first sized for (default: the buffer plan's, else 1; the
    runtime grows buffers for larger batches). ``passes`` names the passes that ran (for provenance).
    """
    plans = dict(plans or {})
    if batch is None:
        buffers = plans.get("buffers")
        batch = int(buffers.batch_per_gpu) if buffers is not None else 1
    return _Lowering(graph, plans, int(batch), tuple(passes)).run()


def kernel_sources(plan: ExecutablePlan) -> dict[str, str]:
    """Module name → rendered CUDA source, for every kernel spec of the plan."""
    from hgc.codegen.render import render

    return {k.name: render(k) for k in plan.kernels}
