"""One embedding table on the GPU: rows, the key → row hash table, optimizer states, and the last gradient.

It behaves as the cpu target's EmbeddingTable + SparseOptimizer: rows are handed out in the order keys are
first seen (the new keys of a batch are ordered on the host, then inserted on the device), a row's initial
vector is the same as on the cpu (tables start as copies of a host EmbeddingTable), evaluation maps unknown
keys to a zero vector that still counts in the mean, and the sparse update follows ``Update_t``. So
``dump()`` returns what the cpu table would hold after the same steps.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.codegen.plan import EmbeddingTableSpec
from hgc.runtime.cuda.device import cupy, debug_level, device_dtype, scalar, sync_check
from hgc.runtime.data.batch import SparseBatch

BLOCK = 256
WARP_BLOCK = (32, 8, 1)
MAX_BLOCKS = 8192
EMPTY = -1


def as_key_bits(keys: np.ndarray) -> np.ndarray:
    """Keys as the uint64 bit patterns of their int64 values (the cpu hash table's key form)."""
    k = np.ascontiguousarray(keys).reshape(-1)
    if k.dtype.kind not in "iu":
        raise ValueError(f"keys must be an integer array, got dtype {k.dtype}")
    return k if k.dtype == np.uint64 else k.astype(np.int64, copy=False).view(np.uint64)


def _table_full(name: str, capacity: int, needed: int) -> Exception:
    from hgc.runtime.embedding.hash_table import TableFullError  # the cpu module (numba) only when needed

    return TableFullError(name, capacity, needed)


def _grid(n: int, per_block: int) -> tuple[int, int, int]:
    return (max(1, min(MAX_BLOCKS, -(-n // per_block))), 1, 1)


class DeviceEmbedding:
    """Device state and operations of one table; ``kernels(spec, fn)`` gives its compiled functions."""

    def __init__(self, spec: EmbeddingTableSpec, kernels: Any, rows: np.ndarray,
                 keys: np.ndarray | None = None, slot_ids: np.ndarray | None = None) -> None:
        cp = cupy()
        self.spec, self.kernels = spec, kernels
        self.name, self.vec, self.capacity = spec.name, spec.vec_size, spec.capacity
        rows = np.ascontiguousarray(rows, np.float32).reshape(-1, self.vec)
        if rows.shape[0] != self.capacity:
            raise ValueError(f"embedding '{self.name}': {rows.shape[0]} initial rows for a capacity of "
                             f"{self.capacity}")
        self.table = cp.asarray(rows)
        self.one_hot = spec.one_hot
        self.slot_sizes = np.asarray(spec.slot_size_array, np.int64)
        self.slot_offsets = np.concatenate([[0], np.cumsum(self.slot_sizes)]).astype(np.int64)
        self._d_slot_sizes = cp.asarray(self.slot_sizes if self.slot_sizes.size else np.zeros(1, np.int64))
        self._d_slot_offsets = cp.asarray(self.slot_offsets)
        n_slots = 16
        while n_slots < 2 * max(self.capacity, 1):
            n_slots *= 2
        self.mask = n_slots - 1
        self.slot_keys = cp.zeros(n_slots, cp.uint64)
        self.slot_rows = cp.full(n_slots, EMPTY, cp.int64)
        self.row_keys = np.zeros(0 if self.one_hot else self.capacity, np.uint64)  # host copy, row order
        self.row_slot = np.zeros(0 if self.one_hot else self.capacity, np.uint64)
        self.size = self.capacity if self.one_hot else 0
        opt = spec.optimizer
        self.optimizer, self.update_type = str(opt["optimizer_type"]), str(opt["update_type"])
        self.hyper = {k: float(opt[k]) for k in ("beta1", "beta2", "epsilon", "initial_accu_value",
                                                 "momentum_factor")}
        n_states = {"SGD": 0, "AdaGrad": 1, "MomentumSGD": 1, "Nesterov": 1, "Adam": 2}[self.optimizer]
        fill = self.hyper["initial_accu_value"] if self.optimizer == "AdaGrad" else 0.0
        self.states = [cp.full((self.capacity, self.vec), fill, cp.float32) for _ in range(n_states)]
        self.prev_time = (cp.ones(self.capacity, cp.uint64) if self.update_type == "LazyGlobal"
                          else cp.zeros(1, cp.uint64))
        self.times = 0
        self._hi = 0
        self._saved: tuple[Any, Any, int] | None = None
        self._grads: tuple[Any, Any] | None = None
        if keys is not None and len(keys):
            self._insert_host(as_key_bits(np.asarray(keys)), np.asarray(slot_ids, np.uint64)
                              if slot_ids is not None else np.zeros(len(keys), np.uint64))

    @classmethod
    def from_host(cls, spec: EmbeddingTableSpec, kernels: Any, table: Any) -> DeviceEmbedding:
        """A device copy of a cpu-target EmbeddingTable (rows, keys in row order, slot ids)."""
        if table.hash is None:
            return cls(spec, kernels, table.rows)
        keys, _ = table.hash.dump()
        return cls(spec, kernels, table.rows, keys, table.slot_ids())

    # -- kernels --------------------------------------------------------------------------------
    def _launch(self, fn: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: tuple) -> None:
        self.kernels(self.spec.spec, fn)(grid, block, args)
        if debug_level() >= 1:
            sync_check(f"embedding '{self.name}' kernel {fn}")

    def _lookup(self, keys: Any) -> Any:
        cp = cupy()
        rows = cp.empty(keys.shape[0], cp.int64)
        if keys.shape[0]:
            self._launch("lookup", _grid(keys.shape[0], BLOCK), (BLOCK, 1, 1),
                         (keys, scalar(keys.shape[0], "long long"), self.slot_keys, self.slot_rows,
                          scalar(self.mask, "unsigned long long"), rows))
        return rows

    def _insert_host(self, new_keys: np.ndarray, slots: np.ndarray) -> None:
        """Give the (distinct, absent) ``new_keys`` the next rows, in order."""
        cp = cupy()
        count = int(new_keys.shape[0])
        if self.size + count > self.capacity:
            raise _table_full(self.name, self.capacity, self.size + count)
        rows = np.arange(self.size, self.size + count, dtype=np.int64)
        d_keys, d_rows = cp.asarray(new_keys), cp.asarray(rows)
        self._launch("insert", _grid(count, BLOCK), (BLOCK, 1, 1),
                     (d_keys, d_rows, scalar(count, "long long"), self.slot_keys, self.slot_rows,
                      scalar(self.mask, "unsigned long long")))
        self.row_keys[rows] = new_keys
        self.row_slot[rows] = slots
        self.size += count

    def _hash_rows(self, sparse: SparseBatch, offsets: np.ndarray, training: bool) -> Any:
        cp = cupy()
        host_keys = as_key_bits(sparse.keys)
        keys = cp.asarray(host_keys)
        rows = self._lookup(keys)
        if not training or host_keys.shape[0] == 0:
            return rows
        miss = np.flatnonzero(cp.asnumpy(rows) < 0)
        if miss.size == 0:
            return rows
        uniq, first = np.unique(host_keys[miss], return_index=True)
        order = np.argsort(first, kind="stable")
        pos = miss[first[order]]
        seg = np.searchsorted(offsets, pos, side="right") - 1
        self._insert_host(uniq[order], (seg % sparse.slot_num).astype(np.uint64))
        return self._lookup(keys)

    def _one_hot_rows(self, sparse: SparseBatch, d_offsets: Any, nseg: int) -> Any:
        cp = cupy()
        if sparse.slot_num != self.slot_sizes.shape[0]:
            raise ValueError(f"embedding '{self.name}': the input has {sparse.slot_num} slots but "
                             f"slot_size_array has {self.slot_sizes.shape[0]} entries")
        host_keys = np.asarray(sparse.keys).astype(np.int64, copy=False)
        keys = cp.asarray(host_keys)
        rows = cp.empty(keys.shape[0], cp.int64)
        bad = cp.full(1, np.iinfo(np.uint64).max, cp.uint64)
        if nseg:
            self._launch("onehot", _grid(nseg, BLOCK), (BLOCK, 1, 1),
                         (keys, d_offsets, scalar(nseg, "long long"), scalar(sparse.slot_num, "int"),
                          self._d_slot_offsets, self._d_slot_sizes, rows, bad))
        j = int(bad.get()[0])
        if j != np.iinfo(np.uint64).max:
            offsets = np.asarray(sparse.row_offsets, np.int64)
            s = int(np.searchsorted(offsets, j, side="right") - 1)
            slot = s % sparse.slot_num
            raise ValueError(f"embedding '{self.name}': key {host_keys[j]} of slot {slot} is outside "
                             f"[0, {self.slot_sizes[slot]}) given by slot_size_array (sample "
                             f"{s // sparse.slot_num})")
        return rows

    # -- forward / backward ---------------------------------------------------------------------
    def forward(self, sparse: SparseBatch, training: bool, out: Any | None = None) -> Any:
        """Combined vectors into ``out`` (n·slot_num × vec, the output dtype), returned; keeps what backward
        needs. Training inserts unseen keys (hash tables)."""
        cp = cupy()
        offsets = np.ascontiguousarray(sparse.row_offsets, np.int64)
        nseg = offsets.shape[0] - 1
        if nseg % sparse.slot_num:
            raise ValueError(f"embedding '{self.name}': row_offsets has {offsets.shape[0]} entries, not "
                             f"n·slot_num + 1 with slot_num={sparse.slot_num}")
        d_offsets = cp.asarray(offsets)
        rows = self._one_hot_rows(sparse, d_offsets, nseg) if self.one_hot else \
            self._hash_rows(sparse, offsets, training)
        if out is None:
            out = cp.empty((nseg, self.vec), device_dtype(self.spec.out_dtype))
        if nseg:
            self._launch("combine", _grid(nseg, 8), WARP_BLOCK,
                         (d_offsets, rows, scalar(nseg, "long long"), self.table, out))
        self._saved = (d_offsets, rows, nseg)
        self._grads = None
        return out

    def backward(self, grad: Any) -> tuple[Any, Any]:
        """(unique rows int64 ascending, their summed gradients float32 (u, vec)) on the device; kept for
        :meth:`update`. ``grad`` is the output gradient (n·slot_num × vec)."""
        cp = cupy()
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        d_offsets, rows, nseg = self._saved
        nkeys = int(rows.shape[0])
        seg = cp.empty(nkeys, cp.int64)
        if nseg:
            self._launch("segments", _grid(nseg, BLOCK), (BLOCK, 1, 1),
                         (d_offsets, scalar(nseg, "long long"), seg))
        kidx = cp.nonzero(rows >= 0)[0].astype(cp.int64)
        krows = rows[kidx]
        if krows.shape[0] == 0:
            self._grads = (cp.zeros(0, cp.int64), cp.zeros((0, self.vec), cp.float32))
            return self._grads
        order = cp.argsort(krows * max(nkeys, 1) + kidx)  # by row, then key position: deterministic
        unique_rows, counts = cp.unique(krows[order], return_counts=True)
        starts = cp.concatenate([cp.zeros(1, cp.int64), cp.cumsum(counts).astype(cp.int64)])
        keys_sorted = kidx[order]
        nunique = int(unique_rows.shape[0])
        out = cp.empty((nunique, self.vec), cp.float32)
        self._launch("grad_reduce", _grid(nunique, 8), WARP_BLOCK,
                     (keys_sorted, seg, starts, scalar(nunique, "long long"), d_offsets,
                      grad.reshape(nseg, self.vec), out))
        self._grads = (unique_rows.astype(cp.int64), out)
        return self._grads

    # -- sparse optimizer -----------------------------------------------------------------------
    def update(self, lr: float, scaler: float = 1.0, rows: Any | None = None,
               grads: Any | None = None) -> None:
        """One optimizer step on the rows of the last backward (or the given ``rows``/``grads``)."""
        cp = cupy()
        if scaler == 0:
            raise ValueError(f"embedding '{self.name}': scaler=0 is not allowed (gradients are divided "
                             f"by it)")
        if rows is None:
            rows, grads = self._grads if self._grads is not None else \
                (cp.zeros(0, cp.int64), cp.zeros((0, self.vec), cp.float32))
        rows = cp.asarray(rows, cp.int64).reshape(-1)
        grads = cp.ascontiguousarray(cp.asarray(grads, cp.float32).reshape(rows.shape[0], self.vec))
        nrows = int(rows.shape[0])
        if nrows:
            self._hi = max(self._hi, int(rows.max()) + 1)
        alpha = 0.0
        if self.optimizer == "Adam":
            self.times += 1
            h = self.hyper
            alpha = lr * np.sqrt(1.0 - h["beta2"] ** self.times) / (1.0 - h["beta1"] ** self.times)
        s0 = self.states[0] if self.states else self.table
        s1 = self.states[1] if len(self.states) > 1 else self.table
        global_ = self.update_type == "Global" and self.optimizer in ("MomentumSGD", "Nesterov", "Adam")
        span = self._hi * self.vec

        def span_pass(phase: int) -> None:
            if span:
                self._launch("update_span", _grid(span, BLOCK), (BLOCK, 1, 1),
                             (self.table, s0, s1, scalar(span, "long long"), scalar(lr, "float"),
                              scalar(alpha, "float"), scalar(phase, "int")))

        if global_:
            span_pass(0)
        if nrows:
            self._launch("update_rows", _grid(nrows * self.vec, BLOCK), (BLOCK, 1, 1),
                         (self.table, s0, s1, self.prev_time, rows, grads, scalar(nrows, "long long"),
                          scalar(lr, "float"), scalar(alpha, "float"), scalar(1.0 / scaler, "float"),
                          scalar(self.times, "unsigned long long")))
            if self.update_type == "LazyGlobal":
                self._launch("touch", _grid(nrows, BLOCK), (BLOCK, 1, 1),
                             (self.prev_time, rows, scalar(nrows, "long long"),
                              scalar(self.times, "unsigned long long")))
        if global_ and self.optimizer in ("MomentumSGD", "Adam"):
            span_pass(1)

    # -- dump -----------------------------------------------------------------------------------
    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64, vectors float32 (k, vec)) in row order, as the cpu table's dump()."""
        cp = cupy()
        if self.one_hot:
            return np.arange(self.capacity, dtype=np.int64), cp.asnumpy(self.table)
        keys = self.row_keys[:self.size].view(np.int64).copy()
        return keys, cp.asnumpy(self.table[:self.size])

    def slot_ids(self) -> np.ndarray:
        if self.one_hot:
            return np.repeat(np.arange(self.slot_sizes.shape[0], dtype=np.uint64), self.slot_sizes)
        return self.row_slot[:self.size].copy()

    def state_arrays(self) -> list[np.ndarray]:
        """The optimizer state buffers (host copies), as SparseOptimizer.states()."""
        return [cupy().asnumpy(s) for s in self.states]
