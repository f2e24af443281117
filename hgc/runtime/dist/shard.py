"""One GPU's part of one embedding table: its rows, its key → row map (hash tables) or its row of every
category (one-hot), the slot each row belongs to, and its own sparse optimizer.

New keys get their initial vector from the *pool*: the row table a single-process run of the same model
would have preallocated (the Trainer's EmbeddingTable rows). A key's vector is the pool row at its global
first-sight index — the number of distinct keys inserted before it over all GPUs, counting in the order the
keys appear in the global batch — so a key starts from the same vector on any number of GPUs. Finding that
index costs one all-gather of the new keys' batch positions per training step (:func:`insert_new_keys`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hgc.runtime.dist.comm import Communicator
from hgc.runtime.embedding.hash_table import HashTable, TableFullError
from hgc.runtime.embedding.table import _combine, _scatter
from hgc.runtime.optim.sparse import SparseOptimizer


@dataclass
class RowsState:
    """Rows of one table in some order, with everything that travels with them between GPUs."""

    keys: np.ndarray  # int64 (n,): hash keys, or categories (key + slot offset) of one-hot tables
    vectors: np.ndarray  # float32 (n, vec)
    slot_ids: np.ndarray  # uint64 (n,)
    states: list[np.ndarray]  # one (n, vec) array per optimizer state kind
    prev_time: np.ndarray | None  # uint64 (n,), LazyGlobal only

    @staticmethod
    def concat(parts: Sequence[RowsState]) -> RowsState:
        kinds = len(parts[0].states)
        lazy = parts[0].prev_time is not None
        return RowsState(np.concatenate([p.keys for p in parts]).astype(np.int64, copy=False),
                         np.concatenate([p.vectors for p in parts]),
                         np.concatenate([p.slot_ids for p in parts]).astype(np.uint64, copy=False),
                         [np.concatenate([p.states[k] for p in parts]) for k in range(kinds)],
                         np.concatenate([p.prev_time for p in parts]) if lazy else None)

    def take(self, idx: np.ndarray) -> RowsState:
        return RowsState(self.keys[idx], self.vectors[idx], self.slot_ids[idx], [s[idx] for s in self.states],
                         None if self.prev_time is None else self.prev_time[idx])

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def shard_optimizer(ref: SparseOptimizer, capacity: int) -> SparseOptimizer:
    """An optimizer like ``ref`` (type, update type, hyper-parameters, state dtype) for ``capacity`` rows."""
    return SparseOptimizer(ref.optimizer, ref.update_type, capacity, ref.vec_size, atomic_update=ref.atomic_update,
                           state_dtype=ref.state_dtype, hyper=ref.hyper)


def row_grads(offsets: np.ndarray, rows: np.ndarray, seg_grads: np.ndarray, vec: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(unique rows ascending, their summed gradients float32) for keys ``rows`` (CSR ``offsets``) and the
    already scaled float64 gradient of every segment; rows -1 (unknown keys) get nothing."""
    known = rows >= 0
    if known.all():
        unique_rows, inverse = np.unique(rows, return_inverse=True)
    else:
        unique_rows, inv = np.unique(rows[known], return_inverse=True)
        inverse = np.full(rows.shape[0], -1, np.int64)
        inverse[known] = inv
    acc = np.zeros((unique_rows.shape[0], vec), np.float64)
    _scatter(offsets, inverse.astype(np.int64, copy=False).reshape(-1), seg_grads, False, acc)
    return unique_rows.astype(np.int64, copy=False), acc.astype(np.float32)


def segment_sums(offsets: np.ndarray, rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """float64 (segments, vec): the sum of each segment's rows (unknown rows, -1, add nothing)."""
    out = np.empty((offsets.shape[0] - 1, table.shape[1]), np.float64)
    _combine(offsets, rows, table, False, out)
    return out


class Shard:
    """Rows of one table on one GPU. Hash shards map keys through a HashTable; one-hot shards hold the
    categories ``categories`` (row r is category categories[r])."""

    def __init__(self, name: str, gpu: int, capacity: int, opt: SparseOptimizer,
                 categories: np.ndarray | None = None, category_slots: np.ndarray | None = None) -> None:
        self.name, self.gpu, self.capacity = name, gpu, int(capacity)
        self.vec = opt.vec_size
        self.opt = opt
        self.rows = np.zeros((self.capacity, self.vec), np.float32)
        if categories is None:
            self.hash: HashTable | None = HashTable(f"{name} on GPU {gpu}", self.capacity)
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
    def size(self) -> int:
        """Rows in use."""
        return self.capacity if self.hash is None else self.hash.size

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Rows of hash keys (uint64 bit patterns), -1 for keys this shard does not hold."""
        assert self.hash is not None
        return self.hash.get_mark(keys)

    def insert(self, keys: np.ndarray, vectors: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Give distinct hash keys rows (existing keys keep theirs) and set their vectors and slots."""
        assert self.hash is not None
        rows = self.hash.get_insert(keys)
        self.rows[rows] = vectors
        self.row_slot[rows] = slots
        return rows

    def update(self, rows: np.ndarray, grads: np.ndarray, lr: float, scaler: float) -> None:
        self.opt.update(self.rows, rows, grads, lr, scaler)

    # -- moving rows -------------------------------------------------------------------------------
    def export(self) -> RowsState:
        """Every row in use, in row order, with its optimizer states."""
        n = self.size
        keys = self.categories if self.hash is None else self.hash.dump()[0]
        states = [s[:n].copy() for s in self.opt.states()]
        lazy = self.opt.prev_time[:n].copy() if self.opt.update_type == "LazyGlobal" else None
        return RowsState(np.asarray(keys, np.int64).copy(), self.rows[:n].copy(), self.row_slot[:n].copy(), states,
                         lazy)

    def rows_of(self, keys: np.ndarray, insert: bool) -> np.ndarray:
        """Rows of int64 keys (hash keys or categories); ``insert`` adds missing hash keys."""
        if self.hash is None:
            out = np.full(keys.shape[0], -1, np.int64)
            if self.capacity and keys.size:
                order = np.argsort(self.categories, kind="stable")
                ranked = self.categories[order]
                at = np.minimum(np.searchsorted(ranked, keys), ranked.shape[0] - 1)
                hit = ranked[at] == keys
                out[hit] = order[at[hit]]
            return out
        bits = keys.astype(np.int64, copy=False).view(np.uint64)
        return self.hash.get_insert(bits) if insert else self.hash.get_mark(bits)

    def put(self, state: RowsState, with_states: bool) -> None:
        """Store ``state``'s rows (inserting hash keys); with_states also sets their optimizer states."""
        if not len(state):
            return
        rows = self.rows_of(state.keys, insert=True)
        if (rows < 0).any():
            bad = state.keys[int(np.argmax(rows < 0))]
            raise ValueError(f"embedding '{self.name}': category {bad} is not held by GPU {self.gpu}")
        self.rows[rows] = state.vectors
        if self.hash is not None:
            self.row_slot[rows] = state.slot_ids
        if with_states:
            self.put_states(rows, state.states, state.prev_time)

    def set_states(self, part: RowsState) -> None:
        """Optimizer states of keys this shard already holds (a sparse model loaded before its states)."""
        if not len(part):
            return
        rows = self.rows_of(part.keys, insert=False)
        if (rows < 0).any():
            raise ValueError(f"embedding '{self.name}': key {part.keys[int(np.argmax(rows < 0))]} has no row on GPU "
                             f"{self.gpu}; load the sparse model before its optimizer states")
        self.put_states(rows, part.states, part.prev_time)

    def put_states(self, rows: np.ndarray, states: Sequence[np.ndarray], prev_time: np.ndarray | None) -> None:
        full = [s.copy() for s in self.opt.states()]
        if len(states) != len(full):
            raise ValueError(f"embedding '{self.name}': {len(states)} optimizer state kind(s) given, the "
                             f"{self.opt.optimizer} optimizer keeps {len(full)}")
        for mine, theirs in zip(full, states):
            mine[rows] = theirs
        self.opt.load_states(full)
        if prev_time is not None and self.opt.update_type == "LazyGlobal":
            self.opt.prev_time[rows] = prev_time


def insert_new_keys(comm: Communicator, shards: Sequence[Shard], keys: Sequence[np.ndarray],
                    positions: Sequence[np.ndarray], slots: Sequence[np.ndarray], pool: np.ndarray,
                    inserted: int, name: str) -> int:
    """Insert the keys each local shard sees for the first time, with pool vectors at their global
    first-sight index; returns the new count of keys inserted over all GPUs. ``keys[i]`` (uint64 bits),
    ``positions[i]`` (their positions in the global batch's key list) and ``slots[i]`` belong to local
    shard i. Collective: every process calls it, with every local shard."""
    news = []
    for shard, k, pos, sl in zip(shards, keys, positions, slots):
        miss = np.flatnonzero(shard.lookup(k) < 0)
        uniq, first = np.unique(k[miss], return_index=True)
        order = np.argsort(first, kind="stable")
        at = miss[first[order]]
        news.append((uniq[order], pos[at].astype(np.int64), sl[at]))
    everyone = comm.allgather([p for _, p, _ in news])[0]
    merged = np.sort(np.concatenate(everyone)) if everyone else np.zeros(0, np.int64)
    total = inserted + int(merged.shape[0])
    for shard, (new_keys, pos, sl) in zip(shards, news):
        if not new_keys.shape[0]:
            continue
        if shard.size + new_keys.shape[0] > shard.capacity:
            raise TableFullError(f"{name} on GPU {shard.gpu}", shard.capacity, shard.size + int(new_keys.shape[0]))
        index = inserted + np.searchsorted(merged, pos)
        if total > pool.shape[0]:
            raise TableFullError(name, pool.shape[0], total)
        shard.insert(new_keys, pool[index], sl.astype(np.uint64))
    return total
