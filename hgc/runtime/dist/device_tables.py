"""Model-parallel embedding tables of the multi-GPU cuda target: the sharded tables of
:mod:`hgc.runtime.dist.embedding` and :mod:`hgc.runtime.dist.hybrid` with their rows and optimizer states on
the GPUs, and their exchanges done on device arrays through the communicator.

What stays on the host is what the cpu target's sharded tables already compute there and the tests pin
down: which GPU owns a key, the key → row maps of hash shards, the pool vector of a new key (its global
first-sight index), the hybrid statistics and split. These subclasses reuse that code and replace the array
work: each shard's rows and optimizer live in a :mod:`store <hgc.runtime.dist.stores>` on its GPU, the index
arrays of a step are copied there once, and combining, the exchanges, the gradient reductions and the
updates run on the device. One exception goes further: a LocalizedSlotSparseEmbeddingOneHot plans on the
device too — the global batch's keys are staged to every GPU and each GPU picks its slots' keys there
(:func:`columns`), so a one-hot step moves no per-key work through the host. Its out-of-range keys are
recorded on the device and raised by :meth:`check`, as the single-GPU cuda table does.

Outputs and output gradients are device arrays (rows of the GPU's batch slice, slot_num, vec), float32 — the
executor converts them to the model's precision — except a localized table's on GPUs with a store module in
the model's precision (``wire_dtype``): its complete vectors are rounded once by the owner's combine, cross
between GPUs and reach the executor in that precision, and its output gradients come back in it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hgc.passes.plan_placement import DISTRIBUTED, HYBRID, LOCALIZED, ONE_HOT, TablePlan
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.dist.comm import Communicator
from hgc.runtime.dist.embedding import (
    Csr,
    DistributedEmbedding,
    LocalizedEmbedding,
    ShardedEmbedding,
    Slices,
    mean_scale,
)
from hgc.runtime.dist.hybrid import HybridEmbedding
from hgc.runtime.dist.places import Place, address, fence
from hgc.runtime.dist.shard import RowsState, Shard, insert_new_keys
from hgc.runtime.dist.stores import FeedGradients, Store, from_float32, to_float32
from hgc.runtime.embedding.hash_table import HashTable
from hgc.runtime.optim.sparse import SparseOptimizer

#: make_store(place, name, capacity) -> Store
StoreFactory = Callable[[Place, str, int], Store]


# -- shards ----------------------------------------------------------------------------------------------
class StoreOptimizer:
    """``shard.opt`` of a device shard: the parts of SparseOptimizer the sharded tables use, over its store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        ref = store.ref_opt
        self.optimizer, self.update_type, self.vec_size = ref.optimizer, ref.update_type, store.vec
        self.state_kinds = ref.state_kinds

    @property
    def times(self) -> int:
        return self.store.times

    @times.setter
    def times(self, value: int) -> None:
        self.store.times = int(value)

    def states(self) -> list[np.ndarray]:
        return self.store.state_arrays()

    def load_states(self, states: Sequence[np.ndarray]) -> None:
        self.store.load_state_arrays([np.asarray(s).reshape(-1, self.vec_size) for s in states])


class DeviceShard(Shard):
    """A Shard whose rows and optimizer live in ``store``; the key → row map (hash shards) or the categories
    (one-hot shards) and the slot of every row stay on the host."""

    def __init__(self, name: str, gpu: int, store: Store, categories: np.ndarray | None = None,
                 category_slots: np.ndarray | None = None) -> None:
        # Shard.__init__ would allocate host rows and optimizer states: set up the index part only
        self.name, self.gpu, self.capacity = name, int(gpu), store.capacity
        self.vec = store.vec
        self.store = store
        self.opt = StoreOptimizer(store)  # type: ignore[assignment]
        if categories is None:
            self.hash = HashTable(f"{name} on GPU {gpu}", self.capacity)
            self.row_slot = np.zeros(self.capacity, np.uint64)
            self.categories = None
        else:
            if categories.shape[0] != self.capacity:
                raise ValueError(f"embedding '{name}' on GPU {gpu}: {categories.shape[0]} categories for "
                                 f"{self.capacity} rows")
            self.hash = None
            self.categories = categories.astype(np.int64)
            self.row_slot = np.asarray(category_slots, np.uint64)

    @property
    def rows(self) -> Any:  # type: ignore[override]
        raise AttributeError(f"embedding '{self.name}' on GPU {self.gpu}: a device shard's rows live in its "
                             f"store (read them with export())")

    def insert(self, keys: np.ndarray, vectors: np.ndarray, slots: np.ndarray) -> np.ndarray:
        assert self.hash is not None
        rows = self.hash.get_insert(keys)
        self.store.write(rows, vectors)
        self.row_slot[rows] = slots
        return rows

    def update(self, rows: Any, grads: Any, lr: float, scaler: float) -> None:
        self.store.apply(rows, grads, lr, scaler)

    def export(self) -> RowsState:
        n = self.size
        keys = self.categories if self.hash is None else self.hash.dump()[0]
        states = [s[:n].copy() for s in self.store.state_arrays()]
        prev = self.store.prev_time()
        return RowsState(np.asarray(keys, np.int64).copy(), self.store.read(np.arange(n)), self.row_slot[:n].copy(),
                         states, None if prev is None else prev[:n].copy())

    def put(self, state: RowsState, with_states: bool) -> None:
        if not len(state):
            return
        rows = self.rows_of(state.keys, insert=True)
        if (rows < 0).any():
            bad = state.keys[int(np.argmax(rows < 0))]
            raise ValueError(f"embedding '{self.name}': category {bad} is not held by GPU {self.gpu}")
        self.store.write(rows, state.vectors)
        if self.hash is not None:
            self.row_slot[rows] = state.slot_ids
        if with_states:
            self.put_states(rows, state.states, state.prev_time)

    def put_states(self, rows: np.ndarray, states: Sequence[np.ndarray], prev_time: np.ndarray | None) -> None:
        full = self.store.state_arrays()
        if len(states) != len(full):
            raise ValueError(f"embedding '{self.name}': {len(states)} optimizer state kind(s) given, the "
                             f"{self.opt.optimizer} optimizer keeps {len(full)}")
        for mine, theirs in zip(full, states):
            mine[rows] = theirs
        self.store.load_state_arrays(full)
        if prev_time is not None:
            self.store.set_prev_time(rows, prev_time)


class _NoLocalGpus:
    """The communicator as a parent constructor sees it: the same world without local GPUs, so the host
    shards it would build are never allocated (the subclass builds device shards)."""

    def __init__(self, comm: Communicator) -> None:
        self.world_size, self.num_ranks, self.local = comm.world_size, comm.num_ranks, ()


def columns(xp: Any, offsets: Any, slot_num: int, cols: Any, n: int) -> tuple[Any, Any, Any]:
    """For the slots ``cols`` of an n-sample CSR (``offsets``, arrays of module ``xp``): the sub-CSR offsets
    over (sample, one of those slots), the position of each of its keys in the batch's key list, and each
    key's index into ``cols`` (LocalizedEmbedding._columns, with a search instead of a repeat so that it runs
    on the device as well)."""
    ncols = int(cols.shape[0])
    starts_all = offsets[:-1].reshape(n, slot_num)
    nnz = (offsets[1:] - offsets[:-1]).reshape(n, slot_num)[:, cols].reshape(-1)
    starts = starts_all[:, cols].reshape(-1)
    sub = xp.concatenate([xp.zeros(1, xp.int64), xp.cumsum(nnz).astype(xp.int64)])
    total = int(sub[-1])
    j = xp.arange(total, dtype=xp.int64)
    seg = xp.searchsorted(sub[1:], j, side="right").astype(xp.int64)
    pos = starts[seg] + (j - sub[seg])
    return sub, pos, (seg % ncols if ncols else seg)


def mean_scale_of(xp: Any, sub: Any) -> Any:
    """float32 1/nnz of every segment of ``sub`` with nnz > 1, else 1 (the mean combiner)."""
    nnz = (sub[1:] - sub[:-1]).astype(xp.float32)
    return xp.where(nnz > 1, 1.0 / xp.maximum(nnz, 1), 1.0).astype(xp.float32)


class _DeviceTable:
    """What the three device tables share: places, the host communicator and the shards' stores."""

    places: list[Place]
    host_comm: Communicator
    shards: list[Shard]

    def _setup(self, places: Sequence[Place], host_comm: Communicator, make_store: StoreFactory) -> None:
        self.places, self.host_comm, self.make_store = list(places), host_comm, make_store

    def _put(self, place: Place, a: np.ndarray) -> Any:
        return place.put(np.ascontiguousarray(a))

    def _alltoall(self, send: list[list[Any]], shapes: list[list[tuple[int, ...]]]) -> list[list[Any]]:
        """comm.alltoall, telling a communicator that can use them the shapes that arrive (NCCL then skips
        its header exchange). bfloat16 bits (uint16, which NCCL lacks) travel as float16: a copy keeps them."""
        comm = self.comm  # type: ignore[attr-defined]
        bits = any(getattr(a, "dtype", None) == np.uint16 for row in send for a in row)
        if bits:
            send = [[a.view(np.float16) for a in row] for row in send]
        recv = (comm.alltoall(send, recv_shapes=shapes) if getattr(comm, "accepts_recv_shapes", False)
                else comm.alltoall(send))
        return [[a.view(np.uint16) for a in row] for row in recv] if bits else recv

    def check(self) -> None:
        """Raise an error recorded on the device by an earlier step (a one-hot key out of range)."""


def _as_slice(ids: np.ndarray) -> slice | None:
    """``ids`` (ascending) as an equivalent slice, or None when they do not step evenly."""
    if ids.shape[0] == 0:
        return None
    step = int(ids[1] - ids[0]) if ids.shape[0] > 1 else 1
    if step <= 0 or not np.array_equal(ids, ids[0] + step * np.arange(ids.shape[0])):
        return None
    return slice(int(ids[0]), int(ids[-1]) + 1, step)


# -- DistributedSlotSparseEmbeddingHash ------------------------------------------------------------------
class DeviceDistributedEmbedding(_DeviceTable, DistributedEmbedding):
    """Key k on GPU k mod G: partial sums per shard on its GPU, a reduce-scatter leaves each GPU its slice;
    backward all-gathers the output gradient."""

    def __init__(self, plan: TablePlan, comm: Communicator, host_comm: Communicator, places: Sequence[Place],
                 combiner: str, ref_opt: SparseOptimizer, pool: np.ndarray, inserted: int,
                 make_store: StoreFactory) -> None:
        DistributedEmbedding.__init__(self, plan, _NoLocalGpus(comm), combiner, ref_opt, pool, inserted)  # type: ignore[arg-type]
        self.comm = comm
        self._setup(places, host_comm, make_store)
        self.shards = [DeviceShard(plan.name, g, make_store(p, f"{plan.name} on GPU {g}", self.shares[g].rows))
                       for g, p in zip(comm.local, self.places)]

    def forward(self, sparse: SparseBatch, training: bool, slices: Slices) -> list[Any]:
        csr = Csr.of(sparse, self.name)
        seg = csr.segment_of_keys()
        owner = (csr.bits % np.uint64(self.modulus)).astype(np.int64)
        picks = []
        for shard in self.shards:
            pos = np.flatnonzero(owner == shard.gpu)
            counts = np.bincount(seg[pos], minlength=csr.segments)
            picks.append((pos, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)))
        if training:
            self.inserted = insert_new_keys(self.host_comm, self.shards, [csr.bits[p] for p, _ in picks],
                                            [p for p, _ in picks], [seg[p] % csr.slot_num for p, _ in picks],
                                            self.pool, self.inserted, self.name)
        partial, saved = [], []
        for shard, place, (pos, sub) in zip(self.shards, self.places, picks):
            d_sub, d_rows = self._put(place, sub), self._put(place, shard.lookup(csr.bits[pos]))
            partial.append(shard.store.combine(d_sub, d_rows))  # type: ignore[attr-defined]
            saved.append((d_sub, d_rows))
        s = csr.slot_num
        summed = self.comm.reduce_scatter(partial, [(hi - lo) * s for lo, hi in slices])
        scale = mean_scale(csr.nnz(), self.mean).astype(np.float32) if self.mean else None
        outs = []
        for gpu, place, part in zip(self.comm.local, self.places, summed):
            lo, hi = slices[gpu]
            with place:
                if scale is not None:
                    part = part * self._put(place, scale[lo * s:hi * s])[:, None]
                outs.append(part.reshape(hi - lo, s, self.vec))
        self._saved = (saved, scale)
        return outs

    def backward(self, grads: Sequence[Any]) -> list[tuple[Any, Any]]:
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        saved, scale = self._saved
        flat = []
        for place, g in zip(self.places, grads):
            with place:
                flat.append(g.reshape(-1, self.vec))
        gathered = self.comm.allgather(flat)
        out = []
        for shard, place, pieces, (sub, rows) in zip(self.shards, self.places, gathered, saved):
            with place:
                whole = place.xp.concatenate(pieces) if len(pieces) > 1 else pieces[0]
                if scale is not None:
                    whole = whole * self._put(place, scale)[:, None]
            out.append(shard.store.key_grads(sub, rows, whole))  # type: ignore[attr-defined]
        return out


# -- LocalizedSlotSparseEmbeddingHash / OneHot -----------------------------------------------------------
class DeviceLocalizedEmbedding(_DeviceTable, LocalizedEmbedding):
    """Slot s on GPU s mod G: each GPU combines its slots over the whole batch, an all-to-all gives every
    GPU its slice; backward is the reverse all-to-all. One-hot tables plan on the device."""

    def __init__(self, plan: TablePlan, comm: Communicator, host_comm: Communicator, places: Sequence[Place],
                 combiner: str, ref_opt: SparseOptimizer, pool: np.ndarray | None, inserted: int,
                 make_store: StoreFactory) -> None:
        LocalizedEmbedding.__init__(self, plan, _NoLocalGpus(comm), combiner, ref_opt, pool, inserted)  # type: ignore[arg-type]
        self.comm = comm
        self._setup(places, host_comm, make_store)
        self.max_nnz: int | None = None  # the Input's most keys per slot (set by the runtime; None: unknown)
        sizes = np.asarray(plan.slot_size_array, np.int64)
        g = comm.world_size
        slots = [np.asarray(self.shares[j].slots, np.int64) for j in range(g)]
        self.shards = []
        self._cols: list[list[Any]] = []  # [local i][gpu j]: GPU j's slot ids, on place i
        self._bad: list[Any] = []  # [local i]: int64 [count, key, slot, sample] of the first bad one-hot key
        self._first: list[Any] = []  # [local i]: uint64 [1] scratch of the one-hot row kernel
        self._iota: list[Any] = [None] * len(self.places)  # [local i]: 0, 1, 2, ...: one-key-per-row offsets
        self._kernel_rows = False  # the last one-hot plan came from onehot_rows (one key per sample and slot)
        #: in place (one process, see _in_place): every local GPU's feed buffers for outputs and output
        #: gradients, (rows of its slice, slot_num, vec), and per local GPU the device arrays of their
        #: addresses and of the slices' starts; ``grad_buffers`` is where the executors must leave the gradients
        self._feed_key: Any = None
        self._feed: tuple[list[Any], list[Any], list[Any], list[Any], list[Any]] | None = None
        #: (local GPU i, rows) → that GPU's executor's (output, output gradient or None) views (set by the
        #: runtime): the in-place path then writes and reads the executors' own buffers, with no copies
        self.feed_views: Callable[[int, int], tuple[Any, Any | None]] | None = None
        self.grad_buffers: list[Any] | None = None
        self._in_place_step = False
        self._peers: bool | None = None  # stores with the in-place kernels, GPUs that reach each other's memory
        for gpu, place in zip(comm.local, self.places):
            share = self.shares[gpu]
            store = make_store(place, f"{plan.name} on GPU {gpu}", share.rows)
            if self.one_hot:
                cats = [self.slot_offsets[s] + np.arange(sizes[s]) for s in share.slots]
                slot_of = [np.full(int(sizes[s]), s, np.uint64) for s in share.slots]
                self.shards.append(DeviceShard(plan.name, gpu, store,
                                               np.concatenate(cats) if cats else np.zeros(0, np.int64),
                                               np.concatenate(slot_of) if slot_of else np.zeros(0, np.uint64)))
            else:
                self.shards.append(DeviceShard(plan.name, gpu, store))
            self._cols.append([self._put(place, s) for s in slots])
            self._bad.append(self._put(place, np.zeros(4, np.int64)))
            self._first.append(self._put(place, np.full(1, np.iinfo(np.uint64).max, np.uint64)))
        if self.one_hot:
            self._sizes = [self._put(p, sizes) for p in self.places]
            self._local_offsets = [self._put(p, self.local_offset) for p in self.places]
        #: [gpu j]: GPU j's slot ids as a slice of the slot axis where they step evenly (slot s on GPU s mod G),
        #: else the index array: a slice makes the assembly and the split plain strided copies
        self._slot_index = [_as_slice(sl) for sl in slots]
        lows = {getattr(sh.store, "low_dtype", None) for sh in self.shards}
        #: the array dtype vectors and gradients cross in (None: float32, converted by the executor)
        self.wire_dtype = lows.pop() if len(lows) == 1 else None

    def _slots(self, i: int, j: int) -> Any:
        """GPU j's slots as an index of the slot axis on local GPU i."""
        sl = self._slot_index[j]
        return sl if sl is not None else self._cols[i][j]

    # -- planning: per local shard (sub offsets, rows, mean scale or None, number of slots) ---------------
    def _plan_hash(self, sparse: SparseBatch, training: bool) -> list[tuple[Any, Any, Any, int]]:
        csr = Csr.of(sparse, self.name)
        parts = [self._columns(csr, shard.gpu) for shard in self.shards]
        if training:
            self.inserted = insert_new_keys(self.host_comm, self.shards, [csr.bits[p] for _, _, p, _ in parts],
                                            [p for _, _, p, _ in parts], [c[k] for c, _, _, k in parts],
                                            self.pool, self.inserted, self.name)
        out = []
        for shard, place, (cols, sub, pos, _) in zip(self.shards, self.places, parts):
            scale = mean_scale(np.diff(sub), True).astype(np.float32) if self.mean else None
            out.append((self._put(place, sub), self._put(place, shard.lookup(csr.bits[pos])),
                        None if scale is None else self._put(place, scale), len(cols)))
        return out

    def _stage(self, keys: np.ndarray, offsets: np.ndarray | None) -> tuple[list[tuple[Any, Any]], Any]:
        """The batch's keys (and offsets) on every local GPU: staged once to the first, copied to the others."""
        first = self.places[0]
        off0, keys0, token = first.stage_keys(keys, offsets)
        out = [(off0, keys0)]
        if len(self.places) > 1:
            fence(self.places)
            out += [(None if off0 is None else p.copy_from(off0), p.copy_from(keys0)) for p in self.places[1:]]
            fence(self.places)
        return out, token

    def _plan_one_hot(self, sparse: SparseBatch) -> list[tuple[Any, Any, Any, int]]:
        """Rows of every local GPU's keys, computed on its device. One key per (sample, slot) — the Input
        allows at most one (``max_nnz`` 1) and the batch has n·slot_num keys — needs no offsets and no
        synchronisation; otherwise the offsets travel too and :func:`columns` finds the keys."""
        s = sparse.slot_num
        nrows = np.shape(sparse.row_offsets)[0] - 1
        if nrows % s:
            raise ValueError(f"embedding '{self.name}': row_offsets has {nrows + 1} entries, not n·slot_num + 1 "
                             f"with slot_num={s}")
        n = nrows // s
        one_each = self.max_nnz == 1 and int(sparse.row_offsets[-1]) == nrows
        self._kernel_rows = one_each and all(hasattr(sh.store, "onehot_rows") for sh in self.shards)
        staged, token = self._stage(np.asarray(sparse.keys), None if one_each else np.asarray(sparse.row_offsets))
        out = []
        for i, (shard, place, (offsets, keys)) in enumerate(zip(self.shards, self.places, staged)):
            xp = place.xp
            with place:
                cols = self._cols[i][shard.gpu]
                ncols = int(cols.shape[0])
                if one_each and hasattr(shard.store, "onehot_rows"):  # two kernels on the GPU
                    rows = shard.store.onehot_rows(keys, n, s, cols, self._local_offsets[i], self._sizes[i],
                                                   self._first[i], self._bad[i])
                    out.append((self._iota_of(i, n * ncols + 1), rows, None, ncols))
                    continue
                if one_each:
                    sub = xp.arange(n * ncols + 1, dtype=xp.int64)
                    pos = (xp.arange(n, dtype=xp.int64)[:, None] * s + cols[None, :]).reshape(-1)
                    col = xp.arange(n * ncols, dtype=xp.int64) % ncols if ncols else xp.zeros(0, xp.int64)
                else:
                    sub, pos, col = columns(xp, offsets, s, cols, n)
                k = keys[pos]
                slot = cols[col]
                bad = (k < 0) | (k >= self._sizes[i][slot])
                rows = xp.where(bad, -1, k + self._local_offsets[i][slot])
                self._note_bad(i, bad, k, slot, pos, offsets, s)
                scale = mean_scale_of(xp, sub) if self.mean and not one_each else None
            out.append((sub, rows, scale, ncols))
        self.places[0].release(token)
        return out

    def _iota_of(self, i: int, count: int) -> Any:
        """0, 1, ..., count - 1 on local GPU i (kept, grown when a larger batch asks)."""
        if self._iota[i] is None or self._iota[i].shape[0] < count:
            with self.places[i]:
                self._iota[i] = self.places[i].xp.arange(count, dtype=self.places[i].xp.int64)
        return self._iota[i][:count]

    def _note_bad(self, i: int, bad: Any, keys: Any, slot: Any, pos: Any, offsets: Any | None, s: int) -> None:
        """Remember (on the device, no synchronisation) the first out-of-range key of this step, if any."""
        if not bad.shape[0]:
            return
        xp = self.places[i].xp
        count = bad.sum().astype(xp.int64).reshape(1)
        j = xp.argmax(bad.astype(xp.int8)).reshape(1)
        if offsets is None:
            sample = pos[j] // s
        else:
            sample = (xp.searchsorted(offsets, pos[j], side="right").astype(xp.int64) - 1) // s
        info = xp.concatenate([keys[j].astype(xp.int64), slot[j].astype(xp.int64), sample.astype(xp.int64)])
        rec = self._bad[i]
        fresh = (rec[0:1] == 0) & (count > 0)
        rec[1:] = xp.where(fresh, info, rec[1:])
        rec[0:1] += count

    def check(self) -> None:
        for i, place in enumerate(self.places):
            rec = place.get(self._bad[i])
            if rec[0]:
                with place:
                    self._bad[i][...] = 0
                slot = int(rec[2])
                raise ValueError(f"embedding '{self.name}': key {int(rec[1])} of slot {slot} is outside "
                                 f"[0, {self.plan.slot_size_array[slot]}) given by slot_size_array (sample "
                                 f"{int(rec[3])})")

    # -- the step ----------------------------------------------------------------------------------
    def _in_place(self) -> bool:
        """Whether the owners write the feeds and read the output gradients in place: one process, a one-hot
        plan from onehot_rows, stores with these kernels and atomic SGD, local GPUs that can read each other's
        memory (or logical GPUs of one device)."""
        if not (self.one_hot and self._kernel_rows and self.comm.world_size == len(self.places)):
            return False
        if self._peers is None:
            devices = [getattr(p, "device", None) for p in self.places]
            stores = all(hasattr(sh.store, "gather_to") and sh.store.emb.atomic for sh in self.shards)  # type: ignore[attr-defined]
            self._peers = stores and all(a == b or bool(self.places[0].xp.cuda.runtime.deviceCanAccessPeer(a, b))
                                         for a in devices for b in devices)
        return self._peers

    def _feed_buffers(self, slices: Slices, s: int) -> tuple[list[Any], list[Any], list[Any], list[Any], list[Any]]:
        """(outputs, gradients, output addresses, gradient addresses, slice starts) of the in-place path: the
        executors' own views where ``feed_views`` gives them in the wire dtype, else buffers of the table's;
        made again only when the slices or the executors' buffers change."""
        bounds = [slices[g][0] for g in self.comm.local] + [slices[self.comm.local[-1]][1]]
        if any(slices[g][1] != bounds[k + 1] for k, g in enumerate(self.comm.local)):
            raise ValueError(f"embedding '{self.name}': the GPUs' batch slices {slices} are not contiguous")
        shapes = [(slices[g][1] - slices[g][0], s, self.vec) for g in self.comm.local]
        dtypes = [self.wire_dtype or p.xp.float32 for p in self.places]
        given: list[tuple[Any, Any]] = []
        for i, (place, shape, dtype) in enumerate(zip(self.places, shapes, dtypes)):
            pair: tuple[Any, Any] = (None, None)
            if self.feed_views is not None and shape[0]:
                with place:
                    pair = self.feed_views(i, shape[0])
            given.append(tuple(v.reshape(shape) if v is not None and v.dtype == dtype and v.size == np.prod(shape)
                               else None for v in pair))
        key = (tuple(map(tuple, slices)), s, tuple(address(v) if v is not None else 0 for pair in given for v in pair))
        if self._feed is None or self._feed_key != key:
            outs, grads = [], []
            for place, shape, dtype, (out, grad) in zip(self.places, shapes, dtypes, given):
                with place:
                    outs.append(out if out is not None else place.xp.zeros(shape, dtype))
                    grads.append(grad if grad is not None else place.xp.zeros(shape, dtype))
            out_ptr = np.array([address(a) for a in outs], np.uint64)
            grad_ptr = np.array([address(a) for a in grads], np.uint64)
            self._feed = (outs, grads, [self._put(p, out_ptr) for p in self.places],
                          [self._put(p, grad_ptr) for p in self.places],
                          [self._put(p, np.asarray(bounds, np.int64)) for p in self.places])
            self._feed_key = key
            fence(self.places)  # the new buffers and address arrays are complete before any GPU writes them
        return self._feed

    def forward(self, sparse: SparseBatch, training: bool, slices: Slices) -> list[Any]:
        plans = self._plan_one_hot(sparse) if self.one_hot else self._plan_hash(sparse, training)
        s = sparse.slot_num
        n = (np.shape(sparse.row_offsets)[0] - 1) // s
        wire = self.wire_dtype
        self._in_place_step = self._in_place()
        if self._in_place_step:  # each owner writes its slots of every GPU's feed: no exchange buffers
            fence(self.places)  # the last step's readers of the feeds are done (before any is made again)
            outs, grads, out_ptr, _, bounds = self._feed_buffers(slices, s)
            for i, (shard, (_, rows, _, _)) in enumerate(zip(self.shards, plans)):
                shard.store.gather_to(rows, n, self._cols[i][shard.gpu], s, out_ptr[i], bounds[i],  # type: ignore[attr-defined]
                                      len(self.places), wire is not None)
            fence(self.places)
            self.grad_buffers = grads
            self._saved = (plans, list(slices))
            return list(outs)
        self.grad_buffers = None
        send = []
        for shard, place, (sub, rows, scale, ncols) in zip(self.shards, self.places, plans):
            full = shard.store.combine(sub, rows, low=wire is not None and scale is None)  # type: ignore[attr-defined]
            with place:
                if scale is not None:
                    full = full * scale[:, None]
                    if wire is not None:  # rounded once, after the mean's scale
                        low = place.xp.empty(full.shape, wire)
                        from_float32(place.xp, full, low)
                        full = low
                full = full.reshape(n, ncols, self.vec)
                send.append([full[lo:hi] for lo, hi in slices])
        counts = [len(self.shares[j].slots) for j in range(self.comm.world_size)]
        recv = self._alltoall(send, [[(slices[gpu][1] - slices[gpu][0], c, self.vec) for c in counts]
                                     for gpu in self.comm.local])
        outs = []
        for i, (gpu, place, pieces) in enumerate(zip(self.comm.local, self.places, recv)):
            lo, hi = slices[gpu]
            with place:
                out = place.xp.empty((hi - lo, s, self.vec), wire or place.xp.float32)
                for src, piece in enumerate(pieces):
                    if self.shares[src].slots:
                        out[:, self._slots(i, src), :] = piece
            outs.append(out)
        self._saved = (plans, list(slices))
        return outs

    def backward(self, grads: Sequence[Any]) -> list[tuple[Any, Any]]:
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        plans, slices = self._saved
        if self._in_place_step:  # each owner's atomic SGD reads every GPU's gradient where it lies
            assert self._feed is not None and self.grad_buffers is not None
            _, bufs, _, grad_ptr, bounds = self._feed
            for place, gr, buf in zip(self.places, grads, bufs):
                if gr is not None and gr.size and address(gr) != address(buf):  # not left in the buffer
                    with place:
                        from_float32(place.xp, gr.reshape(buf.shape), buf)
            fence(self.places)
            n = (slices[self.comm.local[-1]][1] - slices[self.comm.local[0]][0])
            return [(FeedGradients(rows, n, self._cols[i][shard.gpu], self.slot_num, grad_ptr[i], bounds[i],
                                   len(self.places), self.wire_dtype is not None), None)
                    for i, (shard, (_, rows, _, _)) in enumerate(zip(self.shards, plans))]
        g = self.comm.world_size
        send = []
        for i, (place, gr) in enumerate(zip(self.places, grads)):
            with place:
                gr = gr.reshape(-1, self.slot_num, self.vec)
                send.append([place.xp.ascontiguousarray(gr[:, self._slots(i, j), :]) for j in range(g)])
        recv = self._alltoall(send, [[(hi - lo, len(self.shares[gpu].slots), self.vec) for lo, hi in slices]
                                     for gpu in self.comm.local])
        out = []
        for shard, place, pieces, (sub, rows, scale, _) in zip(self.shards, self.places, recv, plans):
            with place:
                whole = place.xp.concatenate(pieces).reshape(-1, self.vec)
                if scale is not None:
                    whole = to_float32(place.xp, whole) * scale[:, None]
            out.append(shard.store.key_grads(sub, rows, whole))  # type: ignore[attr-defined]
        return out


# -- HybridSparseEmbedding -------------------------------------------------------------------------------
class DeviceHybridEmbedding(_DeviceTable, HybridEmbedding):
    """Frequent categories replicated on every GPU (their gradients all-reduced), the others dealt to the GPUs
    (all-to-all of their vectors and gradients); the statistics and the split are the host's."""

    def __init__(self, plan: TablePlan, comm: Communicator, host_comm: Communicator, places: Sequence[Place],
                 combiner: str, ref_opt: SparseOptimizer, initial: RowsState, batchsize: int,
                 statistics_batches: int, make_store: StoreFactory) -> None:
        self._setup(places, host_comm, make_store)
        HybridEmbedding.__init__(self, plan, comm, combiner, ref_opt, initial, batchsize, statistics_batches)

    def _place(self, frequent: np.ndarray, owner: np.ndarray, owned: Sequence[np.ndarray],
               state: RowsState) -> None:
        """HybridEmbedding._place with device shards."""
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
        where = np.full(c, -1, np.int64)
        where[state.keys] = np.arange(len(state))
        if (where < 0).any():
            raise ValueError(f"embedding '{self.name}': the hybrid table needs a row for every one of its "
                             f"{c} categories; category {int(np.argmax(where < 0))} has none")
        replicas: list[Shard] = []
        shards: list[Shard] = []
        for gpu, place in zip(self.comm.local, self.places):
            mine = owned[gpu]
            rep = DeviceShard(f"{self.name} (frequent)", gpu,
                              self.make_store(place, f"{self.name} (frequent) on GPU {gpu}", frequent.shape[0]),
                              frequent, self.slot_of[frequent])
            inf = DeviceShard(f"{self.name} (infrequent)", gpu,
                              self.make_store(place, f"{self.name} (infrequent) on GPU {gpu}", mine.shape[0]),
                              mine, self.slot_of[mine])
            rep.put(state.take(where[frequent]), with_states=True)
            inf.put(state.take(where[mine]), with_states=True)
            replicas.append(rep)
            shards.append(inf)
        self.replicas, self.shards = replicas, shards
        self.times = times

    def forward(self, sparse: SparseBatch, training: bool, slices: Slices) -> list[Any]:
        if training and not self.split_done and self.counted >= self.statistics_batches:
            self._split()
        csr = Csr.of(sparse, self.name)
        cat = self._categories(csr)
        if training and not self.split_done:
            self.counts += np.bincount(cat, minlength=self.categories)
            self.counted += 1
        g, s = self.comm.world_size, csr.slot_num
        bounds = [(int(csr.offsets[lo * s]), int(csr.offsets[hi * s])) for lo, hi in slices]
        infreq_owner = np.where(self.is_frequent[cat], -1, self.owner[cat])
        send = []
        for inf, place in zip(self.shards, self.places):
            row = []
            for a, b in bounds:
                pick = cat[a:b][infreq_owner[a:b] == inf.gpu]
                row.append(inf.store.gather(self._put(place, self.inf_row[pick])))  # type: ignore[attr-defined]
            send.append(row)
        recv = self.comm.alltoall(send)
        outs, saved = [], []
        for rep, place, pieces in zip(self.replicas, self.places, recv):
            lo, hi = slices[rep.gpu]
            a, b = bounds[rep.gpu]
            mine, owners = cat[a:b], infreq_owner[a:b]
            freq = owners < 0
            sub = csr.offsets[lo * s:hi * s + 1] - a
            scale = mean_scale(np.diff(sub), True).astype(np.float32) if self.mean else None
            xp = place.xp
            with place:
                vectors = xp.empty((b - a, self.vec), xp.float32)
                if freq.any():
                    vectors[self._put(place, np.flatnonzero(freq))] = rep.store.gather(  # type: ignore[attr-defined]
                        self._put(place, self.freq_row[mine[freq]]))
                for src in range(g):
                    idx = np.flatnonzero(owners == src)
                    if idx.size:
                        vectors[self._put(place, idx)] = pieces[src]
                out = rep.store.combine(self._put(place, sub), xp.arange(b - a, dtype=xp.int64),  # type: ignore[attr-defined]
                                        table=vectors)
                if scale is not None:
                    out = out * self._put(place, scale)[:, None]
                outs.append(out.reshape(hi - lo, s, self.vec))
            saved.append((sub, scale))
        self._saved = (saved, cat, bounds, infreq_owner)
        return outs

    def backward(self, grads: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        saved, cat, bounds, infreq_owner = self._saved
        g = self.comm.world_size
        nfreq = int(self.frequent.shape[0])
        freq_sums, send = [], []
        for rep, place, gr, (sub, scale) in zip(self.replicas, self.places, grads, saved):
            a, b = bounds[rep.gpu]
            mine, owners = cat[a:b], infreq_owner[a:b]
            key_seg = np.repeat(np.arange(sub.shape[0] - 1, dtype=np.int64), np.diff(sub))
            each = self._put(place, np.arange(b - a + 1, dtype=np.int64))  # every key its own segment
            xp = place.xp
            with place:
                gseg = gr.reshape(-1, self.vec)
                if scale is not None:
                    gseg = gseg * self._put(place, scale)[:, None]
                per_key = gseg[self._put(place, key_seg)]
                acc = xp.zeros((nfreq, self.vec), xp.float32)
            if nfreq:
                rows = np.where(owners < 0, self.freq_row[mine], -1)
                urows, sums = rep.store.row_grads(each, self._put(place, rows), per_key)  # type: ignore[attr-defined]
                with place:
                    if urows.shape[0]:
                        acc[urows] = sums
            freq_sums.append(acc)
            with place:
                send.append([per_key[self._put(place, np.flatnonzero(owners == j))] for j in range(g)])
        totals = self.comm.allreduce(freq_sums) if nfreq else freq_sums
        recv = self.comm.alltoall(send)
        touched = np.unique(self.freq_row[cat[self.is_frequent[cat]]])
        out = []
        for inf, place, pieces, total in zip(self.shards, self.places, recv, totals):
            rows = np.concatenate([self.inf_row[cat[a:b][infreq_owner[a:b] == inf.gpu]] for a, b in bounds])
            xp = place.xp
            with place:
                vals = xp.concatenate(pieces) if pieces else xp.zeros((0, self.vec), xp.float32)
                d_touched = self._put(place, touched.astype(np.int64))
                fg = total[d_touched]
            urows, ug = inf.store.key_grads(self._put(place, np.arange(rows.shape[0] + 1, dtype=np.int64)),  # type: ignore[attr-defined]
                                            self._put(place, rows), vals)
            out.append((urows, ug, d_touched, fg))
        return out


# -- building ----------------------------------------------------------------------------------------------
def shard_device_table(plan: TablePlan, comm: Communicator, host_comm: Communicator, places: Sequence[Place],
                       make_store: StoreFactory, *, combiner: str, ref_opt: SparseOptimizer, state: RowsState,
                       pool: np.ndarray | None, inserted: int, times: int, batchsize: int,
                       statistics_batches: int = 20) -> ShardedEmbedding:
    """The device-sharded table ``plan`` describes, holding ``state`` (the rows a single-GPU table holds now,
    with their optimizer states) and Adam's step ``times``. Hash tables draw the initial vectors of keys seen
    later from ``pool`` (the single-GPU table's preallocated rows) at their global first-sight index."""
    if plan.type == DISTRIBUTED:
        if pool is None:
            raise ValueError(f"embedding '{plan.name}': a hash table needs the pool of initial rows")
        emb: ShardedEmbedding = DeviceDistributedEmbedding(plan, comm, host_comm, places, combiner, ref_opt, pool,
                                                           inserted, make_store)
    elif plan.type in (LOCALIZED, ONE_HOT):
        emb = DeviceLocalizedEmbedding(plan, comm, host_comm, places, combiner, ref_opt,
                                       None if plan.type == ONE_HOT else pool, inserted, make_store)
    elif plan.type == HYBRID:
        emb = DeviceHybridEmbedding(plan, comm, host_comm, places, combiner, ref_opt, state, batchsize,
                                    statistics_batches, make_store)
    else:
        raise ValueError(f"embedding '{plan.name}': no sharding for embedding type '{plan.type}'")
    if plan.type != HYBRID:
        emb.put(state, with_states=True)
    emb.times = int(times)
    return emb
