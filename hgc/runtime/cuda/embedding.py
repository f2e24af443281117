"""One embedding table on the GPU: rows, the key → row hash table, optimizer states, and the last gradient.

It behaves as the cpu target's EmbeddingTable + SparseOptimizer: rows are handed out in the order keys are
first seen in a batch (numbered on the device by a scan), a row's initial vector is the same as on the cpu
(tables start as copies of a host EmbeddingTable), evaluation maps unknown keys to a zero vector that still
counts in the mean, and the sparse update follows ``Update_t``. So ``dump()`` returns what the cpu table
would hold after the same steps.

Two ways in:

* the host API (``forward(SparseBatch)``, ``backward(grad)``, ``update(lr, ...)``): uploads keys, checks
  errors at once, and returns the gradient as (unique rows ascending, summed row gradients), as the
  cpu target does;
* the training fast path the executor uses (``prepare`` → ``forward_device`` → ``backward_update``): keys
  already on the device, no host synchronisation, the update fused into the backward (HugeCTR's atomic
  SGD straight from the keys; otherwise one summed gradient per touched row), per-step hyper-parameters
  read from device memory — so a CUDA graph can capture it. Errors (a one-hot key outside its slot, a full
  hash table) are kept on the device and raised by :meth:`check`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.codegen.plan import EmbeddingTableSpec
from hgc.runtime.cuda import profile
from hgc.runtime.cuda.device import cupy, debug_level, device_dtype, scalar, sync_check
from hgc.runtime.cuda.staging import DeviceSparse, check_sparse, device_sparse
from hgc.runtime.data.batch import SparseBatch

BLOCK = 256
SCAN_BLOCK = 1024
WARP_BLOCK = (32, 8, 1)
MAX_BLOCKS = 8192
EMPTY = -1
NO_BAD = np.iinfo(np.uint64).max
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


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


def vector_width(vec: int) -> int:
    """Neighbouring elements of a row one thread of the combine / scatter kernels handles (the template's VW)."""
    return 4 if vec % 4 == 0 else 2 if vec % 2 == 0 else 1


class _Workspace:
    """Per-key scratch arrays for batches of up to ``n`` keys (kept across steps: fixed addresses)."""

    def __init__(self, cp: Any, n: int, vec: int, reduce: bool) -> None:
        self.n = n
        self.rows = cp.empty(n, cp.int64)
        self.seg = cp.empty(n, cp.int64)
        self.kslot = cp.empty(n, cp.int64)
        self.first = cp.empty(n, cp.int64)
        self.flag = cp.empty(n, cp.int32)
        self.incl = cp.empty(n, cp.int32)
        self.sums = cp.empty(max(1, -(-n // SCAN_BLOCK)), cp.int32)
        self.nuniq = cp.zeros(1, cp.int64)
        self.skey = cp.empty(n, cp.int64) if reduce else None
        self.starts = cp.empty(n + 1, cp.int64) if reduce else None
        self.urows = cp.empty(n, cp.int64) if reduce else None
        self.ugrad = cp.empty((n, vec), cp.float32) if reduce else None


class DeviceEmbedding:
    """Device state and operations of one table; ``kernels(spec, fn)`` gives its compiled functions."""

    def __init__(self, spec: EmbeddingTableSpec, kernels: Any, rows: Any,
                 keys: np.ndarray | None = None, slot_ids: np.ndarray | None = None) -> None:
        cp = cupy()
        self.spec, self.kernels = spec, kernels
        self.name, self.vec, self.capacity = spec.name, spec.vec_size, spec.capacity
        if isinstance(rows, cp.ndarray):  # already on the device (taken over, not copied)
            rows = cp.ascontiguousarray(rows.astype(cp.float32, copy=False)).reshape(-1, self.vec)
        else:
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
        self.mask = n_slots - 1 if not self.one_hot else 0
        self.slot_keys = cp.zeros(1 if self.one_hot else n_slots, cp.uint64)
        self.slot_rows = cp.full(1 if self.one_hot else n_slots, EMPTY, cp.int64)
        # rows in use (hash tables), and the key / slot id of every row (dumps)
        self.d_size = cp.zeros(1, cp.int64)
        self.row_keys = cp.zeros(1 if self.one_hot else self.capacity, cp.uint64)
        self.row_slot = cp.zeros(1 if self.one_hot else self.capacity, cp.uint64)
        self.err = cp.asarray(np.array([NO_BAD, 0, 0, 0], np.uint64))
        self.hp = cp.zeros(4, cp.float32)       # lr, alpha, 1/scaler
        self.hstep = cp.zeros(1, cp.uint64)     # the optimizer step
        self.hi = cp.zeros(1, cp.int64)         # 1 + the largest row ever updated (Global span)
        opt = spec.optimizer
        self.optimizer, self.update_type = str(opt["optimizer_type"]), str(opt["update_type"])
        self.hyper = {k: float(opt[k]) for k in ("beta1", "beta2", "epsilon", "initial_accu_value",
                                                 "momentum_factor")}
        self.atomic = self.optimizer == "SGD" and bool(opt.get("atomic_update", True))
        n_states = {"SGD": 0, "AdaGrad": 1, "MomentumSGD": 1, "Nesterov": 1, "Adam": 2}[self.optimizer]
        fill = self.hyper["initial_accu_value"] if self.optimizer == "AdaGrad" else 0.0
        self.states = [cp.full((self.capacity, self.vec), fill, cp.float32) for _ in range(n_states)]
        self.prev_time = (cp.ones(self.capacity, cp.uint64) if self.update_type == "LazyGlobal"
                          else cp.zeros(1, cp.uint64))
        self.times = 0
        self._ws: _Workspace | None = None
        self._saved: tuple[DeviceSparse, int] | None = None
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

    @property
    def size(self) -> int:
        """Rows in use (reads the device count: synchronises)."""
        if self.one_hot:
            return self.capacity
        return int(cupy().asnumpy(self.d_size)[0])

    # -- kernels --------------------------------------------------------------------------------
    def _launch(self, fn: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: tuple) -> None:
        self.kernels(self.spec.spec, fn)(grid, block, args)
        if debug_level() >= 1 and profile.active() is None:
            sync_check(f"embedding '{self.name}' kernel {fn}")

    def _one(self, fn: str, args: tuple) -> None:
        self._launch(fn, (1, 1, 1), (1, 1, 1), args)

    def _workspace(self, n: int) -> _Workspace:
        if self._ws is None or self._ws.n < n:
            self._ws = _Workspace(cupy(), max(n, 1), self.vec, not self.atomic)
        return self._ws

    def _scan(self, ws: _Workspace, n: int) -> None:
        """ws.incl = inclusive prefix sums of ws.flag[:n]."""
        nblocks = max(1, -(-n // SCAN_BLOCK))
        self._launch("scan1", (nblocks, 1, 1), (SCAN_BLOCK, 1, 1), (ws.flag, ws.incl, scalar(n, "long long"),
                                                                    ws.sums))
        if nblocks > 1:
            self._launch("scan2", (1, 1, 1), (SCAN_BLOCK, 1, 1), (ws.sums, scalar(nblocks, "long long")))
            self._launch("scan3", (nblocks, 1, 1), (SCAN_BLOCK, 1, 1), (ws.incl, scalar(n, "long long"), ws.sums))

    def _lookup(self, keys: Any, n: int, rows: Any) -> None:
        if n:
            self._launch("lookup", _grid(n, BLOCK), (BLOCK, 1, 1),
                         (keys, scalar(n, "long long"), self.slot_keys, self.slot_rows,
                          scalar(self.mask, "unsigned long long"), rows))

    def _insert_host(self, new_keys: np.ndarray, slots: np.ndarray) -> None:
        """Give the (distinct, absent) ``new_keys`` the next rows, in order."""
        cp = cupy()
        count = int(new_keys.shape[0])
        size = self.size
        if size + count > self.capacity:
            raise _table_full(self.name, self.capacity, size + count)
        rows = np.arange(size, size + count, dtype=np.int64)
        d_keys, d_rows = cp.asarray(new_keys), cp.asarray(rows)
        self._launch("insert", _grid(count, BLOCK), (BLOCK, 1, 1),
                     (d_keys, d_rows, scalar(count, "long long"), self.slot_keys, self.slot_rows,
                      scalar(self.mask, "unsigned long long")))
        self.row_keys[size:size + count] = d_keys
        self.row_slot[size:size + count] = cp.asarray(np.asarray(slots, np.uint64))
        self.d_size.fill(size + count)

    # -- errors ---------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise the error a past forward recorded on the device (then clear it): a one-hot key outside its
        slot's range (ValueError) or a full hash table (TableFullError). Synchronises."""
        cp = cupy()
        e = cp.asnumpy(self.err)
        if e[0] == NO_BAD and e[3] == 0:
            return
        self.err.set(np.array([NO_BAD, 0, 0, 0], np.uint64))
        if e[3]:
            raise _table_full(self.name, self.capacity, int(e[3]))
        seg = int(e[2])
        slot_num = max(1, int(self.slot_sizes.shape[0]))
        slot = seg % slot_num
        key = int(np.uint64(e[1]).view(np.int64))
        raise ValueError(f"embedding '{self.name}': key {key} of slot {slot} is outside "
                         f"[0, {self.slot_sizes[slot]}) given by slot_size_array (sample {seg // slot_num}, "
                         f"key position {int(e[0])})")

    # -- forward --------------------------------------------------------------------------------
    def forward(self, sparse: SparseBatch, training: bool, out: Any | None = None) -> Any:
        """Combined vectors into ``out`` (n·slot_num × vec, the output dtype), returned; keeps what backward
        needs. Training inserts unseen keys (hash tables). Errors raise here."""
        offsets = np.asarray(sparse.row_offsets)
        if (offsets.shape[0] - 1) % sparse.slot_num:
            raise ValueError(f"embedding '{self.name}': row_offsets has {offsets.shape[0]} entries, not "
                             f"n·slot_num + 1 with slot_num={sparse.slot_num}")
        check_sparse(sparse, (offsets.shape[0] - 1) // sparse.slot_num, self.name)
        out = self.forward_device(device_sparse(sparse), training, out)
        self.check()
        return out

    def forward_device(self, ds: DeviceSparse, training: bool, out: Any | None = None) -> Any:
        """The forward of keys already on the device; no host synchronisation (errors wait for check())."""
        cp = cupy()
        if self.one_hot and ds.slot_num != self.slot_sizes.shape[0]:
            raise ValueError(f"embedding '{self.name}': the input has {ds.slot_num} slots but "
                             f"slot_size_array has {self.slot_sizes.shape[0]} entries")
        n, nseg = ds.capacity, ds.nseg
        if out is None:
            out = cp.empty((nseg, self.vec), device_dtype(self.spec.out_dtype))
        isz = ITEMSIZE.get(self.spec.out_dtype, 4)
        cost = n * (8 * 4) + n * self.vec * 4 + nseg * self.vec * isz
        with profile.region(f"{self.name}: embedding.forward", "embedding", 0.0, float(cost)):
            ws = self._workspace(n)
            args_seg = (ds.offsets, scalar(nseg, "long long"))
            if self.one_hot:
                if nseg:
                    self._launch("onehot", _grid(nseg, BLOCK), (BLOCK, 1, 1),
                                 (ds.keys, ds.offsets, scalar(nseg, "long long"), scalar(ds.slot_num, "int"),
                                  self._d_slot_offsets, self._d_slot_sizes, ws.rows, self.err))
                self._one("bad_info", (ds.keys, ds.offsets, scalar(nseg, "long long"), self.err))
            elif training:
                mask = scalar(self.mask, "unsigned long long")
                grid = _grid(n, BLOCK)
                self._launch("claim", grid, (BLOCK, 1, 1), (ds.keys, *args_seg, self.slot_keys, self.slot_rows,
                                                            mask, ws.rows, ws.kslot))
                self._launch("mark", grid, (BLOCK, 1, 1), (*args_seg, scalar(n, "long long"), self.slot_rows,
                                                           ws.kslot, ws.flag, ws.first))
                self._scan(ws, n)
                self._launch("assign", grid, (BLOCK, 1, 1),
                             (ds.keys, *args_seg, scalar(max(1, ds.slot_num), "int"), self.slot_rows, ws.kslot,
                              ws.flag, ws.incl, ws.first, self.d_size, scalar(self.capacity, "long long"), ws.rows,
                              self.row_keys, self.row_slot, self.err))
                self._one("bump", (*args_seg, scalar(n, "long long"), ws.incl, self.d_size,
                                   scalar(self.capacity, "long long")))
            else:
                self._lookup(ds.keys, n, ws.rows)
            if nseg:
                self._launch("segments", _grid(nseg, BLOCK), (BLOCK, 1, 1), (*args_seg, ws.seg))
                vn = self.vec // vector_width(self.vec)
                self._launch("combine", _grid(nseg * vn, BLOCK), (BLOCK, 1, 1),
                             (ds.offsets, ws.rows, scalar(nseg, "long long"), self.table, out))
        self._saved = (ds, nseg)
        self._grads = None
        return out

    # -- per-step hyper-parameters ------------------------------------------------------------------
    def _hyper(self, lr: float, scaler: float) -> None:
        """Advance the optimizer step and write lr, alpha, 1/scaler and the step to device memory."""
        if scaler == 0:
            raise ValueError(f"embedding '{self.name}': scaler=0 is not allowed (gradients are divided "
                             f"by it)")
        alpha = 0.0
        if self.optimizer == "Adam":
            self.times += 1
            h = self.hyper
            alpha = lr * np.sqrt(1.0 - h["beta2"] ** self.times) / (1.0 - h["beta1"] ** self.times)
        self._one("set_hyper", (self.hp, self.hstep, scalar(lr, "float"), scalar(alpha, "float"),
                                scalar(1.0 / scaler, "float"), scalar(self.times, "unsigned long long")))

    def prepare(self, lr: float, scaler: float = 1.0) -> None:
        """Before a fast-path step (outside any CUDA graph): this step's hyper-parameters."""
        self._hyper(lr, scaler)

    # -- fast path: backward fused with the update -----------------------------------------------
    def backward_update(self, grad: Any) -> None:
        """Apply this step's sparse update from the output gradient ``grad`` (n·slot_num × vec) of the last
        forward_device, with the hyper-parameters of the last prepare(). Graph-capturable."""
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward before forward")
        ds, nseg = self._saved
        n = ds.capacity
        ws = self._workspace(n)
        args_seg = (ds.offsets, scalar(nseg, "long long"))
        isz = ITEMSIZE.get(self.spec.out_dtype, 4)
        states = len(self.states)
        if not n:
            return
        if self.atomic:  # a thread per VW elements of a key
            cost = n * self.vec * (isz + 8) + n * 16
            with profile.region(f"{self.name}: embedding.backward+update", "embedding", 0.0, float(cost)):
                self._launch("scatter_sgd", _grid(n * self.vec // vector_width(self.vec), BLOCK), (BLOCK, 1, 1),
                             (*args_seg, ws.rows, ws.seg, grad, self.table, self.hp))
            return
        cp = cupy()
        grid = _grid(n, BLOCK)
        nn, sentinel = scalar(n, "long long"), scalar(self.capacity, "long long")
        with profile.region(f"{self.name}: embedding.backward sort", "embedding", 0.0, float(n * 40)):
            self._launch("sort_keys", grid, (BLOCK, 1, 1), (*args_seg, nn, ws.rows, sentinel, ws.skey))
            order = cp.argsort(ws.skey[:n])  # stable: a row's keys stay in batch order
        with profile.region(f"{self.name}: embedding.backward reduce", "embedding", 0.0,
                            float(n * self.vec * (isz + 4) + n * 48)):
            self._launch("run_heads", grid, (BLOCK, 1, 1), (order, ws.skey, nn, sentinel, ws.flag))
            self._scan(ws, n)
            self._launch("run_starts", grid, (BLOCK, 1, 1), (order, ws.skey, nn, sentinel, ws.flag, ws.incl,
                                                             ws.starts, ws.urows, ws.nuniq, self.hi))
            self._launch("run_reduce", _grid(n * self.vec, BLOCK), (BLOCK, 1, 1),
                         (order, ws.seg, ws.starts, ws.nuniq, ds.offsets, grad, ws.ugrad))
        with profile.region(f"{self.name}: embedding.update", "embedding", 0.0,
                            float(n * self.vec * 4 * (2 + 2 * (1 + states)))):
            self._apply(ws.urows, ws.ugrad, ws.nuniq, n)

    def _apply(self, urows: Any, ugrad: Any, nuniq: Any, n: int) -> None:
        """The sparse optimizer on rows urows[:nuniq] with gradients ugrad (device count nuniq; at most n)."""
        s0 = self.states[0] if self.states else self.table
        s1 = self.states[1] if len(self.states) > 1 else self.table
        global_ = self.update_type == "Global" and self.optimizer in ("MomentumSGD", "Nesterov", "Adam")
        span_grid = _grid(self.capacity * self.vec, BLOCK)
        if global_:
            self._launch("update_span", span_grid, (BLOCK, 1, 1), (self.table, s0, s1, self.hi, self.hp, scalar(0, "int")))
        self._launch("update_rows", _grid(max(n, 1) * self.vec, BLOCK), (BLOCK, 1, 1),
                     (self.table, s0, s1, self.prev_time, urows, ugrad, nuniq, self.hp, self.hstep))
        if self.update_type == "LazyGlobal" and self.optimizer == "Adam":
            self._launch("touch", _grid(max(n, 1), BLOCK), (BLOCK, 1, 1), (self.prev_time, urows, nuniq, self.hstep))
        if global_ and self.optimizer in ("MomentumSGD", "Adam"):
            self._launch("update_span", span_grid, (BLOCK, 1, 1), (self.table, s0, s1, self.hi, self.hp, scalar(1, "int")))

    # -- host API: backward returned to the caller, then update -----------------------------------
    def backward(self, grad: Any) -> tuple[Any, Any]:
        """(unique rows int64 ascending, their summed gradients float32 (u, vec)) on the device; kept for
        :meth:`update`. ``grad`` is the output gradient (n·slot_num × vec)."""
        with profile.region(f"{self.name}: embedding.backward", "embedding"):
            return self._backward(grad)

    def _backward(self, grad: Any) -> tuple[Any, Any]:
        cp = cupy()
        if self._saved is None:
            raise RuntimeError(f"embedding '{self.name}': backward() before forward()")
        ds, nseg = self._saved
        nkeys = int(cp.asnumpy(ds.offsets[nseg:nseg + 1])[0]) if nseg else 0
        ws = self._workspace(ds.capacity)
        rows, seg = ws.rows[:nkeys], ws.seg
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
                     (keys_sorted, seg, starts, scalar(nunique, "long long"), ds.offsets,
                      grad.reshape(nseg, self.vec), out))
        self._grads = (unique_rows.astype(cp.int64), out)
        return self._grads

    def update(self, lr: float, scaler: float = 1.0, rows: Any | None = None,
               grads: Any | None = None) -> None:
        """One optimizer step on the rows of the last backward (or the given distinct ``rows``/``grads``)."""
        with profile.region(f"{self.name}: embedding.update", "embedding"):
            self._update(lr, scaler, rows, grads)

    def _update(self, lr: float, scaler: float, rows: Any | None, grads: Any | None) -> None:
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
        self._hyper(lr, scaler)
        if nrows:
            cp.maximum(self.hi, rows.max() + 1, out=self.hi)
        self._apply(rows if nrows else cp.zeros(1, cp.int64), grads if nrows else cp.zeros((1, self.vec), cp.float32),
                    cp.asarray(np.array([nrows], np.int64)), max(nrows, 1))

    # -- dump -----------------------------------------------------------------------------------
    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64, vectors float32 (k, vec)) in row order, as the cpu table's dump()."""
        cp = cupy()
        if self.one_hot:
            return np.arange(self.capacity, dtype=np.int64), cp.asnumpy(self.table)
        size = self.size
        keys = cp.asnumpy(self.row_keys[:size]).view(np.int64).copy()
        return keys, cp.asnumpy(self.table[:size])

    def slot_ids(self) -> np.ndarray:
        if self.one_hot:
            return np.repeat(np.arange(self.slot_sizes.shape[0], dtype=np.uint64), self.slot_sizes)
        return cupy().asnumpy(self.row_slot[:self.size]).copy()

    def state_arrays(self) -> list[np.ndarray]:
        """The optimizer state buffers (host copies), as SparseOptimizer.states()."""
        return [cupy().asnumpy(s) for s in self.states]
