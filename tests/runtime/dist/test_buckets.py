"""Dense gradients all-reduced in buckets: grouping, launch order (overlap hook) and sums."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.dist.buckets import GradBuckets
from hgc.runtime.dist.comm import InProcessComm, Pending
from hgc.runtime.dist.topology import Topology


class Recording(InProcessComm):
    def __init__(self) -> None:
        super().__init__(Topology.of([[0, 1]]))
        self.launched: list[int] = []

    def allreduce_async(self, bufs):  # type: ignore[override]
        self.launched.append(int(bufs[0].size))
        return Pending(lambda: self.allreduce(bufs))


def weights() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return {"fc1": [rng.standard_normal((7, 5)), rng.standard_normal(5)], "relu": [],
            "fc2": [rng.standard_normal((5, 3)), rng.standard_normal(3)], "fc3": [rng.standard_normal((3, 1))]}


def test_buckets_hold_whole_layers_last_layer_first():
    b = GradBuckets(InProcessComm(Topology.of([[0, 1]])), weights(), bucket_bytes=100)
    assert [[(s.node, s.index) for s in bucket] for bucket in b.buckets] == [
        [("fc3", 0), ("fc2", 0), ("fc2", 1)], [("fc1", 0), ("fc1", 1)]]
    with pytest.raises(ValueError, match="bucket_bytes = 0"):
        GradBuckets(InProcessComm(Topology.of([[0]])), weights(), bucket_bytes=0)


def test_a_bucket_starts_when_its_last_layer_is_ready_and_sums_over_gpus():
    comm = Recording()
    w = weights()
    b = GradBuckets(comm, w, bucket_bytes=100)
    rng = np.random.default_rng(2)
    grads = [{n: [rng.standard_normal(x.shape) for x in ws] for n, ws in w.items() if ws} for _ in range(2)]
    b.start()
    b.ready("fc3", [g["fc3"] for g in grads])
    assert comm.launched == []
    b.ready("fc2", [g["fc2"] for g in grads])
    assert comm.launched == [3 + 15 + 3]  # bucket 0 is on its way while fc1's backward would still run
    b.ready("fc1", [grads[0]["fc1"], None])  # GPU 1 had no gradient for fc1 (counts as zero)
    out = b.finish()
    assert comm.launched == [21, 40]
    for n in ("fc2", "fc3"):
        for k, x in enumerate(out[n]):
            assert np.allclose(x, grads[0][n][k] + grads[1][n][k]) and x.shape == w[n][k].shape
    assert np.allclose(out["fc1"][1], grads[0]["fc1"][1])
    again = b.reduce(grads)
    assert np.allclose(again["fc1"][0], grads[0]["fc1"][0] + grads[1]["fc1"][0])
