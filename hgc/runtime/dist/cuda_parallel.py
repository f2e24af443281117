"""The cuda target on several GPUs: one CudaExecutor per local GPU for the dense graph, the embedding tables
sharded over the GPUs as the placement plan says, and the exchanges and the gradient sums on device arrays.

:func:`wrap_cuda_executor` (called by :func:`hgc.runtime.dist.parallel.wrap_executor` for a trainer on the
cuda target) turns the trainer's single-GPU executor into a :class:`DistributedCudaExecutor` with the same
interface, so the Trainer's cuda code path runs unchanged. Per step, on every process:

1. every table runs its model-parallel forward over the global batch (:mod:`hgc.runtime.dist.device_tables`)
   and leaves each local GPU the float32 output rows of its batch slice;
2. each GPU's executor runs the dense graph on its slice, on its own device and stream; its embedding
   nodes read the exchanged outputs (:class:`DeviceFeed`, converted to the model's precision) and its loss
   is weighted by the slice's share of the batch, so gradients summed over the GPUs are those of the global
   batch's mean loss;
3. backward: the flat gradient buffers are summed over all GPUs in buckets of about ``bucket_bytes``, last
   layers first (:class:`FlatBuckets`). Each GPU's executor reports the end of every backward step
   (:class:`HookedCudaExecutor`); a bucket whose layers are final on every local GPU starts its all-reduce
   at once on the communication streams, ordered after exactly that point of each GPU's stream — the
   overlap with the rest of the backward pass. Buckets start in one fixed order on every rank (NCCL needs
   it). The embedding output gradients go back through the reverse exchanges to the shards;
4. update: every GPU's executor applies the dense optimizer to the same summed gradients (the replicas stay
   equal) and every shard applies the table's sparse optimizer to its rows.

Losses are the global batch's means, on the first local GPU; evaluation gathers the predictions and labels
of all GPUs of all ranks there, so the Trainer's GPU metrics see the whole batch.

Communicators: one process drives its GPUs with :class:`~hgc.runtime.dist.place_comm.PlaceComm` (peer
copies; also logical GPUs on one device, ``HGC_DIST_LOGICAL_DEVICES=1``) or, with ``backend="nccl"``,
NCCL; several MPI ranks use NCCL (:class:`~hgc.runtime.dist.nccl.NcclComm`), with MPI for the host-side
bookkeeping. The host stand-ins of the tests (executors with a ``replica`` method, host places) run all of
this with NumPy.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hgc.codegen.plan import EmbeddingCall, EmbeddingTableSpec, GemmCall, KernelLaunch, Memset, StridedGemm
from hgc.errors import NotBuiltError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.ir.types import Batch as BatchDim
from hgc.passes.plan_placement import HYBRID, LOCALIZED, ONE_HOT
from hgc.runtime.cpu.executor import StepResult
from hgc.runtime.cuda import graph
from hgc.runtime.cuda.device import cupy
from hgc.runtime.cuda.embedding import DeviceEmbedding
from hgc.runtime.cuda.executor import CudaExecutor
from hgc.runtime.data.batch import Batch
from hgc.runtime.dist.buckets import DEFAULT_BUCKET_BYTES
from hgc.runtime.dist.comm import Communicator, InProcessComm, Pending
from hgc.runtime.dist.device_tables import StoreFactory, shard_device_table
from hgc.runtime.dist.embedding import ShardedEmbedding
from hgc.runtime.dist.parallel import (
    MergedTensors,
    ShardedOptimizerView,
    ShardedTableView,
    _Feed,
    gpu_seed,
    placement_of,
)
from hgc.runtime.dist.place_comm import PlaceComm
from hgc.runtime.dist.places import CupyPlace, Place, address, fence, make_places
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.staged_comm import StagedComm
from hgc.runtime.dist.stores import CupyStore, HostStore, from_float32, shard_kernel_spec, to_float32
from hgc.runtime.dist.topology import Topology

BACKEND_ENV = "HGC_DIST_BACKEND"

# -- the per-GPU executors -------------------------------------------------------------------------------
class HookedCudaExecutor(CudaExecutor):
    """A CudaExecutor that calls ``step_hook(i)`` after queueing the i-th step of its backward phase (the
    gradient buckets' cue). CudaExecutor has no such hook; this overrides its ``_phase`` by running the
    backward one step at a time through the parent's ``_phase``.

    With ``phase_graphs`` (the solver's ``use_cuda_graph``) a training forward and the backward replay from
    CUDA graphs once their shape has been seen ``GRAPH_AFTER`` times: the operations with per-step values
    (Dropout seeds) and the embedding feeds (their arrays change every step) run eagerly between the graphs;
    a graphed backward cues every gradient bucket after its last graph."""

    step_hook: Callable[[int], None] | None = None
    phase_graphs: bool = False
    _phase_cache: dict[Any, Any] | None = None
    _phase_seen: dict[Any, int] | None = None

    def _phase(self, steps: Sequence[Any]) -> None:
        g = self._phase_graph(steps) if self.phase_graphs else None
        if g is not None:
            g.replay(cupy().cuda.get_current_stream())
            if self.step_hook is not None and steps is self.plan.backward:
                for i in range(len(steps)):
                    self.step_hook(i)
            return
        hook = self.step_hook
        if hook is None or steps is not self.plan.backward:
            super()._phase(steps)
            return
        for i, step in enumerate(steps):
            super()._phase((step,))
            hook(i)

    def _phase_graph(self, steps: Sequence[Any]) -> graph.StepGraph | None:
        """The captured phase for this shape (captured on the GRAPH_AFTER-th eager run), or None."""
        if not self._training or not self._graphs_usable():
            return None
        if steps is not self.plan.forward and steps is not self.plan.backward:
            return None
        units = [(step.node, op) for step in steps for op in step.ops
                 if not (isinstance(op, KernelLaunch) and op.mode == "eval")]
        forward = steps is self.plan.forward
        key = (forward, self.batch, *self._graph_key(graph.baked([op for _, op in units])))
        if self._phase_cache is None:
            self._phase_cache, self._phase_seen = {}, {}
        assert self._phase_seen is not None
        # forward and backward of the steady shape and of one other
        return self._cached_graph(self._phase_cache, self._phase_seen, key, units, cupy().cuda.get_current_stream(),
                                  4, f"a GPU's {'forward' if forward else 'backward'}",
                                  eager=lambda op: isinstance(op, EmbeddingCall))


def _same(a: Any, b: Any) -> bool:
    """Whether arrays ``a`` and ``b`` (CuPy, or NumPy on the host stand-in) are the same memory, dtype and size."""
    return address(a) == address(b) and a.dtype == b.dtype and a.size == b.size


class DeviceFeed(DeviceEmbedding):
    """An embedding as one GPU's CudaExecutor sees it: the forward writes the output the exchange produced
    for this GPU (``out``), the backward keeps the output gradient (``grad``: float32, or as the executor made
    it when the table exchanges in the model's precision, ``low``); the updates are the shards' (nothing
    here). A DeviceEmbedding so the executor takes it as a ready table; it holds no rows."""

    def __init__(self, spec: EmbeddingTableSpec, place: Place) -> None:  # no device state: no super().__init__
        self.spec, self.place = spec, place
        self.name, self.vec, self.capacity = spec.name, spec.vec_size, 0
        self.one_hot = spec.one_hot
        self.optimizer = str(spec.optimizer.get("optimizer_type", "SGD"))
        self.update_type = str(spec.optimizer.get("update_type", "Local"))
        self.times = 0
        self.out: Any = None
        self.grad: Any = None
        self._grads = None
        self._saved = None
        self._ws = None
        self.err = None
        self.low = False
        self.grad_buf: Any = None  # where the table wants the output gradient (its in-place path), else None

    @property
    def size(self) -> int:  # type: ignore[override]
        return 0

    def forward_device(self, ds: Any, training: bool, out: Any | None = None) -> Any:
        if self.out is None:
            raise RuntimeError(f"embedding '{self.name}': the exchange left no output for GPU {self.place.gpu}")
        src = self.out.reshape(-1, self.vec)
        if out is None:
            return src
        if not _same(src, out):  # the table wrote the executor's own buffer (feed_views): nothing to copy
            from_float32(self.place.xp, src, out)
        return out

    def backward(self, grad: Any) -> tuple[Any, Any]:
        if self.grad_buf is not None:
            dst = self.grad_buf.reshape(grad.shape)
            if not _same(grad, dst):
                from_float32(self.place.xp, grad, dst)
            self.grad = dst.reshape(-1, self.vec)
        else:
            self.grad = (grad.copy() if self.low else to_float32(self.place.xp, grad)).reshape(-1, self.vec)
        return None, None

    def backward_update(self, grad: Any) -> None:
        self.backward(grad)

    def prepare(self, lr: float, scaler: float = 1.0) -> None:
        return None

    def update(self, lr: float, scaler: float = 1.0, rows: Any | None = None, grads: Any | None = None) -> None:
        return None

    def check(self) -> None:
        return None


# -- which backward step finishes each node's weight gradients ------------------------------------------
def _op_args(op: Any) -> Iterator[Any]:
    if isinstance(op, KernelLaunch):
        yield from op.args
    elif isinstance(op, (GemmCall, StridedGemm)):
        yield from (op.a, op.b, op.c)
        if isinstance(op, GemmCall) and op.epilogue is not None:
            yield from _op_args(op.epilogue)
    elif isinstance(op, Memset):
        yield op.target


def gradient_writers(plan: Any) -> dict[str, int] | None:
    """Node → index of the last backward step that touches its weight gradients (a step touching the whole
    flat gradient buffer touches every node); None when the plan lists no backward steps."""
    steps = getattr(plan, "backward", None)
    if steps is None:
        return None
    nodes = {w.node for w in plan.weights}
    last: dict[str, int] = {}
    for i, step in enumerate(steps):
        for op in step.ops:
            for a in _op_args(op):
                kind = getattr(a, "kind", "")
                if kind == "wgrads" or (kind == "wgrad" and not a.name):
                    last.update(dict.fromkeys(nodes, i))
                elif kind == "wgrad":
                    last[a.name] = i
    return last


class FlatBuckets:
    """The flat weight-gradient buffers of the local executors summed over all GPUs, bucket by bucket.

    A bucket is a contiguous range of the flat buffer holding whole layers (about ``bucket_bytes``; last
    layers first). Per step: :meth:`start`; the executors report finished backward steps
    (:meth:`step_done`) and finished or skipped backward passes (:meth:`backward_done`); a bucket starts its
    all-reduce once every local GPU has passed the step that completes it, and never before the buckets
    ahead of it; :meth:`finish` starts the rest, waits and writes the sums back into every buffer.
    """

    def __init__(self, comm: Communicator, places: Sequence[Place], weights: Sequence[Any], bucket_bytes: int,
                 writers: Mapping[str, int] | None) -> None:
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes = {bucket_bytes!r} is not allowed: must be an integer > 0")
        self.comm, self.places = comm, list(places)
        runs: list[list[Any]] = []  # [node, lo, hi] of consecutive slots of one node, by offset
        for w in sorted(weights, key=lambda w: int(w.offset)):
            lo, hi = int(w.offset), int(w.offset) + int(w.size)
            if runs and runs[-1][0] == w.node:
                runs[-1][2] = hi
            else:
                runs.append([w.node, lo, hi])
        self.ranges: list[tuple[int, int]] = []
        self.nodes: list[set[str]] = []
        size = bucket_bytes
        for node, lo, hi in reversed(runs):
            if size >= bucket_bytes:
                self.ranges.append((lo, hi))
                self.nodes.append(set())
                size = 0
            self.ranges[-1] = (lo, self.ranges[-1][1])
            self.nodes[-1].add(node)
            size += (hi - lo) * 4
        self.ready_at: list[int | None] = [None if writers is None else max(0, max(writers.get(n, 0) for n in ns))
                                           for ns in self.nodes]
        self._by_step: dict[int, list[int]] = {}
        for b, at in enumerate(self.ready_at):
            if at is not None:
                self._by_step.setdefault(at, []).append(b)
        self.start()

    def start(self) -> None:
        n = len(self.ranges)
        self._events: list[list[Any]] = [[None] * n for _ in self.places]
        self._marked: list[list[bool]] = [[False] * n for _ in self.places]
        self._pending: list[Pending] = []
        self._executors: list[Any] = []
        self.started_early = 0  # this step's buckets started from step_done (while a backward was queueing)

    def bind(self, executors: Sequence[Any]) -> None:
        self._executors = list(executors)

    def _mark(self, i: int, b: int) -> None:
        if not self._marked[i][b]:
            self._events[i][b] = self.places[i].record()
            self._marked[i][b] = True

    def step_done(self, i: int, step: int) -> None:
        """Local GPU i has queued backward step ``step``."""
        for b in self._by_step.get(step, ()):
            self._mark(i, b)
        before = len(self._pending)
        self._launch_ready()
        self.started_early += len(self._pending) - before

    def backward_done(self, i: int) -> None:
        """Local GPU i's gradients are all final (its backward pass is queued, or it had no rows and zeroed
        them)."""
        for b in range(len(self.ranges)):
            self._mark(i, b)
        self._launch_ready()

    def _launch_ready(self) -> None:
        while len(self._pending) < len(self.ranges) and all(m[len(self._pending)] for m in self._marked):
            self._launch(len(self._pending))

    def _launch(self, b: int) -> None:
        lo, hi = self.ranges[b]
        bufs = [ex.wgrad[lo:hi] for ex in self._executors]
        events = [self._events[i][b] for i in range(len(self.places))]
        if any(e is not None for e in events):
            self._pending.append(self.comm.allreduce_async(bufs, after=events))  # type: ignore[call-arg]
        else:
            self._pending.append(self.comm.allreduce_async(bufs))

    def finish(self) -> None:
        """Start the buckets not started yet, wait for all, and write the sums into every local buffer."""
        for i in range(len(self.places)):
            for b in range(len(self.ranges)):
                self._mark(i, b)
        self._launch_ready()
        for (lo, hi), pending in zip(self.ranges, self._pending):
            outs = pending.wait()
            for place, ex, total in zip(self.places, self._executors, outs):
                with place:
                    ex.wgrad[lo:hi] = total
        self._pending = []


# -- what the Trainer reads ------------------------------------------------------------------------------
class DistLosses(Mapping[str, float]):
    """The global batch's mean losses: ``device(node)`` a float64 (1,) array on the first local GPU, item
    access a host float (read once)."""

    def __init__(self, values: Mapping[str, Any], place: Place) -> None:
        self._dev, self._place = dict(values), place
        self._host: dict[str, float] = {}

    def device(self, node: str) -> Any:
        return self._place.handout(self._dev[node])

    def __getitem__(self, node: str) -> float:
        if node not in self._host:
            self._host[node] = float(self._place.get(self._dev[node]).reshape(-1)[0])
        return self._host[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dev)

    def __len__(self) -> int:
        return len(self._dev)


class DistTensors(Mapping[str, Any]):
    """The tensors of one forward over the local GPUs: item access gives host copies (batch-major tensors
    concatenated in GPU order), ``device(name)`` the device array on the first local GPU — for an
    evaluation, the loss layers' predictions and labels of every GPU of every rank."""

    def __init__(self, ex: DistributedCudaExecutor, results: Sequence[StepResult | None], gather: bool) -> None:
        self._ex, self._results, self._gather = ex, list(results), gather
        self._host = MergedTensors(ex.graph, [r.tensors for r in results if r is not None])

    def device(self, name: str) -> Any:
        views = [None if r is None else r.tensors.device for r in self._results]
        return self._ex.places[0].handout(self._ex.device_tensor(name, views,
                                                                 self._gather and name in self._ex.gathered))

    def __getitem__(self, name: str) -> Any:
        return self._host[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._host)

    def __len__(self) -> int:
        return len(self._host)


class PendingRows:
    """A table's row gradients of the last backward, per local shard (device arrays)."""

    def __init__(self, entries: list[tuple[Any, ...]]) -> None:
        self.entries = entries


class DistributedCudaExecutor:
    """The CudaExecutor interface over the local GPUs of this process (see the module docstring).
    ``replicas[i]`` runs the dense graph on ``places[i]``; ``feeds[i]`` are its embedding stand-ins;
    ``tables`` the device-sharded embeddings by node name."""

    distributed = True
    use_cuda_graph = False  # no whole-step graph: each GPU's forward and backward replay as graphs (phase_graphs)

    def __init__(self, graph: Graph, replicas: Sequence[Any], places: Sequence[Place], feeds: Sequence[Mapping[str, Any]],
                 tables: Mapping[str, ShardedEmbedding], comm: Communicator, host_comm: Communicator,
                 batchsize: int, batchsize_eval: int, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.graph = graph
        self.replicas, self.places, self.feeds = list(replicas), list(places), [dict(f) for f in feeds]
        self.executors = self.replicas
        self.tables = dict(tables)
        self.embeddings = self.tables  # the Trainer's check_finite() calls check() on each
        self.comm, self.host_comm = comm, host_comm
        self.topology: Topology = comm.topology
        self.batchsize, self.batchsize_eval = int(batchsize), int(batchsize_eval)
        self.topology.per_gpu(self.batchsize)
        self.topology.per_gpu(self.batchsize_eval)
        nodes = graph.nodes()
        self.embedding_nodes = [n for n in nodes if get_op(n.op).kind == "embedding"]
        missing = [n.name for n in self.embedding_nodes if n.name not in self.tables]
        if missing:
            raise ValueError(f"no sharded table for embedding(s) {missing}")
        inp = next(n for n in nodes if get_op(n.op).kind == "input")
        self._sparse_index = {spec["name"]: i for i, spec in enumerate(inp.attrs["sparse"])}
        self.losses = [n for n in nodes if get_op(n.op).kind == "loss"]
        self.gathered = {t for l in self.losses for t in l.inputs[:2]}
        root = self.replicas[0]
        self.buckets = FlatBuckets(comm, self.places, root.plan.weights, bucket_bytes, gradient_writers(root.plan))
        self._step: tuple[list[tuple[int, int]], int, bool] | None = None
        self._results: list[Any] = []
        self._pending: dict[str, PendingRows] = {}

    # -- replicas: read from the first, write to all -----------------------------------------------------
    @property
    def plan(self) -> Any:
        return self.replicas[0].plan

    @property
    def bindings(self) -> Any:
        return self.replicas[0].bindings

    @property
    def nodes(self) -> Any:
        return self.replicas[0].nodes

    @property
    def master(self) -> Any:
        return self.replicas[0].master

    @property
    def step(self) -> int:
        return int(self.replicas[0].step)

    @step.setter
    def step(self, value: int) -> None:
        for ex in self.replicas:
            ex.step = int(value)

    @property
    def dense_steps(self) -> int:
        return int(self.replicas[0].dense_steps)

    @dense_steps.setter
    def dense_steps(self, value: int) -> None:
        for ex in self.replicas:
            ex.dense_steps = int(value)

    def get_weights(self) -> dict[str, list[np.ndarray]]:
        return self.replicas[0].get_weights()

    @property
    def weights(self) -> dict[str, list[np.ndarray]]:
        return self.get_weights()

    def set_weights(self, weights: Any) -> None:
        for place, ex in zip(self.places, self.replicas):
            with place:
                ex.set_weights(weights)

    def dense_states(self) -> list[dict[str, list[np.ndarray]]]:
        return self.replicas[0].dense_states()

    def set_dense_states(self, states: Sequence[Mapping[str, Sequence[np.ndarray]]]) -> None:
        for place, ex in zip(self.places, self.replicas):
            with place:
                ex.set_dense_states(states)

    def state_of(self, node: str) -> dict[str, np.ndarray]:
        return self.replicas[0].state_of(node)

    def set_state(self, node: str, values: Mapping[str, np.ndarray]) -> None:
        for place, ex in zip(self.places, self.replicas):
            with place:
                ex.set_state(node, values)

    # -- the step ----------------------------------------------------------------------------------
    def forward(self, batch: Batch, training: bool) -> StepResult:
        """Embedding exchanges, then every local GPU's dense graph on its slice; the global mean losses."""
        n = batch.n
        per = self.topology.per_gpu(self.batchsize if training else self.batchsize_eval)
        slices = self.topology.slices(n, per)
        for node in self.embedding_nodes:
            sparse = batch.sparse[self._sparse_index[node.inputs[0]]]
            table = self.tables[node.name]
            outs = table.forward(sparse, training, slices)
            bufs = getattr(table, "grad_buffers", None) or [None] * len(outs)
            for feeds, out, buf in zip(self.feeds, outs, bufs):
                feeds[node.name].out, feeds[node.name].grad, feeds[node.name].grad_buf = out, None, buf
        results: list[StepResult | None] = []
        for place, ex in zip(self.places, self.replicas):
            lo, hi = slices[place.gpu]
            if hi > lo:
                rows = place.executor_batch(batch, lo, hi)
                with place:
                    results.append(ex.forward(rows, training))
            else:
                results.append(None)
                if training:
                    ex.step += 1  # keep every GPU's step count (its random numbers) in line
        self._step, self._results = (slices, n, training), results
        return StepResult(self._global_losses(results, slices, n), DistTensors(self, results, not training), {})

    def _global_losses(self, results: Sequence[StepResult | None], slices: Sequence[tuple[int, int]],
                       n: int) -> DistLosses:
        names = [l.name for l in self.losses]
        vecs = []
        for place, r in zip(self.places, results):
            xp = place.xp
            with place:
                if r is None or not names:
                    vecs.append(xp.zeros(len(names), xp.float64))
                    continue
                lo, hi = slices[place.gpu]
                parts = [xp.asarray(r.losses.device(name), dtype=xp.float64).reshape(-1)[:1] for name in names]
                vecs.append(xp.concatenate(parts) * float(hi - lo))
        total = self.comm.allreduce(vecs)[0]
        root = self.places[0]
        with root:
            total = total / float(max(n, 1))
            return DistLosses({name: total[k:k + 1] for k, name in enumerate(names)}, root)

    def backward(self, loss_weights: Mapping[str, float] | None = None, host: bool = True,
                 scaler: float = 1.0) -> tuple[dict[str, list[Any]], dict[str, tuple]]:
        """Dense gradients summed over all GPUs (in every local flat buffer); the tables' row gradients wait
        for :meth:`update`. Returns (the first GPU's summed gradients per node, {table: (PendingRows, None)})."""
        if self._step is None or not self._step[2]:
            raise RuntimeError("backward() needs a training forward() first")
        slices, n, _ = self._step
        self.buckets.start()
        self.buckets.bind(self.replicas)
        for i, (place, ex) in enumerate(zip(self.places, self.replicas)):
            lo, hi = slices[place.gpu]
            if hi == lo:
                with place:
                    ex.wgrad.fill(0)
                self.buckets.backward_done(i)
                continue
            share = (hi - lo) / n
            weights = {l.name: share * (1.0 if loss_weights is None else float(loss_weights.get(l.name, 1.0)))
                       for l in self.losses}
            hookable = hasattr(ex, "step_hook")
            if hookable:
                ex.step_hook = functools.partial(self.buckets.step_done, i)
            try:
                with place:
                    ex.backward(weights, host=False, scaler=scaler)
            finally:
                if hookable:
                    ex.step_hook = None
            self.buckets.backward_done(i)
        self.buckets.finish()
        self._pending = {}
        for node in self.embedding_nodes:
            table = self.tables[node.name]
            grads = []
            for place, feeds in zip(self.places, self.feeds):
                lo, hi = slices[place.gpu]
                g = feeds[node.name].grad
                if g is None:
                    with place:
                        dtype = getattr(table, "wire_dtype", None) or place.xp.float32
                        g = place.xp.zeros((hi - lo, table.slot_num, table.vec), dtype)
                grads.append(g)
            self._pending[node.name] = PendingRows(table.backward(grads))
        root = self.replicas[0]
        flat = self.places[0].get(root.wgrad) if host else root.wgrad
        wgrads: dict[str, list[Any]] = {}
        for w in root.plan.weights:
            g = flat[w.offset:w.offset + w.size].reshape(w.shape)
            wgrads.setdefault(w.node, []).append(g.copy() if host else g)
        return wgrads, {name: (rows, None) for name, rows in self._pending.items()}

    def update(self, lr: float, scaler: float = 1.0, reg_batch: int | None = None, frozen_dense: bool = False,
               frozen_embeddings: Sequence[str] = ()) -> None:
        """The dense optimizer on every GPU (same summed gradients), then every non-frozen table's shards."""
        for place, ex in zip(self.places, self.replicas):
            with place:
                ex.update(lr, scaler, reg_batch=reg_batch, frozen_dense=frozen_dense,
                          frozen_embeddings=tuple(self.tables))
        for name, table in self.tables.items():
            if name in frozen_embeddings:
                continue
            pending = self._pending.get(name)
            table.update(pending.entries if pending is not None else table.no_grads(), lr, scaler)
        self._pending = {}

    def train_step(self, batch: Batch, lr: float, loss_weights: Mapping[str, float] | None = None,
                   scaler: float = 1.0) -> DistLosses:
        """Forward, backward and update; the losses stay on the device until read."""
        if scaler == 0:
            raise ValueError("train_step(): scaler=0 is not allowed (gradients are divided by it)")
        out = self.forward(batch, training=True)
        self.backward(loss_weights, host=False, scaler=scaler)
        self.update(lr, scaler, reg_batch=self.plan.batch)
        return out.losses  # type: ignore[return-value]

    # -- tensors -----------------------------------------------------------------------------------
    def _batch_major(self, name: str) -> bool:
        if not self.graph.has_tensor(name):
            return False
        shape = self.graph.tensor_type(name).shape
        return bool(shape) and isinstance(shape[0], BatchDim)

    def device_tensor(self, name: str, views: Sequence[Callable[[str], Any] | None], gather: bool) -> Any:
        """Tensor ``name`` on the first local GPU: the local GPUs' views in GPU order (``gather``: of every GPU
        of every rank); a tensor without a batch dimension from the first GPU that ran."""
        active = [(p, v(name)) for p, v in zip(self.places, views) if v is not None]
        if not self._batch_major(name):
            return active[0][1]
        root = self.places[0]
        if gather and (self.comm.num_ranks > 1 or len(self.places) > 1):
            shape = tuple(self.graph.tensor_type(name).shape[1:])
            if all(isinstance(d, int) for d in shape):
                return self._gather_all(name, views, shape)
        parts = [p.contiguous(a) for p, a in active]
        fence(self.places)
        pieces = [a if p is root else root.copy_from(a) for (p, _), a in zip(active, parts)]
        fence(self.places)
        with root:
            return pieces[0] if len(pieces) == 1 else root.xp.concatenate(pieces)

    def _gather_all(self, name: str, views: Sequence[Callable[[str], Any] | None], shape: tuple[int, ...]) -> Any:
        bufs = []
        dtype = None
        for p, v in zip(self.places, views):
            if v is not None:
                a = p.contiguous(v(name))
                dtype = a.dtype
                bufs.append(a)
            else:
                bufs.append(None)
        root = self.places[0]
        xp = root.xp
        dtype = dtype if dtype is not None else np.dtype(np.float32)
        wire = np.dtype(np.float16) if np.dtype(dtype) == np.dtype(np.uint16) else dtype  # NCCL has no uint16
        sent = []
        for p, a in zip(self.places, bufs):
            with p:
                a = p.xp.zeros((0,) + shape, dtype) if a is None else a
                sent.append(a.view(wire))
        every = self.comm.allgather(sent)[0]
        with root:
            return xp.concatenate([xp.asarray(e).view(dtype) for e in every])

    def tensor(self, name: str, kind: str = "activation") -> Any:
        """Tensor (or gradient) ``name`` of the last forward (backward), local GPUs concatenated, on the first."""
        views: list[Callable[[str], Any] | None] = []
        for ex, r in zip(self.replicas, self._results):
            views.append(None if r is None else functools.partial(ex.tensor, kind=kind))
        return self.device_tensor(name, views, False)


# -- the hook ----------------------------------------------------------------------------------------------
class DeviceShardedTableView(ShardedTableView):
    """ShardedTableView plus the device table views' ``host_rows`` (the rows in use of the local GPUs)."""

    def host_rows(self) -> np.ndarray:
        return np.asarray(self.rows)


def initial_state(table: Any, opt: Any) -> RowsState:
    """The rows a single-GPU table of the Trainer holds (through its DeviceTable / DeviceSparseOptimizer
    views), with their optimizer states, in row order."""
    keys, vectors = table.dump()
    keys = np.asarray(keys).reshape(-1).astype(np.int64)
    n, vec = keys.shape[0], int(table.vec_size)
    states = [np.asarray(s).reshape(-1, vec)[:n].copy() for s in opt.states()]
    return RowsState(keys, np.asarray(vectors, np.float32).reshape(n, vec),
                     np.asarray(table.slot_ids()).reshape(-1).astype(np.uint64), states, None)


def _reference_optimizer(trainer: Any, node: Any) -> Any:
    """The table's SparseOptimizer settings without rows (the shards' template)."""
    from hgc.runtime.optim.sparse import make_sparse_optimizer
    from hgc.runtime.trainer import HYPER_KEYS

    a = node.attrs
    opt = dict(a["optimizer"]) if a.get("optimizer") else dict(trainer.cfg.optimizer)
    return make_sparse_optimizer(opt["optimizer_type"], 0, int(a["embedding_vec_size"]),
                                 update_type=opt["update_type"], atomic_update=bool(opt.get("atomic_update", True)),
                                 **{k: opt[k] for k in HYPER_KEYS if k in opt})


def _data_comm(topology: Topology, places: Sequence[Place], host_comm: Communicator, backend: str,
               on_host: bool) -> Communicator:
    """The communicator of device arrays: peer copies in one process, NCCL across ranks (or on request), or
    host MPI with ``backend="mpi"`` (copies through host memory)."""
    if backend not in ("auto", "inprocess", "nccl", "mpi"):
        raise ValueError(f"backend = {backend!r} is not allowed for the cuda target: must be 'auto', 'inprocess', "
                         f"'nccl' or 'mpi'")
    if on_host:  # the host stand-in: NumPy arrays through the host communicators
        return PlaceComm(topology, places) if topology.num_ranks == 1 else host_comm
    if backend == "inprocess" and topology.num_ranks > 1:
        raise ValueError(f"backend = 'inprocess' drives one rank, vvgpu = {[list(n) for n in topology.vvgpu]} has "
                         f"{topology.num_ranks}")
    if backend == "mpi":
        return StagedComm(host_comm, places)
    if topology.num_ranks == 1 and backend != "nccl":
        return PlaceComm(topology, places)
    if len({p.device for p in places}) != len(places):
        raise ValueError("NCCL cannot drive several logical GPUs on one device; use backend='inprocess'")
    from hgc.runtime.dist.nccl import NcclComm

    for p in places:  # NCCL queues its work on each device's current stream: make it the place's
        if isinstance(p, CupyPlace):
            with p.cp.cuda.Device(p.device):
                p.stream.use()
    return NcclComm(topology)


def wrap_cuda_executor(trainer: Any, compiled: Any = None, *, backend: str = "auto",
                       bucket_bytes: int = DEFAULT_BUCKET_BYTES, logical: bool | None = None) -> DistributedCudaExecutor:
    """Give a cuda-target ``trainer`` (its single-GPU executor and device tables already built) the GPUs of its
    ``cfg.vvgpu``: per local GPU an executor of the same plan, the tables sharded as ``compiled``'s
    placement plan says (initial rows, optimizer states and Adam step taken from the single-GPU tables), the
    trainer's table and optimizer views replaced by sharded ones. Returns the executor the trainer must use.
    ``logical``: every GPU on device 0 (None: ``HGC_DIST_LOGICAL_DEVICES``). ``backend`` "auto" reads
    ``HGC_DIST_BACKEND`` ("nccl" runs one process's GPUs through NCCL too; "mpi" moves device arrays through
    host memory and MPI, which lets ranks share a GPU), else peer copies in one process and NCCL across
    ranks."""
    ex = trainer.executor
    topology = Topology.of(trainer.cfg.vvgpu)
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    make_replica = getattr(ex, "replica", None)
    on_host = make_replica is not None
    if not on_host and not isinstance(ex, CudaExecutor):
        raise NotBuiltError(f"training on several GPUs (vvgpu = {[list(r) for r in topology.vvgpu]}) with the "
                            f"{type(ex).__name__}", "Trainer")
    if topology.num_ranks == 1:
        host_comm: Communicator = InProcessComm(topology)
    else:
        from hgc.runtime.dist.mpi import MpiComm

        host_comm = MpiComm(topology)
    places = make_places(topology, host_comm.rank, host=on_host, logical=logical, staged=backend == "mpi")
    comm = _data_comm(topology, places, host_comm, backend, on_host)
    plan = placement_of(trainer, compiled, topology)

    seeds = host_comm.allgather_obj(int(trainer.seed))
    same = len(set(seeds)) == 1  # seed 0 draws a seed per process: then every rank takes rank 0's start
    seed = seeds[0]
    weights = ex.get_weights()
    if not same:
        weights = host_comm.bcast_obj(weights)
        trainer.seed = seed

    kernels = None
    if not on_host:
        from hgc.runtime.cuda.modules import EMBEDDING_FUNCTIONS, Kernels

        kernels = Kernels()
    stats = int(getattr(trainer.cfg, "num_iterations_statistics", 20))
    inp = next(n for n in trainer.graph.nodes() if get_op(n.op).kind == "input")
    nnz = {sp["name"]: int(max(sp["nnz_per_slot"])) for sp in inp.attrs["sparse"]}
    tables: dict[str, ShardedEmbedding] = {}
    for name in list(trainer.tables):
        node = trainer.graph.node(name)
        tplan = plan.table(name)
        view, opt_view = trainer.tables[name], trainer.sparse_opts[name]
        ref_opt = _reference_optimizer(trainer, node)
        one_hot = tplan.type in (ONE_HOT, HYBRID)
        state = initial_state(view, opt_view)
        pool = None if one_hot else np.asarray(view.host_rows(), np.float32)
        if not same:
            state, pool = host_comm.bcast_obj((state, pool))
        make_store: StoreFactory
        if on_host:
            make_store = functools.partial(_host_store, vec=tplan.embedding_vec_size, ref_opt=ref_opt)
        else:
            spec = next(e for e in ex.plan.embeddings if e.name == name)
            tspec = ex.plan.kernel(spec.spec)
            kspec = shard_kernel_spec(tspec)
            kernels.add(kspec, EMBEDDING_FUNCTIONS)  # type: ignore[union-attr]
            low = None  # localized tables exchange complete vectors: in the model's precision
            if tplan.type in (LOCALIZED, ONE_HOT) and str(tspec.params["dtype"]) != "float32":
                low = shard_kernel_spec(tspec, str(tspec.params["dtype"]))
                kernels.add(low, EMBEDDING_FUNCTIONS)  # type: ignore[union-attr]
            make_store = functools.partial(_cupy_store, vec=tplan.embedding_vec_size, ref_opt=ref_opt,
                                           optimizer=spec.optimizer, spec=kspec, kernels=kernels, low=low)
        tables[name] = shard_device_table(tplan, comm, host_comm, places, make_store, combiner=node.attrs["combiner"],
                                          ref_opt=ref_opt, state=state, pool=pool,
                                          inserted=0 if one_hot else int(view.size), times=int(opt_view.times),
                                          batchsize=trainer.cfg.batchsize, statistics_batches=stats)
        if hasattr(tables[name], "max_nnz"):
            tables[name].max_nnz = nnz.get(node.inputs[0])  # type: ignore[attr-defined]
    low_tables = {name for name, t in tables.items() if getattr(t, "wire_dtype", None) is not None}
    feeds: list[dict[str, Any]] = []
    replicas = []
    dense_states = ex.dense_states()
    bn = {n.name: ex.state_of(n.name) for n in trainer.graph.nodes() if n.op == "BatchNorm"}
    for place in places:
        if on_host:
            mine = {name: _Feed(tables[name].vec) for name in tables}
            rep = make_replica(place, weights, mine, gpu_seed(seed, place.gpu))  # type: ignore[misc]
        else:
            mine = {spec.name: DeviceFeed(spec, place) for spec in ex.plan.embeddings}
            for name in low_tables:
                mine[name].low = True
            with place:
                rep = HookedCudaExecutor(ex.plan, weights, mine, gpu_seed(seed, place.gpu))
            rep.phase_graphs = bool(getattr(ex, "use_cuda_graph", False))
        with place:
            rep.set_dense_states(dense_states)
            for node_name, values in bn.items():
                if values:
                    rep.set_state(node_name, values)
        rep.dense_steps, rep.step = ex.dense_steps, ex.step
        feeds.append(mine)
        replicas.append(rep)
    if not on_host:  # tables that write feeds in place write the executors' own embedding buffers
        for name, sharded in tables.items():
            if hasattr(sharded, "feed_views"):
                sharded.feed_views = functools.partial(_replica_views, replicas, name)  # type: ignore[attr-defined]
    dist = DistributedCudaExecutor(trainer.graph, replicas, places, feeds, tables, comm, host_comm,
                                   trainer.cfg.batchsize, trainer.cfg.batchsize_eval, bucket_bytes)
    for name, sharded in tables.items():
        trainer.tables[name] = DeviceShardedTableView(sharded)
        trainer.sparse_opts[name] = ShardedOptimizerView(sharded)
    trainer.executor = dist
    if not on_host:
        _make_root_current(trainer, places[0])
    return dist


def _host_store(place: Place, name: str, capacity: int, *, vec: int, ref_opt: Any) -> HostStore:
    return HostStore(place, name, capacity, vec, ref_opt)


def _cupy_store(place: Place, name: str, capacity: int, *, vec: int, ref_opt: Any, optimizer: Any, spec: Any,
                kernels: Any, low: Any = None) -> CupyStore:
    return CupyStore(place, name, capacity, vec, ref_opt, optimizer, spec, kernels, low)


def _replica_views(replicas: Sequence[Any], table: str, i: int, rows: int) -> tuple[Any, Any | None]:
    """Local GPU i's executor's output and output-gradient views of ``table`` at ``rows`` rows."""
    return replicas[i].embedding_views(table, rows)


def _make_root_current(trainer: Any, root: Place) -> None:
    """Make the first local GPU (and its compute stream) current, so the Trainer's own device work (loss
    watch, total loss, metrics) runs there after the step's work; move the Trainer's loss watch and
    evaluation accumulator there when they were made on another device."""
    assert isinstance(root, CupyPlace)
    cp = root.cp
    before = int(cp.cuda.runtime.getDevice())
    cp.cuda.Device(root.device).use()
    root.stream.use()
    if before != root.device and hasattr(trainer, "_watch"):
        from hgc.runtime.cuda.metrics import EvalAccumulator, LossWatch

        trainer._watch = LossWatch()
        trainer._dev_eval = EvalAccumulator()
