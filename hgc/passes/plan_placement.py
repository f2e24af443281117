"""PlanEmbeddingPlacement: which GPU holds which rows of every embedding table, and whether they fit.

GPUs are numbered globally in rank-major order over ``ctx.vvgpu`` (outer list = ranks, inner = that
rank's GPUs): vvgpu [[0, 1], [0, 1]] has GPUs 0 (rank 0, device 0), 1 (rank 0, device 1), 2 (rank 1,
device 0), 3 (rank 1, device 1). G = ``ctx.world_size``.

Rows that fit in the workspace (facts §2.3)::

    rows_fit = floor(workspace_size_per_gpu_in_mb * 2**20 / ((1 + S) * 4 * embedding_vec_size))

with S the optimizer state copies per weight (Adam 2, Adam with LazyGlobal updates 3, AdaGrad 1,
MomentumSGD 1, Nesterov 1, RMSProp 1, Ftrl 2, SGD 0). The optimizer is the embedding's own
(``attrs["optimizer"]``), else the model's (``graph.meta["optimizer"]``), else HugeCTR's default
(Adam, Global). A row costs ``(1 + S) * 4 * embedding_vec_size`` bytes (fp32 weights and states).

Per type:

* DistributedSlotSparseEmbeddingHash: key k lives on GPU ``k % G``; every GPU preallocates ``rows_fit``
  rows. With a ``slot_size_array`` the rows needed per GPU are ``ceil(sum(sizes) / G)``.
* LocalizedSlotSparseEmbeddingHash: slot s lives on GPU ``s % G``. With a ``slot_size_array`` a GPU
  holds exactly the rows of its slots (the sizes win over the workspace, as in HugeCTR); they are still
  checked against the workspace when one is given (> 0), since it is the budget the user declared.
  Without sizes every GPU preallocates ``rows_fit`` rows.
* LocalizedSlotSparseEmbeddingOneHot: slot s on GPU ``s % G``; rows = the sizes of the GPU's slots
  (``slot_size_array`` required, workspace ignored, one rank only).
* HybridSparseEmbedding: frequent categories are replicated on every GPU, the rest model-parallel. Which
  categories are frequent is measured at run time, so the plan keeps the inputs of that decision
  (``hybrid_embedding_param``, sizes, batch size) and an upper bound of the rows per GPU: at most
  ``max_num_frequent_categories * batchsize`` frequent rows plus ``ceil(sum(sizes) / G)`` infrequent ones.

A table whose needed rows exceed ``rows_fit`` on some GPU raises PlacementError naming the table, the
GPU, the rows needed and the rows that fit. The plan (frozen plain data) goes to
``ctx.plans["placement"]``; :func:`format_placement` renders it as ``placement.txt``: per rank, each table's
GPUs, rows, bytes, the size of its hash index (outside the workspace) and what its GPUs exchange per
iteration, then each GPU's and the rank's memory. The runtime (hgc.runtime.dist) shards tables exactly as
the plan says.

Preconditions: dead code removed (a table no loss reads is still placed: its rows are saved and
restored). Ordering: after DeadCodeElimination, before PlanBuffers.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from math import ceil
from typing import Any

from hgc.errors import PlacementError
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.ops.embeddings import HYBRID_DEFAULTS, OPTIMIZER_TYPES, state_copies
from hgc.passes._kinds import is_embedding
from hgc.passes.context import PassContext, PassResult

NAME = "PlanEmbeddingPlacement"

DISTRIBUTED = "DistributedSlotSparseEmbeddingHash"
LOCALIZED = "LocalizedSlotSparseEmbeddingHash"
ONE_HOT = "LocalizedSlotSparseEmbeddingOneHot"
HYBRID = "HybridSparseEmbedding"

_CANONICAL = {k.lower(): k for k in OPTIMIZER_TYPES}  # "Adagrad" (the 3.x API text) → "AdaGrad"
MB = 1 << 20


@dataclass(frozen=True)
class Gpu:
    gpu: int  # global id, rank-major
    rank: int
    device: int


@dataclass(frozen=True)
class GpuShare:
    """One table's part on one GPU. ``rows_needed`` is None when no ``slot_size_array`` says it."""

    gpu: int
    rank: int
    device: int
    slots: tuple[int, ...]  # slots held here (Localized, OneHot); () when keys are spread by value
    rows: int  # rows allocated here
    rows_needed: int | None
    bytes: int


@dataclass(frozen=True)
class HybridPlan:
    """What the run-time frequency split of a HybridSparseEmbedding starts from."""

    params: tuple[tuple[str, Any], ...]  # hybrid_embedding_param fields, as given
    batchsize: int
    total_categories: int
    frequent_rows_max: int  # replicated on every GPU
    infrequent_rows_per_gpu_max: int


@dataclass(frozen=True)
class TablePlan:
    name: str
    type: str
    input: str
    embedding_vec_size: int
    slot_num: int
    slot_size_array: tuple[int, ...]
    optimizer: str
    update_type: str
    optimizer_source: str  # "embedding" | "model" | "default"
    state_copies: int
    workspace_size_per_gpu_in_mb: float
    rows_fit: int  # rows the workspace holds on one GPU
    key_modulus: int | None  # Distributed: GPU = key % key_modulus
    shares: tuple[GpuShare, ...]
    hybrid: HybridPlan | None = None

    @property
    def bytes_per_row(self) -> int:
        return (1 + self.state_copies) * 4 * self.embedding_vec_size

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shares)


@dataclass(frozen=True)
class PlacementPlan:
    vvgpu: tuple[tuple[int, ...], ...]
    gpus: tuple[Gpu, ...]
    tables: tuple[TablePlan, ...]
    batchsize: int = 0  # the global training batch (0: not known); sizes the exchanges in placement.txt

    @property
    def world_size(self) -> int:
        return len(self.gpus)

    def table(self, name: str) -> TablePlan:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no embedding table '{name}' in the placement plan; tables: "
                       f"{[t.name for t in self.tables]}")

    def bytes_per_gpu(self) -> dict[int, int]:
        out = {g.gpu: 0 for g in self.gpus}
        for t in self.tables:
            for s in t.shares:
                out[s.gpu] += s.bytes
        return out


def gpus_of(vvgpu: list[list[int]] | tuple[tuple[int, ...], ...]) -> tuple[Gpu, ...]:
    out = [Gpu(0, r, d) for r, devices in enumerate(vvgpu) for d in devices]
    if not out:
        raise ValueError(f"vvgpu = {vvgpu!r} is not allowed: it must name at least one GPU")
    return tuple(Gpu(i, g.rank, g.device) for i, g in enumerate(out))


def rows_fit(workspace_mb: float, vec: int, copies: int) -> int:
    """Rows of ``vec`` fp32 values plus ``copies`` optimizer state copies that fit in the workspace."""
    return int(workspace_mb * MB) // ((1 + copies) * 4 * vec)


def resolve_optimizer(node: Node, graph: Graph) -> tuple[str, str, str]:
    """(optimizer type, update type, where it came from) for an embedding node."""
    opt, source = node.attrs.get("optimizer"), "embedding"
    if opt is None:
        opt, source = graph.meta.get("optimizer"), "model"
    if opt is None:
        return "Adam", "Global", "default"
    if isinstance(opt, str):
        kind, update = opt, "Global"
    elif isinstance(opt, Mapping):
        kind = opt.get("optimizer_type", opt.get("type", "Adam"))
        update = opt.get("update_type", "Global")
    else:
        raise TypeError(f"{node.label()}: optimizer = {opt!r} is not allowed: must be an optimizer name "
                         f"or a mapping with optimizer_type/update_type")
    canonical = _CANONICAL.get(str(kind).lower())
    if canonical is None:
        raise ValueError(f"{node.label()}: optimizer_type = {kind!r} is not allowed: must be one of "
                         f"{list(OPTIMIZER_TYPES)}")
    return canonical, str(update), source


def _fail(table: str, kind: str, gpu: Gpu, need: int, fit: int, mb: float, bytes_per_row: int,
          optimizer: str, copies: int) -> PlacementError:
    need_mb = ceil(need * bytes_per_row / MB)
    return PlacementError(
        f"embedding table '{table}' ({kind}) needs {need} rows on GPU {gpu.gpu} (rank {gpu.rank}, device "
        f"{gpu.device}) but workspace_size_per_gpu_in_mb = {mb:g} fits only {fit} rows there "
        f"({bytes_per_row} bytes per row: fp32 vector + {copies} {optimizer} state copies); "
        f"workspace_size_per_gpu_in_mb must be at least {need_mb}")


def _slots_by_gpu(slot_num: int, g: int) -> list[tuple[int, ...]]:
    return [tuple(range(i, slot_num, g)) for i in range(g)]


def plan_table(node: Node, graph: Graph, gpus: tuple[Gpu, ...], batchsize: int) -> TablePlan:
    a = node.attrs
    name, kind, g = node.name, node.op, len(gpus)
    vec = int(a["embedding_vec_size"])
    slot_num = int(node.types[0].shape[1])
    sizes = tuple(int(s) for s in (a.get("slot_size_array") or ()))
    mb = float(a.get("workspace_size_per_gpu_in_mb", 0) or 0)
    opt, update, source = resolve_optimizer(node, graph)
    copies = state_copies(opt, update)
    per_row = (1 + copies) * 4 * vec
    fit = rows_fit(mb, vec, copies)
    if sizes and len(sizes) != slot_num:
        raise PlacementError(f"embedding table '{name}' ({kind}): slot_size_array has {len(sizes)} entries "
                             f"but the input has {slot_num} slots")
    if kind in (ONE_HOT, HYBRID) and not sizes:
        raise PlacementError(f"embedding table '{name}' ({kind}): slot_size_array is required (one size per "
                             f"slot) to place this table")
    if kind == ONE_HOT and len({gp.rank for gp in gpus}) > 1:
        raise PlacementError(f"embedding table '{name}' ({kind}) works on a single node, but vvgpu has "
                             f"{len({gp.rank for gp in gpus})} ranks")

    def share(gp: Gpu, slots: tuple[int, ...], rows: int, needed: int | None, check: bool) -> GpuShare:
        if check and needed is not None and needed > fit:
            raise _fail(name, kind, gp, needed, fit, mb, per_row, opt, copies)
        if check and needed is None and fit == 0:
            raise PlacementError(
                f"embedding table '{name}' ({kind}): workspace_size_per_gpu_in_mb = {mb:g} leaves no room for "
                f"a single row on GPU {gp.gpu} (rank {gp.rank}, device {gp.device}); one row needs "
                f"{per_row} bytes")
        return GpuShare(gp.gpu, gp.rank, gp.device, slots, rows, needed, rows * per_row)

    hybrid = None
    key_modulus = None
    if kind == DISTRIBUTED:
        key_modulus = g
        needed = ceil(sum(sizes) / g) if sizes else None
        shares = [share(gp, (), fit, needed, True) for gp in gpus]
    elif kind == LOCALIZED:
        shares = []
        for gp, slots in zip(gpus, _slots_by_gpu(slot_num, g)):
            if sizes:
                needed = sum(sizes[s] for s in slots)
                shares.append(share(gp, slots, needed, needed, mb > 0))
            else:
                shares.append(share(gp, slots, fit, None, True))
    elif kind == ONE_HOT:
        shares = []
        for gp, slots in zip(gpus, _slots_by_gpu(slot_num, g)):
            rows = sum(sizes[s] for s in slots)
            shares.append(share(gp, slots, rows, rows, False))
    elif kind == HYBRID:
        params = {**HYBRID_DEFAULTS, **(a.get("hybrid_embedding_param") or {})}
        total = sum(sizes)
        per_batch = params["max_num_frequent_categories"]
        frequent = min(total, int(per_batch) * batchsize) if per_batch and per_batch > 0 else total
        infrequent = ceil(total / g)
        rows = min(total, frequent + infrequent)
        hybrid = HybridPlan(tuple(params.items()), batchsize, total, frequent, infrequent)
        shares = [share(gp, (), rows, None, False) for gp in gpus]
    else:
        raise PlacementError(f"{node.label()}: no placement rule for embedding type '{kind}'")
    return TablePlan(name, kind, node.inputs[0], vec, slot_num, sizes, opt, update, source, copies, mb, fit,
                     key_modulus, tuple(shares), hybrid)


def plan(graph: Graph, ctx: PassContext) -> PlacementPlan:
    gpus = gpus_of(ctx.vvgpu)
    tables = tuple(plan_table(n, graph, gpus, ctx.batchsize) for n in graph.nodes() if is_embedding(n))
    return PlacementPlan(tuple(tuple(r) for r in ctx.vvgpu), gpus, tables, int(ctx.batchsize))


def run(graph: Graph, ctx: PassContext) -> PassResult:
    p = plan(graph, ctx)
    ctx.plans["placement"] = p
    stats: Counter[str] = Counter({"tables": len(p.tables)})
    for t in p.tables:
        stats[t.type] += 1
    per_gpu = p.bytes_per_gpu()
    stats["max_bytes_per_gpu"] = max(per_gpu.values()) if per_gpu else 0
    return PassResult(graph, False, dict(stats))


# -- placement.txt -----------------------------------------------------------------------------
def _mib(n: int) -> str:
    return f"{n / MB:.2f} MiB"


def _where(t: TablePlan, s: GpuShare) -> str:
    if t.type == DISTRIBUTED:
        return f"keys with key % {t.key_modulus} == {s.gpu}"
    if t.type == HYBRID:
        return "frequent rows (replicated) + its share of the infrequent rows"
    return "slots " + (",".join(map(str, s.slots)) if s.slots else "none")


def hash_index_bytes(t: TablePlan, s: GpuShare) -> int:
    """Bytes of the key → row index of a hash table share: open addressing with a power-of-two probe array
    of at least 16 and at least twice the rows, 16 bytes per slot (int64 key, int64 row), as the cuda
    target allocates it. 0 for the one-hot and hybrid types (no hash). Not part of the workspace."""
    if t.type not in (DISTRIBUTED, LOCALIZED):
        return 0
    slots = 16
    while slots < 2 * max(s.rows, 1):
        slots *= 2
    return 16 * slots


def _exchange(t: TablePlan, p: PlacementPlan) -> str:
    """What the table's GPUs send each other per training iteration (fp32 outputs and gradients)."""
    g = p.world_size
    if g == 1:
        return "none (one GPU)"
    if p.batchsize <= 0:
        return "per iteration sizes unknown (no batch size)"
    big, small = p.batchsize, p.batchsize // g
    row = t.slot_num * t.embedding_vec_size * 4
    if t.type == DISTRIBUTED:
        return (f"forward reduce-scatter of a {big}×{t.slot_num}×{t.embedding_vec_size} partial-sum buffer "
                f"({big * row} bytes per GPU), backward all-gather of the output gradient ({big * row} bytes per "
                f"GPU), plus an all-gather of the new keys' batch positions")
    if t.type in (LOCALIZED, ONE_HOT):
        most = max(len(s.slots) for s in t.shares)
        out = big * most * t.embedding_vec_size * 4
        return (f"forward all-to-all (at most {out} bytes sent, {small * row} received per GPU), backward the "
                f"reverse all-to-all" + ("" if t.type == ONE_HOT else ", plus an all-gather of the new keys' batch "
                                                                      "positions"))
    h = t.hybrid
    freq = (h.frequent_rows_max if h else 0) * t.embedding_vec_size * 4
    return (f"frequent gradients all-reduced (at most {freq} bytes), infrequent vectors all-to-all (at most "
            f"{small * row} bytes received per GPU) forward and backward")


def _sizing(t: TablePlan) -> str:
    if t.type == ONE_HOT:
        return "; rows from slot_size_array (workspace ignored)"
    if t.type == LOCALIZED and t.slot_size_array:
        return "; rows from slot_size_array" + (" (checked against the workspace)"
                                                if t.workspace_size_per_gpu_in_mb > 0 else "")
    return ""


def format_placement(p: PlacementPlan, rank: int | None = None) -> str:
    """placement.txt: per rank, each table's GPUs, rows and bytes, then each GPU's total."""
    ranks = sorted({g.rank for g in p.gpus}) if rank is None else [rank]
    vv = [list(r) for r in p.vvgpu]
    lines = [(f"# embedding placement: {len(p.vvgpu)} rank(s), {p.world_size} GPU(s); vvgpu = {vv}; "
              f"GPU ids are global, rank-major"), f"# {len(p.tables)} table(s)"]
    totals = p.bytes_per_gpu()
    for r in ranks:
        mine = [g for g in p.gpus if g.rank == r]
        if not mine:
            raise ValueError(f"rank = {r} is not allowed: vvgpu has ranks 0..{len(p.vvgpu) - 1}")
        lines += ["", f"rank {r}"]
        ids = {g.gpu for g in mine}
        for t in p.tables:
            lines.append(f"  table {t.name}: {t.type}, input {t.input}, {t.slot_num} slots, vec "
                         f"{t.embedding_vec_size}, {t.optimizer}/{t.update_type} ({t.state_copies} state copies, "
                         f"{t.bytes_per_row} bytes/row), workspace {t.workspace_size_per_gpu_in_mb:g} MB = "
                         f"{t.rows_fit} rows/GPU{_sizing(t)}")
            if t.hybrid is not None:
                h = t.hybrid
                lines.append(f"    hybrid: {h.total_categories} categories, <= {h.frequent_rows_max} frequent "
                             f"(replicated), <= {h.infrequent_rows_per_gpu_max} infrequent per GPU; "
                             f"params {dict(h.params)}")
            gpus = [s.gpu for s in t.shares]
            lines.append(f"    on GPU(s) {gpus}; exchange: {_exchange(t, p)}")
            for s in t.shares:
                if s.gpu not in ids:
                    continue
                need = "" if s.rows_needed is None else f" (needed {s.rows_needed})"
                index = hash_index_bytes(t, s)
                extra = f"; hash index {index} bytes ({_mib(index)})" if index else ""
                lines.append(f"    GPU {s.gpu} (device {s.device}): {_where(t, s)}: rows {s.rows}{need}, "
                             f"bytes {s.bytes} ({_mib(s.bytes)}){extra}")
        lines.append("  memory per GPU (embedding rows + optimizer states; with the hash indexes):")
        rank_total = 0
        for g in mine:
            n = sum(1 for t in p.tables for s in t.shares if s.gpu == g.gpu)
            index = sum(hash_index_bytes(t, s) for t in p.tables for s in t.shares if s.gpu == g.gpu)
            rank_total += totals[g.gpu] + index
            lines.append(f"    GPU {g.gpu} (device {g.device}): {n} table share(s), {totals[g.gpu]} bytes "
                         f"({_mib(totals[g.gpu])}); with hash indexes {totals[g.gpu] + index} bytes "
                         f"({_mib(totals[g.gpu] + index)})")
        lines.append(f"  rank {r} total: {rank_total} bytes ({_mib(rank_total)}) on {len(mine)} GPU(s)")
    return "\n".join(lines) + "\n"
