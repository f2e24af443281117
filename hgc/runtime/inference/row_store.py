"""Embedding vectors under int64 keys in host memory, with what eviction needs: the logical time each row was
last written (or read, where the owner asks for it) and how often it was read.

Keys map to rows through the numba hash table of the training runtime; rows stay dense (0..size-1), so
dropping rows compacts the arrays and rebuilds the index. Both the in-process hash-map database and the
embedding cache keep their rows here.
"""
from __future__ import annotations

import numpy as np

from hgc.runtime.embedding.hash_table import HashTable

POLICIES = ("evict_oldest", "evict_random", "evict_least_used")


def as_keys(keys: np.ndarray) -> np.ndarray:
    """Keys as a flat int64 array (uint64 keys keep their bit patterns)."""
    k = np.ascontiguousarray(keys).reshape(-1)
    if k.dtype.kind not in "iu":
        raise ValueError(f"keys must be an integer array, got dtype {k.dtype}")
    if k.dtype == np.uint64:
        return k.view(np.int64)
    return k.astype(np.int64, copy=False)


class RowStore:
    """Rows of ``vec`` float32 values under distinct int64 keys, growing as keys are added."""

    def __init__(self, name: str, vec: int) -> None:
        self.name, self.vec = name, int(vec)
        self.size = 0
        self._alloc(0)

    def _alloc(self, capacity: int) -> None:
        self.keys = np.zeros(capacity, np.int64)
        self.vectors = np.zeros((capacity, self.vec), np.float32)
        self.stamps = np.zeros(capacity, np.int64)
        self.counts = np.zeros(capacity, np.int64)
        self._index = HashTable(self.name, capacity)

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[0])

    def __len__(self) -> int:
        return self.size

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The row of every key, -1 where the store lacks it."""
        return self._index.get_mark(as_keys(keys))

    def read(self, rows: np.ndarray, stamp: int | None = None) -> np.ndarray:
        """Copies of the vectors of ``rows`` (all >= 0); counts a read of each, and with ``stamp`` refreshes
        their time."""
        self.counts[rows] += 1
        if stamp is not None:
            self.stamps[rows] = stamp
        return self.vectors[rows]

    def _reserve(self, need: int) -> None:
        if need <= self.capacity:
            return
        keys, vectors = self.keys[:self.size], self.vectors[:self.size]
        stamps, counts = self.stamps[:self.size], self.counts[:self.size]
        self._alloc(max(need, 2 * self.capacity, 16))
        self.size = 0
        self._put(keys, vectors, stamps, counts)

    def _put(self, keys: np.ndarray, vectors: np.ndarray, stamps: np.ndarray, counts: np.ndarray) -> None:
        """Append rows for keys the store lacks (room is reserved)."""
        n = keys.shape[0]
        if not n:
            return
        rows = self._index.get_insert(keys)
        a = self.size
        if rows.shape[0] and (rows[0] != a or rows[-1] != a + n - 1):
            raise AssertionError(f"row store '{self.name}': the index handed out rows {rows[0]}..{rows[-1]}, "
                                 f"expected {a}..{a + n - 1}")
        self.keys[a:a + n] = keys
        self.vectors[a:a + n] = vectors
        self.stamps[a:a + n] = stamps
        self.counts[a:a + n] = counts
        self.size = a + n

    def upsert(self, keys: np.ndarray, vectors: np.ndarray, stamp: int) -> None:
        """Write the vectors of the (distinct) keys: present keys are overwritten, others appended."""
        keys = as_keys(keys)
        vectors = np.asarray(vectors, np.float32).reshape(keys.shape[0], self.vec)
        rows = self.find(keys)
        old = rows >= 0
        self.vectors[rows[old]] = vectors[old]
        self.stamps[rows[old]] = stamp
        new = np.flatnonzero(~old)
        if new.size:
            self._reserve(self.size + new.size)
            self._put(keys[new], vectors[new], np.full(new.size, stamp, np.int64), np.zeros(new.size, np.int64))

    def victims(self, count: int, policy: str, rng: np.random.Generator) -> np.ndarray:
        """``count`` rows to drop under ``policy``: the oldest stamps (then the lowest rows), the fewest
        reads (then the oldest), or a uniform random choice."""
        count = min(max(int(count), 0), self.size)
        if policy == "evict_random":
            return np.sort(rng.choice(self.size, size=count, replace=False)).astype(np.int64)
        n = self.size
        if policy == "evict_oldest":
            order = np.lexsort((np.arange(n), self.stamps[:n]))
        elif policy == "evict_least_used":
            order = np.lexsort((np.arange(n), self.stamps[:n], self.counts[:n]))
        else:
            raise ValueError(f"overflow policy {policy!r} is not allowed: must be one of {list(POLICIES)}")
        return np.sort(order[:count]).astype(np.int64)

    def drop(self, rows: np.ndarray) -> None:
        """Remove ``rows``; the others keep their order (and get new, compacted row numbers)."""
        keep = np.ones(self.size, bool)
        keep[np.asarray(rows, np.int64)] = False
        keys, vectors = self.keys[:self.size][keep], self.vectors[:self.size][keep]
        stamps, counts = self.stamps[:self.size][keep], self.counts[:self.size][keep]
        self.size = 0
        self._alloc(max(16, keys.shape[0]))
        self._put(keys, vectors, stamps, counts)

    def shrink_to(self, limit: int, policy: str, rng: np.random.Generator) -> int:
        """Evict rows under ``policy`` until at most ``limit`` remain; the number evicted."""
        excess = self.size - max(int(limit), 0)
        if excess <= 0:
            return 0
        self.drop(self.victims(excess, policy, rng))
        return excess
