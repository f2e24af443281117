"""The cuda target on several GPUs (hgc.runtime.dist.cuda_parallel) against one GPU.

On one GPU: logical GPUs (HGC_DIST_LOGICAL_DEVICES=1 puts every GPU of vvgpu on device 0, each with its own
streams and memory) train as one GPU for every embedding type — DistributedSlotSparseEmbeddingHash and
LocalizedSlotSparseEmbeddingHash (the "wdl" model), LocalizedSlotSparseEmbeddingOneHot, HybridSparseEmbedding
— also in mixed precision, with gradient buckets started from the backward steps; a snapshot moves to the
cpu target; a one-hot key out of range is reported.

On two GPUs (skipped with fewer): vvgpu=[[0, 1]] in one process (peer copies, and NCCL) and
``mpirun -np 2`` with vvgpu=[[0], [1]] (NCCL), every type, 100 iterations equal to one GPU within tolerance.
The MPI launch style also runs on one GPU: two ranks on logical GPUs, exchanging through host MPI
(HGC_DIST_BACKEND=mpi). The one-hot type is single-node, so not among the MPI runs.

Tolerances: the dense gradients are sums of per-GPU GEMMs instead of one GEMM, and the Distributed table's
partial sums travel in float32, so results differ from one GPU by float32 rounding that Adam carries on:
TOL relative after 30 steps, TOL_100 after 100.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.gpu._util import gpu

pytestmark = pytest.mark.gpu
cp = gpu()

import hgc
from hgc.config import config
from hgc.runtime.dist.checkpoint import load_snapshot, save_snapshot, table_snapshot
from hgc.runtime.dist.cuda_parallel import (
    DistributedCudaExecutor,
    FlatBuckets,
    gradient_writers,
    initial_state,
)
from hgc.runtime.dist.parallel import ShardedTableView
from tests.runtime.dist import worker
from tests.runtime.dist._util import rel

ROOT = Path(__file__).resolve().parents[2]
TOL, TOL_100 = 2e-4, 2e-3
KINDS = ("wdl", "onehot", "hybrid")
GPUS = int(cp.cuda.runtime.getDeviceCount())
two_gpus = pytest.mark.skipif(GPUS < 2, reason=f"needs 2 GPUs, {GPUS} visible")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return worker.make_all(str(tmp_path_factory.mktemp("dist_cuda")))


def results(t: Any, losses: list[float]) -> dict[str, np.ndarray]:
    """worker.results for either kind of cuda trainer (one GPU's device tables, or sharded tables)."""
    out: dict[str, np.ndarray] = {"losses": np.asarray(losses)}
    for i, w in enumerate(t.dense_weights):
        out[f"dense{i}"] = np.asarray(w, np.float64)
    for name, table in t.tables.items():
        state = (table_snapshot(t, name)[0] if isinstance(table, ShardedTableView)
                 else initial_state(table, t.sparse_opts[name]))
        order = np.argsort(state.keys, kind="stable")
        out[f"{name}.keys"] = state.keys[order]
        out[f"{name}.vectors"] = state.vectors[order].astype(np.float64)
        for k, s in enumerate(state.states):
            out[f"{name}.state{k}"] = s[order].astype(np.float64)
    out["metrics"] = np.asarray([v for _, v in t.evaluate(3)])
    return out


def trained(kind: str, vvgpu: list[list[int]], data: dict[str, Any], steps: int, **kw: Any
            ) -> tuple[Any, dict[str, np.ndarray]]:
    """A model of ``kind`` on ``vvgpu``, cuda target, trained ``steps`` steps (hybrid: statistics over 4)."""
    with config.patch(target="cuda"):
        m = worker.build(kind, vvgpu, data, **kw)
        t = worker.trainer_of(m, statistics=4)
    assert t.target == "cuda"
    return t, results(t, worker.train(t, steps))


@functools.cache
def _one_gpu(kind: str, steps: int, optimizer: str, update: str, data: str, precision: str) -> dict[str, np.ndarray]:
    with _precision(precision):
        return trained(kind, [[0]], json.loads(data), steps, optimizer=optimizer, update=update)[1]


def one_gpu(kind: str, steps: int, data: dict[str, Any], optimizer: str = "Adam", update: str = "Global",
            precision: str = "fp32") -> dict[str, np.ndarray]:
    return _one_gpu(kind, steps, optimizer, update, json.dumps(data, sort_keys=True), precision)


@contextlib.contextmanager
def _precision(precision: str) -> Iterator[None]:
    """The worker's solver in ``precision`` (fp32, or fp16 mixed precision with a loss scale)."""
    mp = pytest.MonkeyPatch()
    if precision == "fp16":
        mp.setattr(hgc, "CreateSolver", functools.partial(hgc.CreateSolver, use_mixed_precision=True, scaler=128.0))
    try:
        yield
    finally:
        mp.undo()


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float) -> None:
    assert sorted(k for k in got if k != "ranks") == sorted(k for k in want if k != "ranks")
    worst = {}
    for k, v in want.items():
        if k == "ranks":
            continue
        if k.endswith(".keys"):
            assert np.array_equal(got[k], v), k
        else:
            worst[k] = rel(got[k], v) if np.linalg.norm(v) else float(np.abs(got[k]).max())
    bad = {k: e for k, e in worst.items() if not e < tol}
    assert not bad, f"relative errors above {tol}: {bad}"


def assert_feeds_are_the_executors_buffers(ex: DistributedCudaExecutor) -> None:
    """A table on the in-place path writes every executor's own embedding output and reads its own output
    gradient: no feed copies."""
    for name, table in ex.tables.items():
        if getattr(table, "_in_place_step", False):
            outs, grads = table._feed[:2]  # type: ignore[attr-defined]
            for rep, out, grad in zip(ex.replicas, outs, grads):
                spec = next(e for e in rep.plan.embeddings if e.name == name)
                assert out.data.ptr == rep.tensor(spec.output).data.ptr
                assert grad.data.ptr == rep.tensor(spec.output, "gradient").data.ptr


# -- one GPU, several logical GPUs ---------------------------------------------------------------------
LOGICAL = [("wdl", [[0, 1]], "Adam", "Global"), ("wdl", [[0, 1, 2]], "MomentumSGD", "Local"),
           ("wdl", [[0, 1, 2]], "Adam", "LazyGlobal"), ("onehot", [[0, 1]], "SGD", "Local"),
           ("onehot", [[0, 1, 2]], "Adam", "Global"), ("hybrid", [[0, 1]], "SGD", "Local"),
           ("hybrid", [[0, 1, 2]], "AdaGrad", "Local")]


@pytest.mark.parametrize("kind,vvgpu,optimizer,update", LOGICAL,
                         ids=[f"{r[0]}-{sum(map(len, r[1]))}gpu-{r[2]}-{r[3]}" for r in LOGICAL])
def test_logical_gpus_train_as_one_gpu(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], kind: str,
                                       vvgpu: list[list[int]], optimizer: str, update: str) -> None:
    monkeypatch.setenv("HGC_DIST_LOGICAL_DEVICES", "1")
    t, got = trained(kind, vvgpu, data, 30, optimizer=optimizer, update=update)
    ex = t.executor
    assert isinstance(ex, DistributedCudaExecutor) and len(ex.replicas) == sum(map(len, vvgpu))
    assert {p.device for p in ex.places} == {0} and len({p.stream.ptr for p in ex.places}) == len(ex.places)
    # every GPU's forward and backward replayed from CUDA graphs after the first steps
    assert all(r.phase_graphs and len(r._phase_cache or {}) >= 2 and not r._graph_error for r in ex.replicas)
    # one-hot with atomic SGD: the owners write the feeds and read the gradients in place
    assert all(getattr(t, "_in_place_step", False) == (kind == "onehot" and optimizer == "SGD")
               for t in ex.tables.values())
    assert_feeds_are_the_executors_buffers(ex)
    assert_close(got, one_gpu(kind, 30, data, optimizer, update), TOL)
    assert len(set(np.round(got["losses"], 6))) > 1
    if kind == "hybrid":
        assert ex.tables["e_deep"].split_done


MIXED = [("onehot", "Adam", "Global"), ("onehot", "SGD", "Local"), ("wdl", "Adam", "Global"),
         ("hybrid", "Adam", "Global")]


@pytest.mark.parametrize("kind,optimizer,update", MIXED, ids=[f"{k}-{o}" for k, o, _ in MIXED])
def test_logical_gpus_in_mixed_precision(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], kind: str,
                                         optimizer: str, update: str) -> None:
    """fp16 activations. Localized tables (one-hot, and the wdl model's hash one) exchange complete vectors
    in fp16, rounded once by the owner's combine, and take fp16 output gradients back (atomic SGD reads them
    as they are, other optimizers widen them); the Distributed and Hybrid tables exchange float32, rounded into
    the executors' half views and widened back, as one GPU's table does."""
    monkeypatch.setenv("HGC_DIST_LOGICAL_DEVICES", "1")
    with _precision("fp16"):
        t, got = trained(kind, [[0, 1]], data, 30, optimizer=optimizer, update=update)
    ex = t.executor
    assert ex.replicas[0].plan.compute_dtype == "float16"
    wires = {name: table.wire_dtype for name, table in ex.tables.items() if hasattr(table, "wire_dtype")}
    assert all(w == cp.float16 for w in wires.values()) and (kind == "hybrid") != bool(wires), wires
    assert all(getattr(t, "_in_place_step", False) == (kind == "onehot" and optimizer == "SGD")
               for t in ex.tables.values())
    assert_feeds_are_the_executors_buffers(ex)
    assert_close(got, one_gpu(kind, 30, data, optimizer, update, precision="fp16"), 1e-2)


def test_gradient_buckets_start_inside_the_backward_pass(monkeypatch: pytest.MonkeyPatch,
                                                         data: dict[str, Any]) -> None:
    monkeypatch.setenv("HGC_DIST_LOGICAL_DEVICES", "1")
    with config.patch(target="cuda"):
        t = worker.trainer_of(worker.build("onehot", [[0, 1, 2]], data), statistics=4)
    ex = t.executor
    ex.buckets = FlatBuckets(ex.comm, ex.places, ex.plan.weights, 64, gradient_writers(ex.plan))
    losses = worker.train(t, 30)
    assert len(ex.buckets.ranges) >= 2 and ex.buckets.started_early == len(ex.buckets.ranges)
    want = one_gpu("onehot", 30, data)
    assert rel(losses, want["losses"]) < TOL
    assert all(rel(w, want[f"dense{i}"]) < TOL for i, w in enumerate(t.dense_weights))


def test_logical_snapshot_loads_on_the_cpu_target(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any],
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("HGC_DIST_LOGICAL_DEVICES", "1")
    with config.patch(target="cuda"):
        src = worker.trainer_of(worker.build("hybrid", [[0, 1]], data), statistics=4)
    worker.train(src, 12)
    save_snapshot(src, str(tmp_path / "s"), 11)
    want = worker.train(src, 5)
    with config.patch(target="cpu"):
        dst = worker.trainer_of(worker.build("hybrid", [[0]], data, seed=8))
        load_snapshot(dst, str(tmp_path / "s"), 11)
        for _ in range(12):
            dst._next_batch("train")
        got = worker.train(dst, 5)
    assert rel(got, want) < TOL


def test_logical_one_hot_key_out_of_range(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]) -> None:
    from hgc.runtime.cpu.executor import take_rows
    from hgc.runtime.data.batch import Batch, SparseBatch

    monkeypatch.setenv("HGC_DIST_LOGICAL_DEVICES", "1")
    with config.patch(target="cuda"):
        t = worker.trainer_of(worker.build("onehot", [[0, 1]], data))
    b = take_rows(t._next_batch("train"), 8)
    keys = np.asarray(b.sparse[0].keys).copy()
    keys[7] = 10_000
    t.step(Batch(b.size, b.label, b.dense, [SparseBatch(b.sparse[0].row_offsets, keys, b.sparse[0].slot_num)]))
    with pytest.raises(ValueError, match=r"key 10000 of slot 1 is outside \[0, 25\).*\(sample 2\)"):
        t.check_finite()


# -- two GPUs ------------------------------------------------------------------------------------------
@two_gpus
@pytest.mark.parametrize("backend", ["inprocess", "nccl"])
@pytest.mark.parametrize("kind", KINDS)
def test_two_gpus_in_one_process_train_as_one(monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], kind: str,
                                              backend: str) -> None:
    monkeypatch.delenv("HGC_DIST_LOGICAL_DEVICES", raising=False)
    monkeypatch.setenv("HGC_DIST_BACKEND", backend)
    t, got = trained(kind, [[0, 1]], data, 100)
    ex = t.executor
    assert [p.device for p in ex.places] == [0, 1]
    assert type(ex.comm).__name__ == ("PlaceComm" if backend == "inprocess" else "NcclComm")
    assert_close(got, one_gpu(kind, 100, data), TOL_100)


def mpirun_cuda(n: int, args: list[str], timeout: int = 400, **extra: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HGC_TARGET="cuda", NCCL_NVLS_ENABLE="0", OMP_NUM_THREADS="1")
    env.pop("HGC_DIST_LOGICAL_DEVICES", None)
    env.pop("HGC_DIST_BACKEND", None)
    env.update(extra)
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n), sys.executable, "-m",
           "tests.runtime.dist.worker", *args]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


# (LocalizedSlotSparseEmbeddingOneHot works on a single node: the placement plan refuses it on several ranks)
MPI_KINDS = ("wdl", "hybrid")
needs_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun (Open MPI) is not installed")


def mpirun_trained(tmp_path: Path, data: dict[str, Any], kind: str, **env: str) -> dict[str, np.ndarray]:
    pytest.importorskip("mpi4py")
    out = tmp_path / "r.npz"
    mpirun_cuda(2, ["--kind", kind, "--vvgpu", "[[0], [1]]", "--data", json.dumps(data), "--steps", "100",
                    "--statistics", "4", "--out", str(out)], **env)
    with np.load(out) as f:
        got = dict(f)
    assert int(got["ranks"][0]) == 2
    return got


@needs_mpirun
@pytest.mark.parametrize("kind", MPI_KINDS)
def test_mpirun_two_ranks_on_one_gpu_train_as_one(tmp_path: Path, data: dict[str, Any], kind: str) -> None:
    """The MPI launch style on one GPU: each rank a logical GPU on device 0, exchanging through host MPI."""
    got = mpirun_trained(tmp_path, data, kind, HGC_DIST_LOGICAL_DEVICES="1", HGC_DIST_BACKEND="mpi")
    assert_close(got, one_gpu(kind, 100, data), TOL_100)


@two_gpus
@needs_mpirun
@pytest.mark.parametrize("kind", MPI_KINDS)
def test_mpirun_two_ranks_train_as_one(tmp_path: Path, data: dict[str, Any], kind: str) -> None:
    assert_close(mpirun_trained(tmp_path, data, kind), one_gpu(kind, 100, data), TOL_100)
