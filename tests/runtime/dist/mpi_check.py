"""Every collective of the MPI communicator, checked on each rank of ``mpirun -np N python -m
tests.runtime.dist.mpi_check VVGPU_JSON [--staged]`` (prints 'rank R ok'; raises on a wrong result). With
``--staged`` the collectives go through StagedComm over host places (the HGC_DIST_BACKEND=mpi path)."""
from __future__ import annotations

import json
import sys

import numpy as np

from hgc.runtime.dist.comm import Communicator
from hgc.runtime.dist.mpi import MpiComm
from hgc.runtime.dist.places import make_places
from hgc.runtime.dist.staged_comm import StagedComm
from hgc.runtime.dist.topology import Topology


def data(g: int) -> np.ndarray:
    return np.random.default_rng(g).standard_normal((g + 2, 3))


def check(c: Communicator) -> None:
    g_all = c.world_size
    out = c.allreduce([np.full(4, g + 1.0) for g in c.local])
    assert np.array_equal(out[0], np.full(4, g_all * (g_all + 1) / 2)), out
    for row in c.allgather([data(g) for g in c.local]):
        assert all(np.array_equal(row[g], data(g)) for g in range(g_all))
    send = [[np.full((g, j + 1), 10 * g + j, np.int64) for j in range(g_all)] for g in c.local]
    received = c.alltoall(send)
    for g, got in zip(c.local, received):
        assert all(np.array_equal(got[j], np.full((j, g + 1), 10 * j + g)) for j in range(g_all)), (g, got)
    parts = c.reduce_scatter([np.arange(2.0 * g_all) * (g + 1) for g in c.local], [2] * g_all)
    total = g_all * (g_all + 1) / 2
    assert all(np.array_equal(p, np.arange(2.0 * g, 2.0 * g + 2) * total) for p, g in zip(parts, c.local))
    assert all(np.array_equal(b, data(g_all - 1)) for b in c.broadcast([data(g) for g in c.local], g_all - 1))
    gathered = c.gather([data(g) for g in c.local])
    assert (gathered is None) != c.is_root
    if c.is_root:
        assert all(np.array_equal(gathered[g], data(g)) for g in range(g_all))
    assert np.array_equal(c.allreduce_async([np.ones(3) for _ in c.local]).wait()[0], np.full(3, g_all))
    assert c.allgather_objs([f"gpu{g}" for g in c.local]) == [f"gpu{g}" for g in range(g_all)]
    assert c.allreduce_int(c.rank + 1) == c.num_ranks * (c.num_ranks + 1) // 2


if __name__ == "__main__":
    topology = Topology.of(json.loads(sys.argv[1]))
    comm: Communicator = MpiComm(topology)
    if "--staged" in sys.argv[2:]:
        comm = StagedComm(comm, make_places(topology, comm.rank, host=True))
    check(comm)
    print(f"rank {comm.rank} ok", flush=True)
