"""Key → row hash table of one embedding (open addressing with linear probing; the loops run under numba).

Rows are handed out in the order keys are first seen (row r holds the r-th distinct key ever inserted), so a
dump in row order is deterministic. The row capacity is fixed; the probe array grows by rehashing (load factor
kept at or below one half) so a large, mostly empty workspace costs little memory.
"""
from __future__ import annotations

import numba
import numpy as np

from hgc.errors import HgcError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MIN_SLOTS = 16


class TableFullError(HgcError, RuntimeError):
    """More distinct keys than the embedding table has rows."""

    def __init__(self, table: str, capacity: int, needed: int) -> None:
        self.table, self.capacity, self.needed = table, capacity, needed
        super().__init__(
            f"embedding table '{table}' is full: it has {capacity} rows but {needed} distinct keys are "
            f"needed; raise workspace_size_per_gpu_in_mb (or the slot_size_array) of this embedding")


@numba.njit(cache=True, nogil=True)
def _hash(k: np.uint64) -> np.uint64:
    # splitmix64 finaliser: spreads consecutive keys over the probe array.
    z = k + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _lookup(slot_keys: np.ndarray, slot_rows: np.ndarray, keys: np.ndarray, out: np.ndarray) -> None:
    mask = np.uint64(slot_keys.shape[0] - 1)
    for i in range(keys.shape[0]):
        k = keys[i]
        j = _hash(k) & mask
        while True:
            r = slot_rows[j]
            if r < 0:
                out[i] = -1
                break
            if slot_keys[j] == k:
                out[i] = r
                break
            j = (j + np.uint64(1)) & mask


@numba.njit(cache=True, nogil=True)
def _insert(slot_keys: np.ndarray, slot_rows: np.ndarray, row_keys: np.ndarray, size: int, keys: np.ndarray,
            out: np.ndarray) -> int:
    """Look up every key, giving unseen keys the next row; returns the new number of rows in use.

    The caller guarantees room: enough rows in ``row_keys`` and free probe slots.
    """
    mask = np.uint64(slot_keys.shape[0] - 1)
    for i in range(keys.shape[0]):
        k = keys[i]
        j = _hash(k) & mask
        while True:
            r = slot_rows[j]
            if r < 0:
                slot_keys[j] = k
                slot_rows[j] = size
                row_keys[size] = k
                out[i] = size
                size += 1
                break
            if slot_keys[j] == k:
                out[i] = r
                break
            j = (j + np.uint64(1)) & mask
    return size


def as_key_bits(keys: np.ndarray) -> np.ndarray:
    """Keys as the uint64 bit patterns of their int64 values (uint32/int32/int64/uint64 input)."""
    k = np.ascontiguousarray(keys)
    if k.dtype.kind not in "iu":
        raise ValueError(f"keys must be an integer array, got dtype {k.dtype}")
    if k.dtype == np.uint64:
        return k.reshape(-1)
    return k.reshape(-1).astype(np.int64, copy=False).view(np.uint64)


class HashTable:
    """Maps keys to rows 0..capacity-1, in insertion order."""

    def __init__(self, name: str, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
            raise ValueError(f"hash table '{name}': capacity={capacity!r} must be an integer >= 0")
        self.name = name
        self.capacity = int(capacity)
        self._row_keys = np.zeros(self.capacity, np.uint64)
        self.size = 0
        self._alloc(_MIN_SLOTS)

    def __len__(self) -> int:
        return self.size

    def _alloc(self, n_slots: int) -> None:
        self._slot_keys = np.zeros(n_slots, np.uint64)
        self._slot_rows = np.full(n_slots, -1, np.int64)

    def _reserve(self, n_keys: int) -> None:
        """Grow the probe array so that it holds n_keys at a load factor of at most 1/2."""
        n_slots = self._slot_keys.shape[0]
        if 2 * n_keys <= n_slots:
            return
        while 2 * n_keys > n_slots:
            n_slots *= 2
        self._alloc(n_slots)
        scratch = np.empty(self.size, np.int64)
        old_keys = self._row_keys[:self.size].copy()
        _insert(self._slot_keys, self._slot_rows, self._row_keys, 0, old_keys, scratch)

    def get_mark(self, keys: np.ndarray) -> np.ndarray:
        """Rows of the keys (int64), -1 for keys the table has never seen; inserts nothing (evaluation)."""
        k = as_key_bits(keys)
        out = np.empty(k.shape[0], np.int64)
        _lookup(self._slot_keys, self._slot_rows, k, out)
        return out

    def get_insert(self, keys: np.ndarray) -> np.ndarray:
        """Rows of the keys (int64); unseen keys take the next free rows in order of first sight (training).

        Raises TableFullError, leaving the table unchanged, when the new keys do not fit.
        """
        k = as_key_bits(keys)
        bound = self.size + k.shape[0]
        if bound > self.capacity:
            known = self.get_mark(k)
            bound = self.size + int(np.unique(k[known < 0]).shape[0])
            if bound > self.capacity:
                raise TableFullError(self.name, self.capacity, bound)
        self._reserve(bound)
        out = np.empty(k.shape[0], np.int64)
        self.size = int(_insert(self._slot_keys, self._slot_rows, self._row_keys, self.size, k, out))
        return out

    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64, rows int64) of every key in the table, in row order."""
        keys = self._row_keys[:self.size].view(np.int64).copy()
        return keys, np.arange(self.size, dtype=np.int64)

    def load(self, keys: np.ndarray) -> np.ndarray:
        """Insert the keys (which must be distinct) and return their rows; keys present keep their rows."""
        k = as_key_bits(keys)
        n_distinct = np.unique(k).shape[0]
        if n_distinct != k.shape[0]:
            raise ValueError(f"hash table '{self.name}': the keys to load must be distinct, "
                             f"got {k.shape[0] - n_distinct} repeated key(s) among {k.shape[0]}")
        return self.get_insert(k)

    def clear(self) -> None:
        """Forget every key."""
        self.size = 0
        self._alloc(_MIN_SLOTS)
