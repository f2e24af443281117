"""Where one local GPU's arrays live and how its work is ordered: a *place* per local GPU of a process.

A place knows its global GPU id, the physical CUDA device it runs on, its array module (``xp``: CuPy, or
NumPy for the host stand-in) and its streams. Entering it (``with place:``) makes its device and compute
stream current, so CuPy work and the kernels of the executor it drives go there. The multi-GPU cuda runtime
(:mod:`hgc.runtime.dist.cuda_parallel`) and the in-process communicator over places
(:mod:`hgc.runtime.dist.place_comm`) use nothing else of CUDA.

* :class:`CupyPlace` — one CUDA device with a compute stream (blocking, so work cuBLAS issues on the legacy
  stream stays ordered with it) and a non-blocking communication stream for gradient all-reduces.
* :class:`HostPlace` — NumPy arrays in host memory, every operation immediate: the fake GPU the cpu-only
  tests drive the same orchestration with.

Logical devices: with ``HGC_DIST_LOGICAL_DEVICES=1`` (or ``logical=True``) every GPU of ``vvgpu`` maps onto
physical device 0, each with its own streams and memory, so an N-GPU run can be checked on one GPU.
"""
from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.dist.topology import Topology

LOGICAL_ENV = "HGC_DIST_LOGICAL_DEVICES"
MEMCPY_DEFAULT = 4  # cudaMemcpyDefault: direction from the pointers (unified addressing, peer copies)


def logical_devices_requested() -> bool:
    """True when ``HGC_DIST_LOGICAL_DEVICES`` asks for every GPU of vvgpu on physical device 0."""
    value = os.environ.get(LOGICAL_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{LOGICAL_ENV} = {value!r} is not allowed: must be 1 (every GPU of vvgpu on device 0) or 0")


class Place(ABC):
    """One local GPU of this process (see the module docstring)."""

    xp: Any

    def __init__(self, index: int, gpu: int, device: int) -> None:
        self.index, self.gpu, self.device = int(index), int(gpu), int(device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gpu={self.gpu}, device={self.device})"

    @abstractmethod
    def __enter__(self) -> Place: ...

    @abstractmethod
    def __exit__(self, *exc: object) -> None: ...

    @abstractmethod
    def put(self, host: np.ndarray) -> Any:
        """A copy of host array ``host`` here."""

    @abstractmethod
    def get(self, a: Any) -> np.ndarray:
        """A host copy of ``a`` (an array of this place), after the work queued before it."""

    @abstractmethod
    def contiguous(self, a: Any) -> Any:
        """``a`` (of this place) as a C-contiguous array (itself when it is one)."""

    @abstractmethod
    def copy_from(self, a: Any, comm: bool = False) -> Any:
        """A copy here of the contiguous array ``a`` of any place, queued on this place's compute (or
        communication) stream; the caller orders it after the work that writes ``a`` (:func:`fence`)."""

    @abstractmethod
    def record(self, comm: bool = False) -> Any:
        """An event after the work queued so far on the compute (or communication) stream; None on the host."""

    @abstractmethod
    def wait(self, event: Any, comm: bool = False) -> None:
        """Make later work of the compute (or communication) stream wait for ``event``."""

    @abstractmethod
    def on_comm(self) -> contextlib.AbstractContextManager[Any]:
        """A context whose work goes to the communication stream."""

    @abstractmethod
    def stage_keys(self, keys: np.ndarray, offsets: np.ndarray | None) -> tuple[Any, Any, Any]:
        """(int64 offsets here or None, int64 keys here, token) of a host key list (uint64 keys keep their bit
        patterns) and optionally its CSR offsets; :meth:`release` the token once the work reading them is
        queued."""

    @abstractmethod
    def executor_batch(self, batch: Batch, lo: int, hi: int) -> Any:
        """Rows [lo, hi) of ``batch`` as this GPU's executor takes them: labels and dense features, and every
        sparse input with its rows but no keys (the embeddings come from the exchange)."""

    @abstractmethod
    def release(self, token: Any) -> None: ...

    def synchronize(self) -> None:
        """Wait for everything queued here."""

    def handout(self, a: Any) -> Any:
        """``a`` as given to code written for CuPy arrays (the Trainer's device code path)."""
        return a


def address(a: Any) -> int:
    """Where array ``a``'s data starts: a CuPy array's device address, a NumPy array's (the host stand-in)."""
    return int(a.data.ptr) if hasattr(a.data, "ptr") else int(a.ctypes.data)


def fence(places: Sequence[Place], comm: bool = False) -> None:
    """Order the (compute or communication) streams of ``places`` with each other: later work on each waits
    for the work queued so far on all of them. Copies between places sit between two fences, so a copy never
    reads an array before it is written nor lets its source be reused before it is read."""
    events = [p.record(comm) for p in places]
    if all(e is None for e in events):
        return
    for p in places:
        for e in events:
            if e is not None:
                p.wait(e, comm)


class HostArray(np.ndarray):
    """A host array handed out where a device array is expected: CuPy's ``get`` / ``set`` on NumPy memory."""

    def get(self, stream: Any = None) -> np.ndarray:
        return np.array(self)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        self[...] = np.asarray(arr).reshape(self.shape)


class HostPlace(Place):
    """A GPU stood in for by host memory (NumPy); every operation completes at once."""

    xp = np

    def handout(self, a: Any) -> HostArray:
        return np.asarray(a).view(HostArray)

    def __enter__(self) -> HostPlace:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def put(self, host: np.ndarray) -> np.ndarray:
        return np.array(host, copy=True)

    def get(self, a: Any) -> np.ndarray:
        return np.array(a, copy=True)

    def contiguous(self, a: Any) -> np.ndarray:
        return np.ascontiguousarray(a)

    def copy_from(self, a: Any, comm: bool = False) -> np.ndarray:
        return np.array(a, copy=True)

    def record(self, comm: bool = False) -> None:
        return None

    def wait(self, event: Any, comm: bool = False) -> None:
        return None

    def on_comm(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def stage_keys(self, keys: np.ndarray, offsets: np.ndarray | None) -> tuple[Any, Any, Any]:
        from hgc.runtime.cuda.staging import key_array

        return (None if offsets is None else np.ascontiguousarray(offsets, np.int64).copy(),
                key_array(keys).copy(), None)

    def executor_batch(self, batch: Batch, lo: int, hi: int) -> Batch:
        return rows_without_keys(batch, lo, hi)

    def release(self, token: Any) -> None:
        return None


def rows_without_keys(batch: Batch, lo: int, hi: int) -> Batch:
    """Rows [lo, hi) of a host batch, its sparse inputs without keys."""
    sparse = [SparseBatch(np.zeros((hi - lo) * s.slot_num + 1, np.int64), np.asarray(s.keys)[:0], s.slot_num)
              for s in batch.sparse]
    return Batch(hi - lo, batch.label[lo:hi], batch.dense[lo:hi], sparse)


class CupyPlace(Place):
    """One CUDA device with its compute and communication streams."""

    def __init__(self, index: int, gpu: int, device: int) -> None:
        super().__init__(index, gpu, device)
        from hgc.codegen.nvrtc import import_cupy

        cp = import_cupy()
        self.cp = self.xp = cp
        with cp.cuda.Device(self.device):
            self.stream = cp.cuda.Stream(non_blocking=False)
            self.comm_stream = cp.cuda.Stream(non_blocking=True)
        self._stack: list[contextlib.ExitStack] = []
        self._key_stager: Any = None
        self._row_stager: Any = None
        self._zeros: Any = None
        self._no_keys: Any = None

    def __enter__(self) -> CupyPlace:  # noqa: PYI034
        stack = contextlib.ExitStack()
        stack.enter_context(self.cp.cuda.Device(self.device))
        stack.enter_context(self.stream)
        self._stack.append(stack)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.pop().close()

    @contextlib.contextmanager
    def _comm_context(self) -> Iterator[None]:
        with self.cp.cuda.Device(self.device), self.comm_stream:
            yield

    def on_comm(self) -> contextlib.AbstractContextManager[Any]:
        return self._comm_context()

    def put(self, host: np.ndarray) -> Any:
        with self:
            return self.cp.asarray(np.ascontiguousarray(host))

    def get(self, a: Any) -> np.ndarray:
        with self:
            return self.cp.asnumpy(a, stream=self.stream)

    def contiguous(self, a: Any) -> Any:
        if a.flags.c_contiguous:
            return a
        with self:
            return self.cp.ascontiguousarray(a)

    def copy_from(self, a: Any, comm: bool = False) -> Any:
        cp = self.cp
        stream = self.comm_stream if comm else self.stream
        with cp.cuda.Device(self.device), stream:
            out = cp.empty(a.shape, a.dtype)
            if a.size:
                cp.cuda.runtime.memcpyAsync(out.data.ptr, a.data.ptr, a.nbytes, MEMCPY_DEFAULT, stream.ptr)
        return out

    def record(self, comm: bool = False) -> Any:
        with self.cp.cuda.Device(self.device):
            return (self.comm_stream if comm else self.stream).record()

    def wait(self, event: Any, comm: bool = False) -> None:
        with self.cp.cuda.Device(self.device):
            (self.comm_stream if comm else self.stream).wait_event(event)

    def stage_keys(self, keys: np.ndarray, offsets: np.ndarray | None) -> tuple[Any, Any, Any]:
        """Through a double-buffered pinned Stager of this device (asynchronous copies on its copy stream)."""
        from hgc.runtime.cuda.staging import Stager

        keys = np.asarray(keys).reshape(-1)
        if offsets is None:  # one segment holding every key: the Stager's CSR checks hold
            offsets = np.array([0, keys.shape[0]], np.int64)
            given = False
        else:
            given = True
        n = int(np.shape(offsets)[0]) - 1
        with self:
            if self._key_stager is None:
                self._key_stager = Stager(depth=2)
            empty = np.zeros((n, 0), np.float32)
            db = self._key_stager.put(Batch(n, empty, empty, [SparseBatch(offsets, keys, 1)]))
            db.wait(self.stream)
            ds = db.sparse[0]
        return (ds.offsets[:ds.nseg + 1] if given else None), ds.keys[:ds.nkeys], db

    def executor_batch(self, batch: Batch, lo: int, hi: int) -> Any:
        """A DeviceBatch: the rows' labels and dense features through a pinned Stager; every sparse input as
        zero offsets already on the device (no keys), so nothing of the keys is copied per GPU."""
        from hgc.runtime.cuda.staging import DeviceBatch, DeviceSparse, Stager

        cp, m = self.cp, hi - lo
        with self:
            if self._row_stager is None:
                self._row_stager = Stager(depth=2)
                self._no_keys = cp.zeros(1, cp.int64)
            db = self._row_stager.put(Batch(m, batch.label[lo:hi], batch.dense[lo:hi], []))
            sparse = []
            for sb in batch.sparse:
                need = m * sb.slot_num + 1
                if self._zeros is None or self._zeros.shape[0] < need:
                    self._zeros = cp.zeros(max(need, 2 * (0 if self._zeros is None else self._zeros.shape[0])),
                                           cp.int64)
                sparse.append(DeviceSparse(self._no_keys, self._zeros[:need], m * sb.slot_num, sb.slot_num, 0))
        return DeviceBatch(m, m, db.label, db.dense, sparse, db.ready, db.consumed)

    def release(self, token: Any) -> None:
        if token is not None:
            token.release(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()
        self.comm_stream.synchronize()


def enable_peer_access(places: Sequence[Place]) -> None:
    """Let every pair of distinct physical devices among ``places`` read each other's memory directly (where
    the hardware allows; copies work without it, staged by the driver)."""
    devices = sorted({p.device for p in places if isinstance(p, CupyPlace)})
    if len(devices) < 2:
        return
    cp = next(p for p in places if isinstance(p, CupyPlace)).cp
    for a in devices:
        for b in devices:
            if a == b or not cp.cuda.runtime.deviceCanAccessPeer(a, b):
                continue
            with cp.cuda.Device(a):
                try:
                    cp.cuda.runtime.deviceEnablePeerAccess(b)
                except cp.cuda.runtime.CUDARuntimeError as e:  # already enabled by an earlier run
                    if "PeerAccessAlreadyEnabled" not in str(e):
                        raise


def make_places(topology: Topology, rank: int, *, host: bool = False, logical: bool | None = None,
                staged: bool = False) -> list[Place]:
    """The places of rank ``rank``'s GPUs: on the host (the fake GPU), or CUDA devices — vvgpu's device ids,
    or all on device 0 with logical devices (``logical`` None: ``HGC_DIST_LOGICAL_DEVICES``; with several
    ranks only when their collectives are ``staged`` through host memory, as NCCL refuses a shared device)."""
    local = topology.local_gpus(rank)
    if host:
        return [HostPlace(i, g, topology.device_of(g)) for i, g in enumerate(local)]
    if logical is None:
        logical = logical_devices_requested()
    if logical and topology.num_ranks > 1 and not staged:
        raise ValueError(f"{LOGICAL_ENV}=1 maps the GPUs of one process onto device 0; vvgpu = "
                         f"{[list(n) for n in topology.vvgpu]} has {topology.num_ranks} nodes (MPI ranks), which "
                         f"cannot share a device through NCCL; use one node, e.g. [[0, 1]], or "
                         f"HGC_DIST_BACKEND=mpi")
    devices = [0 if logical else topology.device_of(g) for g in local]
    if not logical and len(set(devices)) != len(devices):
        raise ValueError(f"rank {rank} of vvgpu = {[list(n) for n in topology.vvgpu]} names device(s) twice")
    places: list[Place] = [CupyPlace(i, g, d) for i, (g, d) in enumerate(zip(local, devices))]
    enable_peer_access(places)
    return places
