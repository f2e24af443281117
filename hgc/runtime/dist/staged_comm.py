"""Collectives on device arrays through a host communicator (``HGC_DIST_BACKEND=mpi``).

Each collective copies its inputs from the places' devices to host memory (after the work queued on each
place's compute stream, or after the given events), runs the host communicator's collective (MPI across
ranks, in-process within one), and copies the results to the destination places. Everything is synchronous
and far slower than NCCL; it serves ranks that share one GPU (logical GPUs under ``mpirun``, where NCCL
refuses a device used twice: the MPI launch style checked on one GPU) and hosts without NCCL. The results
are the host communicator's, bit for bit: the same order of sums as the MPI run of the cpu target.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hgc.runtime.dist.comm import Communicator, Pending
from hgc.runtime.dist.places import Place

Array = Any


class StagedComm(Communicator):
    """The Communicator interface over ``host`` (a communicator of NumPy arrays) for the arrays of ``places``
    (this rank's local GPUs, in order)."""

    backend = "mpi (staged through host memory)"

    def __init__(self, host: Communicator, places: Sequence[Place]) -> None:
        super().__init__(host.topology, host.rank)
        if [p.gpu for p in places] != list(self.local):
            raise ValueError(f"places for GPUs {[p.gpu for p in places]} given, rank {self.rank} drives "
                             f"{list(self.local)}")
        self.host, self.places = host, list(places)

    def _down(self, bufs: Sequence[Array]) -> list[Array]:
        return [p.get(b) for p, b in zip(self.places, bufs)]

    def _up(self, arrays: Sequence[Array]) -> list[Array]:
        return [p.put(a) for p, a in zip(self.places, arrays)]

    # -- data collectives --------------------------------------------------------------------------
    def allreduce(self, bufs: Sequence[Array]) -> list[Array]:
        self._check(bufs, "allreduce")
        return self._up(self.host.allreduce(self._down(bufs)))

    def allreduce_async(self, bufs: Sequence[Array], after: Sequence[Any] | None = None) -> Pending:
        """At once (the copies synchronise): each place's stream first waits for its ``after`` event."""
        self._check(bufs, "allreduce")
        for p, e in zip(self.places, after or ()):
            if e is not None:
                p.wait(e)
        out = self.allreduce(bufs)
        return Pending(lambda: out)

    def allgather(self, bufs: Sequence[Array]) -> list[list[Array]]:
        self._check(bufs, "allgather")
        every = self.host.allgather(self._down(bufs))
        return [[p.put(a) for a in row] for p, row in zip(self.places, every)]

    def alltoall(self, send: Sequence[Sequence[Array]]) -> list[list[Array]]:
        self._check(send, "alltoall")
        if any(len(row) != self.world_size for row in send):
            raise ValueError(f"{self.backend} alltoall: every local GPU must send one piece to each of "
                             f"{self.world_size} GPUs")
        recv = self.host.alltoall([[p.get(x) for x in row] for p, row in zip(self.places, send)])
        return [[p.put(a) for a in row] for p, row in zip(self.places, recv)]

    def reduce_scatter(self, bufs: Sequence[Array], counts: Sequence[int]) -> list[Array]:
        self._check(bufs, "reduce_scatter")
        return self._up(self.host.reduce_scatter(self._down(bufs), counts))

    def broadcast(self, bufs: Sequence[Array], root: int) -> list[Array]:
        self._check(bufs, "broadcast")
        return self._up(self.host.broadcast(self._down(bufs), root))

    def gather(self, bufs: Sequence[Array]) -> list[Array] | None:
        self._check(bufs, "gather")
        everything = self.host.gather(self._down(bufs))
        return None if everything is None else [self.places[0].put(a) for a in everything]

    # -- host objects ------------------------------------------------------------------------------
    def allgather_obj(self, obj: Any) -> list[Any]:
        return self.host.allgather_obj(obj)

    def bcast_obj(self, obj: Any, root: int = 0) -> Any:
        return self.host.bcast_obj(obj, root)

    def barrier(self) -> None:
        for p in self.places:
            p.synchronize()
        self.host.barrier()
