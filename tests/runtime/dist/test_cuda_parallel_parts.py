"""Pieces of the multi-GPU cuda runtime on the host: the device-side column planner against the cpu tables'
own, the in-process communicator over places (results, and the order of its stream events and copies), the
host stores against the cpu shards, and the shard kernel module (rendered, and compiled by NVRTC where
available)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from hgc.codegen import nvrtc
from hgc.config import config
from hgc.runtime.data.batch import Batch
from hgc.runtime.dist.comm import InProcessComm
from hgc.runtime.dist.device_tables import columns, mean_scale_of
from hgc.runtime.dist.embedding import Csr, LocalizedEmbedding, mean_scale
from hgc.runtime.dist.place_comm import PlaceComm
from hgc.runtime.dist.places import HostPlace, Place, make_places
from hgc.runtime.dist.shard import Shard, shard_optimizer
from hgc.runtime.dist.stores import HostStore, shard_kernel_spec
from hgc.runtime.dist.topology import Topology
from hgc.runtime.optim.sparse import make_sparse_optimizer
from tests.runtime.dist._util import LOCAL, random_sparse, rel, table_plan


@pytest.mark.parametrize("gpus", [1, 2, 3, 5])
def test_columns_plan_as_the_cpu_table(gpus: int) -> None:
    rng = np.random.default_rng(gpus)
    slots = 4
    plan = table_plan(LOCAL, [list(range(gpus))], slots=slots, nnz=3, vec=2)
    emb = LocalizedEmbedding(plan, InProcessComm(Topology.of([list(range(gpus))])), "mean",
                             make_sparse_optimizer("SGD", 0, 2), pool=np.zeros((10, 2), np.float32))
    for n in (1, 7, 23):
        sparse = random_sparse(rng, n, slots, 3)
        csr = Csr.of(sparse, "emb")
        for g in range(gpus):
            cols, sub, pos, col_of_key = emb._columns(csr, g)
            got = columns(np, csr.offsets, slots, np.asarray(cols, np.int64), n)
            assert np.array_equal(got[0], sub) and np.array_equal(got[1], pos)
            assert np.array_equal(got[2], col_of_key)
            assert np.array_equal(mean_scale_of(np, got[0]), mean_scale(np.diff(sub), True).astype(np.float32))


def _places(n: int, cls: type[HostPlace] = HostPlace) -> list[Place]:
    return [cls(i, i, i) for i in range(n)]


def test_place_comm_equals_the_in_process_comm() -> None:
    topo = Topology.of([[0, 1, 2]])
    ref, pc = InProcessComm(topo), PlaceComm(topo, _places(3))
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(3)]
    want = xs[0] + xs[1] + xs[2]
    for got in (pc.allreduce(xs), pc.allreduce_async(xs).wait(), pc.allreduce_async(xs, after=[None] * 3).wait()):
        assert all(np.array_equal(g, want) for g in got)
        assert len({id(g) for g in got}) == 3  # one array per place
    assert all(np.array_equal(a, b) for ra, rb in zip(pc.allgather(xs), ref.allgather(xs)) for a, b in zip(ra, rb))
    send = [[np.full((i + 1, j), 10 * i + j, np.int64) for j in range(3)] for i in range(3)]
    got = pc.alltoall(send)
    assert all(np.array_equal(got[i][j], send[j][i]) for i in range(3) for j in range(3))
    assert got[1][1] is send[1][1]  # what a place sends itself stays as it is
    parts = pc.reduce_scatter(xs, [2, 0, 3])
    assert np.array_equal(parts[0], want[:2]) and parts[1].shape == (0, 3) and np.array_equal(parts[2], want[2:])
    assert all(np.array_equal(b, xs[2]) for b in pc.broadcast(xs, 2))
    assert all(np.array_equal(a, b) for a, b in zip(pc.gather(xs), xs))
    noncontig = [x.T for x in xs]
    assert np.array_equal(pc.allreduce(noncontig)[1], want.T)
    with pytest.raises(ValueError, match="places for GPUs \\[0, 1\\] given, the rank drives \\[0, 1, 2\\]"):
        PlaceComm(topo, _places(2))
    with pytest.raises(ValueError, match="2 buffer\\(s\\) given for 3 local GPU"):
        pc.alltoall(send[:2])


class TracePlace(HostPlace):
    """A host place that logs its stream operations: events are (place, stream, counter) tuples."""

    log: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, index: int, gpu: int, device: int) -> None:
        super().__init__(index, gpu, device)
        self.count = 0
        self._comm = False

    def record(self, comm: bool = False) -> tuple[int, str, int]:
        self.count += 1
        ev = (self.index, "comm" if comm else "compute", self.count)
        self.log.append(("record",) + ev)
        return ev

    def wait(self, event: Any, comm: bool = False) -> None:
        self.log.append(("wait", self.index, "comm" if comm else "compute", event))

    def copy_from(self, a: Any, comm: bool = False) -> np.ndarray:
        self.log.append(("copy", self.index, "comm" if comm else "compute"))
        return super().copy_from(a, comm)

    @contextlib.contextmanager
    def _on_comm(self) -> Iterator[None]:
        yield

    def on_comm(self) -> contextlib.AbstractContextManager[Any]:
        return self._on_comm()


def _ordered(log: list[tuple[Any, ...]], place: int, stream: str, needs: list[Any]) -> bool:
    """Every copy on (place, stream) comes after that stream waited for all events in ``needs``."""
    waited: set[Any] = set()
    for entry in log:
        if entry[0] == "wait" and entry[1] == place and entry[2] == stream:
            waited.add(entry[3])
        if entry[0] == "copy" and entry[1] == place and entry[2] == stream and not set(needs) <= waited:
            return False
    return True


def test_place_comm_orders_its_copies_with_events() -> None:
    topo = Topology.of([[0, 1, 2]])
    places = _places(3, TracePlace)
    pc = PlaceComm(topo, places)
    xs = [np.full(4, i, np.float32) for i in range(3)]
    TracePlace.log = log = []
    pc.alltoall([[x[:1] for _ in range(3)] for x in xs])
    first = [e[1:] for e in log if e[0] == "record"][:3]  # the fence before the copies
    assert sorted(p for p, _, _ in first) == [0, 1, 2]
    assert all(_ordered(log, p, "compute", first) for p in range(3))
    assert sum(e[0] == "record" for e in log) == 6  # a second fence after them
    TracePlace.log = log = []
    after = [("bucket", i) for i in range(3)]
    pending = pc.allreduce_async(xs, after=after)
    assert not any(e[0] == "wait" and e[2] == "compute" for e in log)  # the compute streams go on
    assert _ordered(log, 0, "comm", after)  # the sum waits for every GPU's bucket event
    root_done = next(e[1:] for e in log if e[0] == "record" and e[1] == 0 and e[2] == "comm")
    assert all(_ordered(log, p, "comm", [root_done]) for p in (1, 2))
    got = pending.wait()
    done = [e[1:] for e in log if e[0] == "record" and e[2] == "comm"][-3:]
    for p in range(3):
        assert {e[3] for e in log if e[0] == "wait" and e[1] == p and e[2] == "compute"} >= set(done)
    assert all(np.array_equal(g, np.full(4, 3.0)) for g in got)


def test_host_store_equals_the_cpu_shard() -> None:
    rng = np.random.default_rng(8)
    ref_opt = make_sparse_optimizer("Adam", 0, 3, update_type="Global")
    place = HostPlace(0, 0, 0)
    store = HostStore(place, "t", 11, 3, ref_opt)
    shard = Shard("t", 0, 11, shard_optimizer(ref_opt, 11))
    init = rng.standard_normal((11, 3)).astype(np.float32)
    store.write(np.arange(11), init)
    shard.rows[...] = init
    offsets = np.array([0, 2, 2, 5, 6], np.int64)
    rows = np.array([3, 7, 3, -1, 10, 0], np.int64)
    want = np.stack([init[3] + init[7], np.zeros(3), init[3] + init[10], init[0]])
    got = store.combine(offsets, rows)
    assert got.dtype == np.float32 and rel(got, want) < 1e-6
    seg_grads = rng.standard_normal((4, 3))
    u, g = store.row_grads(offsets, rows, seg_grads)
    assert np.array_equal(u, [0, 3, 7, 10]) and rel(g[1], seg_grads[0] + seg_grads[2]) < 1e-6
    for _ in range(3):
        store.apply(u, g, 0.1, 1.0)
        shard.update(u, g, 0.1, 1.0)
    assert np.array_equal(store.read(np.arange(11)), shard.rows) and store.times == shard.opt.times == 3
    states = store.state_arrays()
    assert all(np.array_equal(a, b) for a, b in zip(states, shard.opt.states()))
    store.load_state_arrays([np.zeros((11, 3)), np.zeros((11, 3))])
    assert store.opt._hi == 0 and store.prev_time() is None


def test_shard_kernel_module(dist_data: dict[str, Any]) -> None:
    """The shards' module is the table's with float32 values and a plain sum, and it compiles."""
    from hgc.codegen.lower import lower
    from hgc.codegen.render import render
    from tests.runtime.dist import worker

    with config.patch(target="cuda"):
        m = worker.build("wdl", [[0]], dist_data, optimizer="Adam", update="LazyGlobal")
    plan = lower(m.compiled.graph, m.compiled.plans)
    spec = next(e for e in plan.embeddings if e.combiner == "mean")
    table = plan.kernel(spec.spec)
    shard = shard_kernel_spec(table)
    assert shard.name == f"{table.name}_shard" and shard.params["dtype"] == "float32"
    assert shard.params["combiner"] == "sum" and table.params["combiner"] == "mean"
    assert {k: v for k, v in shard.params.items() if k not in ("dtype", "combiner")} == \
        {k: v for k, v in table.params.items() if k not in ("dtype", "combiner")}
    src = render(shard)
    assert "1.f / (float)(hi - lo)" in render(table) and "1.f / (float)(hi - lo)" not in src
    for fn in ("combine", "grad_reduce", "update_rows", "update_span", "set_hyper", "touch"):
        assert f"{shard.name}_{fn}(" in src
    if nvrtc.available() is None:
        pytest.skip("no CUDA compiler here (NVRTC wheel or nvcc)")
    res = nvrtc.compile_source(src, shard.name, arch="sm_90")
    assert f"{shard.name}_grad_reduce" in res.ptx


def test_host_places() -> None:
    places = make_places(Topology.of([[3, 5], [0]]), 0, host=True)
    assert [(p.index, p.gpu, p.device) for p in places] == [(0, 0, 3), (1, 1, 5)]
    p = places[1]
    a = np.arange(6).reshape(2, 3)
    assert p.put(a) is not a and np.array_equal(p.get(p.put(a)), a) and p.record() is None
    sb = random_sparse(np.random.default_rng(1), 2, 3, 2)
    offsets, keys, token = p.stage_keys(np.asarray(sb.keys, np.uint32), sb.row_offsets)
    assert offsets.dtype == keys.dtype == np.int64 and token is None and np.array_equal(keys, sb.keys)
    assert p.stage_keys(np.asarray(sb.keys), None)[0] is None
    rows = p.executor_batch(Batch(2, np.ones((2, 1), np.float32), np.ones((2, 3), np.float32), [sb]), 1, 2)
    assert rows.n == 1 and rows.sparse[0].keys.size == 0 and rows.sparse[0].row_offsets.tolist() == [0, 0, 0, 0]
    out = p.handout(np.ones(2))
    assert np.array_equal(out.get(), np.ones(2))
    out.set(np.zeros(2))
    assert not out.any()


def test_hooked_executor_reports_each_backward_step_after_its_operations() -> None:
    """HookedCudaExecutor runs the parent's _phase a step at a time (no GPU: the operations are recorded)."""
    import types

    from hgc.codegen.plan import Arg, Memset, Step
    from hgc.runtime.dist.cuda_parallel import HookedCudaExecutor

    ex = object.__new__(HookedCudaExecutor)
    backward = tuple(Step(f"n{i}", tuple(Memset(Arg("grad", f"t{i}{j}")) for j in range(i + 1))) for i in range(4))
    forward = (Step("f", (Memset(Arg("act", "x")),)),)
    ex.plan = types.SimpleNamespace(backward=backward, forward=forward)
    log: list[str] = []
    ex._run = lambda op: log.append(op.target.name)  # type: ignore[method-assign]
    ex.step_hook = lambda i: log.append(f"hook{i}")
    ex._phase(ex.plan.forward)
    ex._phase(ex.plan.backward)
    assert log == ["x", "t00", "hook0", "t10", "t11", "hook1", "t20", "t21", "t22", "hook2", "t30", "t31", "t32",
                   "t33", "hook3"]
    ex.step_hook = None
    log.clear()
    ex._phase(ex.plan.backward)
    assert "hook0" not in log and len(log) == 10


def test_device_feed_converts_between_float32_and_the_models_precision() -> None:
    """The executor-side stand-in of a table (NumPy arrays in place of CuPy's: the same conversions)."""
    from hgc.codegen.plan import EmbeddingTableSpec, Params
    from hgc.runtime.dist.cuda_parallel import DeviceFeed

    spec = EmbeddingTableSpec("e", "LocalizedSlotSparseEmbeddingOneHot", "k", "e", 4, 3, "sum", 10, (4, 3, 3), True,
                              Params({"optimizer_type": "SGD", "update_type": "Local"}), "m")
    feed = DeviceFeed(spec, HostPlace(0, 0, 0))
    assert feed.size == 0 and feed.capacity == 0 and feed._grads is None and feed.check() is None
    rng = np.random.default_rng(5)
    feed.out = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out32 = np.empty((6, 4), np.float32)
    assert feed.forward_device(None, True, out32) is out32 and np.array_equal(out32, feed.out.reshape(6, 4))
    out16 = np.empty((6, 4), np.float16)
    feed.forward_device(None, True, out16)
    assert np.array_equal(out16, feed.out.reshape(6, 4).astype(np.float16))
    g = rng.standard_normal((6, 4)).astype(np.float32)
    bits = (g.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 by truncation: exact when widened back
    feed.backward(bits)
    assert feed.grad.dtype == np.float32 and np.array_equal(feed.grad, (bits.astype(np.uint32) << 16).view(np.float32))
    feed.backward(g.astype(np.float16))
    assert np.array_equal(feed.grad, g.astype(np.float16).astype(np.float32))
    feed.backward(g)
    g[0, 0] = 99.0
    assert feed.grad[0, 0] != 99.0  # a copy: the executor reuses its gradient buffers
    # in place (the table wrote the executor's own output and keeps the gradient where the executor left it)
    own = np.empty((6, 4), np.float32)
    feed.out = own.reshape(2, 3, 4)
    own[...] = 3.0
    assert feed.forward_device(None, True, own) is own and (own == 3.0).all()
    feed.grad_buf = buf = np.zeros((2, 3, 4), np.float32)
    feed.backward(buf.reshape(6, 4))
    assert np.shares_memory(feed.grad, buf) and feed.grad.shape == (6, 4)
    feed.backward(g)  # a gradient elsewhere is copied into the table's buffer
    assert np.array_equal(buf.reshape(6, 4), g)
    feed.update(0.1)
    feed.prepare(0.1)
