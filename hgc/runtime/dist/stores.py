"""The rows and sparse optimizer of one embedding shard where its GPU keeps them: a *store*.

The multi-GPU cuda runtime (:mod:`hgc.runtime.dist.device_tables`) keeps the key → row bookkeeping of every
shard on the host, as the cpu target's shards do, and asks the store for the array work:

* ``combine(offsets, rows, table=None, low=False)`` — the sum of each CSR segment's rows (rows < 0 add
  nothing), float32 (``low``: in the model's precision, where the store has a module in it);
* ``row_grads(offsets, rows, seg_grads)`` — (distinct rows ascending, the sum of their keys' segment
  gradients), keys in batch order within a row: deterministic;
* ``apply(rows, grads, lr, scaler)`` — one step of the table's sparse optimizer (an empty step still counts);
* ``key_grads(offsets, rows, seg_grads)`` — what ``apply`` takes for a shard's keys: the row sums, or, for
  SGD with atomic updates on the GPU, the per-key gradients themselves (applied by one scatter kernel with
  no sort and no synchronisation, as the single-GPU table does);
* ``gather(rows)``, and host reads and writes of rows, optimizer states and LazyGlobal step marks.

:class:`CupyStore` holds a :class:`~hgc.runtime.cuda.embedding.DeviceEmbedding` in one-hot mode (one slot of
``capacity`` rows, combiner sum) and runs its generated kernels (``combine``, ``grad_reduce``, the optimizer)
rendered in float32 whatever the model's precision. With a second module in the model's precision (``low``),
``combine(..., low=True)`` writes complete vectors rounded as the single-GPU table rounds them, and
``key_grads`` / ``apply`` take gradients of that precision (atomic SGD reads them as they are): vectors and
gradients then cross between GPUs at half the bytes, with no conversion pass on either side.
:class:`HostStore` does the same with NumPy and the cpu target's SparseOptimizer — the fake GPU of the tests.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from hgc.codegen.plan import EmbeddingTableSpec, KernelSpec, Params
from hgc.runtime.dist.places import Place
from hgc.runtime.dist.shard import row_grads, segment_sums, shard_optimizer
from hgc.runtime.optim.sparse import SparseOptimizer

BLOCK = 256
MAX_BLOCKS = 8192
WARP_BLOCK = (32, 8, 1)


def _grid(n: int, per_block: int) -> tuple[int, int, int]:
    return (max(1, min(MAX_BLOCKS, -(-n // per_block))), 1, 1)


def shard_kernel_spec(table_spec: KernelSpec, dtype: str = "float32") -> KernelSpec:
    """The embedding module of a table's shards: the table's own template parameters, but ``dtype`` in and out
    and a plain sum (the mean's 1/nnz over the whole batch is applied by the exchange code)."""
    params = Params({**dict(table_spec.params), "dtype": dtype, "combiner": "sum"})
    suffix = "" if dtype == "float32" else f"_{dtype}"
    return KernelSpec(table_spec.template, f"{table_spec.name}_shard{suffix}", params, table_spec.nodes,
                      table_spec.passes)


def to_float32(xp: Any, a: Any) -> Any:
    """A float32 copy of an array of the model's precision (bfloat16 is stored as uint16 bits)."""
    if a.dtype == xp.float32:
        return a.copy()
    if a.dtype == xp.uint16:
        return (a.astype(xp.uint32) << 16).view(xp.float32)
    return a.astype(xp.float32)


def from_float32(xp: Any, src: Any, out: Any) -> None:
    """out (the model's precision) = src, rounded from float32 as the single-GPU table rounds (a plain copy
    when src already has out's dtype)."""
    if out.dtype == src.dtype:
        out[...] = src
    elif out.dtype == xp.uint16:
        from hgc.runtime.cuda.blas import round_to_low

        round_to_low(xp.ascontiguousarray(src, xp.float32), out, "bfloat16")
    else:
        out[...] = src.astype(out.dtype)


def storage_dtype(xp: Any, dtype: str) -> Any:
    """The array dtype that holds values of ``dtype`` (bfloat16 as its uint16 bits)."""
    return {"float32": xp.float32, "float16": xp.float16, "bfloat16": xp.uint16}[dtype]


class Store(ABC):
    """Rows (capacity × vec float32) and sparse optimizer of one shard on ``place``."""

    def __init__(self, place: Place, name: str, capacity: int, vec: int, ref_opt: SparseOptimizer) -> None:
        self.place, self.name = place, name
        self.capacity, self.vec = int(capacity), int(vec)
        self.ref_opt = ref_opt

    @property
    def lazy(self) -> bool:
        return self.ref_opt.update_type == "LazyGlobal" and self.ref_opt.optimizer == "Adam"

    @property
    @abstractmethod
    def times(self) -> int: ...

    @times.setter
    @abstractmethod
    def times(self, value: int) -> None: ...

    @abstractmethod
    def combine(self, offsets: Any, rows: Any, table: Any = None, low: bool = False) -> Any:
        """The segments' sums, float32 (``low``: in the model's precision where the store has a module in it)."""

    @abstractmethod
    def row_grads(self, offsets: Any, rows: Any, seg_grads: Any) -> tuple[Any, Any]: ...

    def key_grads(self, offsets: Any, rows: Any, seg_grads: Any) -> tuple[Any, Any]:
        """What :meth:`apply` takes for the keys ``rows`` (CSR ``offsets``) and their segments' gradients:
        the summed row gradients (:meth:`row_grads`), unless the store can apply per-key gradients itself."""
        return self.row_grads(offsets, rows, seg_grads)

    @abstractmethod
    def apply(self, rows: Any, grads: Any, lr: float, scaler: float) -> None:
        """One optimizer step from (distinct rows, their gradients) or what :meth:`key_grads` returned."""

    @abstractmethod
    def gather(self, rows: Any) -> Any: ...

    @abstractmethod
    def read(self, rows: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def state_arrays(self) -> list[np.ndarray]:
        """Host copies of the whole state buffers, one per state kind."""

    @abstractmethod
    def load_state_arrays(self, states: list[np.ndarray]) -> None:
        """Replace the state buffers (as SparseOptimizer.load_states, including the Global update's span)."""

    @abstractmethod
    def prev_time(self) -> np.ndarray | None:
        """LazyGlobal Adam: a host copy of every row's last-update step; else None."""

    @abstractmethod
    def set_prev_time(self, rows: np.ndarray, values: np.ndarray) -> None: ...


class KeyGradients:
    """Per-key gradients kept for an update straight from the keys (SGD with atomic updates): the keys' rows
    (CSR ``offsets``, rows < 0 skipped) and their segments' gradients (float32, or the model's precision when
    ``low``)."""

    def __init__(self, offsets: Any, rows: Any, seg_grads: Any, low: bool = False) -> None:
        self.offsets, self.rows, self.seg_grads, self.low = offsets, rows, seg_grads, low


class FeedGradients:
    """The output gradients of a one-hot shard's keys where every local GPU's executor left them (the feed
    buffers, read in place by the owner's atomic SGD): ``rows`` (n · ncols, sample-major), the slots ``cols``
    of ``slot_num``, the buffers' device addresses ``ptr`` and their samples' starts ``lo`` (nbuf + 1)."""

    def __init__(self, rows: Any, n: int, cols: Any, slot_num: int, ptr: Any, lo: Any, nbuf: int, low: bool) -> None:
        self.rows, self.n, self.cols, self.slot_num = rows, n, cols, slot_num
        self.ptr, self.lo, self.nbuf, self.low = ptr, lo, nbuf, low


class HostStore(Store):
    """A store in host memory: NumPy rows and the cpu target's SparseOptimizer."""

    def __init__(self, place: Place, name: str, capacity: int, vec: int, ref_opt: SparseOptimizer) -> None:
        super().__init__(place, name, capacity, vec, ref_opt)
        self.rows = np.zeros((self.capacity, self.vec), np.float32)
        self.opt = shard_optimizer(ref_opt, self.capacity)

    @property
    def times(self) -> int:
        return self.opt.times

    @times.setter
    def times(self, value: int) -> None:
        self.opt.times = int(value)

    def combine(self, offsets: Any, rows: Any, table: Any = None, low: bool = False) -> np.ndarray:
        src = self.rows if table is None else np.ascontiguousarray(table, np.float32)
        return segment_sums(np.ascontiguousarray(offsets, np.int64), np.ascontiguousarray(rows, np.int64),
                            src).astype(np.float32)

    def row_grads(self, offsets: Any, rows: Any, seg_grads: Any) -> tuple[np.ndarray, np.ndarray]:
        return row_grads(np.ascontiguousarray(offsets, np.int64), np.ascontiguousarray(rows, np.int64),
                         np.asarray(seg_grads, np.float64).reshape(-1, self.vec), self.vec)

    def apply(self, rows: Any, grads: Any, lr: float, scaler: float) -> None:
        self.opt.update(self.rows, np.asarray(rows, np.int64), np.asarray(grads, np.float32), lr, scaler)

    def gather(self, rows: Any) -> np.ndarray:
        return self.rows[np.asarray(rows, np.int64)]

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.rows[np.asarray(rows, np.int64)].copy()

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        self.rows[np.asarray(rows, np.int64)] = np.asarray(vectors, np.float32).reshape(-1, self.vec)

    def state_arrays(self) -> list[np.ndarray]:
        return [s.copy() for s in self.opt.states()]

    def load_state_arrays(self, states: list[np.ndarray]) -> None:
        self.opt.load_states(states)

    def prev_time(self) -> np.ndarray | None:
        return self.opt.prev_time.copy() if self.lazy else None

    def set_prev_time(self, rows: np.ndarray, values: np.ndarray) -> None:
        if self.lazy:
            self.opt.prev_time[np.asarray(rows, np.int64)] = np.asarray(values, np.uint64)


class CupyStore(Store):
    """A store on a CUDA device: a one-hot DeviceEmbedding of ``capacity`` rows and its optimizer states,
    driven through the shard kernel module (``kernels`` must hold ``spec``, see :func:`shard_kernel_spec`)."""

    def __init__(self, place: Place, name: str, capacity: int, vec: int, ref_opt: SparseOptimizer,
                 optimizer: Mapping[str, Any], spec: KernelSpec, kernels: Any, low: KernelSpec | None = None) -> None:
        super().__init__(place, name, capacity, vec, ref_opt)
        #: the module in the model's precision (None: float32 only) and the array dtype of its values
        self.low = low
        self.low_dtype = None if low is None else storage_dtype(place.xp, str(low.params["dtype"]))
        from hgc.runtime.cuda.embedding import DeviceEmbedding, vector_width

        self.cp = place.xp
        table = EmbeddingTableSpec(name, "LocalizedSlotSparseEmbeddingOneHot", "", "", self.vec, 1, "sum",
                                   self.capacity, (self.capacity,), True, Params(dict(optimizer)), spec.name,
                                   "float32")
        with place:
            self.emb = DeviceEmbedding(table, kernels, self.cp.zeros((self.capacity, self.vec), self.cp.float32))
        self.vn = self.vec // vector_width(self.vec)

    def _launch(self, fn: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: tuple,
                low: bool = False) -> None:
        from hgc.runtime.cuda.device import debug_level, sync_check

        spec = self.low.name if low and self.low is not None else self.emb.spec.spec
        self.emb.kernels(spec, fn)(grid, block, args)
        if debug_level() >= 1:
            sync_check(f"embedding shard '{self.name}' kernel {fn}")

    @property
    def times(self) -> int:
        return int(self.emb.times)

    @times.setter
    def times(self, value: int) -> None:
        self.emb.times = int(value)

    def combine(self, offsets: Any, rows: Any, table: Any = None, low: bool = False) -> Any:
        """float32 sums, or (``low``, with a low module) sums rounded to the model's precision."""
        cp = self.cp
        nseg = int(offsets.shape[0]) - 1
        low = low and self.low is not None
        with self.place:
            src = self.emb.table if table is None else cp.ascontiguousarray(table, cp.float32)
            out = cp.empty((nseg, self.vec), self.low_dtype if low else cp.float32)
            if nseg:
                self._launch("combine", _grid(nseg * self.vn, BLOCK), (BLOCK, 1, 1),
                             (cp.ascontiguousarray(offsets, cp.int64), cp.ascontiguousarray(rows, cp.int64),
                              np.int64(nseg), src, out), low=low)
        return out

    def row_grads(self, offsets: Any, rows: Any, seg_grads: Any) -> tuple[Any, Any]:
        cp = self.cp
        with self.place:
            offsets = cp.ascontiguousarray(offsets, cp.int64)
            rows = cp.ascontiguousarray(rows, cp.int64)
            nkeys = int(rows.shape[0])
            kidx = cp.nonzero(rows >= 0)[0].astype(cp.int64) if nkeys else cp.zeros(0, cp.int64)
            if kidx.shape[0] == 0:
                return cp.zeros(0, cp.int64), cp.zeros((0, self.vec), cp.float32)
            seg = cp.searchsorted(offsets[1:], cp.arange(nkeys, dtype=cp.int64), side="right").astype(cp.int64)
            krows = rows[kidx]
            order = cp.argsort(krows * nkeys + kidx)  # by row, then key position: deterministic sums
            unique_rows, counts = cp.unique(krows[order], return_counts=True)
            starts = cp.concatenate([cp.zeros(1, cp.int64), cp.cumsum(counts).astype(cp.int64)])
            nunique = int(unique_rows.shape[0])
            out = cp.empty((nunique, self.vec), cp.float32)
            grads = cp.ascontiguousarray(seg_grads, cp.float32).reshape(-1, self.vec)
            self._launch("grad_reduce", _grid(nunique, 8), WARP_BLOCK,
                         (kidx[order], seg, starts, np.int64(nunique), offsets, grads, out))
        return unique_rows.astype(cp.int64), out

    def onehot_rows(self, keys: Any, n: int, slot_num: int, cols: Any, slot_offsets: Any, slot_sizes: Any,
                    first: Any, rec: Any) -> Any:
        """The rows of the keys of slots ``cols`` in a batch of ``n`` samples with one key per (sample, slot):
        (n · len(cols),) int64, sample-major; a key outside its slot's size is counted in ``rec`` (int64
        [count, key, slot, sample] of the first one) through the scratch ``first`` (uint64 [1], all ones)."""
        cp = self.cp
        ncols = int(cols.shape[0])
        with self.place:
            rows = cp.empty(n * ncols, cp.int64)
            if n * ncols:
                self._launch("onehot_cols", _grid(n * ncols, BLOCK), (BLOCK, 1, 1),
                             (keys, np.int64(n), np.int32(slot_num), cols, np.int32(ncols), slot_offsets, slot_sizes,
                              rows, first))
                self._launch("note_bad_cols", (1, 1, 1), (32, 1, 1), (keys, np.int32(slot_num), first, rec))
        return rows

    def gather_to(self, rows: Any, n: int, cols: Any, slot_num: int, ptr: Any, lo: Any, nbuf: int, low: bool) -> None:
        """Rows ``rows`` (n samples × the slots ``cols``, sample-major) rounded into the feed buffers ``ptr``
        (device addresses; buffer d holds samples [lo[d], lo[d + 1]) × slot_num × vec) at their slots."""
        count = n * int(cols.shape[0])
        if count:
            with self.place:
                self._launch("gather_to", _grid(count * self.vn, BLOCK), (BLOCK, 1, 1),
                             (rows, np.int64(n), cols, np.int32(cols.shape[0]), np.int32(slot_num), self.emb.table, ptr,
                              lo, np.int32(nbuf)), low=low)

    def key_grads(self, offsets: Any, rows: Any, seg_grads: Any) -> tuple[Any, Any]:
        """SGD with atomic updates (HugeCTR's default for SGD) applies every key's gradient as it comes, with
        no sort and no synchronisation (the single-GPU table's fast path); other optimizers sum per row."""
        cp = self.cp
        low = self.low is not None and seg_grads.dtype == self.low_dtype and self.low_dtype != cp.float32
        if self.emb.atomic:
            with self.place:
                grads = cp.ascontiguousarray(seg_grads) if low else cp.ascontiguousarray(seg_grads, cp.float32)
                return KeyGradients(cp.ascontiguousarray(offsets, cp.int64), cp.ascontiguousarray(rows, cp.int64),
                                    grads.reshape(-1, self.vec), low), None
        if low:
            with self.place:
                seg_grads = to_float32(cp, seg_grads)
        return self.row_grads(offsets, rows, seg_grads)

    def apply(self, rows: Any, grads: Any, lr: float, scaler: float) -> None:
        with self.place:
            if isinstance(rows, FeedGradients):  # atomic SGD from the feed buffers in place
                self.emb.prepare(lr, scaler)
                f = rows
                count = f.n * int(f.cols.shape[0])
                if count:
                    self._launch("sgd_from", _grid(count * self.vn, BLOCK), (BLOCK, 1, 1),
                                 (f.rows, np.int64(f.n), f.cols, np.int32(f.cols.shape[0]), np.int32(f.slot_num), f.ptr,
                                  f.lo, np.int32(f.nbuf), self.emb.table, self.emb.hp), low=f.low)
                return
            if not isinstance(rows, KeyGradients):
                self.emb.update(lr, scaler, rows=rows, grads=grads)
                return
            self.emb.prepare(lr, scaler)  # this step's lr and 1/scaler into device memory
            nkeys, nseg = int(rows.rows.shape[0]), int(rows.offsets.shape[0]) - 1
            if not nkeys or not nseg:
                return
            seg = self.cp.empty(nkeys, self.cp.int64)
            self._launch("segments", _grid(nseg, BLOCK), (BLOCK, 1, 1), (rows.offsets, np.int64(nseg), seg))
            self._launch("scatter_sgd", _grid(nkeys * self.vn, BLOCK), (BLOCK, 1, 1),
                         (rows.offsets, np.int64(nseg), rows.rows, seg, rows.seg_grads, self.emb.table, self.emb.hp),
                         low=rows.low)

    def gather(self, rows: Any) -> Any:
        with self.place:
            return self.emb.table[self.cp.asarray(rows, self.cp.int64)]

    def read(self, rows: np.ndarray) -> np.ndarray:
        with self.place:
            return self.place.get(self.emb.table[self.cp.asarray(np.asarray(rows, np.int64))])

    def write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        if not rows.size:
            return
        with self.place:
            self.emb.table[self.cp.asarray(rows)] = self.cp.asarray(
                np.ascontiguousarray(vectors, np.float32).reshape(-1, self.vec))

    def state_arrays(self) -> list[np.ndarray]:
        return [self.place.get(s) for s in self.emb.states]

    def load_state_arrays(self, states: list[np.ndarray]) -> None:
        emb = self.emb
        kinds = self.ref_opt.state_kinds
        if len(states) != len(emb.states):
            raise ValueError(f"sparse {self.ref_opt.optimizer}: expected {len(emb.states)} state kind(s) "
                             f"{list(kinds)}, got {len(states)}")
        used = np.zeros(self.capacity, bool)
        with self.place:
            for kind, mine, theirs in zip(kinds, emb.states, states):
                arr = np.ascontiguousarray(theirs, np.float32)
                if arr.size != mine.size:
                    raise ValueError(f"sparse {self.ref_opt.optimizer}: state '{kind}' has {arr.size} values, "
                                     f"expected {self.capacity}×{self.vec}")
                arr = arr.reshape(mine.shape)
                mine.set(arr)
                used |= np.any(arr != 0, axis=1)
            emb.hi.fill(int(np.flatnonzero(used)[-1]) + 1 if used.any() else 0)

    def prev_time(self) -> np.ndarray | None:
        return self.place.get(self.emb.prev_time) if self.lazy else None

    def set_prev_time(self, rows: np.ndarray, values: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        if self.lazy and rows.size:
            with self.place:
                self.emb.prev_time[self.cp.asarray(rows)] = self.cp.asarray(np.asarray(values, np.uint64))
