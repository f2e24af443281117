"""Model files through the API on the cpu target: save and load into a fresh model, construct_from_json, a new
dense network on loaded embeddings, atomic saves, and resuming from a snapshot exactly."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hgc
from hgc.runtime import checkpoint
from tests.runtime.tiny import (
    BATCH,
    Data,
    add_wdl_dense,
    dense_weights,
    eval_predictions,
    new_model,
    runtime,
    table_rows,
    train_steps,
    wdl,
)

EMBEDDINGS = ("e_wide", "e_deep")
SCHEDULE = {"lr": 0.02, "warmup_steps": 5, "decay_start": 12, "decay_steps": 30, "decay_power": 2.0, "end_lr": 0.001}


def snapshot(prefix: str, i: int) -> dict[str, object]:
    return {"dense": f"{prefix}_dense_{i}.model", "dense_opt": f"{prefix}_opt_dense_{i}.model",
            "sparse": [f"{prefix}{k}_sparse_{i}.model" for k in range(2)],
            "sparse_opt": [f"{prefix}{k}_opt_sparse_{i}.model" for k in range(2)]}


def load_all(m: hgc.Model, files: dict, form: str = "list") -> None:
    m.load_dense_weights(files["dense"])
    m.load_dense_optimizer_states(files["dense_opt"])
    sparse, sparse_opt = files["sparse"], files["sparse_opt"]
    if form == "list":
        m.load_sparse_weights(sparse)
        m.load_sparse_optimizer_states(sparse_opt)
    elif form == "dict":
        m.load_sparse_weights(dict(zip(EMBEDDINGS, sparse)))
        m.load_sparse_optimizer_states(dict(zip(EMBEDDINGS, sparse_opt)))
    else:
        m.load_sparse_weights(sparse_embedding_files_map=dict(zip(EMBEDDINGS, sparse)))
        m.load_sparse_optimizer_states(sparse_opt_states_files_map=dict(zip(EMBEDDINGS, sparse_opt)))


def states(m: hgc.Model) -> list[np.ndarray]:
    t = runtime(m).trainer
    return [a for kind in t.dense_opt.states() for a in kind] + [s for o in t.sparse_opts.values() for s in o.states()]


def dumped(m: hgc.Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) of the rows a table uses."""
    return runtime(m).trainer.tables[name].dump()


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("form", ["list", "dict", "map_keyword"])
def test_saved_files_load_into_a_fresh_model(data: Data, tmp_path, form: str) -> None:
    a = wdl(data, seed=3)
    train_steps(a, 20)
    a.save_params_to_files(str(tmp_path / "a"), 19)
    b = wdl(data, seed=4)  # other initial weights: everything must come from the files
    assert not np.array_equal(dense_weights(a)[0], dense_weights(b)[0])
    load_all(b, snapshot(str(tmp_path / "a"), 19), form)
    assert_same(dense_weights(a), dense_weights(b))
    assert_same(states(a), states(b))
    for name in EMBEDDINGS:
        assert_same(dumped(a, name), dumped(b, name))
    assert np.array_equal(eval_predictions(a), eval_predictions(b))


def test_load_some_embeddings_by_name(data: Data, tmp_path) -> None:
    a = wdl(data, seed=3)
    train_steps(a, 10)
    a.save_params_to_files(str(tmp_path / "a"), 9)
    b = wdl(data, seed=4)
    wide = table_rows(b, "e_wide")
    b.load_sparse_weights({"e_deep": str(tmp_path / "a1_sparse_9.model")})
    assert np.array_equal(table_rows(b, "e_wide"), wide)
    assert_same(dumped(a, "e_deep"), dumped(b, "e_deep"))
    with pytest.raises(ValueError, match="key 'deep' is not an embedding"):
        b.load_sparse_weights({"deep": str(tmp_path / "a1_sparse_9.model")})


def test_resume_at_an_epoch_boundary_equals_the_uninterrupted_run(data: Data, tmp_path) -> None:
    per_epoch = 2 * 300 // BATCH
    prefix = str(tmp_path / "s")
    a = wdl(data, seed=5, dropout=0.3, repeat=False, **SCHEDULE)
    a.fit(num_epochs=2, display=1000, eval_interval=1000, snapshot=per_epoch - 1, snapshot_prefix=prefix)
    assert os.path.isdir(f"{prefix}0_sparse_{per_epoch - 1}.model")  # saved after the first epoch's last step
    b = wdl(data, seed=5, dropout=0.3, repeat=False, **SCHEDULE)  # the same script again: same seed
    load_all(b, snapshot(prefix, per_epoch - 1))
    t = runtime(b).trainer
    assert (t.iteration, t.dense_opt.step_count, t.scheduler.step, t.sparse_opts["e_deep"].times) == (per_epoch,) * 4
    b.fit(num_epochs=1, display=1000, eval_interval=1000, snapshot=1000)
    assert_same(dense_weights(a), dense_weights(b))  # bitwise: Adam steps, schedule and Dropout masks restored
    assert_same(states(a), states(b))
    for name in EMBEDDINGS:
        assert np.array_equal(table_rows(a, name), table_rows(b, name))


def test_resume_in_non_epoch_mode_with_the_reader_restarted(data: Data, tmp_path) -> None:
    prefix = str(tmp_path / "s")
    a = wdl(data, seed=5, dropout=0.3, **SCHEDULE)
    a.fit(max_iter=10, display=1000, eval_interval=1000, snapshot=9, snapshot_prefix=prefix)
    a.get_data_reader_train().set_source()  # the resumed run reads from the beginning: so does this one
    after = train_steps(a, 15)
    b = wdl(data, seed=5, dropout=0.3, **SCHEDULE)
    load_all(b, snapshot(prefix, 9))
    assert train_steps(b, 15) == after
    # HugeCTR's files alone (no step count in the names) do not resume exactly: Adam and the schedule restart
    files = snapshot(prefix, 9)
    for key in ("dense_opt", "sparse_opt"):
        names = files[key] if isinstance(files[key], list) else [files[key]]
        renamed = [n.replace("_9.model", ".state") for n in names]
        for src, dst in zip(names, renamed):
            shutil.copy(src, dst)
        files[key] = renamed if isinstance(files[key], list) else renamed[0]
    c = wdl(data, seed=5, dropout=0.3, **SCHEDULE)
    load_all(c, files)
    assert runtime(c).trainer.dense_opt.step_count == 0
    assert train_steps(c, 15) != after


def test_construct_from_json_and_continue(data: Data, tmp_path) -> None:
    a = wdl(data, seed=3)
    train_steps(a, 20)
    a.save_params_to_files(str(tmp_path / "a"), 19)
    a.graph_to_json(str(tmp_path / "graph.json"))
    b = new_model(data, seed=8)
    b.construct_from_json(graph_config_file=str(tmp_path / "graph.json"), include_dense_network=True)
    b.compile()
    assert [n.op for n in b.compiled.graph.nodes()] == [n.op for n in a.compiled.graph.nodes()]
    load_all(b, snapshot(str(tmp_path / "a"), 19))
    assert np.array_equal(eval_predictions(a), eval_predictions(b))
    a.get_data_reader_train().set_source()
    assert train_steps(b, 10) == train_steps(a, 10)


def test_new_dense_network_on_loaded_embeddings(data: Data, tmp_path) -> None:
    a = wdl(data, seed=3, metrics_spec={hgc.MetricsType.AverageLoss: 0.0})
    train_steps(a, 40)
    a.save_params_to_files(str(tmp_path / "a"), 39)
    a.graph_to_json(str(tmp_path / "graph.json"))
    b = new_model(data, seed=8, metrics_spec={hgc.MetricsType.AverageLoss: 0.0})
    b.construct_from_json(graph_config_file=str(tmp_path / "graph.json"), include_dense_network=False)
    assert [n.op for n in b.graph.nodes()] == ["Input", "DistributedSlotSparseEmbeddingHash",
                                               "LocalizedSlotSparseEmbeddingHash"]
    add_wdl_dense(b, hidden=6, prefix="new_")
    b.compile()
    b.load_sparse_weights(snapshot(str(tmp_path / "a"), 39)["sparse"])
    for name in EMBEDDINGS:
        assert_same(dumped(a, name), dumped(b, name))

    def eval_loss() -> float:
        b.get_data_reader_eval().set_source()
        for _ in range(6):
            assert b.eval()
        return dict(b.get_eval_metrics())["AverageLoss"]

    before = eval_loss()
    b.freeze_embedding()
    train_steps(b, 40)
    assert eval_loss() < before - 0.05
    for name in EMBEDDINGS:
        assert_same(dumped(a, name), dumped(b, name))


def test_an_interrupted_save_leaves_the_previous_snapshot(data: Data, tmp_path, monkeypatch) -> None:
    m = wdl(data)
    train_steps(m, 3)
    prefix = str(tmp_path / "m")
    m.save_params_to_files(prefix, 3)

    def contents() -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    before = contents()
    assert len(before) == 2 + 2 + 2 + 2 + 1  # dense, dense opt, 2 sparse opt, key+vector, key+vector+slot_id
    train_steps(m, 3)
    real, calls = checkpoint._write_array, []

    def failing(f, arr, dtype):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        real(f, arr, dtype)

    monkeypatch.setattr(checkpoint, "_write_array", failing)
    with pytest.raises(OSError, match="disk full"):
        m.save_params_to_files(prefix, 3)
    assert contents() == before  # same files, same bytes, no temporary left behind
    monkeypatch.setattr(checkpoint, "_write_array", real)
    m.save_params_to_files(prefix, 3)
    after = contents()
    assert after.keys() == before.keys() and after != before
