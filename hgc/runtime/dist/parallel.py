"""Training on several GPUs with the Trainer unchanged: ``wrap_executor`` swaps the Trainer's executor,
tables and embedding optimizers for distributed ones that keep their interfaces.

Per step, on every process (each driving the GPUs ``vvgpu[rank]``):

1. every embedding table runs its model-parallel forward over the whole global batch and leaves each local
   GPU the output rows of its batch slice (hgc.runtime.dist.embedding, .hybrid);
2. each local GPU runs the dense graph on its slice (one CpuExecutor per GPU, sharing the dense weights,
   which are replicas anyway) with its loss weighted by its share of the batch, so the gradients summed over
   the GPUs are the gradients of the global batch's mean loss;
3. backward: dense gradients are summed over all GPUs in buckets (hgc.runtime.dist.buckets), embedding
   output gradients go through the reverse exchanges to the shards that own the rows;
4. the Trainer applies its dense optimizer to the summed gradients (identical on every rank, so the replicas
   stay equal) and calls each table's optimizer, which updates every local shard.

The losses reported are the global batch's means; evaluation tensors hold this rank's rows, except the
predictions and labels the metrics read, which are gathered from all ranks. Results equal a single-GPU run
of the same model up to float rounding, except where the math itself is per GPU: BatchNorm statistics are
per GPU batch, and Dropout masks come from per-GPU random streams.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hgc.errors import NotBuiltError
from hgc.ir.graph import Graph
from hgc.ir.registry import get_op
from hgc.ir.types import Batch as BatchDim
from hgc.passes.context import PassContext
from hgc.passes.plan_placement import PlacementPlan
from hgc.passes.plan_placement import plan as plan_placement
from hgc.runtime.cpu.executor import CpuExecutor, StepResult
from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.dist.buckets import DEFAULT_BUCKET_BYTES, GradBuckets
from hgc.runtime.dist.comm import Communicator, make_communicator
from hgc.runtime.dist.embedding import ShardedEmbedding
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.tables import shard_table
from hgc.runtime.dist.topology import Topology


def slice_batch(batch: Batch, lo: int, hi: int) -> Batch:
    """Sample rows [lo, hi) of a batch (all real rows)."""
    sparse = []
    for s in batch.sparse:
        offs = np.asarray(s.row_offsets, np.int64)
        a, b = int(offs[lo * s.slot_num]), int(offs[hi * s.slot_num])
        sparse.append(SparseBatch(offs[lo * s.slot_num:hi * s.slot_num + 1] - a, s.keys[a:b], s.slot_num))
    return Batch(hi - lo, batch.label[lo:hi], batch.dense[lo:hi], sparse)


def gpu_seed(seed: int, gpu: int) -> int:
    """The random-number seed of GPU ``gpu``'s dense graph (Dropout); GPU 0 keeps the model's seed."""
    if gpu == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, gpu]).generate_state(1)[0])


class _Feed:
    """An embedding as one GPU's CpuExecutor sees it: the output the exchange produced for this GPU, and
    the place where the dense backward leaves the output gradient."""

    def __init__(self, vec: int) -> None:
        self.vec = vec
        self.out: np.ndarray | None = None
        self.grad: np.ndarray | None = None

    def forward(self, sparse: SparseBatch, training: bool) -> tuple[np.ndarray, Any]:
        assert self.out is not None
        return self.out, None

    def backward(self, saved: Any, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.grad = grad
        return np.zeros(0, np.int64), np.zeros((0, self.vec), np.float32)


class MergedTensors(Mapping[str, Any]):
    """The tensors (or gradients) of one step over this process's GPUs: batch-major ones concatenated in GPU
    order, the others (loss values) from the first GPU that has them; ``whole`` overrides with values of the
    whole global batch."""

    def __init__(self, graph: Graph, parts: Sequence[Mapping[str, Any]], whole: Mapping[str, Any] | None = None
                 ) -> None:
        self._graph, self._parts, self._whole = graph, list(parts), dict(whole or {})

    def _batch_major(self, name: str) -> bool:
        if not self._graph.has_tensor(name):
            return False
        shape = self._graph.tensor_type(name).shape
        return bool(shape) and isinstance(shape[0], BatchDim)

    def __getitem__(self, name: str) -> Any:
        if name in self._whole:
            return self._whole[name]
        vals = [p[name] for p in self._parts if name in p]
        if not vals:
            raise KeyError(name)
        if isinstance(vals[0], SparseBatch) or len(vals) == 1 or not self._batch_major(name):
            return vals[0]
        return np.concatenate([np.asarray(v) for v in vals])

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = dict.fromkeys(self._whole)
        for p in self._parts:
            seen.update(dict.fromkeys(p))
        return iter(seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _NodeState(Mapping[str, Any]):
    """One node's state over the local GPUs' executors: reads the first, ``update`` writes all."""

    def __init__(self, executors: Sequence[CpuExecutor], node: str) -> None:
        self._states = [ex.state[node] for ex in executors]

    def __getitem__(self, key: str) -> Any:
        return self._states[0][key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._states[0])

    def __len__(self) -> int:
        return len(self._states[0])

    def update(self, values: Mapping[str, Any] | None = None, **kw: Any) -> None:
        for st in self._states:
            st.update(values or {}, **kw)


class PendingRows:
    """A table's row gradients of the last backward, per local shard, waiting for its optimizer step."""

    def __init__(self, entries: list[tuple[np.ndarray, ...]]) -> None:
        self.entries = entries


class DistributedExecutor:
    """The CpuExecutor interface (forward / backward / step / state / weights / nodes / last_grads) over the
    local GPUs of this process; ``tables`` are the sharded embeddings by node name."""

    distributed = True

    def __init__(self, graph: Graph, weights: dict[str, list[np.ndarray]], tables: Mapping[str, ShardedEmbedding],
                 comm: Communicator, seed: int, batchsize: int, batchsize_eval: int,
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.graph = graph
        self.nodes = graph.nodes()
        self.weights = weights
        self.comm = comm
        self.topology = comm.topology
        self.tables = dict(tables)
        self.seed = int(seed)
        self.batchsize, self.batchsize_eval = int(batchsize), int(batchsize_eval)
        self.topology.per_gpu(self.batchsize)
        self.topology.per_gpu(self.batchsize_eval)
        self.embedding_nodes = [n for n in self.nodes if get_op(n.op).kind == "embedding"]
        missing = [n.name for n in self.embedding_nodes if n.name not in self.tables]
        if missing:
            raise ValueError(f"no sharded table for embedding(s) {missing}")
        inp = next(n for n in self.nodes if get_op(n.op).kind == "input")
        self._sparse_index = {spec["name"]: i for i, spec in enumerate(inp.attrs["sparse"])}
        self.feeds = [{n.name: _Feed(self.tables[n.name].vec) for n in self.embedding_nodes} for _ in comm.local]
        self.executors = [CpuExecutor(graph, weights, feeds, gpu_seed(self.seed, gpu))
                          for gpu, feeds in zip(comm.local, self.feeds)]
        self.losses = [n for n in self.nodes if get_op(n.op).kind == "loss"]
        self.buckets = GradBuckets(comm, weights, bucket_bytes)
        self.last_grads: Mapping[str, Any] = {}
        self._step: tuple[list[tuple[int, int]], int, bool] | None = None

    # -- what the Trainer reads ----------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.executors[0].step

    @step.setter
    def step(self, value: int) -> None:
        for ex in self.executors:
            ex.step = int(value)

    @property
    def state(self) -> dict[str, _NodeState]:
        """Per-node persistent state (BatchNorm running statistics): read from the first local GPU, written
        to every local GPU (each GPU keeps its own statistics while training, as in HugeCTR)."""
        return {n.name: _NodeState(self.executors, n.name) for n in self.nodes}

    # -- the step ----------------------------------------------------------------------------------
    def forward(self, batch: Batch, training: bool) -> StepResult:
        """Embedding exchanges, then each local GPU's dense graph on its slice; the global mean losses."""
        n = batch.n
        per = self.topology.per_gpu(self.batchsize if training else self.batchsize_eval)
        slices = self.topology.slices(n, per)
        for node in self.embedding_nodes:
            sparse = batch.sparse[self._sparse_index[node.inputs[0]]]
            outs = self.tables[node.name].forward(sparse, training, slices)
            for feeds, out in zip(self.feeds, outs):
                feeds[node.name].out, feeds[node.name].grad = out, None
        results: list[StepResult | None] = []
        for gpu, ex in zip(self.comm.local, self.executors):
            lo, hi = slices[gpu]
            results.append(ex.forward(slice_batch(batch, lo, hi), training) if hi > lo else None)
            if hi == lo and training:
                ex.step += 1  # keep every GPU's step count (its random numbers) in line
        weighted = []
        for gpu, r in zip(self.comm.local, results):
            lo, hi = slices[gpu]
            weighted.append(np.array([r.losses[l.name] * (hi - lo) if r else 0.0 for l in self.losses], np.float64))
        total = self.comm.allreduce(weighted)[0] / max(n, 1)
        losses = {l.name: float(v) for l, v in zip(self.losses, total)}
        parts = [r.tensors for r in results if r is not None]
        whole = self._gather_predictions(parts) if not training and self.comm.num_ranks > 1 else {}
        self._step = (slices, n, training)
        return StepResult(losses, MergedTensors(self.graph, parts, whole), {})

    def _gather_predictions(self, parts: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """The loss layers' predictions and labels over the whole global batch (for the metrics)."""
        names = list(dict.fromkeys(t for l in self.losses for t in l.inputs[:2]))
        local = MergedTensors(self.graph, parts)
        out = {}
        for name in names:
            width = int(self.graph.tensor_type(name).shape[-1])
            mine = np.asarray(local[name], np.float32).reshape(-1, width) if parts else np.zeros((0, width), np.float32)
            empty = np.zeros((0, width), np.float32)
            every = self.comm.allgather([mine] + [empty] * (len(self.comm.local) - 1))[0]
            out[name] = np.concatenate(every)
        return out

    def backward(self, loss_weights: Mapping[str, float] | None = None) -> tuple[dict[str, list[np.ndarray]],
                                                                               dict[str, tuple]]:
        """Dense gradients summed over all GPUs; per table the row gradients of its local shards."""
        if self._step is None or not self._step[2]:
            raise RuntimeError("backward() needs a training forward() first")
        slices, n, _ = self._step
        grads, lasts = [], []
        for gpu, ex in zip(self.comm.local, self.executors):
            lo, hi = slices[gpu]
            if hi == lo:
                grads.append({})
                continue
            share = (hi - lo) / n
            weights = {l.name: share * (1.0 if loss_weights is None else float(loss_weights.get(l.name, 1.0)))
                       for l in self.losses}
            wg, _ = ex.backward(weights)
            grads.append(wg)
            lasts.append(ex.last_grads)
        dense = self.buckets.reduce(grads)
        egrads: dict[str, tuple] = {}
        for node in self.embedding_nodes:
            table = self.tables[node.name]
            outs = []
            for gpu, feeds in zip(self.comm.local, self.feeds):
                lo, hi = slices[gpu]
                g = feeds[node.name].grad
                outs.append(np.zeros((hi - lo, table.slot_num, table.vec), np.float32) if g is None else g)
            egrads[node.name] = (PendingRows(table.backward(outs)), None)
        self.last_grads = MergedTensors(self.graph, lasts)
        return dense, egrads


# -- what the Trainer and Checkpoints see of a sharded table ---------------------------------------------
class LocalRows:
    """``table.rows`` of a sharded table: the rows in use on this process's GPUs, stacked on demand."""

    def __init__(self, emb: ShardedEmbedding) -> None:
        self._emb = emb

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = np.concatenate([p.vectors for p in self._emb.local_parts()])
        return rows if dtype is None else rows.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.asarray(self)


class ShardedTableView:
    """The EmbeddingTable interface over a sharded table: name, vec_size, capacity and size over all GPUs,
    dump / slot_ids / load in HugeCTR's multi-GPU order (rows grouped by GPU). dump, slot_ids and load are
    collective: every process calls them."""

    def __init__(self, emb: ShardedEmbedding) -> None:
        self.emb = emb
        self.name, self.vec_size = emb.name, emb.vec
        self.combiner = "mean" if emb.mean else "sum"
        self.rows = LocalRows(emb)

    @property
    def capacity(self) -> int:
        return sum(self.emb.capacities)

    @property
    def size(self) -> int:
        inserted = getattr(self.emb, "inserted", None)
        return self.capacity if inserted is None else int(inserted)

    def gathered(self) -> RowsState:
        """Every GPU's rows in file order (see ShardedEmbedding.file_order)."""
        return self.emb.file_order(self.emb.comm.allgather_objs(self.emb.local_parts()))[0]

    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        st = self.gathered()
        return st.keys, st.vectors

    def slot_ids(self) -> np.ndarray:
        return self.gathered().slot_ids

    def load(self, keys: np.ndarray, vectors: np.ndarray, slot_ids: np.ndarray | None = None) -> None:
        keys = np.asarray(keys).reshape(-1).astype(np.int64)
        vectors = np.asarray(vectors, np.float32)
        if vectors.size != keys.shape[0] * self.vec_size:
            raise ValueError(f"embedding '{self.name}': the rows of keys ({keys.shape[0]}) and embeddings "
                             f"({vectors.size} values for vec_size {self.vec_size}) are not consistent")
        if slot_ids is None:
            slots = np.zeros(keys.shape[0], np.uint64)
        else:
            slots = np.asarray(slot_ids).reshape(-1).astype(np.uint64)
            if slots.shape[0] != keys.shape[0]:
                raise ValueError(f"embedding '{self.name}': {slots.shape[0]} slot ids for {keys.shape[0]} keys; "
                                 f"the rows are not consistent")
        self.emb.put(RowsState(keys, vectors.reshape(-1, self.vec_size), slots, [], None), with_states=False)


class ShardedOptimizerView:
    """The SparseOptimizer interface over a sharded table's shard optimizers: ``update`` applies the row
    gradients the DistributedExecutor left; ``states`` / ``load_states`` use HugeCTR's multi-GPU file layout
    (each GPU's whole preallocated buffer, GPUs in order). states and load_states are collective."""

    def __init__(self, emb: ShardedEmbedding) -> None:
        self.emb = emb
        ref = emb.ref_opt
        self.optimizer, self.update_type = ref.optimizer, ref.update_type
        self.atomic_update, self.hyper, self.state_dtype = ref.atomic_update, ref.hyper, ref.state_dtype
        self.vec_size = emb.vec

    @property
    def state_kinds(self) -> tuple[str, ...]:
        return self.emb.ref_opt.state_kinds

    @property
    def times(self) -> int:
        return self.emb.times

    @times.setter
    def times(self, value: int) -> None:
        self.emb.times = int(value)

    def states(self) -> list[np.ndarray]:
        return self.emb.state_buffers()

    def load_states(self, states: list[np.ndarray]) -> None:
        self.emb.load_state_buffers(states)

    def update(self, table: Any, rows: Any, grads: Any, lr: float, scaler: float = 1.0) -> None:
        """One step of every local shard with the row gradients of the last backward (``rows`` is the
        PendingRows the executor returned; anything else means: no gradient this step)."""
        entries = rows.entries if isinstance(rows, PendingRows) else self.emb.no_grads()
        self.emb.update(entries, lr, scaler)


# -- the hook -------------------------------------------------------------------------------------------
def placement_of(trainer: Any, compiled: Any, topology: Topology) -> PlacementPlan:
    """The pipeline's placement plan (computed with the pass itself when the pipeline stopped early)."""
    plans = getattr(compiled, "plans", None) or {}
    plan = plans.get("placement")
    if plan is None:
        ctx = PassContext(vvgpu=[list(r) for r in topology.vvgpu], batchsize=trainer.cfg.batchsize,
                          batchsize_eval=trainer.cfg.batchsize_eval)
        plan = plan_placement(trainer.graph, ctx)
    if tuple(tuple(r) for r in plan.vvgpu) != topology.vvgpu:
        raise ValueError(f"the placement plan was made for vvgpu = {[list(r) for r in plan.vvgpu]}, but the run "
                         f"uses vvgpu = {[list(r) for r in topology.vvgpu]}; compile the model with the run's "
                         f"solver")
    return plan


def _same_start(trainer: Any, comm: Communicator) -> int:
    """Make every rank start from rank 0's dense weights and tables when their seeds differ (seed 0 draws a
    random seed per process); returns the seed all ranks use."""
    seeds = comm.allgather_obj(int(trainer.seed))
    if len(set(seeds)) == 1:
        return seeds[0]
    root = comm.topology.local_gpus(0)[0]
    for w in trainer.dense_weights:
        w[...] = comm.broadcast([w] * len(comm.local), root)[0]
    for table in trainer.tables.values():
        table.rows[...] = comm.broadcast([table.rows] * len(comm.local), root)[0]
    trainer.seed = seeds[0]
    return seeds[0]


def wrap_executor(trainer: Any, compiled: Any = None, *, backend: str = "auto", comm: Communicator | None = None,
                  bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Any:
    """Give ``trainer`` (its executor, tables and sparse optimizers already built for one GPU) the GPUs of
    its ``cfg.vvgpu``, as ``compiled``'s placement plan shards them; returns the executor the Trainer must
    use (the old one for a single GPU). Calling it again returns the distributed executor unchanged. A
    trainer on the cuda target gets :func:`hgc.runtime.dist.cuda_parallel.wrap_cuda_executor`'s executor."""
    ex = trainer.executor
    if getattr(ex, "distributed", False):
        return ex
    topology = comm.topology if comm is not None else Topology.of(trainer.cfg.vvgpu)
    if topology.world_size == 1:
        return ex
    if not isinstance(ex, CpuExecutor):
        if getattr(trainer, "device", False):  # the cuda target: hgc.runtime.dist.cuda_parallel
            from hgc.runtime.dist.cuda_parallel import wrap_cuda_executor

            if comm is not None:
                raise ValueError("wrap_executor(comm=...) is for the cpu target; the cuda target makes its device "
                                 "communicator itself (backend='auto' | 'inprocess' | 'nccl')")
            return wrap_cuda_executor(trainer, compiled, backend=backend, bucket_bytes=bucket_bytes)
        raise NotBuiltError(f"training on several GPUs (vvgpu = {[list(r) for r in topology.vvgpu]}) with the "
                            f"{type(ex).__name__}", "Trainer")
    comm = comm or make_communicator(topology, backend)
    plan = placement_of(trainer, compiled, topology)
    seed = _same_start(trainer, comm)
    stats = int(getattr(trainer.cfg, "num_iterations_statistics", 20))
    tables: dict[str, ShardedEmbedding] = {}
    for name, table in list(trainer.tables.items()):
        sharded = shard_table(plan.table(name), comm, table, trainer.sparse_opts[name],
                              batchsize=trainer.cfg.batchsize, statistics_batches=stats)
        tables[name] = sharded
        trainer.tables[name] = ShardedTableView(sharded)
        trainer.sparse_opts[name] = ShardedOptimizerView(sharded)
    dist = DistributedExecutor(trainer.graph, ex.weights, tables, comm, seed, trainer.cfg.batchsize,
                               trainer.cfg.batchsize_eval, bucket_bytes)
    dist.step = ex.step
    trainer.executor = dist
    return dist
