"""The multi-GPU cuda runtime (hgc.runtime.dist.cuda_parallel) driven on a fake GPU: per-GPU executors that
compute with the cpu target (tests/runtime/fake_cuda.py, plus a flat gradient buffer and reported backward
steps), host places and host stores. The batch split, the exchanges of every embedding type, the bucketed
gradient all-reduce started from the backward steps, the per-shard updates and the Trainer's cuda code
path on top must give what one GPU gives."""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from hgc.codegen.plan import Arg, Memset, Step
from hgc.config import config
from hgc.runtime.dist.cuda_parallel import DistributedCudaExecutor, FlatBuckets, gradient_writers
from hgc.runtime.dist.device_tables import DeviceShard
from hgc.runtime.dist.parallel import ShardedTableView
from hgc.runtime.regularizer import Regularizer
from tests.runtime.dist import worker
from tests.runtime.dist.test_parallel import assert_same, one_gpu
from tests.runtime.fake_cuda import FakeCudaExecutor, dev, fake_cuda

STEPS = 24


class FlatFakeExecutor(FakeCudaExecutor):
    """The fake GPU executor with what the multi-GPU runtime needs of a CudaExecutor: a flat weight-gradient
    buffer (``wgrad``, the layout of ``master``) that ``update`` reads, backward steps in ``plan.backward``
    (a whole-buffer clear, then one step per weighted node, last node first) reported through
    ``step_hook``, and ``replica`` to make the executor of another GPU."""

    step_hook = None

    def __init__(self, graph: Any, weights: Mapping[str, Sequence[np.ndarray]], tables: Mapping[str, Any],
                 seed: int, batch_size: int = 1) -> None:
        super().__init__(graph, weights, tables, seed, batch_size)
        self.graph = graph
        self.wgrad = dev(np.zeros_like(np.asarray(self.master)))
        steps = [Step("", (Memset(Arg("wgrads")),))]
        for node in reversed(graph.nodes()):
            mine = [s for s in self.slots if s.node == node.name]
            if mine:
                steps.append(Step(node.name, tuple(Memset(Arg("wgrad", s.node, s.index)) for s in mine)))
        self.plan.backward = tuple(steps)
        self.hooked_steps = 0

    def backward(self, loss_weights: Mapping[str, float] | None = None, host: bool = True,
                 scaler: float = 1.0) -> tuple[dict, dict]:
        wgrads, egrads = self.cpu.backward(loss_weights)
        flat = np.asarray(self.wgrad)
        flat[...] = 0
        for s in self.slots:
            if s.node in wgrads:
                flat[s.offset:s.offset + s.size] = np.asarray(wgrads[s.node][s.index], np.float32).reshape(-1)
        self._grads = (wgrads, egrads)
        if self.step_hook is not None:  # every gradient is final already: report the steps in order
            for i in range(len(self.plan.backward)):
                self.step_hook(i)
                self.hooked_steps += 1
        return wgrads, egrads

    def update(self, lr: float, scaler: float = 1.0, reg_batch: int | None = None, frozen_dense: bool = False,
               frozen_embeddings: Sequence[str] = ()) -> None:
        assert self._grads is not None, "update() before backward()"
        flat = np.asarray(self.wgrad)
        if not frozen_dense and self.slots:
            weights = self.dense_opt.weights
            grads = Regularizer(self.reg[0], self.reg[1], reg_batch or 1).grads(weights)
            for j, s in enumerate(self.slots):
                grads[j] += flat[s.offset:s.offset + s.size].reshape(s.shape)
            self.dense_opt.step(grads, lr)
        _, egrads = self._grads
        for name, t in self.embeddings.items():
            if name in frozen_embeddings:
                continue
            rows, g = egrads.get(name, (np.zeros(0, np.int64), np.zeros((0, t.vec), np.float32)))
            t.opt.update(t.host.rows, rows, g, lr)

    def replica(self, place: Any, weights: Mapping[str, Sequence[np.ndarray]], feeds: Mapping[str, Any],
                seed: int) -> FlatFakeExecutor:
        rep = FlatFakeExecutor(self.graph, weights, {}, seed, self.plan.batch)
        rep.cpu.embeddings = dict(feeds)
        return rep


@contextlib.contextmanager
def fake_dist_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Models built inside take the cuda target's path on FlatFakeExecutors (several GPUs: the multi-GPU cuda
    runtime with host places)."""
    from hgc.runtime import trainer as trainer_mod

    with fake_cuda(monkeypatch):
        real = trainer_mod.make_executor

        def make_executor(target: str, graph: Any, plans: Any, weights: Any, tables: Any, seed: int,
                          **kw: Any) -> tuple[str, Any]:
            if target != "cuda":
                return real(target, graph, plans, weights, tables, seed, **kw)
            buffers = plans.get("buffers")
            return "cuda", FlatFakeExecutor(graph, weights, tables, seed,
                                            int(buffers.batch_per_gpu) if buffers is not None else 1)

        monkeypatch.setattr(trainer_mod, "make_executor", make_executor)
        yield


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fake_dist_cuda(monkeypatch):
        yield


def cpu_one_gpu(kind: str, optimizer: str, update: str, data: dict[str, Any]) -> dict[str, np.ndarray]:
    """The cpu target's single-GPU result (the fake GPU equals it bit for bit: tests/runtime/test_target.py)."""
    with config.patch(target="cpu"):
        return one_gpu(kind, optimizer, update, data)


RUNS = [("wdl", [[0, 1]], "Adam", "Global"), ("wdl", [[0, 1, 2]], "MomentumSGD", "Local"),
        ("wdl", [[0, 1, 2]], "Adam", "LazyGlobal"), ("onehot", [[0, 1]], "AdaGrad", "Local"),
        ("onehot", [[0, 1, 2, 3]], "Adam", "Global"), ("hybrid", [[0, 1]], "SGD", "Local"),
        ("hybrid", [[0, 1, 2]], "Adam", "Global")]


@pytest.mark.parametrize("kind,vvgpu,optimizer,update", RUNS,
                         ids=[f"{r[0]}-{sum(map(len, r[1]))}gpu-{r[2]}-{r[3]}" for r in RUNS])
def test_fake_gpus_train_as_one(dist_data: dict[str, Any], fake: None, kind: str, vvgpu: list[list[int]],
                                optimizer: str, update: str) -> None:
    """N fake GPUs through the Trainer's cuda path equal one fake GPU and the cpu target's single GPU."""
    t, got = worker.run(kind, vvgpu, dist_data, STEPS, optimizer=optimizer, update=update, statistics=4)
    ex = t.executor
    assert isinstance(ex, DistributedCudaExecutor) and len(ex.replicas) == sum(map(len, vvgpu)) and t.device
    assert all(isinstance(v, ShardedTableView) for v in t.tables.values())
    assert all(isinstance(s, DeviceShard) for table in ex.tables.values() for s in table.shards)
    want = cpu_one_gpu(kind, optimizer, update, dist_data)
    assert_same(got, want)
    assert len(set(np.round(want["losses"], 6))) > 1
    weights = [r.get_weights() for r in ex.replicas]
    for other in weights[1:]:  # the dense replicas stay equal
        assert all(np.array_equal(a, b) for n in other for a, b in zip(other[n], weights[0][n]))
    if kind == "hybrid":
        assert ex.tables["e_deep"].split_done


def test_one_hot_keys_planned_from_the_offsets(dist_data: dict[str, Any], fake: None) -> None:
    """Without the one-key-per-slot shortcut the device planner finds the keys through the offsets (the path of
    inputs with several keys per slot): same result."""
    t = worker.trainer_of(worker.build("onehot", [[0, 1, 2]], dist_data, optimizer="AdaGrad", update="Local"))
    table = t.executor.tables["e_deep"]
    assert table.max_nnz == 1
    table.max_nnz = None
    got = worker.results(t, worker.train(t, STEPS))
    assert_same(got, cpu_one_gpu("onehot", "AdaGrad", "Local", dist_data))


def test_buckets_start_during_the_backward_pass(dist_data: dict[str, Any], fake: None) -> None:
    """Small buckets start from the reported backward steps of the last GPU, last layers first, and give what
    one bucket gives."""
    runs = []
    for bucket_bytes in (1 << 30, 64):
        m = worker.build("wdl", [[0, 1, 2]], dist_data)
        t = worker.trainer_of(m)
        ex = t.executor
        ex.buckets = FlatBuckets(ex.comm, ex.places, ex.plan.weights, bucket_bytes, gradient_writers(ex.plan))
        runs.append((worker.train(t, 8), ex.buckets, [np.asarray(w) for w in t.dense_weights]))
    (one_losses, one, one_w), (many_losses, many, many_w) = runs
    assert len(one.ranges) == 1 and len(many.ranges) == 2  # a bucket per weighted layer (fc1, fc2)
    assert many.started_early == 2 and one.started_early == 1  # all started from a reported backward step
    assert all(r.hooked_steps > 0 for r in t.executor.replicas)
    lo = [r[0] for r in many.ranges]
    assert lo == sorted(lo, reverse=True)  # last layers first
    covered = sorted(many.ranges)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(covered))
    assert np.allclose(one_losses, many_losses, rtol=1e-6, atol=0)
    assert all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(one_w, many_w))


def test_gradient_writers_of_a_lowered_plan(dist_data: dict[str, Any]) -> None:
    """On a real plan the whole-buffer clear comes first and every weighted node's gradients are final at
    the step of that node."""
    from hgc.codegen.lower import lower

    with config.patch(target="cuda"):
        m = worker.build("onehot", [[0]], dist_data)
    plan = lower(m.compiled.graph, m.compiled.plans)
    writers = gradient_writers(plan)
    assert writers is not None and set(writers) == {w.node for w in plan.weights} == {"fc1", "fc2"}
    assert plan.backward[0].node == "" and all(plan.backward[i].node == node for node, i in writers.items())
    buckets = FlatBuckets(worker_comm(), [], plan.weights, 8, writers)
    assert buckets.nodes == [{"fc2"}, {"fc1"}] and buckets.ready_at == [writers["fc2"], writers["fc1"]]
    for w in plan.weights:  # every weight lies inside its node's bucket
        lo, hi = buckets.ranges[0 if w.node == "fc2" else 1]
        assert lo <= w.offset and w.offset + w.size <= hi


def worker_comm() -> Any:
    from hgc.runtime.dist.comm import InProcessComm
    from hgc.runtime.dist.topology import Topology

    return InProcessComm(Topology.of([[0]]))


def test_short_batches_frozen_tables_and_evaluation(dist_data: dict[str, Any], fake: None) -> None:
    from hgc.runtime.cpu.executor import take_rows

    one = worker.trainer_of(worker.build("wdl", [[0]], dist_data))
    three = worker.trainer_of(worker.build("wdl", [[0, 1, 2]], dist_data))
    for t in (one, three):
        t.frozen_embeddings.add("e_wide")
        worker.train(t, 5)
    k1, v1 = one.tables["e_wide"].dump()
    k3, v3 = three.tables["e_wide"].dump()
    assert np.array_equal(np.sort(k1), np.sort(k3)) and worker_rel(v3[np.argsort(k3)], v1[np.argsort(k1)]) == 0
    batch = take_rows(one._next_batch("eval"), 13)  # GPU 0 gets 12 rows, GPU 1 one row, GPU 2 none
    outs = [t.executor.forward(batch, training=False) for t in (one, three)]
    assert outs[1].tensors["add"].shape == (13, 1)
    assert worker_rel(outs[1].tensors["add"], outs[0].tensors["add"]) < 1e-6
    assert worker_rel(outs[1].tensors.device("add"), outs[0].tensors.device("add")) < 1e-6
    assert abs(outs[1].losses["loss"] - outs[0].losses["loss"]) < 1e-6
    train_batch = take_rows(one._next_batch("train"), 20)
    for t in (one, three):
        t.step(train_batch)
    assert abs(one.current_loss - three.current_loss) < 1e-6
    assert worker_rel(three.dense_weights[0], one.dense_weights[0]) < 1e-6
    grad = three.check_out_tensor("relu1", "Train")
    assert grad.shape == (20, 8) and worker_rel(grad, one.check_out_tensor("relu1", "Train")) < 1e-6


def worker_rel(a: Any, b: Any) -> float:
    from tests.runtime.dist._util import rel

    return rel(a, b)


def test_one_hot_keys_out_of_range_raise_at_the_next_check(dist_data: dict[str, Any], fake: None) -> None:
    from hgc.runtime.cpu.executor import take_rows
    from hgc.runtime.data.batch import Batch, SparseBatch

    t = worker.trainer_of(worker.build("onehot", [[0, 1]], dist_data))
    worker.train(t, 2)
    b = take_rows(t._next_batch("train"), 8)
    keys = np.asarray(b.sparse[0].keys).copy()
    keys[7] = 10_000  # sample 2, slot 1 (3 slots, one key each)
    bad = Batch(b.size, b.label, b.dense, [SparseBatch(b.sparse[0].row_offsets, keys, b.sparse[0].slot_num)])
    t.step(bad)  # recorded on the device, no error yet (as the single-GPU cuda table)
    with pytest.raises(ValueError, match=r"key 10000 of slot 1 is outside \[0, 25\) given by slot_size_array "
                                         r"\(sample 2\)"):
        t.check_finite()
    t.check_finite()  # reported once
    worker.train(t, 1)


@pytest.mark.parametrize("direction", ["2gpu_to_3gpu_and_cpu", "cpu_to_2gpu"])
def test_snapshots_move_between_gpu_counts_and_targets(dist_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Any, direction: str) -> None:
    """A snapshot of 2 fake GPUs loads on 3 fake GPUs and on the cpu target, one of the cpu target on 2 fake
    GPUs; each continues as the run that wrote it."""
    from hgc.runtime.dist.checkpoint import load_snapshot, save_snapshot

    prefix = str(tmp_path / "s")
    with fake_dist_cuda(monkeypatch):
        src, dsts = _snapshot_runs(dist_data, direction)
        worker.train(src, 10)
        save_snapshot(src, prefix, 9)
        want = worker.train(src, 6)
        for dst in dsts:
            load_snapshot(dst, prefix, 9)
            assert dst.iteration == 10 and dst.sparse_opts["e_deep"].times == 10
            dst.reader("train").set_source("")
            for _ in range(10):  # read on from where the writer stood
                dst._next_batch("train")
            got = worker.train(dst, 6)
            assert np.allclose(got, want, rtol=1e-5, atol=0), (direction, got, want)


def _snapshot_runs(dist_data: dict[str, Any], direction: str) -> tuple[Any, list[Any]]:
    if direction == "2gpu_to_3gpu_and_cpu":
        src = worker.trainer_of(worker.build("wdl", [[0, 1]], dist_data))
        dsts = [worker.trainer_of(worker.build("wdl", [[0, 1, 2]], dist_data, seed=9))]
        with config.patch(target="cpu"):
            dsts.append(worker.trainer_of(worker.build("wdl", [[0]], dist_data, seed=9)))
    else:
        with config.patch(target="cpu"):
            src = worker.trainer_of(worker.build("wdl", [[0]], dist_data))
        dsts = [worker.trainer_of(worker.build("wdl", [[0, 1]], dist_data, seed=9))]
    return src, dsts


def test_wrapping_errors(dist_data: dict[str, Any], fake: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from hgc.errors import NotBuiltError
    from hgc.runtime.dist import places as places_mod
    from hgc.runtime.dist.comm import InProcessComm
    from hgc.runtime.dist.cuda_parallel import wrap_cuda_executor
    from hgc.runtime.dist.parallel import wrap_executor
    from hgc.runtime.dist.topology import Topology

    t = worker.trainer_of(worker.build("onehot", [[0, 1]], dist_data))
    assert isinstance(t.executor, DistributedCudaExecutor) and wrap_executor(t) is t.executor  # wrapped once
    t.executor = types.SimpleNamespace()
    with pytest.raises(ValueError, match="comm=.*cpu target"):
        wrap_executor(t, comm=InProcessComm(Topology.of([[0, 1]])))
    with pytest.raises(NotBuiltError, match="several GPUs .*SimpleNamespace"):
        wrap_cuda_executor(t)
    monkeypatch.setenv(places_mod.LOGICAL_ENV, "maybe")
    with pytest.raises(ValueError, match="HGC_DIST_LOGICAL_DEVICES = 'maybe' is not allowed"):
        places_mod.logical_devices_requested()
    monkeypatch.setenv(places_mod.LOGICAL_ENV, "1")
    assert places_mod.logical_devices_requested()
    with pytest.raises(ValueError, match="cannot share a device through NCCL"):
        places_mod.make_places(Topology.of([[0], [1]]), 0)
