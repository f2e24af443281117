"""Collectives among the GPUs of one process on device arrays: device-to-device (peer) copies between places.

The Communicator interface of :mod:`hgc.runtime.dist.comm` (one array per local GPU, ``bufs[i]`` on place i),
for a single rank driving several GPUs — or several logical GPUs on one device. Each result lives on its
destination place; pieces a place sends to itself are returned as they are (read-only, as the interface
allows). Copies are queued on the destination's compute stream between two :func:`fence` calls, so they run
after the work that wrote their sources and before anything that reuses them. Sums run in global GPU order
on the first place and are copied to the others, so every GPU holds the same bits.

``allreduce_async`` runs on the places' communication streams, after the events ``after`` (one per place:
the point of each GPU's backward pass where its gradient bucket is final; by default the work queued so far)
— the overlap of gradient all-reduces with the rest of the backward pass. ``wait()`` makes each compute
stream wait for the result. On host places (NumPy) everything happens at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hgc.runtime.dist.comm import InProcessComm, Pending
from hgc.runtime.dist.places import Place, fence
from hgc.runtime.dist.topology import Topology

Array = Any


class PlaceComm(InProcessComm):
    """In-process collectives over ``places`` (one per GPU of vvgpu's only node, in order)."""

    backend = "in-process (device copies)"

    def __init__(self, topology: Topology, places: Sequence[Place]) -> None:
        super().__init__(topology)
        if [p.gpu for p in places] != list(self.local):
            raise ValueError(f"places for GPUs {[p.gpu for p in places]} given, the rank drives {list(self.local)}")
        self.places = list(places)

    # -- helpers -----------------------------------------------------------------------------------
    def _contig(self, bufs: Sequence[Array]) -> list[Array]:
        return [p.contiguous(b) for p, b in zip(self.places, bufs)]

    def _sum_on(self, k: int, parts: Sequence[Array]) -> Array:
        """parts[0] + parts[1] + … (all on place k) in order, as a new array of place k."""
        with self.places[k]:
            total = parts[0].copy()
            for p in parts[1:]:
                total += p
        return total

    def _reduce(self, bufs: Sequence[Array], comm: bool) -> list[Array]:
        """The ordered sum of ``bufs`` on every place, queued on the compute (or communication) streams; the
        caller has ordered the streams after the work that wrote ``bufs``."""
        places, root = self.places, self.places[0]
        parts = [bufs[0]] + [root.copy_from(b, comm) for b in bufs[1:]]
        with root.on_comm() if comm else root:
            total = parts[0].copy()
            for p in parts[1:]:
                total += p
        ready = root.record(comm)
        outs = [total]
        for p in places[1:]:
            if ready is not None:
                p.wait(ready, comm)
            outs.append(p.copy_from(total, comm))
        return outs

    # -- data collectives --------------------------------------------------------------------------
    def allreduce(self, bufs: Sequence[Array]) -> list[Array]:
        self._check(bufs, "allreduce")
        src = self._contig(bufs)
        fence(self.places)
        out = self._reduce(src, comm=False)
        fence(self.places)  # the sources may be reused only after every copy read them
        return out

    def allreduce_async(self, bufs: Sequence[Array], after: Sequence[Any] | None = None) -> Pending:
        self._check(bufs, "allreduce")
        src = self._contig(bufs)
        places = self.places
        for i, p in enumerate(places):  # (a buffer made contiguous just now is newer than its event)
            events = [p.record()] if after is None or src[i] is not bufs[i] else [after[i]]
            for q in places:  # every communication stream waits for every place's readiness
                for e in events:
                    if e is not None:
                        q.wait(e, comm=True)
        outs = self._reduce(src, comm=True)
        done = [p.record(comm=True) for p in places]

        def finish() -> list[Array]:
            for p in places:  # a compute stream reuses its input only after every copy read it
                for e in done:
                    if e is not None:
                        p.wait(e)
            src.clear()
            return outs
        return Pending(finish)

    def allgather(self, bufs: Sequence[Array]) -> list[list[Array]]:
        self._check(bufs, "allgather")
        src = self._contig(bufs)
        fence(self.places)
        out = [[b if j == i else p.copy_from(b) for j, b in enumerate(src)] for i, p in enumerate(self.places)]
        fence(self.places)
        return out

    def alltoall(self, send: Sequence[Sequence[Array]]) -> list[list[Array]]:
        self._check(send, "alltoall")
        g = self.world_size
        if any(len(row) != g for row in send):
            raise ValueError(f"{self.backend} alltoall: every local GPU must send one piece to each of {g} GPUs")
        src = [[p.contiguous(x) for x in row] for p, row in zip(self.places, send)]
        fence(self.places)
        out = [[src[j][i] if j == i else p.copy_from(src[j][i]) for j in range(g)] for i, p in enumerate(self.places)]
        fence(self.places)
        return out

    def reduce_scatter(self, bufs: Sequence[Array], counts: Sequence[int]) -> list[Array]:
        self._check(bufs, "reduce_scatter")
        if len(counts) != self.world_size:
            raise ValueError(f"{self.backend} reduce_scatter: {len(counts)} counts for {self.world_size} GPUs")
        bounds = [0]
        for c in counts:
            bounds.append(bounds[-1] + int(c))
        send = [[b[bounds[j]:bounds[j + 1]] for j in range(self.world_size)] for b in bufs]
        pieces = self.alltoall(send)
        return [self._sum_on(i, parts) for i, parts in enumerate(pieces)]

    def broadcast(self, bufs: Sequence[Array], root: int) -> list[Array]:
        self._check(bufs, "broadcast")
        src = self._contig(bufs)[self.local.index(root)]
        fence(self.places)
        out = [p.copy_from(src) for p in self.places]
        fence(self.places)
        return out

    def gather(self, bufs: Sequence[Array]) -> list[Array] | None:
        self._check(bufs, "gather")
        src = self._contig(bufs)
        fence(self.places)
        out = [b if j == 0 else self.places[0].copy_from(b) for j, b in enumerate(src)]
        fence(self.places)
        return out
