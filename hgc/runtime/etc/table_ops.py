"""What the training cache does to a training table, for the two kinds the Trainer holds.

* :class:`HostTableOps` — the cpu target's EmbeddingTable with its SparseOptimizer.
* :class:`DeviceTableOps` — a device table seen through ``DeviceTable`` / ``DeviceSparseOptimizer``
  (hgc.runtime.target), with its arrays changed in place so that captured CUDA graphs stay valid.

Operations: the keys in use (row order), a snapshot of the used rows (vectors, slot ids, optimizer states,
LazyGlobal steps), appending rows for absent keys, rebuilding the table to hold exactly given rows,
setting the vectors of the free rows, and (one-hot tables) overwriting rows by category.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.tables import rows_state_of, set_states_of_table
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.optim.sparse import SparseOptimizer


def _host(a: Any) -> np.ndarray:
    """A NumPy copy of a host or device array."""
    return np.array(a.get() if hasattr(a, "get") else a)


class HostTableOps:
    def __init__(self, table: EmbeddingTable, opt: SparseOptimizer) -> None:
        self.table, self.opt = table, opt
        self.name, self.vec_size, self.capacity = table.name, table.vec_size, table.capacity
        self.one_hot = table.hash is None
        self.n_states = len(opt.state_kinds)
        self.lazy = opt.update_type == "LazyGlobal"
        self.state_fill = float(opt.hyper.initial_accu_value) if opt.optimizer == "AdaGrad" else 0.0

    def size(self) -> int:
        return self.table.size

    def resident_keys(self) -> np.ndarray:
        if self.table.hash is None:
            return np.arange(self.capacity, dtype=np.int64)
        return self.table.hash.dump()[0]

    def snapshot(self) -> RowsState:
        return rows_state_of(self.table, self.opt)

    def append(self, rows: RowsState) -> None:
        """Insert the (absent, distinct) keys of ``rows`` at the next free rows, with their states."""
        if not len(rows):
            return
        self.table.load(rows.keys, rows.vectors, rows.slot_ids)
        set_states_of_table(self.table, self.opt, rows)

    def rebuild(self, rows: RowsState) -> None:
        """Forget every key, then hold exactly ``rows`` at rows 0…k−1 (other rows get initial states)."""
        assert self.table.hash is not None
        self.table.hash.clear()
        k = len(rows)
        self.table.load(rows.keys, rows.vectors, rows.slot_ids)
        full = [np.full((self.capacity, self.vec_size), self.state_fill, np.float32) for _ in range(self.n_states)]
        for mine, theirs in zip(full, rows.states):
            mine[:k] = theirs
        self.opt.load_states(full)
        if self.lazy:
            self.opt.prev_time[:] = 1
            if rows.prev_time is not None:
                self.opt.prev_time[:k] = rows.prev_time

    def set_free_rows(self, start: int, values: np.ndarray) -> None:
        self.table.rows[start:start + values.shape[0]] = values

    def overwrite(self, rows: RowsState) -> None:
        """One-hot tables: set the rows of the given categories and their states."""
        if len(rows):
            self.table.load(rows.keys, rows.vectors)
            set_states_of_table(self.table, self.opt, rows)


class DeviceTableOps:
    """The same operations on a device table (``table``: a DeviceTable, ``opt``: its DeviceSparseOptimizer)."""

    def __init__(self, table: Any, opt: Any) -> None:
        from hgc.runtime.cuda.metrics import array_module

        self.table, self.opt, self.emb = table, opt, table.emb
        self.xp = array_module(self.emb.table)
        self.name, self.vec_size, self.capacity = table.name, table.vec_size, table.capacity
        self.one_hot = bool(self.emb.one_hot)
        self.n_states = len(opt.state_kinds)
        self.lazy = opt.update_type == "LazyGlobal"
        hyper = getattr(self.emb, "hyper", None) or {}
        self.state_fill = float(hyper.get("initial_accu_value", 0.0)) if opt.optimizer == "AdaGrad" else 0.0

    def size(self) -> int:
        return self.table.size

    def resident_keys(self) -> np.ndarray:
        return np.asarray(self.table.dump()[0], np.int64)

    def snapshot(self) -> RowsState:
        keys, vectors = self.table.dump()
        n = keys.shape[0]
        states = [np.asarray(s[:n], np.float32).copy() for s in self.opt.states()]
        prev = _host(self.emb.prev_time)[:n].astype(np.uint64) if self.lazy else None
        return RowsState(np.asarray(keys, np.int64), np.asarray(vectors, np.float32),
                         np.asarray(self.table.slot_ids(), np.uint64), states, prev)

    def _set_states(self, rows: np.ndarray, states: list[np.ndarray], prev: np.ndarray | None,
                    base: list[np.ndarray] | None = None) -> None:
        full = base if base is not None else [np.array(s, np.float32) for s in self.opt.states()]
        for mine, theirs in zip(full, states):
            mine[rows] = theirs
        self.opt.load_states(full)
        if self.lazy and prev is not None:
            self.emb.prev_time[self.xp.asarray(rows)] = self.xp.asarray(np.asarray(prev, np.uint64))

    def append(self, rows: RowsState) -> None:
        if not len(rows):
            return
        start = self.table.size
        self.table.load(rows.keys, rows.vectors, rows.slot_ids)
        self._set_states(np.arange(start, start + len(rows), dtype=np.int64), rows.states, rows.prev_time)

    def _clear(self) -> None:
        emb = self.emb
        if hasattr(emb, "clear"):
            emb.clear()
            return
        from hgc.runtime.cuda.embedding import EMPTY

        emb.slot_rows.fill(EMPTY)
        emb.slot_keys.fill(0)
        emb.d_size.fill(0)

    def rebuild(self, rows: RowsState) -> None:
        self._clear()
        self.table.load(rows.keys, rows.vectors, rows.slot_ids)
        full = [np.full((self.capacity, self.vec_size), self.state_fill, np.float32) for _ in range(self.n_states)]
        if self.lazy:
            self.emb.prev_time.fill(1)
        self._set_states(np.arange(len(rows), dtype=np.int64), rows.states, rows.prev_time, full)

    def set_free_rows(self, start: int, values: np.ndarray) -> None:
        self.emb.table[start:start + values.shape[0]] = self.xp.asarray(np.ascontiguousarray(values, np.float32))

    def overwrite(self, rows: RowsState) -> None:
        if len(rows):
            self.table.load(rows.keys, rows.vectors)
            self._set_states(np.asarray(rows.keys, np.int64), rows.states, rows.prev_time)


def table_ops(table: Any, opt: Any) -> HostTableOps | DeviceTableOps:
    """The operations for one of the Trainer's tables (``trainer.tables[name]``, ``trainer.sparse_opts[name]``)."""
    if isinstance(table, EmbeddingTable):
        return HostTableOps(table, opt)
    if hasattr(table, "emb"):
        return DeviceTableOps(table, opt)
    from hgc.errors import NotBuiltError

    raise NotBuiltError(f"the embedding training cache for a table of type {type(table).__name__} (tables "
                        f"sharded over several GPUs, vvgpu with more than one GPU)")
