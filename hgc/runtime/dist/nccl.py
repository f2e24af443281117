"""Device-array collectives over NCCL (through ``cupy.cuda.nccl``), with the Communicator interface.

Every global GPU is one NCCL rank (its global id). With several MPI ranks, rank 0 makes the NCCL unique id
and broadcasts it over MPI; a process with several local GPUs creates their communicators inside one NCCL
group. Calls on several local GPUs are grouped (``groupStart``/``groupEnd``) so they cannot deadlock.

Variable sizes: the pieces' shapes travel first as small int64 headers (an ``allGather``), then the data
(``allGather`` padded to the largest piece, or grouped ``send``/``recv`` pairs for all-to-all, self
included). ``allreduce_async`` runs on a separate communication stream per GPU, ordered after the work
already queued on the compute stream, or after given events (``after``: where each GPU's backward pass
finished the bucket); ``wait()`` makes the compute stream wait for it — the overlap of gradient all-reduce
with the rest of the backward pass.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hgc.runtime.dist.comm import Communicator, Pending, ordered_sum
from hgc.runtime.dist.topology import Topology

MAX_DIMS = 7  # header: [ndim, d0 … d6]
HEADER = MAX_DIMS + 1


def _cupy() -> Any:
    from hgc.codegen.nvrtc import import_cupy

    return import_cupy()


class NcclComm(Communicator):
    """NCCL communicators for this process's local GPUs (global GPU id = NCCL rank)."""

    backend = "nccl"

    def __init__(self, topology: Topology) -> None:
        cp = _cupy()
        from cupy.cuda import nccl

        if not nccl.available:
            raise ImportError("NCCL is not available in this CuPy build (cupy.cuda.nccl.available is False)")
        self.cp, self.nccl = cp, nccl
        self.host: Communicator | None = None
        if topology.num_ranks > 1:
            from hgc.runtime.dist.mpi import MpiComm

            self.host = MpiComm(topology)
        super().__init__(topology, self.host.rank if self.host else 0)
        uid = nccl.get_unique_id() if self.rank == 0 else None
        if self.host is not None:
            uid = self.host.bcast_obj(uid)
        self.devices = [topology.device_of(g) for g in self.local]
        self._dtypes = {"b": nccl.NCCL_INT8, "B": nccl.NCCL_UINT8, "i": nccl.NCCL_INT32, "I": nccl.NCCL_UINT32,
                        "l": nccl.NCCL_INT64, "L": nccl.NCCL_UINT64, "q": nccl.NCCL_INT64,
                        "Q": nccl.NCCL_UINT64, "e": nccl.NCCL_FLOAT16, "f": nccl.NCCL_FLOAT32,
                        "d": nccl.NCCL_FLOAT64}
        self.comms: list[Any] = []
        many = len(self.local) > 1
        if many:
            nccl.groupStart()
        try:
            for g, d in zip(self.local, self.devices):
                with cp.cuda.Device(d):
                    self.comms.append(nccl.NcclCommunicator(topology.world_size, uid, g))
        finally:
            if many:
                nccl.groupEnd()
        self._comm_streams: list[Any] = []
        for d in self.devices:
            with cp.cuda.Device(d):
                self._comm_streams.append(cp.cuda.Stream(non_blocking=True))

    # -- helpers -----------------------------------------------------------------------------------
    def _dt(self, a: Any) -> int:
        code = a.dtype.char
        if code not in self._dtypes:
            raise TypeError(f"nccl: arrays of dtype {a.dtype} cannot be exchanged; use one of "
                            f"int8/uint8/int32/uint32/int64/uint64/float16/float32/float64")
        return self._dtypes[code]

    def _contig(self, a: Any, device: int) -> Any:
        with self.cp.cuda.Device(device):
            return self.cp.ascontiguousarray(a)

    def _grouped(self, body: Callable[[int, Any], None]) -> None:
        """body(local index, stream pointer) for every local GPU, inside one NCCL group."""
        cp, nccl = self.cp, self.nccl
        nccl.groupStart()
        try:
            for i, d in enumerate(self.devices):
                with cp.cuda.Device(d):
                    body(i, cp.cuda.get_current_stream().ptr)
        finally:
            nccl.groupEnd()

    def _header(self, a: Any) -> np.ndarray:
        if a.ndim > MAX_DIMS:
            raise ValueError(f"nccl: arrays of more than {MAX_DIMS} dimensions cannot be exchanged")
        h = np.zeros(HEADER, np.int64)
        h[0] = a.ndim
        h[1:1 + a.ndim] = a.shape
        return h

    @staticmethod
    def _shape(h: np.ndarray) -> tuple[int, ...]:
        return tuple(int(x) for x in h[1:1 + int(h[0])])

    def _allgather_fixed(self, bufs: Sequence[Any]) -> list[Any]:
        """Equal-sized flat pieces → for each local GPU one (G, n) array."""
        cp, g = self.cp, self.world_size
        outs: list[Any] = []
        for b, d in zip(bufs, self.devices):
            with cp.cuda.Device(d):
                outs.append(cp.empty((g,) + tuple(b.shape), b.dtype))

        flat = [self._contig(b, d) for b, d in zip(bufs, self.devices)]  # alive until the group is launched

        def body(i: int, stream: int) -> None:
            b = flat[i]
            self.comms[i].allGather(b.data.ptr, outs[i].data.ptr, b.size, self._dt(b), stream)
        self._grouped(body)
        return outs

    def _headers(self, headers: Sequence[np.ndarray]) -> np.ndarray:
        """Every GPU's host header block (same shape everywhere) → (G, …) on the host."""
        cp = self.cp
        dev = []
        for h, d in zip(headers, self.devices):
            with cp.cuda.Device(d):
                dev.append(cp.asarray(h))
        return cp.asnumpy(self._allgather_fixed(dev)[0])

    # -- data collectives --------------------------------------------------------------------------
    def allreduce(self, bufs: Sequence[Any]) -> list[Any]:
        return self.allreduce_async(bufs).wait()

    def allreduce_async(self, bufs: Sequence[Any], after: Sequence[Any] | None = None) -> Pending:
        """The sum, on the communication streams; each starts after ``after[i]`` (a CUDA event of local GPU i,
        e.g. where its backward pass finished a gradient bucket), by default after the work queued so far
        on the current stream."""
        self._check(bufs, "allreduce")
        cp, nccl = self.cp, self.nccl
        outs: list[Any] = []
        keep: list[Any] = []  # inputs stay alive until the communication stream is done with them
        done: list[Any] = []
        nccl.groupStart()
        try:
            for i, (b, d) in enumerate(zip(bufs, self.devices)):
                with cp.cuda.Device(d):
                    s = self._comm_streams[i]
                    s.wait_event(after[i] if after is not None else cp.cuda.get_current_stream().record())
                    # On the communication stream: a contiguous copy reads ``b`` after its event, and the
                    # pool's memory is free in that stream's order (memory the compute stream freed may
                    # still be written by work queued there after the event).
                    with s:
                        b = cp.ascontiguousarray(b)
                        out = cp.empty_like(b)
                    keep.append(b)
                    self.comms[i].allReduce(b.data.ptr, out.data.ptr, b.size, self._dt(b), nccl.NCCL_SUM, s.ptr)
                    outs.append(out)
        finally:
            nccl.groupEnd()
        for i, d in enumerate(self.devices):
            with cp.cuda.Device(d):
                done.append(self._comm_streams[i].record())

        def finish() -> list[Any]:
            for ev, d in zip(done, self.devices):
                with cp.cuda.Device(d):
                    cp.cuda.get_current_stream().wait_event(ev)
            keep.clear()
            return outs
        return Pending(finish)

    def allgather(self, bufs: Sequence[Any]) -> list[list[Any]]:
        self._check(bufs, "allgather")
        cp = self.cp
        heads = self._headers([self._header(b) for b in bufs])  # (G, HEADER)
        shapes = [self._shape(h) for h in heads]
        width = max(1, max(int(np.prod(s, dtype=np.int64)) for s in shapes))
        padded = []
        for b, d in zip(bufs, self.devices):
            with cp.cuda.Device(d):
                p = cp.zeros(width, b.dtype)
                p[:b.size] = cp.ascontiguousarray(b).reshape(-1)
                padded.append(p)
        gathered = self._allgather_fixed(padded)
        return [[row[j, :int(np.prod(shapes[j], dtype=np.int64))].reshape(shapes[j])
                 for j in range(self.world_size)] for row in gathered]

    #: alltoall takes ``recv_shapes``: callers that know what arrives skip the header exchange (and its sync)
    accepts_recv_shapes = True

    def alltoall(self, send: Sequence[Sequence[Any]],
                 recv_shapes: Sequence[Sequence[tuple[int, ...]]] | None = None) -> list[list[Any]]:
        """``recv_shapes[i][j]``, when given, is the shape of what local GPU i receives from GPU j (then the
        pieces' shapes are not exchanged first, and nothing waits for the device)."""
        self._check(send, "alltoall")
        cp, g = self.cp, self.world_size
        if any(len(row) != g for row in send):
            raise ValueError(f"nccl alltoall: every local GPU must send one piece to each of {g} GPUs")
        if recv_shapes is None:
            heads = self._headers([np.stack([self._header(p) for p in row]) for row in send])  # (G src, G dst, H)
            shapes = [[self._shape(heads[j, gid]) for j in range(g)] for gid in self.local]
        else:
            shapes = [[tuple(int(d) for d in s) for s in row] for row in recv_shapes]
        recv: list[list[Any]] = []
        for i, d in enumerate(self.devices):
            with cp.cuda.Device(d):
                recv.append([cp.empty(shapes[i][j], send[i][0].dtype) for j in range(g)])

        pieces = [[self._contig(p, d) for p in row] for row, d in zip(send, self.devices)]  # alive through the group

        def body(i: int, stream: int) -> None:
            c = self.comms[i]
            for j in range(g):
                piece = pieces[i][j]
                if piece.size:
                    c.send(piece.data.ptr, piece.size, self._dt(piece), j, stream)
                if recv[i][j].size:
                    c.recv(recv[i][j].data.ptr, recv[i][j].size, self._dt(recv[i][j]), j, stream)
        self._grouped(body)
        return recv

    def reduce_scatter(self, bufs: Sequence[Any], counts: Sequence[int]) -> list[Any]:
        """As the base class (an all-to-all, then the sums in GPU order), each sum on its own device; what
        arrives is known (every GPU's arrays share their trailing shape), so no header exchange."""
        self._check(bufs, "reduce_scatter")
        if len(counts) != self.world_size:
            raise ValueError(f"{self.backend} reduce_scatter: {len(counts)} counts for {self.world_size} GPUs")
        bounds = [0]
        for c in counts:
            bounds.append(bounds[-1] + int(c))
        shapes = [[(int(counts[gid]),) + tuple(b.shape[1:])] * self.world_size for gid, b in zip(self.local, bufs)]
        pieces = self.alltoall([[b[bounds[j]:bounds[j + 1]] for j in range(self.world_size)] for b in bufs], shapes)
        out = []
        for parts, d in zip(pieces, self.devices):
            with self.cp.cuda.Device(d):
                out.append(ordered_sum(parts))
        return out

    def broadcast(self, bufs: Sequence[Any], root: int) -> list[Any]:
        self._check(bufs, "broadcast")
        cp = self.cp
        mine = self.local.index(root) if root in self.local else None
        heads = self._headers([self._header(b) for b in bufs])
        shape = self._shape(heads[root])
        outs = []
        for i, (b, d) in enumerate(zip(bufs, self.devices)):
            with cp.cuda.Device(d):
                outs.append(cp.ascontiguousarray(b).copy() if i == mine else cp.empty(shape, b.dtype))

        def body(i: int, stream: int) -> None:
            o = outs[i]
            self.comms[i].broadcast(o.data.ptr, o.data.ptr, o.size, self._dt(o), root, stream)
        self._grouped(body)
        return outs

    def gather(self, bufs: Sequence[Any]) -> list[Any] | None:
        everything = self.allgather(bufs)[0]
        return everything if self.is_root else None

    # -- host objects ------------------------------------------------------------------------------
    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.host.allgather_obj(obj) if self.host is not None else [obj]

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.host.bcast_obj(obj, root) if self.host is not None else obj

    def barrier(self) -> None:
        if self.host is not None:
            self.host.barrier()
        for d in self.devices:
            with self.cp.cuda.Device(d):
                self.cp.cuda.get_current_stream().synchronize()
