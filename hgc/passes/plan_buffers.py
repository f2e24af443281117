"""PlanBuffers: share device buffers between per-step tensors whose lifetimes do not overlap.

One training step on n nodes is 2n steps: the forward of node i at step i (graph order), then the
backwards in reverse, node i at step 2n - 1 - i. Two kinds of tensor live in buffers:

* the activation of a tensor t written by node p lives from step p until the backward of its last
  reader in backward order (the reader earliest in graph order), because backward reads its inputs.
  A tensor nobody reads (a loss value, an unused alias) lives until its producer's backward, and so
  does an output the producer's own backward reads (:func:`own_backward_reads`: the output of a
  FusedInnerProduct with ReLU, whose mask the backward applies; every member output of a
  GroupFusedInnerProduct; a Softmax output; the first output of a two-output Interaction, which the
  second aliases);
* the gradient of t lives from the backward of its first reader in backward order (the reader latest
  in graph order) until the backward of its producer, which consumes it. Gradients exist for floating
  tensors that some node reads, except those the Input writes (labels and dense features are data).

The Input's outputs are the reader's buffers and key tensors belong to the embeddings, so neither takes
part. Buffers are assigned greedily in order of first use: a tensor takes a free buffer (last use
strictly before its first use) with the smallest size that holds it, else grows the largest free buffer,
else opens a new one. Sizes are bytes at the per-GPU batch ``ctx.batchsize / ctx.world_size`` with the
tensor types' dtypes (the precision plan runs later and may only shrink them).

The plan (``BufferPlan``: every tensor's interval and buffer, every buffer's size) goes to
``ctx.plans["buffers"]``; the stats give buffers and bytes before and after sharing.

Preconditions: the graph is final (fusions and dead-code elimination done). Ordering: after
PlanEmbeddingPlacement, before PlanPrecision.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.passes._kinds import is_input
from hgc.passes.context import PassContext, PassResult

NAME = "PlanBuffers"

ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Lifetime:
    """One tensor's buffer use: ``kind`` "activation" or "gradient", steps [start, end], its buffer."""

    tensor: str
    kind: str
    start: int
    end: int
    bytes: int
    buffer: int


@dataclass(frozen=True)
class BufferPlan:
    batch_per_gpu: int
    steps: int
    lifetimes: tuple[Lifetime, ...]
    buffer_bytes: tuple[int, ...]  # size of buffer i

    @property
    def bytes_before(self) -> int:
        return sum(lt.bytes for lt in self.lifetimes)

    @property
    def bytes_after(self) -> int:
        return sum(self.buffer_bytes)

    def buffer_of(self, tensor: str, kind: str = "activation") -> int:
        for lt in self.lifetimes:
            if lt.tensor == tensor and lt.kind == kind:
                return lt.buffer
        raise KeyError(f"no {kind} of tensor '{tensor}' in the buffer plan")


def per_gpu_batch(ctx: PassContext) -> int:
    g = ctx.world_size
    if g <= 0 or ctx.batchsize % g:
        raise ValueError(f"batchsize = {ctx.batchsize} is not allowed: it must split evenly over the {g} GPUs "
                         f"of vvgpu {ctx.vvgpu}")
    return ctx.batchsize // g


def own_backward_reads(node: Node) -> tuple[str, ...]:
    """The outputs of ``node`` that its own backward reads (so they must outlive all their readers)."""
    if node.op == "FusedInnerProduct":
        return node.outputs if node.attrs.get("act_type") == "Relu" else ()
    if node.op == "GroupFusedInnerProduct":
        return node.outputs  # each member's dW reads the previous member's output; ReLU masks read their own
    if node.op == "Softmax" or (node.op == "Interaction" and len(node.outputs) > 1):
        return node.outputs[:1]
    return ()


def intervals(graph: Graph, batch: int) -> list[tuple[str, str, int, int, int]]:
    """(tensor, kind, start, end, bytes) for every tensor that takes a buffer, in graph order."""
    nodes = graph.nodes()
    n = len(nodes)
    pos = {nd.name: i for i, nd in enumerate(nodes)}
    readers: dict[str, list[int]] = {}
    for nd in nodes:
        for t in nd.inputs:
            readers.setdefault(t, []).append(pos[nd.name])
    out = []
    for nd in nodes:
        if is_input(nd):
            continue
        p = pos[nd.name]
        own = own_backward_reads(nd)
        for t, ty in zip(nd.outputs, nd.types):
            if ty.sparse or ty.dtype not in ITEMSIZE:
                continue
            size = prod(ty.concrete(batch)) * ITEMSIZE[ty.dtype]
            rs = readers.get(t, [])
            back = 2 * n - 1
            out.append((t, "activation", p, back - min(rs) if rs and t not in own else back - p, size))
            if rs:
                out.append((t, "gradient", back - max(rs), back - p, size))
    return out


def assign(items: list[tuple[str, str, int, int, int]]) -> tuple[list[int], list[int]]:
    """Greedy interval packing: the buffer of each item, and each buffer's size."""
    order = sorted(range(len(items)), key=lambda i: (items[i][2], items[i][3], i))
    sizes: list[int] = []
    busy_until: list[int] = []
    which = [0] * len(items)
    for i in order:
        _, _, start, end, size = items[i]
        free = [b for b in range(len(sizes)) if busy_until[b] < start]
        fits = [b for b in free if sizes[b] >= size]
        if fits:
            b = min(fits, key=lambda k: (sizes[k], k))
        elif free:
            b = max(free, key=lambda k: (sizes[k], -k))
            sizes[b] = size
        else:
            b = len(sizes)
            sizes.append(size)
            busy_until.append(end)
        busy_until[b] = end
        which[i] = b
    return which, sizes


def plan(graph: Graph, ctx: PassContext) -> BufferPlan:
    batch = per_gpu_batch(ctx)
    items = intervals(graph, batch)
    which, sizes = assign(items)
    lifetimes = tuple(Lifetime(t, k, s, e, b, which[i]) for i, (t, k, s, e, b) in enumerate(items))
    return BufferPlan(batch, 2 * len(graph), lifetimes, tuple(sizes))


def run(graph: Graph, ctx: PassContext) -> PassResult:
    p = plan(graph, ctx)
    ctx.plans["buffers"] = p
    return PassResult(graph, False, {
        "buffers_before": len(p.lifetimes), "buffers_after": len(p.buffer_bytes),
        "reused": len(p.lifetimes) - len(p.buffer_bytes),
        "bytes_before": p.bytes_before, "bytes_after": p.bytes_after})
