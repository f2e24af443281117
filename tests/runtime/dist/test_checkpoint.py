"""Snapshots move between GPU counts: written on N in-process GPUs they load on M GPUs and on the single-GPU
cpu target (and the reverse), rows and optimizer states following their keys; the files keep HugeCTR's
multi-GPU layout."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.dist.checkpoint import (
    LAYOUT_FILE,
    Block,
    load_snapshot,
    load_sparse_optimizer_states,
    read_layout,
    save_snapshot,
    table_snapshot,
)
from hgc.runtime.trainer import Checkpoints
from tests.runtime.dist import worker
from tests.runtime.dist._util import rel

KINDS = [("wdl", "Adam", "Global"), ("onehot", "Adam", "Local"), ("hybrid", "SGD", "Local")]


def by_key_state(t: Any, name: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    s = table_snapshot(t, name)[0]
    o = np.argsort(s.keys, kind="stable")
    return s.keys[o], s.vectors[o], [x[o] for x in s.states]


def assert_same_tables(a: Any, b: Any, tol: float = 1e-6) -> None:
    for name in a.tables:
        ka, va, sa = by_key_state(a, name)
        kb, vb, sb = by_key_state(b, name)
        assert np.array_equal(ka, kb) and rel(vb, va) <= tol
        for x, y in zip(sa, sb):
            assert rel(y, x) <= tol
        if a.sparse_opts[name].optimizer == "Adam":  # the step count only matters to Adam
            assert a.sparse_opts[name].times == b.sparse_opts[name].times


def trainer(kind: str, vvgpu: list[list[int]], data: dict[str, Any], opt: str, update: str) -> Any:
    return worker.trainer_of(worker.build(kind, vvgpu, data, optimizer=opt, update=update), wrap=True,
                             statistics=3)


@pytest.mark.parametrize("kind,opt,update", KINDS, ids=[k[0] for k in KINDS])
def test_snapshot_of_three_gpus_loads_on_one_and_two(tmp_path: Any, dist_data: dict[str, Any], kind: str,
                                                     opt: str, update: str) -> None:
    writer = trainer(kind, [[0, 1, 2]], dist_data, opt, update)
    worker.train(writer, 10)
    save_snapshot(writer, str(tmp_path / "s"), 9)
    readers = [trainer(kind, [[0]], dist_data, opt, update), trainer(kind, [[0, 1]], dist_data, opt, update)]
    for r in readers:
        load_snapshot(r, str(tmp_path / "s"), 9)
        assert_same_tables(writer, r)
        assert all(rel(x, y) == 0 for x, y in zip(r.dense_weights, writer.dense_weights))
        assert r.iteration == 10 and r.executor.step == 10
    losses = [worker.train(r, 8) for r in readers]
    assert rel(losses[1], losses[0]) < 1e-5
    assert_same_tables(readers[0], readers[1], 1e-5)


def test_one_gpu_snapshot_loads_on_three(tmp_path: Any, dist_data: dict[str, Any]) -> None:
    one = trainer("wdl", [[0]], dist_data, "Adam", "LazyGlobal")
    worker.train(one, 10)
    save_snapshot(one, str(tmp_path / "one"), 9)
    wide = one.tables["e_wide"]
    assert read_layout(str(tmp_path / "one0_sparse_9.model")) == [Block(len(wide.dump()[0]), wide.capacity)]
    three = trainer("wdl", [[0, 1, 2]], dist_data, "Adam", "LazyGlobal")
    load_snapshot(three, str(tmp_path / "one"), 9)
    assert_same_tables(one, three, 0)


def test_files_keep_hugectr_multi_gpu_layout(tmp_path: Any, dist_data: dict[str, Any]) -> None:
    t = trainer("wdl", [[0, 1, 2]], dist_data, "Adam", "Global")
    worker.train(t, 6)
    save_snapshot(t, str(tmp_path / "w"), 5)
    folder = tmp_path / "w0_sparse_5.model"  # e_wide: DistributedSlotSparseEmbeddingHash
    assert sorted(os.listdir(folder)) == sorted([LAYOUT_FILE, "emb_vector", "key"])
    keys = np.fromfile(folder / "key", "<i8")
    assert (np.diff(keys % 3) >= 0).all()  # grouped by GPU (key % 3), GPUs in order
    doc = json.loads((folder / LAYOUT_FILE).read_text())
    emb = t.tables["e_wide"].emb
    assert [b["rows"] for b in doc["blocks"]] == emb.capacities and doc["vvgpu"] == [[0, 1, 2]]
    assert [b["keys"] for b in doc["blocks"]] == [int(np.sum(keys % 3 == g)) for g in range(3)]
    cap, vec = sum(emb.capacities), 1
    assert os.path.getsize(tmp_path / "w0_opt_sparse_5.model") == 2 * cap * vec * 4  # m then v, whole buffers
    m = np.fromfile(tmp_path / "w0_opt_sparse_5.model", "<f4")[:cap].reshape(cap, vec)
    start = emb.capacities[0]  # GPU 1's block starts after GPU 0's whole buffer
    assert np.array_equal(m[start:start + emb.shards[1].size], emb.shards[1].opt.states()[0][:emb.shards[1].size])
    assert sorted(os.listdir(tmp_path / "w1_sparse_5.model")) == sorted([LAYOUT_FILE, "emb_vector", "key", "slot_id"])


def test_files_without_a_layout_record_load_only_into_their_own_layout(tmp_path: Any,
                                                                      dist_data: dict[str, Any]) -> None:
    t = trainer("wdl", [[0, 1, 2]], dist_data, "Adam", "Global")
    worker.train(t, 6)
    save_snapshot(t, str(tmp_path / "w"), 5)
    for i in range(2):
        os.unlink(tmp_path / f"w{i}_sparse_5.model" / LAYOUT_FILE)
    same = trainer("wdl", [[0, 1, 2]], dist_data, "Adam", "Global")
    load_snapshot(same, str(tmp_path / "w"), 5)  # HugeCTR's rule: the loading run's own layout
    assert_same_tables(t, same, 0)
    with pytest.raises(DataError, match="w0_opt_sparse_5.model: sparse optimizer file has .* no hgc_layout.json"):
        load_snapshot(trainer("wdl", [[0]], dist_data, "Adam", "Global"), str(tmp_path / "w"), 5)


def test_optimizer_states_alone_follow_their_keys(tmp_path: Any, dist_data: dict[str, Any]) -> None:
    """Checkpoints' two-call loading (sparse model, then its optimizer states) across GPU counts."""
    t = trainer("wdl", [[0, 1, 2]], dist_data, "Adam", "Global")
    worker.train(t, 7)
    save_snapshot(t, str(tmp_path / "w"), 6)
    for vvgpu in ([[0]], [[0, 1]]):
        r = trainer("wdl", vvgpu, dist_data, "Adam", "Global")
        with pytest.raises(ValueError, match="load the sparse model before its optimizer states"):
            load_sparse_optimizer_states(r, "e_wide", str(tmp_path / "w0_opt_sparse_6.model"))
        for i, name in enumerate(r.tables):
            Checkpoints(r).load_sparse_weights(name, str(tmp_path / f"w{i}_sparse_6.model"))
            load_sparse_optimizer_states(r, name, str(tmp_path / f"w{i}_opt_sparse_6.model"))
        assert_same_tables(t, r, 0)
    with pytest.raises(ValueError, match="without model_dir"):
        load_sparse_optimizer_states(r, "e_wide", str(tmp_path / "states.bin"))


def test_the_trainers_checkpoints_work_on_sharded_tables(tmp_path: Any, dist_data: dict[str, Any]) -> None:
    """Checkpoints (one process) saves and reloads a sharded run in the same layout through the tables'
    EmbeddingTable / SparseOptimizer interfaces."""
    t = trainer("wdl", [[0, 1]], dist_data, "Adam", "Global")
    worker.train(t, 6)
    Checkpoints(t).save(str(tmp_path / "c"), 5)
    again = trainer("wdl", [[0, 1]], dist_data, "Adam", "Global")
    cp = Checkpoints(again)
    cp.load_dense_weights(str(tmp_path / "c_dense_5.model"))
    cp.load_dense_optimizer_states(str(tmp_path / "c_opt_dense_5.model"))
    for i, name in enumerate(again.tables):
        cp.load_sparse_weights(name, str(tmp_path / f"c{i}_sparse_5.model"))
        cp.load_sparse_optimizer_states(name, str(tmp_path / f"c{i}_opt_sparse_5.model"))
    assert_same_tables(t, again, 0)
    for _ in range(4):  # the same batches from here on: the same steps
        batch = again._next_batch("train")
        t.step(batch)
        again.step(batch)
        assert again.current_loss == t.current_loss
    assert_same_tables(t, again, 0)
