"""Collectives among the G GPUs of a run, as one process sees them.

A process drives the GPUs ``vvgpu[rank]`` (its *local* GPUs). Every collective is called once per process,
by every process, in the same order, with one array per local GPU (``bufs[i]`` belongs to the i-th local
GPU, global id ``local[i]``); results come back the same way. Arrays are NumPy arrays for the host
backends (in-process, MPI) and CuPy arrays for NCCL; the interface is the same.

* ``allreduce(bufs)`` – the element-wise sum over all G GPUs, for each local GPU.
* ``allreduce_async(bufs)`` – the same, started now; ``.wait()`` gives the result (gradient buckets).
* ``allgather(bufs)`` – for each local GPU, the arrays of all G GPUs in global order (sizes may differ).
* ``alltoall(send)`` – ``send[i][j]`` goes from local GPU i to global GPU j; ``result[i][j]`` is what
  local GPU i received from global GPU j (all-to-all-v: every piece may have its own size).
* ``reduce_scatter(bufs, counts)`` – GPU g receives the sum over all GPUs of rows
  ``[Σcounts[:g], Σcounts[:g+1])`` of their arrays (the first axis is split).
* ``broadcast(bufs, root)`` – every local GPU receives global GPU ``root``'s array.
* ``gather(bufs)`` – the G arrays in global order on rank 0 (None elsewhere); for checkpoints.
* ``allgather_obj`` / ``bcast_obj`` / ``barrier`` – small host objects between ranks.

Sums over GPUs run in global GPU order where the backend adds them itself (in-process, reduce_scatter),
so an in-process run and an MPI run of the same job add in the same order. Results may share memory with
the inputs or with each other: treat them as read-only.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from hgc.runtime.dist.topology import Topology

Array = Any  # numpy.ndarray or cupy.ndarray


def ordered_sum(parts: Sequence[Array]) -> Array:
    """parts[0] + parts[1] + … in that order, as a new array."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


class Pending:
    """A started collective; ``wait()`` finishes it and returns its result (once)."""

    def __init__(self, finish: Callable[[], list[Array]]) -> None:
        self._finish: Callable[[], list[Array]] | None = finish
        self._result: list[Array] | None = None

    def wait(self) -> list[Array]:
        if self._finish is not None:
            self._result, self._finish = self._finish(), None
        assert self._result is not None
        return self._result


class Communicator(ABC):
    """Collectives of one process over the GPUs of ``topology`` (see the module docstring)."""

    backend = ""

    def __init__(self, topology: Topology, rank: int) -> None:
        self.topology = topology
        self.rank = int(rank)
        self.local = topology.local_gpus(self.rank)

    @property
    def world_size(self) -> int:
        return self.topology.world_size

    @property
    def num_ranks(self) -> int:
        return self.topology.num_ranks

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def _check(self, bufs: Sequence[Any], what: str) -> None:
        if len(bufs) != len(self.local):
            raise ValueError(f"{self.backend} {what}: {len(bufs)} buffer(s) given for {len(self.local)} local "
                             f"GPU(s) {list(self.local)} of rank {self.rank}")

    # -- data collectives --------------------------------------------------------------------------
    @abstractmethod
    def allreduce(self, bufs: Sequence[Array]) -> list[Array]: ...

    def allreduce_async(self, bufs: Sequence[Array]) -> Pending:
        out = self.allreduce(bufs)
        return Pending(lambda: out)

    @abstractmethod
    def allgather(self, bufs: Sequence[Array]) -> list[list[Array]]: ...

    @abstractmethod
    def alltoall(self, send: Sequence[Sequence[Array]]) -> list[list[Array]]: ...

    @abstractmethod
    def broadcast(self, bufs: Sequence[Array], root: int) -> list[Array]: ...

    @abstractmethod
    def gather(self, bufs: Sequence[Array]) -> list[Array] | None: ...

    def reduce_scatter(self, bufs: Sequence[Array], counts: Sequence[int]) -> list[Array]:
        self._check(bufs, "reduce_scatter")
        if len(counts) != self.world_size:
            raise ValueError(f"{self.backend} reduce_scatter: {len(counts)} counts for {self.world_size} GPUs")
        bounds = [0]
        for c in counts:
            bounds.append(bounds[-1] + int(c))
        send = [[b[bounds[j]:bounds[j + 1]] for j in range(self.world_size)] for b in bufs]
        return [ordered_sum(parts) for parts in self.alltoall(send)]

    # -- host objects ------------------------------------------------------------------------------
    @abstractmethod
    def allgather_obj(self, obj: Any) -> list[Any]: ...

    @abstractmethod
    def bcast_obj(self, obj: Any, root: int = 0) -> Any: ...

    @abstractmethod
    def barrier(self) -> None: ...

    def gather_obj(self, objs: Sequence[Any]) -> list[Any] | None:
        """One host object per local GPU → all G of them in global order on rank 0 (None elsewhere)."""
        self._check(objs, "gather_obj")
        everything = [o for part in self.allgather_obj(list(objs)) for o in part]
        return everything if self.is_root else None

    def allgather_objs(self, objs: Sequence[Any]) -> list[Any]:
        """One host object per local GPU → all G of them in global order, on every rank."""
        self._check(objs, "allgather_objs")
        return [o for part in self.allgather_obj(list(objs)) for o in part]

    def allreduce_int(self, value: int) -> int:
        """The sum of one integer over the ranks."""
        return int(sum(self.allgather_obj(int(value))))


class InProcessComm(Communicator):
    """All GPUs of the run are local GPUs of this one process (vvgpu with one node, e.g. [[0, 1, 2]])."""

    backend = "in-process"

    def __init__(self, topology: Topology) -> None:
        if topology.num_ranks != 1:
            raise ValueError(f"the in-process communicator drives one rank, but vvgpu = "
                             f"{[list(n) for n in topology.vvgpu]} has {topology.num_ranks} nodes (MPI ranks)")
        super().__init__(topology, 0)

    def allreduce(self, bufs: Sequence[Array]) -> list[Array]:
        self._check(bufs, "allreduce")
        total = ordered_sum(bufs)
        return [total] * len(bufs)

    def allgather(self, bufs: Sequence[Array]) -> list[list[Array]]:
        self._check(bufs, "allgather")
        return [list(bufs) for _ in bufs]

    def alltoall(self, send: Sequence[Sequence[Array]]) -> list[list[Array]]:
        self._check(send, "alltoall")
        g = self.world_size
        if any(len(row) != g for row in send):
            raise ValueError(f"{self.backend} alltoall: every local GPU must send one piece to each of {g} GPUs")
        return [[send[j][i] for j in range(g)] for i in range(g)]

    def broadcast(self, bufs: Sequence[Array], root: int) -> list[Array]:
        self._check(bufs, "broadcast")
        return [bufs[root]] * len(bufs)

    def gather(self, bufs: Sequence[Array]) -> list[Array] | None:
        self._check(bufs, "gather")
        return list(bufs)

    def allgather_obj(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return obj

    def barrier(self) -> None:
        return None


def make_communicator(topology: Topology, backend: str = "auto") -> Communicator:
    """The communicator of this process: "inprocess" (one rank), "mpi" (host arrays over mpi4py), "nccl"
    (device arrays over NCCL, bootstrapped over MPI when there are several ranks); "auto" picks in-process
    for one rank and MPI otherwise."""
    if backend == "auto":
        backend = "inprocess" if topology.num_ranks == 1 else "mpi"
    if backend == "inprocess":
        return InProcessComm(topology)
    if backend == "mpi":
        from hgc.runtime.dist.mpi import MpiComm

        return MpiComm(topology)
    if backend == "nccl":
        from hgc.runtime.dist.nccl import NcclComm

        return NcclComm(topology)
    raise ValueError(f"backend = {backend!r} is not allowed: must be 'auto', 'inprocess', 'mpi' or 'nccl'")
