"""Batches on the device: pinned host double buffers, a copy stream, and events that order the copies with
the compute stream, so the host-to-device copy of batch i+1 runs while batch i computes.

* :class:`DeviceSparse` / :class:`DeviceBatch`: a batch's arrays in device memory (keys widened to int64,
  the CSR row offsets, labels and dense features in float32) plus the event that says they have arrived.
* :class:`Stager`: ``put(batch)`` copies a host :class:`~hgc.runtime.data.batch.Batch` into the next of
  ``depth`` pinned buffers (host work; 32-bit keys stay 32-bit there, half the bytes, and are widened to int64
  on the device after the copy; large parts already in page-locked memory, :func:`pinned_empty`, are copied
  from where they are, without the fill, and kept alive until the slot is reused), starts the asynchronous
  copies of that buffer into the matching device slot on its own non-blocking stream, records the slot's
  ``ready`` event and returns the DeviceBatch at once. A slot is written again only after the compute stream recorded ``consumed`` on it
  (:meth:`DeviceBatch.release`), so nothing is overwritten while a step still reads it.
* :func:`to_device`: a one-off, persistent device copy of a host batch (in-memory data, tests).

Nothing here synchronises the host with the device, except a put() that must wait for the slot it reuses
(the step that read it ``depth`` batches ago), the very first copy of a pinned buffer, and the first one-hot
input of a larger size (its offsets 0, 1, 2, ... are made once on the device and never copied).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgc.runtime.cuda.device import cupy
from hgc.runtime.data.batch import Batch, SparseBatch

H2D = 1  # cudaMemcpyHostToDevice
D2H = 2  # cudaMemcpyDeviceToHost
D2D = 3  # cudaMemcpyDeviceToDevice

#: host arrays at least this large are copied into the pinned buffer by several threads (NumPy releases the
#: GIL while it copies): a 65,536-sample DLRM batch holds 13.6 MB of keys, ~2 ms for one thread
PARALLEL_COPY_BYTES = 4 << 20
_COPY_THREADS = max(1, min(8, (os.cpu_count() or 1)))
_copy_pool: ThreadPoolExecutor | None = None


def fill(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[:] = src`` (same length, casting as ``np.copyto(casting="unsafe")``), in contiguous chunks on a
    thread pool when large."""
    global _copy_pool
    n = dst.shape[0]
    if dst.nbytes < PARALLEL_COPY_BYTES or _COPY_THREADS == 1:
        np.copyto(dst, src, casting="unsafe")
        return
    if _copy_pool is None:
        _copy_pool = ThreadPoolExecutor(_COPY_THREADS, thread_name_prefix="hgc-stage")
    step = -(-n // _COPY_THREADS)
    jobs = [_copy_pool.submit(np.copyto, dst[i:i + step], src[i:i + step], casting="unsafe")
            for i in range(0, n, step)]
    for j in jobs:
        j.result()


@dataclass
class DeviceSparse:
    """One sparse input on the device: ``keys`` (int64, at least the batch's key count), ``offsets``
    (int64, nseg + 1 entries, CSR over (sample, slot) rows sample-major)."""

    keys: Any
    offsets: Any
    nseg: int
    slot_num: int
    nkeys: int

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[0])


@dataclass
class DeviceBatch:
    """A batch resident on the device. ``n`` rows (``size`` of them real); ``ready`` is recorded once its
    arrays are complete (None: already complete); ``consumed`` is recorded by whoever last read it."""

    n: int
    size: int
    label: Any
    dense: Any
    sparse: list[DeviceSparse]
    ready: Any = None
    consumed: Any = None

    def wait(self, stream: Any) -> None:
        """Make ``stream`` wait until the batch's copies are done."""
        if self.ready is not None:
            stream.wait_event(self.ready)

    def release(self, stream: Any) -> None:
        """Record on ``stream`` that the work reading this batch has been issued (its slot may be refilled
        once that work has run)."""
        if self.consumed is not None:
            self.consumed.record(stream)


def key_array(keys: np.ndarray) -> np.ndarray:
    """Keys as int64 values (uint64 keys keep their bit patterns, as the hash tables read them)."""
    k = np.ascontiguousarray(keys).reshape(-1)
    if k.dtype.kind not in "iu":
        raise ValueError(f"keys must be an integer array, got dtype {k.dtype}")
    if k.dtype == np.uint64:
        return k.view(np.int64)
    return k.astype(np.int64, copy=False)


def check_sparse(sb: SparseBatch, n: int, name: str = "") -> None:
    """The CSR shape rules of a sparse input of an n-row batch."""
    offsets = sb.row_offsets
    if offsets.shape[0] != n * sb.slot_num + 1:
        raise ValueError(f"sparse input {name!r}: row_offsets has {offsets.shape[0]} entries, not n·slot_num + 1 "
                         f"= {n * sb.slot_num + 1} (n={n}, slot_num={sb.slot_num})")
    if int(offsets[-1]) != int(np.asarray(sb.keys).reshape(-1).shape[0]):
        raise ValueError(f"sparse input {name!r}: row_offsets ends at {int(offsets[-1])} but there are "
                         f"{np.asarray(sb.keys).size} keys")


def device_sparse(sb: SparseBatch, nseg: int | None = None) -> DeviceSparse:
    """A device copy of one sparse input (synchronous upload; for one-off use)."""
    cp = cupy()
    offsets = np.ascontiguousarray(sb.row_offsets, np.int64)
    n = offsets.shape[0] - 1 if nseg is None else nseg
    keys = key_array(sb.keys)
    d_keys = cp.asarray(keys) if keys.size else cp.zeros(1, cp.int64)
    return DeviceSparse(d_keys, cp.asarray(offsets), int(n), int(sb.slot_num), int(keys.size))


def to_device(executor: Any, batch: Batch) -> DeviceBatch:
    """A persistent device copy of ``batch`` (label and dense in float32, keys in int64) — for in-memory
    data; ``executor`` is accepted for symmetry with the staging path and not used."""
    cp = cupy()
    label = cp.asarray(np.ascontiguousarray(batch.label, np.float32))
    dense = cp.asarray(np.ascontiguousarray(batch.dense, np.float32))
    sparse = []
    for sb in batch.sparse:
        check_sparse(sb, batch.n)
        sparse.append(device_sparse(sb))
    return DeviceBatch(int(batch.n), int(batch.size), label, dense, sparse)


def _pinned_dtype(name: str, arr: np.ndarray) -> np.dtype:
    """How a part of a batch lies in the pinned buffer: label and dense float32, 32-bit keys as they are,
    other keys and the offsets int64."""
    if name in ("label", "dense"):
        return np.dtype(np.float32)
    if name.startswith("keys"):
        if arr.dtype.kind not in "iu":
            raise ValueError(f"keys must be an integer array, got dtype {arr.dtype}")
        if arr.dtype.itemsize == 4:
            return arr.dtype
    return np.dtype(np.int64)


#: parts smaller than this are filled even from page-locked memory (one copy call beats several)
DIRECT_COPY_BYTES = 64 << 10


def pinned_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """A NumPy array in page-locked host memory (CuPy's pinned pool): a batch built in such arrays is copied
    to the device straight from them, without the Stager's fill (host work) — data readers and in-memory
    datasets allocate their batches here."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    mem = cupy().cuda.alloc_pinned_memory(max(n * dt.itemsize, 1))
    return np.frombuffer(mem, dt, n).reshape(shape)


def pinned_batch(batch: Batch) -> Batch:
    """``batch`` with its large arrays (label, dense, keys, the offsets of inputs that are not one-hot) copied
    into page-locked memory — the data readers' worker threads call it on the cuda target, so the training
    thread's Stager copies them to the device without a fill of its own."""

    def pin(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.nbytes < DIRECT_COPY_BYTES:
            return a
        out = pinned_empty(a.shape, a.dtype)
        np.copyto(out, a)
        return out

    sparse = [SparseBatch(sb.row_offsets if sb.one_hot else pin(sb.row_offsets), pin(sb.keys), sb.slot_num,
                          sb.one_hot) for sb in batch.sparse]
    return Batch(batch.size, pin(batch.label), pin(batch.dense), sparse)


def is_pinned(arr: np.ndarray) -> bool:
    """True when ``arr``'s memory is page-locked (allocated by CUDA or registered with it)."""
    cp = cupy()
    try:
        attrs = cp.cuda.runtime.pointerGetAttributes(arr.ctypes.data)
    except cp.cuda.runtime.CUDARuntimeError:
        return False
    return int(attrs.type) == 1  # cudaMemoryTypeHost


def _direct(arr: np.ndarray, kind: np.dtype) -> bool:
    """Whether a part can be copied to the device straight from ``arr``: as the device holds it (same width,
    floats as floats), contiguous, large, and page-locked."""
    same = arr.dtype == kind or (arr.dtype.kind in "iu" and kind.kind in "iu" and arr.dtype.itemsize == kind.itemsize)
    return (same and arr.nbytes >= DIRECT_COPY_BYTES and arr.flags.c_contiguous and is_pinned(arr))


def _aligned(nbytes: int) -> int:
    """``nbytes`` (at least 8) rounded up to 256: every array of a slot starts 256-byte aligned."""
    return -(-max(nbytes, 8) // 256) * 256


class _Slot:
    """One pinned host buffer and its device twin, with the events that guard them."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self.nbytes = 0
        self.host: Any = None   # pinned memory
        self.dev: Any = None    # device uint8 buffer
        self.ready = cp.cuda.Event(disable_timing=True)
        self.consumed = cp.cuda.Event(disable_timing=True)
        self.used = False
        self.keep: list[np.ndarray] = []  # page-locked sources of the slot's direct copies

    def ensure(self, host_bytes: int, dev_bytes: int, stream: Any) -> None:
        """At least ``host_bytes`` of pinned memory and ``dev_bytes`` (≥ host_bytes) on the device. The device
        buffer is allocated on the copy ``stream``: CuPy's pool hands a stream memory that is free in that
        stream's order, and memory from the caller's stream may still be in use by work queued there."""
        if host_bytes > self.nbytes:
            self.nbytes = _aligned(int(host_bytes * 1.25))
            self.host = self.cp.cuda.alloc_pinned_memory(self.nbytes)
        if self.dev is None or dev_bytes > self.dev.size:
            with stream:
                self.dev = self.cp.empty(max(self.nbytes, _aligned(int(dev_bytes * 1.25))), self.cp.uint8)


class Stager:
    """Double-buffered (``depth`` slots) asynchronous host-to-device copies of host batches."""

    def __init__(self, depth: int = 2) -> None:
        cp = cupy()
        self.cp = cp
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.slots = [_Slot(cp) for _ in range(max(1, depth))]
        self.index = 0
        self._iota: Any = None  # 0, 1, 2, ...: the offsets of every one-hot sparse input (never rewritten)

    def _one_hot_offsets(self, count: int) -> Any:
        """Device int64 0..count-1, shared by every batch (a one-hot input's offsets are not copied)."""
        if self._iota is None or self._iota.shape[0] < count:
            self._iota = self.cp.arange(max(count, 1 << 16), dtype=self.cp.int64)
            self.cp.cuda.Device().synchronize()  # once per size: then every stream may read it
        return self._iota[:count]

    def put(self, batch: Batch) -> DeviceBatch:
        """Start the copies of ``batch`` into the next slot and return its DeviceBatch (not yet ready)."""
        cp = self.cp
        n = int(batch.n)
        label = np.ascontiguousarray(batch.label, np.float32)
        dense = np.ascontiguousarray(batch.dense, np.float32)
        parts: list[tuple[str, np.ndarray]] = [("label", label.reshape(-1)), ("dense", dense.reshape(-1))]
        for i, sb in enumerate(batch.sparse):
            check_sparse(sb, n, str(i))
            parts.append((f"keys{i}", np.asarray(sb.keys).reshape(-1)))
            if not sb.one_hot:  # 0, 1, 2, ... need no copy: see _one_hot_offsets
                parts.append((f"offsets{i}", np.asarray(sb.row_offsets).reshape(-1)))
        # Parts already in page-locked memory (pinned_empty) are copied to the device straight from where
        # they are; the rest is filled into the slot's pinned buffer and copied in one piece. 32-bit keys
        # (the Raw reader's) are widened on the device. Device regions: the filled parts (as in the pinned
        # buffer), then the direct parts, then the widened keys.
        filled, direct, wides = [], [], []
        total = 0
        for name, arr in parts:
            kind = _pinned_dtype(name, arr)
            if _direct(arr, kind):
                direct.append((name, arr, kind))
                continue
            filled.append((name, total, arr, kind))
            total += _aligned(arr.size * kind.itemsize)
        dev_total = total
        placed = []
        for name, arr, kind in direct:
            placed.append((name, dev_total, arr, kind))
            dev_total += _aligned(arr.size * kind.itemsize)
        for name, _, arr, kind in filled + placed:
            if name.startswith("keys") and kind.itemsize == 4:
                wides.append((name, dev_total))
                dev_total += _aligned(arr.size * 8)
        slot = self.slots[self.index % len(self.slots)]
        self.index += 1
        if slot.used:
            slot.consumed.synchronize()  # the step that read this slot has run (so have its copies)
        slot.keep = []
        slot.ensure(total, dev_total, self.stream)
        views: dict[str, Any] = {}
        if filled:
            host = np.frombuffer(slot.host, np.uint8, slot.nbytes)
            for name, off, arr, kind in filled:
                fill(host[off:off + arr.size * kind.itemsize].view(kind),
                     arr.view(np.int64) if arr.dtype == np.uint64 else arr)
        for name, off, arr, kind in filled + placed:
            views[name] = cp.ndarray((max(arr.size, 1),), kind, memptr=slot.dev.data + off)
        with self.stream:
            if total:
                cp.cuda.runtime.memcpyAsync(slot.dev.data.ptr, slot.host.ptr, total, H2D, self.stream.ptr)
            for name, off, arr, _ in placed:
                cp.cuda.runtime.memcpyAsync(slot.dev.data.ptr + off, arr.ctypes.data, arr.nbytes, H2D,
                                            self.stream.ptr)
            slot.keep = [arr for _, _, arr, _ in placed]  # alive until the slot is reused: the copies are done
            for name, off in wides:
                wide = cp.ndarray(views[name].shape, cp.int64, memptr=slot.dev.data + off)
                wide[...] = views[name]  # zero-extends uint32, sign-extends int32 (as key_array does)
                views[name] = wide
            slot.ready.record(self.stream)
        slot.used = True
        sparse = []
        for i, sb in enumerate(batch.sparse):
            nkeys = int(np.asarray(sb.keys).size)
            nseg = n * sb.slot_num
            offsets = self._one_hot_offsets(nseg + 1) if sb.one_hot else views[f"offsets{i}"]
            sparse.append(DeviceSparse(views[f"keys{i}"], offsets, nseg, int(sb.slot_num), nkeys))
        return DeviceBatch(n, int(batch.size), views["label"][:label.size].reshape(label.shape),
                           views["dense"][:dense.size].reshape(dense.shape), sparse, slot.ready, slot.consumed)
