"""The device-sharded tables of the multi-GPU cuda runtime (hgc.runtime.dist.device_tables) on host places and
host stores, exchanging through the in-process place communicator, against one GPU's table: every type,
forward, backward and update per Update_t over 22 steps of random batches, one-hot inputs with several keys
per slot (planned through the offsets) and with one, then evaluation lookups with unknown keys and a GPU
without rows."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from hgc.passes.plan_placement import HYBRID as HYBRID_TYPE
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.dist.comm import InProcessComm
from hgc.runtime.dist.device_tables import DeviceShard, shard_device_table
from hgc.runtime.dist.place_comm import PlaceComm
from hgc.runtime.dist.places import HostPlace
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.stores import HostStore
from hgc.runtime.dist.tables import rows_state_of
from hgc.runtime.dist.topology import Topology
from tests.runtime.dist._util import HYBRID, LOCAL, ONE_HOT, by_key, reference, rel
from tests.runtime.dist.test_embedding import CASES, Pair, opt


def multi_hot(rng: np.random.Generator, n: int, sizes: tuple[int, ...], nnz: int) -> SparseBatch:
    """n samples, 0..nnz keys per slot, keys local to their slot's [0, size)."""
    slots = len(sizes)
    counts = rng.integers(0, nnz + 1, n * slots)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    slot_of = np.repeat(np.arange(n * slots) % slots, counts)
    keys = (rng.random(slot_of.shape[0]) ** 2 * np.asarray(sizes)[slot_of]).astype(np.int64)
    return SparseBatch(offsets, keys, slots)


class ShapeCheckingComm(PlaceComm):
    """A place communicator that takes the receive shapes (as NCCL's does) and checks them."""

    accepts_recv_shapes = True
    checked = 0

    def alltoall(self, send: Any, recv_shapes: Any = None) -> list[list[Any]]:
        out = super().alltoall(send)
        if recv_shapes is not None:
            assert [[tuple(a.shape) for a in row] for row in out] == [[tuple(s) for s in row] for row in recv_shapes]
            ShapeCheckingComm.checked += 1
        return out


class DevicePair(Pair):
    """Pair with the sharded table on the device path (host places and stores)."""

    def __init__(self, op: str, gpus: int, combiner: str, o: dict[str, Any], sized: bool, multi: int = 0) -> None:
        super().__init__(op, gpus, combiner, o, sized)
        self.multi = multi
        topo = Topology.of([list(range(gpus))])
        places = [HostPlace(i, i, i) for i in range(gpus)]
        self.comm = ShapeCheckingComm(topo, places)
        ShapeCheckingComm.checked = 0
        table, table_opt = reference(op, self.vec, self.ref.capacity, combiner, self.sizes, o)
        state = rows_state_of(table, table_opt)
        make = functools.partial(_store, vec=self.vec, ref_opt=table_opt)
        self.sharded = shard_device_table(self.plan, self.comm, InProcessComm(topo), places, make,
                                          combiner=combiner, ref_opt=table_opt, state=state,
                                          pool=None if self.one_hot else table.rows, inserted=table.size,
                                          times=table_opt.times, batchsize=self.n, statistics_batches=4)
        if op == ONE_HOT:
            self.sharded.max_nnz = 1 if not multi else multi

    def batch(self, n: int | None = None) -> Any:
        if self.multi:
            return multi_hot(self.rng, self.n if n is None else n, self.sizes, self.multi)
        return super().batch(n)


def _store(place: HostPlace, name: str, capacity: int, *, vec: int, ref_opt: Any) -> HostStore:
    return HostStore(place, name, capacity, vec, ref_opt)


DEVICE_CASES = [c + (0,) for c in CASES] + [(ONE_HOT, 3, "mean", opt("Adam", "LazyGlobal"), True, 3),
                                            (ONE_HOT, 2, "sum", opt("AdaGrad", "Local"), True, 2)]


@pytest.mark.parametrize("op,gpus,combiner,o,sized,multi", DEVICE_CASES,
                         ids=[f"{c[0][:14]}-{c[1]}gpu-{c[3]['optimizer_type']}-{c[3]['update_type']}"
                              f"{'-multihot' if c[5] else ''}" for c in DEVICE_CASES])
def test_device_table_equals_one_gpu(op: str, gpus: int, combiner: str, o: dict[str, Any], sized: bool,
                                     multi: int) -> None:
    p = DevicePair(op, gpus, combiner, o, sized, multi)
    assert all(isinstance(s, DeviceShard) and isinstance(s.store, HostStore) for s in p.sharded.shards)
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
        assert p.sharded.plan.type == HYBRID_TYPE
    sp = p.batch(p.n - p.n // gpus - 1)  # evaluation: unknown keys, the last GPU without rows
    out, _ = p.ref.forward(sp, False)
    outs = p.sharded.forward(sp, False, p.slices(sp.row_offsets.shape[0] // p.slots))
    assert outs[-1].shape == (0, p.slots, p.vec)
    assert rel(np.concatenate(outs), out) < 1e-6
    p.sharded.check()
    if op in (LOCAL, ONE_HOT):
        assert ShapeCheckingComm.checked >= 2 * 22  # forward and backward gave the shapes that arrived


@pytest.mark.parametrize("multi", [0, 2])
def test_device_one_hot_keys_outside_their_slot_are_recorded(multi: int) -> None:
    from tests.runtime.dist.test_embedding import SIZES

    p = DevicePair(ONE_HOT, 2, "sum", opt("SGD", "Local"), True, multi)
    sp = p.batch()
    at = int(np.searchsorted(sp.row_offsets, 7, side="right")) - 1  # the segment holding key 7
    slot, sample = at % p.slots, at // p.slots
    sp.keys[7] = SIZES[slot] + 2
    p.sharded.forward(sp, True, p.slices(p.n))  # recorded, not raised
    with pytest.raises(ValueError, match=f"key {SIZES[slot] + 2} of slot {slot} is outside "
                                         f"\\[0, {SIZES[slot]}\\).*sample {sample}\\)"):
        p.sharded.check()
    p.sharded.check()  # cleared once reported


def test_device_shard_moves_rows_with_their_states() -> None:
    p = DevicePair(ONE_HOT, 2, "sum", opt("Adam", "Local"), True)
    for _ in range(3):
        p.step()
    parts = p.sharded.local_parts()
    assert all(isinstance(s, RowsState) and len(s) == sh.capacity for s, sh in zip(parts, p.sharded.shards))
    shard = p.sharded.shards[0]
    with pytest.raises(AttributeError, match="rows live in its store"):
        _ = shard.rows
    moved = RowsState.concat(parts)
    p.sharded.put(moved.take(np.arange(len(moved))[::-1]), with_states=True)  # same rows, other order
    again = RowsState.concat(p.sharded.local_parts())
    assert all(np.array_equal(a, b) for a, b in zip(again.states, moved.states))
    assert np.array_equal(again.vectors, moved.vectors)


@pytest.mark.parametrize("ids,want", [([0, 2, 4], slice(0, 5, 2)), ([1], slice(1, 2, 1)), ([3, 4, 5], slice(3, 6, 1)),
                                      ([0, 1, 3], None), ([], None)])
def test_slot_ids_as_a_slice(ids: list[int], want: slice | None) -> None:
    from hgc.runtime.dist.device_tables import _as_slice

    got = _as_slice(np.asarray(ids, np.int64))
    assert got == want
    if got is not None:
        assert list(range(10)[got]) == ids


def test_in_place_feeds_are_the_executors_buffers_when_they_fit() -> None:
    """The in-place path's feed buffers: the executors' own output and gradient views (feed_views) where
    they have the wire dtype and the slice's size, else buffers of the table's; made again only when the
    slices or the executors' buffers move."""
    p = DevicePair(ONE_HOT, 2, "sum", opt("SGD", "Local"), True)
    t = p.sharded
    slices, s = p.slices(p.n), p.slots
    views: dict[tuple[int, int], tuple[Any, Any]] = {}

    def feed_views(i: int, rows: int) -> tuple[Any, Any]:
        if (i, rows) not in views:
            views[(i, rows)] = (np.full((rows, s, p.vec), i + 1, np.float32),
                                np.zeros((rows, s * p.vec), np.float16 if i else np.float32))
        return views[(i, rows)]

    t.feed_views = feed_views
    outs, grads, out_ptr, grad_ptr, bounds = t._feed_buffers(slices, s)
    rows = [hi - lo for lo, hi in slices]
    assert all(np.shares_memory(outs[i], views[(i, rows[i])][0]) and outs[i].shape == (rows[i], s, p.vec)
               for i in range(2))
    assert np.shares_memory(grads[0], views[(0, rows[0])][1])  # float32: the wire dtype
    assert not np.shares_memory(grads[1], views[(1, rows[1])][1]) and grads[1].dtype == np.float32  # float16: not
    assert [int(a) for a in out_ptr[0]] == [o.ctypes.data for o in outs]
    assert [int(a) for a in grad_ptr[1]] == [g.ctypes.data for g in grads]
    assert [int(b) for b in bounds[0]] == [slices[0][0], slices[0][1], slices[1][1]]
    assert t._feed_buffers(slices, s)[0] is outs  # nothing moved: kept
    views.clear()  # the executors' buffers moved (grown, say): made again
    assert not np.shares_memory(t._feed_buffers(slices, s)[0][0], outs[0])
    t.feed_views = None
    mine = t._feed_buffers(slices, s)[0]
    assert not any(np.shares_memory(a, v[0]) for a in mine for v in views.values())
