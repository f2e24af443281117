"""The in-process communicator (several GPUs of one rank) and the communicator factory; the MPI backend runs
under mpirun in test_mpi.py."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.dist.comm import InProcessComm, make_communicator
from hgc.runtime.dist.places import make_places
from hgc.runtime.dist.staged_comm import StagedComm
from hgc.runtime.dist.topology import Topology
from tests.runtime.dist.mpi_check import check


def test_in_process_collectives():
    c = InProcessComm(Topology.of([[0, 1, 2]]))
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((5, 2)) for _ in range(3)]
    assert np.array_equal(c.allreduce(xs)[2], xs[0] + xs[1] + xs[2])
    assert np.array_equal(c.allreduce_async(xs).wait()[0], xs[0] + xs[1] + xs[2])
    assert all(a is b for a, b in zip(c.allgather(xs)[1], xs))
    send = [[np.full(i + j, 10 * i + j) for j in range(3)] for i in range(3)]
    got = c.alltoall(send)
    assert all(np.array_equal(got[i][j], send[j][i]) for i in range(3) for j in range(3))
    parts = c.reduce_scatter(xs, [2, 0, 3])
    total = xs[0] + xs[1] + xs[2]
    assert np.array_equal(parts[0], total[:2]) and parts[1].shape == (0, 2) and np.array_equal(parts[2], total[2:])
    assert all(b is xs[1] for b in c.broadcast(xs, 1))
    assert c.gather(xs) == xs and c.gather_obj(["a", "b", "c"]) == ["a", "b", "c"]
    assert c.allgather_objs([1, 2, 3]) == [1, 2, 3] and c.allreduce_int(4) == 4 and c.is_root
    with pytest.raises(ValueError, match="2 buffer\\(s\\) given for 3 local GPU"):
        c.allreduce(xs[:2])
    with pytest.raises(ValueError, match="3 counts for"):
        InProcessComm(Topology.of([[0, 1, 2, 3]])).reduce_scatter(xs + [xs[0]], [1, 2, 3])


def test_factory_picks_the_backend_from_the_ranks():
    assert isinstance(make_communicator(Topology.of([[0, 1]])), InProcessComm)
    with pytest.raises(ValueError, match="in-process communicator drives one rank.*2 nodes"):
        InProcessComm(Topology.of([[0], [1]]))
    with pytest.raises(ValueError, match="backend = 'gloo'"):
        make_communicator(Topology.of([[0]]), "gloo")


def test_two_nodes_in_one_process_name_the_missing_ranks():
    pytest.importorskip("mpi4py")
    with pytest.raises(ValueError, match=r"2 node\(s\), so the job needs 2 MPI rank\(s\) \(mpirun -np 2\).*with 1"):
        make_communicator(Topology.of([[0], [1]]))


def test_staged_collectives_copy_through_the_host_communicator():
    top = Topology.of([[0, 1, 2]])
    places = make_places(top, 0, host=True)
    c = StagedComm(InProcessComm(top), places)
    check(c)
    xs = [np.random.default_rng(i).standard_normal((7, 3)) for i in range(3)]
    out = c.allreduce(xs)
    assert np.array_equal(out[1], xs[0] + xs[1] + xs[2]) and out[0] is not out[1]  # a copy per place
    assert all(b is not xs[1] and np.array_equal(b, xs[1]) for b in c.broadcast(xs, 1))
    with pytest.raises(ValueError, match="2 buffer\\(s\\) given for 3 local GPU"):
        c.alltoall([[x] * 3 for x in xs[:2]])
    with pytest.raises(ValueError, match="one piece to each of 3 GPUs"):
        c.alltoall([[x] * 2 for x in xs])
    with pytest.raises(ValueError, match=r"places for GPUs \[0, 1\] given, rank 0 drives \[0, 1, 2\]"):
        StagedComm(InProcessComm(top), places[:2])
