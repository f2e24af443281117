"""Whole models on several in-process GPUs (vvgpu = [[0, 1, …]]) train as on one GPU: losses, dense weights,
every table row and optimizer state, evaluation metrics."""
from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from hgc.runtime.cpu.executor import take_rows
from hgc.runtime.dist.parallel import DistributedExecutor, ShardedTableView, placement_of, wrap_executor
from hgc.runtime.dist.topology import Topology
from tests.runtime.dist import worker
from tests.runtime.dist._util import rel

RUNS = [("wdl", [[0, 1, 2]], "Adam", "Global"), ("wdl", [[0, 1]], "MomentumSGD", "Local"),
        ("onehot", [[0, 1, 2]], "Adam", "LazyGlobal"), ("hybrid", [[0, 1]], "SGD", "Local"),
        ("hybrid", [[0, 1, 2, 3]], "SGD", "Global")]
STEPS = 24


@functools.cache
def _one_gpu(kind: str, optimizer: str, update: str, data: str) -> dict[str, np.ndarray]:
    return worker.run(kind, [[0]], json.loads(data), STEPS, optimizer=optimizer, update=update, statistics=4)[1]


def one_gpu(kind: str, optimizer: str, update: str, data: dict[str, Any]) -> dict[str, np.ndarray]:
    """The single-GPU result of a run (cached per test process)."""
    return _one_gpu(kind, optimizer, update, json.dumps(data, sort_keys=True))


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float = 1e-5) -> None:
    assert sorted(k for k in got if k != "ranks") == sorted(k for k in want if k != "ranks")
    for k, v in want.items():
        if k == "ranks":
            continue
        if k.endswith(".keys"):
            assert np.array_equal(got[k], v), k
        elif np.linalg.norm(v):
            assert rel(got[k], v) < tol, (k, rel(got[k], v))
        else:
            assert np.array_equal(got[k], v), k


@pytest.mark.parametrize("kind,vvgpu,optimizer,update", RUNS,
                         ids=[f"{r[0]}-{sum(map(len, r[1]))}gpu-{r[2]}-{r[3]}" for r in RUNS])
def test_in_process_gpus_train_as_one(dist_data: dict[str, Any], kind: str, vvgpu: list[list[int]], optimizer: str,
                                      update: str) -> None:
    t, got = worker.run(kind, vvgpu, dist_data, STEPS, optimizer=optimizer, update=update, statistics=4)
    assert isinstance(t.executor, DistributedExecutor) and len(t.executor.executors) == sum(map(len, vvgpu))
    assert all(isinstance(v, ShardedTableView) for v in t.tables.values())
    want = one_gpu(kind, optimizer, update, dist_data)
    assert_same(got, want)
    assert len(set(np.round(want["losses"], 6))) > 1  # it really trained
    if kind == "hybrid":
        assert t.tables["e_deep"].emb.split_done


def test_short_batches_and_frozen_tables(dist_data: dict[str, Any]) -> None:
    one = worker.trainer_of(worker.build("wdl", [[0]], dist_data), wrap=False)
    three = worker.trainer_of(worker.build("wdl", [[0, 1, 2]], dist_data))
    for t in (one, three):
        t.frozen_embeddings.add("e_wide")
        worker.train(t, 5)
    assert np.array_equal(np.sort(one.tables["e_wide"].dump()[0]), np.sort(three.tables["e_wide"].dump()[0]))
    k1, v1 = one.tables["e_wide"].dump()
    k3, v3 = three.tables["e_wide"].dump()
    assert rel(v3[np.argsort(k3)], v1[np.argsort(k1)]) == 0  # frozen: both still hold the initial vectors
    batch = take_rows(one._next_batch("eval"), 13)  # GPU 0 gets 12 rows, GPU 1 one row, GPU 2 none
    outs = [t.executor.forward(batch, training=False) for t in (one, three)]
    assert outs[1].tensors["add"].shape == (13, 1)
    assert rel(outs[1].tensors["add"], outs[0].tensors["add"]) < 1e-6
    assert abs(outs[1].losses["loss"] - outs[0].losses["loss"]) < 1e-6
    train_batch = take_rows(one._next_batch("train"), 20)
    for t in (one, three):
        t.step(train_batch)
    assert abs(one.current_loss - three.current_loss) < 1e-6
    assert rel(three.dense_weights[0], one.dense_weights[0]) < 1e-6


def test_wrapping_needs_a_matching_plan_and_happens_once(dist_data: dict[str, Any]) -> None:
    m1 = worker.build("wdl", [[0]], dist_data)
    single = worker.trainer_of(m1, wrap=False)
    assert wrap_executor(single, m1.compiled) is single.executor  # one GPU: nothing to do
    m2 = worker.build("wdl", [[0, 1]], dist_data)
    m3 = worker.build("wdl", [[0, 1, 2]], dist_data)
    t = worker.runtime(m3).trainer
    with pytest.raises(ValueError, match=r"placement plan was made for vvgpu = \[\[0, 1\]\].*\[\[0, 1, 2\]\]"):
        placement_of(t, m2.compiled, Topology.of([[0, 1, 2]]))
    assert placement_of(t, None, Topology.of([[0, 1, 2]])) == m3.compiled.plans["placement"]  # the pass's plan
    ex = wrap_executor(t, m3.compiled)
    assert wrap_executor(t, m3.compiled) is ex and t.executor is ex


def test_the_trainer_gives_itself_its_gpus(dist_data: dict[str, Any]) -> None:
    """Once trainer.py calls wrap_executor where it makes its executor, a model compiled for [[0, 1]] trains
    on two GPUs through the public API alone."""
    from tests.runtime.tiny import runtime, train_steps

    m = worker.build("wdl", [[0, 1]], dist_data)
    if not isinstance(runtime(m).trainer.executor, DistributedExecutor):
        pytest.skip("hgc/runtime/trainer.py does not call hgc.runtime.dist.parallel.wrap_executor yet "
                    "(the one-line hook is pending with the trainer's owner)")
    ref = worker.build("wdl", [[0]], dist_data)
    assert rel(train_steps(m, 12), train_steps(ref, 12)) < 1e-5
    assert rel(runtime(m).trainer.dense_weights[0], runtime(ref).trainer.dense_weights[0]) < 1e-5
