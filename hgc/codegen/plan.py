"""ExecutablePlan: what the cuda runtime executes, as frozen plain data (no networkx, no CuPy).

Lowering (:mod:`hgc.codegen.lower`) turns an optimized graph and its plans into one ExecutablePlan:

* ``kernels``: one :class:`KernelSpec` per generated CUDA module (template + parameters + provenance);
* ``buffers``: one :class:`BufferBinding` per tensor view (activation, gradient or scratch) onto a device
  buffer; several tensors share a buffer where the buffer plan says their lifetimes do not overlap;
* ``forward`` / ``backward`` / ``optimizer``: ordered :class:`Step` lists; a step holds the operations of one
  IR node (kernel launches, GEMMs, memsets, embedding calls) on one stream;
* ``weights``: where each dense weight lives in the flat fp32 master buffer; ``embeddings``: the tables.

Sizes that depend on the per-GPU batch are :class:`Extent` values (``num/den * batch + fixed``), resolved
by the runtime for the batch at hand, so one plan serves training, evaluation and a short last batch.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "uint32": 4,
            "uint64": 8, "int8": 1, "uint8": 1}


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return Params(value)
    return value


class Params(Mapping[str, Any]):
    """An immutable, hashable mapping of template parameter → plain value (sorted by name)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None, **kw: Any) -> None:
        d = dict(items or {}, **kw)
        object.__setattr__(self, "_items", tuple((k, _freeze(d[k])) for k in sorted(d)))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"Params({dict(self._items)!r})"


@dataclass(frozen=True, order=True)
class Extent:
    """A size ``num/den · batch + fixed`` (``num`` = 0: a constant)."""

    num: int = 0
    den: int = 1
    fixed: int = 0

    def at(self, batch: int) -> int:
        v = self.num * batch
        if v % self.den:
            raise ValueError(f"size {self} is not whole for per-GPU batch {batch}")
        return v // self.den + self.fixed

    @staticmethod
    def const(n: int) -> Extent:
        return Extent(0, 1, int(n))

    @staticmethod
    def of_dim(dim: Any) -> Extent:
        """From an IR dimension: an int, or a Batch (anything with a Fraction ``scale``)."""
        if isinstance(dim, int):
            return Extent.const(dim)
        scale = dim.scale
        return Extent(int(scale.numerator), int(scale.denominator), 0)

    @staticmethod
    def of_shape(shape: tuple[Any, ...]) -> Extent:
        """Element count of an IR shape (at most one batch-dependent dimension)."""
        fixed = prod(d for d in shape if isinstance(d, int))
        dyn = [d for d in shape if not isinstance(d, int)]
        if not dyn:
            return Extent.const(fixed)
        if len(dyn) > 1:
            raise ValueError(f"shape {shape} has more than one batch dimension")
        e = Extent.of_dim(dyn[0])
        return Extent(e.num * fixed, e.den, 0)

    def __mul__(self, k: int) -> Extent:
        return Extent(self.num * k, self.den, self.fixed * k)

    def __str__(self) -> str:
        if not self.num:
            return str(self.fixed)
        s = "B" if self.num == 1 else f"{self.num}*B"
        s = s if self.den == 1 else f"{s}/{self.den}"
        return s if not self.fixed else f"{s}+{self.fixed}"


@dataclass(frozen=True)
class KernelSpec:
    """One generated CUDA module: ``templates/<template>.cu.j2`` rendered with ``params``.

    ``name`` is the module's C identifier prefix (unique in a plan); the template names every kernel
    ``<name>_<function>``. ``nodes`` and ``passes`` are the provenance written into the source header.
    """

    template: str
    name: str
    params: Params
    nodes: tuple[str, ...] = ()
    passes: tuple[str, ...] = ()

    def function(self, fn: str) -> str:
        return f"{self.name}_{fn}"


@dataclass(frozen=True)
class LaunchConfig:
    """Block shape, dynamic shared memory, and how the grid follows the work.

    ``items`` work items spread over blocks of ``per_block`` items each (grid x = ceil(items / per_block),
    capped at ``max_blocks``: kernels loop with a grid stride); ``grid_y`` is a fixed second dimension.
    """

    block: tuple[int, int, int] = (256, 1, 1)
    items: Extent = Extent(0, 1, 1)
    per_block: int = 256
    max_blocks: int = 65535
    grid_y: int = 1
    smem: int = 0

    def grid(self, batch: int) -> tuple[int, int, int]:
        n = self.items.at(batch)
        gx = max(1, min(self.max_blocks, -(-n // self.per_block)))
        return (gx, self.grid_y, 1)


@dataclass(frozen=True)
class Arg:
    """One kernel / GEMM argument, resolved by the runtime.

    kind:
      ``act`` / ``grad`` / ``scratch``: pointer to the view of tensor ``name``;
      ``weight`` / ``wgrad``: pointer to weight ``index`` of node ``name`` (master fp32 / its gradient; a
        ``weight`` with value ``"low"``: its slice of the fp16/bf16 copy);
      ``weights`` / ``wgrads``: the whole flat fp32 weight / weight-gradient buffer;
      ``state``: pointer to per-node state ``name`` (e.g. ``"bn1/running_mean"``);
      ``int`` / ``float``: a scalar; ``value`` is an :class:`Extent` for ints, a number for floats;
      ``runtime``: a scalar the runtime supplies each step (``name`` says which: ``seed``, ``lr`` …);
      ``const``: pointer to a small constant float array (``value``: tuple of floats);
      ``null``: a null pointer.
    ``ctype`` is the C type of scalars (``long long``, ``int``, ``float``, ``unsigned long long``).
    """

    kind: str
    name: str = ""
    index: int = 0
    value: Any = None
    ctype: str = ""


@dataclass(frozen=True)
class KernelLaunch:
    """Launch ``<spec>_<function>`` with ``args``. ``mode``: run always, only in training or only in eval."""

    spec: str
    function: str
    args: tuple[Arg, ...]
    launch: LaunchConfig
    mode: str = "any"  # any | train | eval


@dataclass(frozen=True)
class GemmCall:
    """C = alpha·op(A)·op(B) + beta·C on row-major matrices; op = transpose where ``trans*`` is set.

    m, n, k are the sizes of op(A) (m × k), op(B) (k × n) and C (m × n); ``lda``/``ldb``/``ldc`` are the
    row-major leading dimensions (stored row lengths): the dense row length unless ``a_ld``/``b_ld``/``c_ld``
    give a longer one (a padded copy whose rows start 16-byte aligned). ``epilogue`` names a kernel launch fused after it
    in the same step (bias + activation). ``dtype`` is the type of A and B (a half GEMM reads weights from the
    low-precision copy); ``compute_type`` is "float32" or "tf32" (fp32 GEMMs with enable_tf32_compute).
    """

    a: Arg
    b: Arg
    c: Arg
    m: Extent
    n: Extent
    k: Extent
    transa: bool = False
    transb: bool = False
    alpha: float = 1.0
    beta: float = 0.0
    dtype: str = "float32"
    compute_type: str = "float32"
    epilogue: KernelLaunch | None = None
    a_ld: Extent | None = None
    b_ld: Extent | None = None
    c_ld: Extent | None = None

    @property
    def lda(self) -> Extent:
        return self.a_ld or (self.m if self.transa else self.k)

    @property
    def ldb(self) -> Extent:
        return self.b_ld or (self.k if self.transb else self.n)

    @property
    def ldc(self) -> Extent:
        return self.c_ld or self.n


@dataclass(frozen=True)
class StridedGemm:
    """``batch`` GEMMs C_i = alpha·op(A_i)·op(B_i) + beta·C_i on dense row-major matrices.

    m, n, k as in :class:`GemmCall` (every matrix is stored densely: lda = its row length). Operand X_i
    starts ``offset_x + i·stride_x`` elements into X's view (an activation, gradient or scratch view, or
    a node's weight / weight gradient), so one call can also read a block of rows out of a larger
    tensor (a time step of a sequence) or a piece of a flat weight. Strides are ignored when batch = 1.
    """

    a: Arg
    b: Arg
    c: Arg
    m: Extent
    n: Extent
    k: Extent
    batch: Extent = Extent(0, 1, 1)
    stride_a: Extent = Extent(0, 1, 0)
    stride_b: Extent = Extent(0, 1, 0)
    stride_c: Extent = Extent(0, 1, 0)
    offset_a: Extent = Extent(0, 1, 0)
    offset_b: Extent = Extent(0, 1, 0)
    offset_c: Extent = Extent(0, 1, 0)
    transa: bool = False
    transb: bool = False
    alpha: float = 1.0
    beta: float = 0.0


@dataclass(frozen=True)
class Memset:
    """Zero a tensor view (or the whole wgrad buffer, with ``target.kind == "wgrad"`` and no name)."""

    target: Arg


@dataclass(frozen=True)
class EmbeddingCall:
    """An embedding table operation the runtime performs with the table's kernels and CuPy sorting.

    phase ``forward``: keys of sparse input ``input`` → combined vectors into activation ``output``;
    ``backward``: gradient of ``output`` → (unique rows, summed row gradients) kept for the update;
    ``update``: the sparse optimizer step on the table.
    """

    table: str
    phase: str
    input: str
    output: str
    spec: str


@dataclass(frozen=True)
class Collective:
    """A NCCL collective on a view (multi-GPU; lowered later): all_reduce, all_to_all, all_gather."""

    kind: str
    target: Arg
    op: str = "sum"
    group: tuple[int, ...] = ()


Op = KernelLaunch | GemmCall | StridedGemm | Memset | EmbeddingCall | Collective


@dataclass(frozen=True)
class Step:
    """The operations of one IR node in one phase, in order, on ``stream``.

    ``waits`` names events recorded by earlier steps; ``record`` names the event this step records.
    """

    node: str
    ops: tuple[Op, ...]
    stream: int = 0
    waits: tuple[str, ...] = ()
    record: str = ""


@dataclass(frozen=True)
class BufferBinding:
    """Tensor view ``tensor`` (``kind`` activation | gradient | scratch) on device buffer ``buffer``.

    ``shape`` in Extents, ``dtype`` its element type. ``alias_of`` names the activation whose view this one
    is (Reshape, an alias output): it then shares that view's buffer and bytes.
    """

    tensor: str
    kind: str
    buffer: int
    shape: tuple[Extent, ...]
    dtype: str
    alias_of: str = ""

    @property
    def numel(self) -> Extent:
        fixed, dyn = 1, None
        for e in self.shape:
            if e.num:
                if dyn is not None:
                    raise ValueError(f"view '{self.tensor}' has two batch dimensions")
                dyn = e
            else:
                fixed *= e.fixed
        return Extent.const(fixed) if dyn is None else Extent(dyn.num * fixed, dyn.den, dyn.fixed * fixed)

    def nbytes(self, batch: int) -> int:
        return self.numel.at(batch) * ITEMSIZE[self.dtype]

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(e.at(batch) for e in self.shape)


@dataclass(frozen=True)
class WeightSlot:
    """Dense weight ``index`` of node ``node``: shape, and offset (elements) in the flat fp32 buffer."""

    node: str
    index: int
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class EmbeddingTableSpec:
    """One embedding table: its node, input, output, sizes and optimizer (plain OptParams fields)."""

    name: str
    op: str
    input: str
    output: str
    vec_size: int
    slot_num: int
    combiner: str
    capacity: int
    slot_size_array: tuple[int, ...]
    one_hot: bool
    optimizer: Params
    spec: str  # KernelSpec name of its kernels
    out_dtype: str = "float32"


@dataclass(frozen=True)
class StateSpec:
    """A float32 device array kept across steps (running statistics, optimizer moments), ``init``-filled."""

    name: str
    size: int
    init: float = 0.0


@dataclass(frozen=True)
class PlanNode:
    """The IR facts the runtime and trainer need about a node (no IR objects cross into the runtime)."""

    name: str
    op: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Params = field(default_factory=Params)


@dataclass(frozen=True)
class InputBinding:
    """How a data batch maps onto tensors: label tensor names and widths, the dense tensor, sparse inputs."""

    labels: tuple[tuple[str, int], ...]
    dense: str
    dense_dim: int
    sparse: tuple[tuple[str, int], ...]  # (name, slot_num)


@dataclass(frozen=True)
class ExecutablePlan:
    """Everything the cuda runtime needs to run one model (see the module docstring)."""

    nodes: tuple[PlanNode, ...]
    kernels: tuple[KernelSpec, ...]
    buffers: tuple[BufferBinding, ...]
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    optimizer: tuple[Step, ...]
    weights: tuple[WeightSlot, ...]
    embeddings: tuple[EmbeddingTableSpec, ...]
    inputs: InputBinding
    losses: tuple[tuple[str, str], ...]  # (loss node, its output tensor)
    batch: int  # the per-GPU batch the plan was made for (buffers grow for larger batches)
    states: tuple[StateSpec, ...] = ()
    optimizer_params: Params = field(default_factory=Params)  # the dense optimizer (OptParams fields)
    regularizer: tuple[str, float] = ("none", 0.0)  # ("L1" | "L2" | "none", lambda)
    compute_dtype: str = "float32"
    passes: tuple[str, ...] = ()

    def kernel(self, name: str) -> KernelSpec:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(f"no kernel spec '{name}' in the plan")

    def binding(self, tensor: str, kind: str = "activation") -> BufferBinding:
        for b in self.buffers:
            if b.tensor == tensor and b.kind == kind:
                return b
        raise KeyError(f"no {kind} view of '{tensor}' in the plan")

    @property
    def weight_count(self) -> int:
        return sum(w.size for w in self.weights)

    def node(self, name: str) -> PlanNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node '{name}' in the plan")

    def summary(self) -> str:
        """A readable listing: kernels, buffers, then the steps of each phase."""
        head = (f"ExecutablePlan: batch {self.batch}, compute {self.compute_dtype}, "
                f"{len(self.kernels)} kernel module(s), {len({b.buffer for b in self.buffers})} buffer(s), "
                f"{self.weight_count} dense weight value(s)")
        lines = [head]
        for k in self.kernels:
            lines.append(f"  kernel {k.name}: {k.template}.cu.j2 {dict(k.params)} <- {', '.join(k.nodes)}")
        for phase, steps in (("forward", self.forward), ("backward", self.backward),
                             ("optimizer", self.optimizer)):
            lines.append(f"{phase}:")
            for s in steps:
                for op in s.ops:
                    lines.append(f"  [{s.node}] {describe(op)}")
        return "\n".join(lines)


def describe(op: Op) -> str:
    """One line naming an operation and its operands."""
    def a(x: Arg) -> str:
        if x.kind in ("act", "grad", "scratch", "state", "runtime"):
            return f"{x.kind}:{x.name}"
        if x.kind in ("weight", "wgrad"):
            return f"{x.kind}:{x.name}[{x.index}]" + (f" ({x.value})" if x.value else "")
        if x.kind == "weights" and x.value:
            return f"weights:{x.value}"  # the flat low-precision copy of the weights
        if x.kind in ("weights", "wgrads", "null"):
            return x.kind
        if x.kind == "int":
            return str(x.value)
        return f"{x.kind}:{x.value}"
    if isinstance(op, KernelLaunch):
        mode = "" if op.mode == "any" else f" ({op.mode})"
        return f"launch {op.spec}_{op.function}({', '.join(a(x) for x in op.args)}){mode}"
    if isinstance(op, GemmCall):
        ta, tb = "ᵀ" if op.transa else "", "ᵀ" if op.transb else ""
        ep = f" + {op.epilogue.spec}_{op.epilogue.function}" if op.epilogue else ""
        return (f"gemm {a(op.c)} = {op.alpha:g}·{a(op.a)}{ta}·{a(op.b)}{tb} + {op.beta:g}·C "
                f"[{op.m}x{op.n}x{op.k}]{ep}")
    if isinstance(op, StridedGemm):
        ta, tb = "ᵀ" if op.transa else "", "ᵀ" if op.transb else ""

        def at(x: Arg, off: Extent) -> str:
            return a(x) + (f"+{off}" if off != Extent.const(0) else "")
        return (f"gemm {at(op.c, op.offset_c)} = {op.alpha:g}·{at(op.a, op.offset_a)}{ta}·"
                f"{at(op.b, op.offset_b)}{tb} + {op.beta:g}·C [{op.batch} x {op.m}x{op.n}x{op.k}]")
    if isinstance(op, Memset):
        return f"memset {a(op.target)}"
    if isinstance(op, EmbeddingCall):
        return f"embedding {op.table} {op.phase} ({op.input} -> {op.output})"
    return f"collective {op.kind} {a(op.target)}"
