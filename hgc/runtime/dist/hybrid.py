"""HybridSparseEmbedding over several GPUs: frequent categories replicated data-parallel on every GPU, the
others model-parallel (facts §2.4, ``HybridEmbeddingParam``).

A category is key + the offset of its slot (prefix sums of ``slot_size_array``); the input is one-hot.

Statistics. The first ``num_iterations_statistics`` training batches are counted (every category's
occurrences over the global batch). Until then every category is model-parallel, owned by GPU c mod G.
Afterwards the split is made once and the rows move (with their optimizer states):

* the count threshold is HugeCTR's: NVLink_SingleNode: B·I·√(2·p_dup_max / (M·(M−1))) with B the global
  batch, M = B/G, I the batches counted; IB_NVLink and IB_NVLink_Hier: I·N·(a2a bandwidth / all-reduce
  bandwidth)·efficiency_bandwidth_ratio·N/(N−1) with N nodes;
* the categories counted at least that often, most frequent first, are frequent; their number is rounded up
  to a multiple of G (down by G if that exceeds the categories seen) and capped at
  max_num_frequent_categories·B;
* the other categories are ordered by slot, then decreasing count, then id, and dealt round-robin to the GPUs.

Step. Forward: each GPU looks up the frequent keys of its batch slice in its own replica; the owner of an
infrequent key sends that key's vector to the GPU whose slice holds it (all-to-all). Backward: frequent
gradients are summed over the GPUs (one all-reduce of the frequent table's gradient) and every replica applies
the same update to the frequent categories that occur in the global batch; infrequent gradients go back to
their owners (the reverse all-to-all). The single-GPU result is a one-hot table, and the split does not
change the numbers.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hgc.ir.ops.embeddings import HYBRID_DEFAULTS
from hgc.passes.plan_placement import HYBRID, TablePlan
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.dist.comm import Communicator
from hgc.runtime.dist.embedding import Csr, ShardedEmbedding, Slices, mean_scale
from hgc.runtime.dist.shard import RowsState, Shard, segment_sums, shard_optimizer
from hgc.runtime.optim.sparse import SparseOptimizer


def count_threshold(params: dict, batchsize: int, gpus: int, nodes: int, iterations: int) -> float:
    """The count a category needs over ``iterations`` batches to be frequent (HugeCTR's rule)."""
    kind = str(params["communication_type"])
    if kind == "NVLink_SingleNode":
        m = batchsize / gpus
        if m * (m - 1) <= 0:
            return math.inf
        return batchsize * iterations * math.sqrt(2.0 * float(params["p_dup_max"]) / (m * (m - 1)))
    if kind in ("IB_NVLink", "IB_NVLink_Hier"):
        if nodes <= 1:
            return math.inf
        return (iterations * nodes * float(params["max_all_to_all_bandwidth"])
                / float(params["max_all_reduce_bandwidth"]) * float(params["efficiency_bandwidth_ratio"])
                * nodes / (nodes - 1))
    raise ValueError(f"hybrid_embedding_param.communication_type = {kind!r} is not allowed: must be "
                     f"NVLink_SingleNode, IB_NVLink or IB_NVLink_Hier")


def frequent_categories(counts: np.ndarray, threshold: float, gpus: int, cap: int) -> np.ndarray:
    """Frequent categories, most counted first (ties: lower id first)."""
    order = np.lexsort((np.arange(counts.shape[0]), -counts))
    ranked = counts[order]
    n = int(np.sum(ranked >= threshold))
    seen = int(np.sum(ranked > 0))
    if n > 0:
        n = -(-n // gpus) * gpus
    if n > seen:
        n -= gpus
    if cap > 0:
        n = min(n, cap // gpus * gpus)
    return order[:max(n, 0)].astype(np.int64)


class HybridEmbedding(ShardedEmbedding):
    """HybridSparseEmbedding (see the module docstring). ``initial`` holds every category's row (category
    order), as a single-GPU one-hot table would."""

    def __init__(self, plan: TablePlan, comm: Communicator, combiner: str, ref_opt: SparseOptimizer,
                 initial: RowsState, batchsize: int, statistics_batches: int = 20) -> None:
        super().__init__(plan, comm, combiner, ref_opt)
        if plan.type != HYBRID:
            raise ValueError(f"embedding '{plan.name}': HybridEmbedding cannot place a {plan.type}")
        sizes = np.asarray(plan.slot_size_array, np.int64)
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.categories = int(self.offsets[-1])
        self.slot_of = np.repeat(np.arange(sizes.shape[0], dtype=np.uint64), sizes)
        self.params = {**HYBRID_DEFAULTS, **dict(plan.hybrid.params if plan.hybrid else ())}
        if isinstance(batchsize, bool) or batchsize <= 0:
            raise ValueError(f"batchsize = {batchsize!r} is not allowed: the hybrid embedding needs the global "
                             f"batch size (> 0)")
        if isinstance(statistics_batches, bool) or statistics_batches < 1:
            raise ValueError(f"num_iterations_statistics = {statistics_batches!r} is not allowed: must be >= 1")
        self.batchsize, self.statistics_batches = int(batchsize), int(statistics_batches)
        self.counts = np.zeros(self.categories, np.int64)
        self.counted = 0
        self.split_done = False
        g = comm.world_size
        cats = np.arange(self.categories, dtype=np.int64)
        self._place(np.zeros(0, np.int64), cats % g, [cats[cats % g == j] for j in range(g)], initial)

    # -- placement ---------------------------------------------------------------------------------
    def _place(self, frequent: np.ndarray, owner: np.ndarray, owned: Sequence[np.ndarray],
               state: RowsState) -> None:
        """Build the local shards for this split and fill them from ``state`` (every category)."""
        c = self.categories
        self.frequent = frequent
        self.is_frequent = np.zeros(c, bool)
        self.is_frequent[frequent] = True
        self.freq_row = np.full(c, -1, np.int64)
        self.freq_row[frequent] = np.arange(frequent.shape[0])
        self.owner = np.where(self.is_frequent, -1, owner).astype(np.int64)
        self.inf_row = np.full(c, -1, np.int64)
        for cats in owned:
            self.inf_row[cats] = np.arange(cats.shape[0])
        times = self.times if self.shards else 0
        self.replicas: list[Shard] = []
        self.shards = []
        where = np.full(c, -1, np.int64)
        where[state.keys] = np.arange(len(state))
        if (where < 0).any():
            raise ValueError(f"embedding '{self.name}': the hybrid table needs a row for every one of its "
                             f"{c} categories; category {int(np.argmax(where < 0))} has none")
        for gpu in self.comm.local:
            mine = owned[gpu]
            rep = Shard(f"{self.name} (frequent)", gpu, frequent.shape[0],
                        shard_optimizer(self.ref_opt, frequent.shape[0]), frequent, self.slot_of[frequent])
            inf = Shard(f"{self.name} (infrequent)", gpu, mine.shape[0], shard_optimizer(self.ref_opt, mine.shape[0]),
                        mine, self.slot_of[mine])
            rep.put(state.take(where[frequent]), with_states=True)
            inf.put(state.take(where[mine]), with_states=True)
            self.replicas.append(rep)
            self.shards.append(inf)
        self.times = times

    @property
    def times(self) -> int:
        return self.shards[0].opt.times if self.shards else 0

    @times.setter
    def times(self, value: int) -> None:
        for s in [*self.shards, *getattr(self, "replicas", [])]:
            s.opt.times = int(value)

    def _split(self) -> None:
        """Decide the frequent categories from the counted batches and move the rows there."""
        g = self.comm.world_size
        threshold = count_threshold(self.params, self.batchsize, g, self.comm.num_ranks, self.counted)
        cap = int(self.params["max_num_frequent_categories"] or 0) * self.batchsize
        frequent = frequent_categories(self.counts, threshold, g, cap)
        rest = np.setdiff1d(np.arange(self.categories, dtype=np.int64), frequent, assume_unique=True)
        slot = np.searchsorted(self.offsets, rest, side="right") - 1
        rest = rest[np.lexsort((rest, -self.counts[rest], slot))]
        owner = np.zeros(self.categories, np.int64)
        owner[rest] = np.arange(rest.shape[0]) % g
        owned = [rest[j::g] for j in range(g)]
        state = self.gather_all()
        self._place(frequent, owner, owned, state)
        self.split_done = True

    def gather_all(self) -> RowsState:
        """Every category's row (category order) on every rank. Collective."""
        parts = self.comm.allgather_objs(self.local_parts())
        return self.canonical(parts)

    def canonical(self, parts: Sequence[RowsState]) -> RowsState:
        """The rows of all GPUs' parts once each, in category order."""
        merged = RowsState.concat(list(parts))
        _, first = np.unique(merged.keys, return_index=True)
        return merged.take(first)

    def local_parts(self) -> list[RowsState]:
        """Local GPU i's infrequent rows, plus the frequent rows on the first GPU of the run."""
        out = []
        for rep, inf in zip(self.replicas, self.shards):
            parts = [inf.export()]
            if rep.gpu == 0:
                parts.insert(0, rep.export())
            out.append(RowsState.concat(parts))
        return out

    def file_order(self, parts: Sequence[RowsState]) -> tuple[RowsState, list[int], list[int]]:
        """Hybrid rows are written in category order, as one block (the split is decided at run time)."""
        return self.canonical(parts), [self.categories], [self.categories]

    def state_buffers(self) -> list[np.ndarray]:
        return self.gather_all().states

    def load_state_buffers(self, states: Sequence[np.ndarray]) -> None:
        kinds = len(self.ref_opt.state_kinds)
        if len(states) != kinds:
            raise ValueError(f"embedding '{self.name}': {len(states)} optimizer state kind(s) given, the "
                             f"{self.ref_opt.optimizer} optimizer keeps {kinds}")
        full = [np.asarray(s).reshape(-1, self.vec) for s in states]
        for shard in [*self.replicas, *self.shards]:
            shard.put_states(np.arange(shard.capacity), [s[shard.categories] for s in full], None)

    def owners(self, state: RowsState) -> np.ndarray:
        return self.owner[state.keys]

    def put(self, state: RowsState, with_states: bool) -> None:
        freq = self.is_frequent[state.keys]
        for rep, inf in zip(self.replicas, self.shards):
            rep.put(state.take(np.flatnonzero(freq)), with_states)
            inf.put(state.take(np.flatnonzero(~freq & (self.owner[state.keys] == inf.gpu))), with_states)

    def set_states(self, state: RowsState) -> None:
        freq = self.is_frequent[state.keys]
        for rep, inf in zip(self.replicas, self.shards):
            rep.set_states(state.take(np.flatnonzero(freq)))
            inf.set_states(state.take(np.flatnonzero(~freq & (self.owner[state.keys] == inf.gpu))))

    # -- the step ----------------------------------------------------------------------------------
    def _categories(self, csr: Csr) -> np.ndarray:
        seg = csr.segment_of_keys()
        slot = seg % csr.slot_num
        if csr.slot_num != self.sizes.shape[0]:
            raise ValueError(f"embedding '{self.name}': the input has {csr.slot_num} slots but slot_size_array "
                             f"has {self.sizes.shape[0]} entries")
        keys = csr.keys.astype(np.int64, copy=False)
        bad = (keys < 0) | (keys >= self.sizes[slot])
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(f"embedding '{self.name}': key {keys[j]} of slot {slot[j]} is outside "
                             f"[0, {self.sizes[slot[j]]}) given by slot_size_array (sample "
                             f"{int(seg[j]) // csr.slot_num})")
        return keys + self.offsets[slot]

    def forward(self, sparse: SparseBatch, training: bool, slices: Slices) -> list[np.ndarray]:
        if training and not self.split_done and self.counted >= self.statistics_batches:
            self._split()
        csr = Csr.of(sparse, self.name)
        cat = self._categories(csr)
        if training and not self.split_done:
            self.counts += np.bincount(cat, minlength=self.categories)
            self.counted += 1
        g = self.comm.world_size
        bounds = [(int(csr.offsets[lo * csr.slot_num]), int(csr.offsets[hi * csr.slot_num])) for lo, hi in slices]
        infreq_owner = np.where(self.is_frequent[cat], -1, self.owner[cat])
        send = []
        for inf in self.shards:
            row = []
            for a, b in bounds:
                pick = cat[a:b][infreq_owner[a:b] == inf.gpu]
                row.append(inf.rows[self.inf_row[pick]])
            send.append(row)
        recv = self.comm.alltoall(send)
        outs, saved = [], []
        for rep, pieces in zip(self.replicas, recv):
            lo, hi = slices[rep.gpu]
            a, b = bounds[rep.gpu]
            mine, owners = cat[a:b], infreq_owner[a:b]
            vectors = np.empty((b - a, self.vec), np.float32)
            freq = owners < 0
            vectors[freq] = rep.rows[self.freq_row[mine[freq]]]
            for src in range(g):
                vectors[owners == src] = pieces[src]
            sub = csr.offsets[lo * csr.slot_num:hi * csr.slot_num + 1] - a
            scale = mean_scale(np.diff(sub), self.mean)
            out = (segment_sums(sub, np.arange(b - a, dtype=np.int64), vectors) * scale[:, None]).astype(np.float32)
            outs.append(out.reshape(hi - lo, csr.slot_num, self.vec))
            saved.append((sub, scale))
        self._saved = (saved, cat, bounds, infreq_owner)
        return outs

    def backward(self, grads: Sequence[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        saved, cat, bounds, infreq_owner = self._saved
        g = self.comm.world_size
        nfreq = self.frequent.shape[0]
        freq_sums, send = [], []
        for rep, gr, (sub, scale) in zip(self.replicas, grads, saved):
            a, b = bounds[rep.gpu]
            gseg = np.asarray(gr, np.float64).reshape(-1, self.vec) * scale[:, None]
            per_key = np.repeat(gseg, np.diff(sub), axis=0)
            mine, owners = cat[a:b], infreq_owner[a:b]
            acc = np.zeros((nfreq, self.vec), np.float64)
            freq = owners < 0
            np.add.at(acc, self.freq_row[mine[freq]], per_key[freq])
            freq_sums.append(acc)
            send.append([per_key[owners == j] for j in range(g)])
        total = self.comm.allreduce(freq_sums)[0] if nfreq else np.zeros((0, self.vec))
        recv = self.comm.alltoall(send)
        touched = np.unique(self.freq_row[cat[self.is_frequent[cat]]])
        freq_grads = total[touched].astype(np.float32)
        out = []
        for inf, pieces in zip(self.shards, recv):
            rows = np.concatenate([self.inf_row[cat[a:b][infreq_owner[a:b] == inf.gpu]] for a, b in bounds])
            vals = np.concatenate(pieces)
            unique_rows, inverse = np.unique(rows, return_inverse=True)
            acc = np.zeros((unique_rows.shape[0], self.vec), np.float64)
            np.add.at(acc, inverse.reshape(-1), vals)
            out.append((unique_rows.astype(np.int64), acc.astype(np.float32), touched, freq_grads))
        return out

    def update(self, row_grads_: Sequence[tuple[np.ndarray, ...]], lr: float, scaler: float = 1.0) -> None:
        """Entries are (infrequent rows, their grads, frequent rows, their grads) of each local GPU."""
        for rep, inf, (rows, g, frows, fg) in zip(self.replicas, self.shards, row_grads_):
            rep.update(frows, fg, lr, scaler)
            inf.update(rows, g, lr, scaler)

    def no_grads(self) -> list[tuple[np.ndarray, ...]]:
        empty = (np.zeros(0, np.int64), np.zeros((0, self.vec), np.float32))
        return [empty + empty for _ in self.shards]
