"""Model-parallel embeddings on several in-process GPUs equal one GPU's table: every type, forward, backward
and update per Update_t, over 22 steps of random batches (new keys every step), then evaluation lookups."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hgc.runtime.dist.comm import InProcessComm
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.tables import rows_state_of, shard_table
from hgc.runtime.dist.topology import Topology
from hgc.runtime.embedding.hash_table import TableFullError
from tests.runtime.dist._util import (
    DIST,
    HYBRID,
    LOCAL,
    ONE_HOT,
    by_key,
    random_sparse,
    reference,
    rel,
    table_plan,
)

SIZES = (7, 13, 5, 11, 9)
HYBRID_SIZES = (40, 70, 25, 55, 30)  # enough categories for a frequent few and an infrequent rest
HYB = {"max_num_frequent_categories": 1, "max_num_infrequent_samples": -1, "p_dup_max": 0.5,
       "max_all_reduce_bandwidth": 1.3e11, "max_all_to_all_bandwidth": 2.6e11, "efficiency_bandwidth_ratio": 1.0,
       "communication_type": "NVLink_SingleNode", "hybrid_embedding_type": "Distributed"}


def opt(kind: str, update: str) -> dict[str, Any]:
    o: dict[str, Any] = {"optimizer_type": kind, "update_type": update}
    if kind in ("MomentumSGD", "Nesterov"):
        o["momentum_factor"] = 0.9
    if kind == "AdaGrad":
        o["initial_accu_value"] = 0.1
    return o


CASES = [
    (DIST, 3, "mean", opt("Adam", "Global"), False),
    (DIST, 2, "sum", opt("Adam", "LazyGlobal"), False),
    (DIST, 4, "sum", opt("MomentumSGD", "Global"), False),
    (LOCAL, 3, "mean", opt("Adam", "Local"), True),
    (LOCAL, 2, "sum", opt("Nesterov", "Global"), False),
    (LOCAL, 6, "mean", opt("AdaGrad", "Global"), True),  # more GPUs than slots: GPU 5 holds none
    (ONE_HOT, 3, "mean", opt("Adam", "Global"), True),
    (ONE_HOT, 2, "sum", opt("SGD", "Local"), True),
    (HYBRID, 3, "sum", opt("SGD", "Local"), True),
    (HYBRID, 2, "mean", opt("SGD", "Global"), True),
]


class Pair:
    """One GPU's reference table and the same table sharded over ``gpus`` in-process GPUs."""

    def __init__(self, op: str, gpus: int, combiner: str, o: dict[str, Any], sized: bool, n: int = 60) -> None:
        self.op, self.n, self.g = op, n, gpus
        self.one_hot = op in (ONE_HOT, HYBRID)
        self.slots, self.nnz, self.vec = 5, 1 if self.one_hot else 3, 4
        self.sizes = (HYBRID_SIZES if op == HYBRID else SIZES) if sized else ()
        vv = [list(range(gpus))]
        self.plan = table_plan(op, vv, slots=self.slots, nnz=self.nnz, vec=self.vec, sizes=self.sizes, optimizer=o,
                               batchsize=n, workspace=0.05, hybrid=HYB if op == HYBRID else None)
        cap = self.plan.rows_fit * gpus
        self.ref, self.ref_opt = reference(op, self.vec, cap, combiner, self.sizes, o)
        table, table_opt = reference(op, self.vec, cap, combiner, self.sizes, o)
        self.comm = InProcessComm(Topology.of(vv))
        self.sharded = shard_table(self.plan, self.comm, table, table_opt, batchsize=n, statistics_batches=4)
        self.rng = np.random.default_rng(11)

    def batch(self, n: int | None = None) -> Any:
        return random_sparse(self.rng, self.n if n is None else n, self.slots, self.nnz, self.sizes, vocab=40,
                             one_hot=self.one_hot)

    def slices(self, n: int) -> list[tuple[int, int]]:
        return self.comm.topology.slices(n, self.n // self.g)

    def step(self, lr: float = 0.05) -> float:
        sp = self.batch()
        out, saved = self.ref.forward(sp, True)
        sl = self.slices(self.n)
        outs = self.sharded.forward(sp, True, sl)
        err = rel(np.concatenate(outs), out)
        gy = self.rng.standard_normal(out.shape).astype(np.float32)
        rows, g = self.ref.backward(saved, gy)
        self.ref_opt.update(self.ref.rows, rows, g, lr)
        self.sharded.update(self.sharded.backward([gy[lo:hi] for lo, hi in sl]), lr)
        return err

    def tables(self) -> tuple[RowsState, RowsState]:
        mine = self.sharded.file_order(self.comm.allgather_objs(self.sharded.local_parts()))[0]
        return rows_state_of(self.ref, self.ref_opt), mine


@pytest.mark.parametrize("op,gpus,combiner,o,sized", CASES,
                         ids=[f"{c[0][:14]}-{c[1]}gpu-{c[3]['optimizer_type']}-{c[3]['update_type']}" for c in CASES])
def test_sharded_table_equals_one_gpu(op: str, gpus: int, combiner: str, o: dict[str, Any], sized: bool) -> None:
    p = Pair(op, gpus, combiner, o, sized)
    errs = [p.step() for _ in range(22)]
    assert max(errs) < 1e-6, errs
    ref, mine = p.tables()
    k1, v1 = by_key(ref.keys, ref.vectors)
    k2, v2 = by_key(mine.keys, mine.vectors)
    assert np.array_equal(k1, k2) and rel(v2, v1) < 1e-6
    assert np.array_equal(by_key(ref.keys, ref.slot_ids)[1], by_key(mine.keys, mine.slot_ids)[1])
    for s1, s2 in zip(ref.states, mine.states):
        assert rel(by_key(mine.keys, s2)[1], by_key(ref.keys, s1)[1]) < 1e-6
    if ref.prev_time is not None:
        assert np.array_equal(by_key(ref.keys, ref.prev_time)[1], by_key(mine.keys, mine.prev_time)[1])
    assert p.sharded.times == p.ref_opt.times
    if op == HYBRID:
        assert p.sharded.split_done and 0 < p.sharded.frequent.size < p.sharded.categories
        assert p.sharded.frequent.size % gpus == 0
    # evaluation: unknown keys give zero vectors that still count in the mean; a short batch leaves the
    # last GPU without rows
    sp = p.batch(p.n - p.n // gpus - 1)
    out, _ = p.ref.forward(sp, False)
    outs = p.sharded.forward(sp, False, p.slices(sp.row_offsets.shape[0] // p.slots))
    assert outs[-1].shape == (0, p.slots, p.vec)
    assert rel(np.concatenate(outs), out) < 1e-6


def test_a_full_gpu_fails_even_when_the_others_have_room() -> None:
    p = Pair(DIST, 2, "sum", opt("SGD", "Local"), False)
    cap = p.plan.rows_fit
    keys = np.arange(cap + 1, dtype=np.int64) * 2  # every key on GPU 0
    from hgc.runtime.data.batch import SparseBatch

    sp = SparseBatch(np.arange(keys.shape[0] + 1, dtype=np.int64), keys, 1)
    with pytest.raises(TableFullError, match=f"'emb on GPU 0' is full: it has {cap} rows"):
        p.sharded.forward(sp, True, [(0, keys.shape[0]), (keys.shape[0], keys.shape[0])])


def test_one_hot_keys_outside_their_slot_are_named() -> None:
    p = Pair(ONE_HOT, 2, "sum", opt("SGD", "Local"), True)
    sp = p.batch()
    sp.keys[7] = SIZES[7 % 5] + 2
    with pytest.raises(ValueError, match=f"key {SIZES[2] + 2} of slot 2 is outside \\[0, {SIZES[2]}\\).*sample 1"):
        p.sharded.forward(sp, True, p.slices(p.n))
