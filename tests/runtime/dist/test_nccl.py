"""The NCCL communicator on device arrays (one rank, one GPU: the machine these tests get; several GPUs run
the same calls)."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.dist.topology import Topology

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def comm():
    from tests.gpu._util import gpu

    gpu()
    from hgc.runtime.dist.comm import make_communicator

    try:
        return make_communicator(Topology.of([[0]]), "nccl")
    except ImportError as e:  # a CuPy without its NCCL library
        pytest.skip(str(e))


def test_nccl_collectives_on_one_gpu(comm) -> None:
    import cupy as cp

    assert comm.backend == "nccl" and comm.world_size == 1 and comm.is_root
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 5)).astype(np.float32)
    d = cp.asarray(x)
    assert np.array_equal(cp.asnumpy(comm.allreduce([d])[0]), x)
    pending = comm.allreduce_async([d * 2])
    assert np.array_equal(cp.asnumpy(pending.wait()[0]), 2 * x)
    for dtype in (np.float64, np.int64, np.float16):
        y = cp.asarray(rng.standard_normal(11).astype(dtype))
        assert np.array_equal(cp.asnumpy(comm.allreduce([y])[0]), cp.asnumpy(y))
    got = comm.allgather([d[:13]])[0]
    assert len(got) == 1 and np.array_equal(cp.asnumpy(got[0]), x[:13])
    pieces = comm.alltoall([[d[3:9]]])  # send/recv to itself inside one NCCL group
    assert np.array_equal(cp.asnumpy(pieces[0][0]), x[3:9])
    assert comm.alltoall([[d[:0]]])[0][0].shape == (0, 5)
    assert np.array_equal(cp.asnumpy(comm.reduce_scatter([d], [37])[0]), x)
    assert np.array_equal(cp.asnumpy(comm.broadcast([d], 0)[0]), x)
    assert np.array_equal(cp.asnumpy(comm.gather([d])[0]), x)
    assert comm.allgather_objs(["a"]) == ["a"] and comm.allreduce_int(5) == 5
    comm.barrier()
    with pytest.raises(TypeError, match="dtype complex64"):
        comm.allreduce([cp.zeros(3, cp.complex64)])
