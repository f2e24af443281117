"""One parameter-server record per key: the row of a table with everything that travels with it.

A record is a float32 line of ``width`` values: the embedding vector, each optimizer state (Adam: m, v), the
slot id (a uint64 kept bit for bit in two float32 lanes) and, for LazyGlobal Adam, the step the row was last
updated at (two more lanes). The records of many keys form one float32 matrix, which is what the stores
keep in memory or in their files.
"""
from __future__ import annotations

import numpy as np

from hgc.runtime.dist.shard import RowsState


class RowCodec:
    """Packs RowsState rows into records and back for one table's layout."""

    def __init__(self, vec_size: int, n_states: int, lazy: bool) -> None:
        self.vec, self.n_states, self.lazy = int(vec_size), int(n_states), bool(lazy)
        self.slot_at = self.vec * (1 + self.n_states)
        self.width = self.slot_at + 2 + (2 if self.lazy else 0)

    @staticmethod
    def _bits(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values, np.uint64).reshape(-1).view(np.float32).reshape(-1, 2)

    @staticmethod
    def _unbits(lanes: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(lanes, np.float32).view(np.uint64).reshape(-1)

    def pack(self, rows: RowsState) -> np.ndarray:
        n, v = len(rows), self.vec
        if len(rows.states) != self.n_states:
            raise ValueError(f"record codec: {len(rows.states)} optimizer state kind(s), the table keeps "
                             f"{self.n_states}")
        out = np.empty((n, self.width), np.float32)
        out[:, :v] = np.asarray(rows.vectors, np.float32).reshape(n, v)
        for k, s in enumerate(rows.states):
            out[:, v * (1 + k):v * (2 + k)] = np.asarray(s, np.float32).reshape(n, v)
        out[:, self.slot_at:self.slot_at + 2] = self._bits(rows.slot_ids)
        if self.lazy:
            prev = rows.prev_time if rows.prev_time is not None else np.ones(n, np.uint64)
            out[:, self.slot_at + 2:] = self._bits(prev)
        return out

    def unpack(self, keys: np.ndarray, records: np.ndarray) -> RowsState:
        v = self.vec
        rec = np.asarray(records, np.float32).reshape(-1, self.width)
        states = [rec[:, v * (1 + k):v * (2 + k)].copy() for k in range(self.n_states)]
        prev = self._unbits(rec[:, self.slot_at + 2:]) if self.lazy else None
        return RowsState(np.asarray(keys, np.int64).reshape(-1), rec[:, :v].copy(),
                         self._unbits(rec[:, self.slot_at:self.slot_at + 2]), states, prev)

    def slot_ids(self, records: np.ndarray) -> np.ndarray:
        """The slot ids (uint64) of records."""
        rec = np.asarray(records).reshape(-1, self.width)
        return self._unbits(rec[:, self.slot_at:self.slot_at + 2])

    def vectors(self, records: np.ndarray) -> np.ndarray:
        """The embedding vectors of records (a view)."""
        return np.asarray(records).reshape(-1, self.width)[:, :self.vec]
