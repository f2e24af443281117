"""One embedding table on the cpu target: preallocated fp32 rows, key → row mapping, sum/mean combiners.

Hash mode maps keys through a HashTable (training inserts, evaluation only looks up); one-hot mode indexes the
rows directly with key + offset of the key's slot (offsets are prefix sums of ``slot_size_array``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.hash_table import HashTable

HASH_INIT_RANGE = 0.05


@numba.njit(cache=True, nogil=True)
def _combine(offsets: np.ndarray, rows: np.ndarray, table: np.ndarray, mean: bool, out: np.ndarray) -> None:
    """out[s] = Σ table[rows[j]] over segment s (unknown rows, -1, add nothing); mean divides by nnz > 1."""
    vec = table.shape[1]
    acc = np.zeros(vec, np.float64)
    for s in range(offsets.shape[0] - 1):
        lo, hi = offsets[s], offsets[s + 1]
        acc[:] = 0.0
        for j in range(lo, hi):
            r = rows[j]
            if r >= 0:
                for c in range(vec):
                    acc[c] += table[r, c]
        scale = 1.0 / (hi - lo) if mean and hi - lo > 1 else 1.0
        for c in range(vec):
            out[s, c] = acc[c] * scale


@numba.njit(cache=True, nogil=True)
def _scatter(offsets: np.ndarray, inverse: np.ndarray, grad: np.ndarray, mean: bool, out: np.ndarray) -> None:
    """out[inverse[j]] += grad[segment of j] (· 1/nnz for mean); entries with inverse < 0 are skipped."""
    vec = grad.shape[1]
    for s in range(offsets.shape[0] - 1):
        lo, hi = offsets[s], offsets[s + 1]
        scale = 1.0 / (hi - lo) if mean and hi - lo > 1 else 1.0
        for j in range(lo, hi):
            u = inverse[j]
            if u >= 0:
                for c in range(vec):
                    out[u, c] += grad[s, c] * scale


def _fill_uniform(rng: np.random.Generator, out: np.ndarray, bound: float) -> None:
    """out ← U(−bound, bound) in float32, written in place."""
    if out.size == 0:
        return
    rng.random(out=out, dtype=np.float32)
    out *= np.float32(2.0 * bound)
    out -= np.float32(bound)


class EmbeddingTable:
    """Rows, key mapping and combiner of one embedding (one device).

    ``capacity`` is the number of preallocated rows (see ``capacity.rows_for_workspace``); when
    ``slot_size_array`` is given the rows are its sum and slot i's block is U(±√(1/slot_size[i])), otherwise
    every row is U(−0.05, 0.05). ``one_hot`` needs ``slot_size_array`` and uses no hash table.
    """

    def __init__(self, name: str, vec_size: int, capacity: int | None = None, combiner: str = "sum",
                 slot_size_array: Sequence[int] = (), one_hot: bool = False,
                 rng: np.random.Generator | None = None) -> None:
        if isinstance(vec_size, bool) or not isinstance(vec_size, (int, np.integer)) or vec_size <= 0:
            raise ValueError(f"embedding '{name}': embedding_vec_size={vec_size!r} must be an integer > 0")
        if combiner not in ("sum", "mean"):
            raise ValueError(f"embedding '{name}': combiner={combiner!r} must be 'sum' or 'mean'")
        sizes = [int(s) for s in slot_size_array]
        if any(s < 0 for s in sizes):
            raise ValueError(f"embedding '{name}': slot_size_array={sizes} must hold sizes >= 0")
        if one_hot and not sizes:
            raise ValueError(f"embedding '{name}': the one-hot embedding needs a slot_size_array")
        if sizes:
            if capacity is not None and capacity != sum(sizes):
                raise ValueError(f"embedding '{name}': capacity={capacity} disagrees with "
                                 f"sum(slot_size_array)={sum(sizes)}; with slot sizes the table has exactly "
                                 f"their sum of rows")
            capacity = sum(sizes)
        if capacity is None or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"embedding '{name}': capacity={capacity!r} must be an integer >= 0 "
                             f"(rows from workspace_size_per_gpu_in_mb, or a slot_size_array)")
        self.name, self.vec_size, self.capacity = name, int(vec_size), int(capacity)
        self.combiner, self.one_hot = combiner, bool(one_hot)
        self.slot_sizes = np.asarray(sizes, np.int64)
        self.slot_offsets = np.concatenate([[0], np.cumsum(self.slot_sizes)]).astype(np.int64)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.rows = np.empty((self.capacity, self.vec_size), np.float32)
        if sizes:
            for i, size in enumerate(sizes):
                block = self.rows[self.slot_offsets[i]:self.slot_offsets[i + 1]]
                _fill_uniform(rng, block, float(np.sqrt(1.0 / size)) if size else 0.0)
        else:
            _fill_uniform(rng, self.rows, HASH_INIT_RANGE)
        self.hash = None if self.one_hot else HashTable(name, self.capacity)
        self._row_slot = np.zeros(0 if self.one_hot else self.capacity, np.uint64)

    @property
    def size(self) -> int:
        """Rows in use (one-hot: every row)."""
        return self.capacity if self.hash is None else self.hash.size

    # -- lookup -------------------------------------------------------------------------------------
    def _one_hot_rows(self, sparse: SparseBatch) -> np.ndarray:
        if sparse.slot_num != self.slot_sizes.shape[0]:
            raise ValueError(f"embedding '{self.name}': the input has {sparse.slot_num} slots but "
                             f"slot_size_array has {self.slot_sizes.shape[0]} entries")
        offsets = np.asarray(sparse.row_offsets, np.int64)
        slot = np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64) % sparse.slot_num, np.diff(offsets))
        keys = np.asarray(sparse.keys).astype(np.int64, copy=False)
        bad = (keys < 0) | (keys >= self.slot_sizes[slot])
        if bad.any():
            j = int(np.argmax(bad))
            raise ValueError(f"embedding '{self.name}': key {keys[j]} of slot {slot[j]} is outside "
                             f"[0, {self.slot_sizes[slot[j]]}) given by slot_size_array (sample "
                             f"{int(np.searchsorted(offsets, j, side='right') - 1) // sparse.slot_num})")
        return keys + self.slot_offsets[slot]

    def _hash_rows(self, sparse: SparseBatch, training: bool) -> np.ndarray:
        assert self.hash is not None
        if not training:
            return self.hash.get_mark(sparse.keys)
        before = self.hash.size
        rows = self.hash.get_insert(sparse.keys)
        new = np.flatnonzero(rows >= before)
        if new.size:
            # a new key seen in several slots of the batch keeps the slot of its first occurrence (as on the GPU)
            new_rows, first = np.unique(rows[new], return_index=True)
            seg = np.searchsorted(np.asarray(sparse.row_offsets, np.int64), new[first], side="right") - 1
            self._row_slot[new_rows] = (seg % sparse.slot_num).astype(np.uint64)
        return rows

    def forward(self, sparse: SparseBatch, training: bool) -> tuple[np.ndarray, Any]:
        """Combined vectors (n, slot_num, vec) float32 and what backward needs.

        Training inserts unseen keys; evaluation maps them to a zero vector that still counts in the mean.
        """
        offsets = np.ascontiguousarray(sparse.row_offsets, np.int64)
        n_seg = offsets.shape[0] - 1
        if n_seg % sparse.slot_num:
            raise ValueError(f"embedding '{self.name}': row_offsets has {offsets.shape[0]} entries, not "
                             f"n·slot_num + 1 with slot_num={sparse.slot_num}")
        rows = self._one_hot_rows(sparse) if self.one_hot else self._hash_rows(sparse, training)
        out = np.empty((n_seg, self.vec_size), np.float32)
        _combine(offsets, rows, self.rows, self.combiner == "mean", out)
        return out.reshape(n_seg // sparse.slot_num, sparse.slot_num, self.vec_size), (offsets, rows)

    def backward(self, saved: Any, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unique rows int64 ascending, their summed gradients float32 (u, vec)) for the upstream grad."""
        offsets, rows = saved
        g = np.ascontiguousarray(grad, np.float64).reshape(offsets.shape[0] - 1, self.vec_size)
        known = rows >= 0
        if known.all():
            unique_rows, inverse = np.unique(rows, return_inverse=True)
        else:
            unique_rows, inv = np.unique(rows[known], return_inverse=True)
            inverse = np.full(rows.shape[0], -1, np.int64)
            inverse[known] = inv
        acc = np.zeros((unique_rows.shape[0], self.vec_size), np.float64)
        _scatter(offsets, inverse.astype(np.int64, copy=False).reshape(-1), g, self.combiner == "mean", acc)
        return unique_rows.astype(np.int64, copy=False), acc.astype(np.float32)

    # -- dump / load --------------------------------------------------------------------------------
    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64, vectors float32 (k, vec)) in row order. One-hot keys are key + slot offset (= row)."""
        if self.hash is None:
            return np.arange(self.capacity, dtype=np.int64), self.rows.copy()
        keys, rows = self.hash.dump()
        return keys, self.rows[rows].copy()

    def slot_ids(self) -> np.ndarray:
        """Slot of each dumped key (uint64, aligned with dump()): the slot a key was first seen in."""
        if self.hash is None:
            return np.repeat(np.arange(self.slot_sizes.shape[0], dtype=np.uint64), self.slot_sizes)
        return self._row_slot[:self.hash.size].copy()

    def load(self, keys: np.ndarray, vectors: np.ndarray, slot_ids: np.ndarray | None = None) -> None:
        """Set the vectors of the given keys (distinct), inserting keys the table lacks."""
        keys = np.asarray(keys).reshape(-1)
        vectors = np.asarray(vectors, np.float32)
        if vectors.size != keys.shape[0] * self.vec_size:
            raise ValueError(f"embedding '{self.name}': the rows of keys ({keys.shape[0]}) and embeddings "
                             f"({vectors.size} values for vec_size {self.vec_size}) are not consistent")
        vectors = vectors.reshape(keys.shape[0], self.vec_size)
        if slot_ids is not None and np.asarray(slot_ids).shape[0] != keys.shape[0]:
            raise ValueError(f"embedding '{self.name}': {np.asarray(slot_ids).shape[0]} slot ids for "
                             f"{keys.shape[0]} keys; the rows are not consistent")
        if self.hash is None:
            k = keys.astype(np.int64)
            bad = (k < 0) | (k >= self.capacity)
            if bad.any():
                raise ValueError(f"embedding '{self.name}': key {k[np.argmax(bad)]} is outside the one-hot "
                                 f"table [0, {self.capacity})")
            if np.unique(k).shape[0] != k.shape[0]:
                raise ValueError(f"embedding '{self.name}': the keys to load must be distinct")
            self.rows[k] = vectors
            return
        rows = self.hash.load(keys)
        self.rows[rows] = vectors
        if slot_ids is not None:
            self._row_slot[rows] = np.asarray(slot_ids).astype(np.uint64)
