"""Host-array collectives between MPI ranks (mpi4py, Open MPI), each rank with its local GPUs.

Within a rank the local GPUs' arrays are combined first (in local order), then the ranks exchange: sums go
through ``Allreduce`` / ``Iallreduce``, variable-sized pieces through ``Alltoallv`` / ``Allgatherv`` on
their bytes after a small exchange of (dtype, shape) headers. A single MPI message carries at most 2 GiB.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgc.runtime.dist.comm import Communicator, Pending, ordered_sum
from hgc.runtime.dist.topology import Topology

Meta = tuple[str, tuple[int, ...]]


def mpi_module() -> Any:
    """mpi4py's MPI module; a clear error when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"several MPI ranks need mpi4py (pip install 'mpi4py>=3.1' with Open MPI "
                          f"installed): {e}") from None
    return MPI


def world_size_of_mpi() -> int:
    """Ranks of the MPI job this process belongs to (1 without mpi4py or outside mpirun)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return 1
    return int(MPI.COMM_WORLD.Get_size())


def _meta(a: np.ndarray) -> Meta:
    return (a.dtype.str, tuple(int(s) for s in a.shape))


def _nbytes(m: Meta) -> int:
    return int(np.dtype(m[0]).itemsize * int(np.prod(m[1], dtype=np.int64)))


def _pack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, np.uint8)
    return np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays])


def _unpack(buf: np.ndarray, metas: Sequence[Meta], start: int = 0) -> list[np.ndarray]:
    out, at = [], start
    for m in metas:
        n = _nbytes(m)
        out.append(buf[at:at + n].view(np.dtype(m[0])).reshape(m[1]))
        at += n
    return out


def _displs(counts: Sequence[int]) -> list[int]:
    out, at = [], 0
    for c in counts:
        out.append(at)
        at += c
    return out


class MpiComm(Communicator):
    """One MPI rank per node of vvgpu; rank r drives the GPUs vvgpu[r]."""

    backend = "mpi"

    def __init__(self, topology: Topology, comm: Any = None) -> None:
        mpi = mpi_module()
        self.MPI = mpi
        self.comm = comm if comm is not None else mpi.COMM_WORLD
        size = int(self.comm.Get_size())
        if size != topology.num_ranks:
            raise ValueError(f"vvgpu = {[list(n) for n in topology.vvgpu]} has {topology.num_ranks} node(s), so "
                             f"the job needs {topology.num_ranks} MPI rank(s) (mpirun -np {topology.num_ranks}), "
                             f"but it runs with {size}")
        super().__init__(topology, int(self.comm.Get_rank()))

    # -- sums --------------------------------------------------------------------------------------
    def _local_sum(self, bufs: Sequence[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(ordered_sum(bufs))

    def allreduce(self, bufs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._check(bufs, "allreduce")
        total = self._local_sum(bufs)
        self.comm.Allreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)
        return [total] * len(bufs)

    def allreduce_async(self, bufs: Sequence[np.ndarray]) -> Pending:
        self._check(bufs, "allreduce")
        total = self._local_sum(bufs)
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)
        n = len(bufs)

        def finish() -> list[np.ndarray]:
            req.Wait()
            return [total] * n
        return Pending(finish)

    # -- variable-sized exchanges ------------------------------------------------------------------
    def alltoall(self, send: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        self._check(send, "alltoall")
        topo = self.topology
        if any(len(row) != topo.world_size for row in send):
            raise ValueError(f"mpi alltoall: every local GPU must send one piece to each of {topo.world_size} "
                             f"GPUs")
        # pieces for rank s, ordered (local source i, destination GPU j of s)
        per_rank = [[np.asarray(send[i][j]) for i in range(len(self.local)) for j in topo.local_gpus(s)]
                    for s in range(topo.num_ranks)]
        metas_out = [[_meta(a) for a in pieces] for pieces in per_rank]
        metas_in: list[list[Meta]] = self.comm.alltoall(metas_out)
        sendbuf = _pack([a for pieces in per_rank for a in pieces])
        scounts = [sum(_nbytes(m) for m in ms) for ms in metas_out]
        rcounts = [sum(_nbytes(m) for m in ms) for ms in metas_in]
        recvbuf = np.empty(sum(rcounts), np.uint8)
        byte = self.MPI.BYTE
        self.comm.Alltoallv([sendbuf, (scounts, _displs(scounts)), byte],
                            [recvbuf, (rcounts, _displs(rcounts)), byte])
        out: list[list[Any]] = [[None] * topo.world_size for _ in self.local]
        for s, start in zip(range(topo.num_ranks), _displs(rcounts)):
            pieces = _unpack(recvbuf, metas_in[s], start)
            src = topo.local_gpus(s)
            k = 0
            for j in src:  # the sender's local sources, in order
                for i in range(len(self.local)):
                    out[i][j] = pieces[k]
                    k += 1
        return out

    def allgather(self, bufs: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        self._check(bufs, "allgather")
        mine = [np.asarray(b) for b in bufs]
        metas: list[list[Meta]] = self.comm.allgather([_meta(a) for a in mine])
        counts = [sum(_nbytes(m) for m in ms) for ms in metas]
        recvbuf = np.empty(sum(counts), np.uint8)
        self.comm.Allgatherv(_pack(mine), [recvbuf, (counts, _displs(counts)), self.MPI.BYTE])
        everything: list[np.ndarray] = []
        for ms, start in zip(metas, _displs(counts)):
            everything.extend(_unpack(recvbuf, ms, start))
        return [everything for _ in mine]

    def broadcast(self, bufs: Sequence[np.ndarray], root: int) -> list[np.ndarray]:
        self._check(bufs, "broadcast")
        owner = self.topology.rank_of(root)
        arr = np.ascontiguousarray(bufs[self.local.index(root)]) if owner == self.rank else None
        meta = self.comm.bcast(_meta(arr) if arr is not None else None, root=owner)
        if arr is None:
            arr = np.empty(meta[1], np.dtype(meta[0]))
        self.comm.Bcast(arr.reshape(-1).view(np.uint8), root=owner)
        return [arr] * len(bufs)

    def gather(self, bufs: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        self._check(bufs, "gather")
        parts = self.comm.gather([np.asarray(b) for b in bufs], root=0)
        return [a for part in parts for a in part] if parts is not None else None

    # -- host objects ------------------------------------------------------------------------------
    def gather_obj(self, objs: Sequence[Any]) -> list[Any] | None:
        self._check(objs, "gather_obj")
        parts = self.comm.gather(list(objs), root=0)
        return [o for part in parts for o in part] if parts is not None else None

    def allgather_obj(self, obj: Any) -> list[Any]:
        return list(self.comm.allgather(obj))

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()
