"""vvgpu → ranks, global GPU ids (rank-major) and batch slices."""
from __future__ import annotations

import pytest

from hgc.runtime.dist.topology import Topology


def test_global_ids_are_rank_major():
    t = Topology.of([[3, 5], [0], [1, 2, 7]])
    assert (t.world_size, t.num_ranks) == (6, 3)
    assert t.local_gpus(0) == (0, 1) and t.local_gpus(1) == (2,) and t.local_gpus(2) == (3, 4, 5)
    assert [t.device_of(g) for g in range(6)] == [3, 5, 0, 1, 2, 7]
    assert [t.rank_of(g) for g in range(6)] == [0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize("bad", [[], [[]], [[0, 0]], [[-1]], "01", [[0.5]], [[True]]])
def test_bad_vvgpu_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match="vvgpu"):
        Topology.of(bad)


def test_global_batch_is_split_over_all_gpus_and_a_short_batch_leaves_later_gpus_less():
    t = Topology.of([[0, 1], [0]])
    assert t.per_gpu(36) == 12
    with pytest.raises(ValueError, match="batchsize = 35.*divisible by the total GPU count 3"):
        t.per_gpu(35)
    assert t.slices(36, 12) == [(0, 12), (12, 24), (24, 36)]
    assert t.slices(17, 12) == [(0, 12), (12, 17), (17, 17)]
    with pytest.raises(ValueError, match="37 rows"):
        t.slices(37, 12)
    with pytest.raises(ValueError, match="rank = 3"):
        t.local_gpus(3)
