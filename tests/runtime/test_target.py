"""Target selection and the executor factory (hgc.runtime.target), the lowering facts the cuda trainer relies
on, and the trainer's cuda code path on a fake device (tests/runtime/fake_cuda.py): same numbers as the cpu
target bit for bit, files byte-identical both ways, the NaN watch read at report points, evaluation on
"device" arrays, freezing and resuming."""
from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

import hgc
from hgc.codegen.lower import lower
from hgc.config import config
from hgc.errors import NotBuiltError, TrainingError
from hgc.runtime import target as tg
from hgc.runtime.cpu.executor import CpuExecutor
from tests.runtime.fake_cuda import FakeCudaExecutor, fake_cuda
from tests.runtime.tiny import Data, dense_weights, dlrm, eval_predictions, runtime, table_rows, train_steps, wdl

EMBEDDINGS = ("e_wide", "e_deep")
ALL_METRICS = {hgc.MetricsType.AUC: 1.0, hgc.MetricsType.AverageLoss: 0.0, hgc.MetricsType.HitRate: 0.0}


# -- choosing the target ----------------------------------------------------------------------------------
def test_forced_and_automatic_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tg.resolve_target("cpu") == "cpu"
    monkeypatch.setattr(tg, "cuda_unavailable_reason", lambda: None)
    assert tg.resolve_target("cuda") == "cuda" and tg.resolve_target("auto") == "cuda"
    with config.patch(target="auto"):
        assert tg.resolve_target() == "cuda"
    monkeypatch.setattr(tg, "cuda_unavailable_reason", lambda: "CuPy sees no GPU")
    assert tg.resolve_target("auto") == "cpu"
    with pytest.raises(TrainingError, match=r"cuda target was requested \(HGC_TARGET=cuda\) but cannot run here: "
                                            r"CuPy sees no GPU; .*set HGC_TARGET=cpu"):
        tg.resolve_target("cuda")
    with config.patch(target="tpu"), pytest.raises(ValueError, match="'tpu' is not allowed"):
        tg.resolve_target()
    with pytest.raises(ValueError, match="target='gpu' is not allowed"):
        tg.resolve_target("gpu")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_without_cupy_the_reason_says_so() -> None:
    assert "CuPy does not import" in str(tg.cuda_unavailable_reason())
    assert not tg.cuda_available()


def test_a_forced_cuda_target_without_a_gpu_fails_at_the_first_step(data: Data,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tg, "cuda_unavailable_reason", lambda: "CuPy does not import (No module named 'cupy')")
    with config.patch(target="cuda"):
        m = wdl(data)
        assert m.pass_context().target == "cuda"
        with pytest.raises(TrainingError, match="No module named 'cupy'.*HGC_TARGET=cpu"):
            m.train()


def _tiny_executor_inputs(data: Data) -> tuple:
    m = wdl(data)
    t = runtime(m).trainer
    weights = {n: t.dense_weights[s] for n, s in t.weight_slices.items()}
    return m, t, weights


def test_make_executor_cpu_and_the_fallback_of_auto_mode(data: Data, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    m, t, weights = _tiny_executor_inputs(data)
    target, ex = tg.make_executor("cpu", t.graph, m.compiled.plans, weights, t.tables, 5)
    assert target == "cpu" and isinstance(ex, CpuExecutor) and ex.seed == 5

    def no_kernel(*a: object, **k: object) -> None:
        raise NotBuiltError("a CUDA kernel for Frobnicate (forward and backward)", "Frobnicate layer 'f'")

    import hgc.codegen.lower as lower_mod

    monkeypatch.setattr(lower_mod, "lower", no_kernel)
    target, ex = tg.make_executor("cuda", t.graph, m.compiled.plans, weights, t.tables, 5)
    assert target == "cpu" and isinstance(ex, CpuExecutor)
    assert re.search(r"cannot run this model yet \(.*Frobnicate.*\); training on the cpu target instead",
                     capsys.readouterr().out)
    with pytest.raises(NotBuiltError, match="Frobnicate"):
        tg.make_executor("cuda", t.graph, m.compiled.plans, weights, t.tables, 5, forced=True)
    with pytest.raises(ValueError, match="target='tpu'"):
        tg.make_executor("tpu", t.graph, m.compiled.plans, weights, t.tables, 5)


def test_auto_mode_falls_back_to_cpu_for_the_whole_trainer(data: Data, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model the cuda target cannot lower trains on cpu, exactly as a cpu run (sparse optimizers included)."""
    import hgc.codegen.lower as lower_mod
    from hgc.runtime import trainer as trainer_mod

    def no_kernel(*a: object, **k: object) -> None:
        raise NotBuiltError("a CUDA kernel for Frobnicate (forward and backward)")

    monkeypatch.setattr(lower_mod, "lower", no_kernel)
    monkeypatch.setattr(trainer_mod, "resolve_target", lambda t: t)
    with config.patch(target="auto"), monkeypatch.context() as mp:
        mp.setattr(tg, "cuda_unavailable_reason", lambda: None)
        fallback = wdl(data, seed=3)
        assert fallback.pass_context().target == "cuda"
        losses = train_steps(fallback, 5)
    assert runtime(fallback).trainer.target == "cpu"
    assert runtime(fallback).trainer.sparse_opts["e_deep"].capacity == runtime(fallback).trainer.tables[
        "e_deep"].capacity
    with config.patch(target="cpu"):
        assert train_steps(wdl(data, seed=3), 5) == losses


# -- lowering facts the cuda trainer relies on ------------------------------------------------------------
@pytest.mark.parametrize("build", [wdl, dlrm], ids=["wdl", "dlrm"])
def test_the_plan_matches_the_trainers_tables_and_weight_order(data: Data, build) -> None:
    with config.patch(target="cuda"):
        m = build(data)
    with config.patch(target="cpu"):
        t = runtime(m).trainer
    plan = lower(t.graph, m.compiled.plans)
    for spec in plan.embeddings:  # DeviceEmbedding.from_host needs the same row count
        assert spec.capacity == t.tables[spec.name].capacity, spec.name
        assert spec.vec_size == t.tables[spec.name].vec_size
    assert {w.node for w in plan.weights} == set(t.weight_slices)
    for w in plan.weights:
        assert tuple(w.shape) == tuple(t.dense_weights[t.weight_slices[w.node].start + w.index].shape)
    assert [n for n, _ in plan.losses] == [n.name for n in t.losses]


def test_file_order_round_trip() -> None:
    flat = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32), np.full((1, 2), 7, np.float32)]
    slices = {"a": slice(0, 2), "b": slice(2, 3)}
    cut = tg.by_node(flat, slices)
    assert [x.shape for x in cut["a"]] == [(2, 3), (3,)] and cut["b"][0][0, 1] == 7
    into = [np.zeros_like(x) for x in flat]
    tg.to_file_order({k: [v * 2 for v in vs] for k, vs in cut.items()}, slices, into)
    assert all(np.array_equal(i, 2 * f) for i, f in zip(into, flat))
    with pytest.raises(ValueError, match="node 'b' has 2 weights on the device, 1 in the dense file"):
        tg.to_file_order({"b": [flat[0], flat[1]]}, slices, into)


def test_device_sparse_optimizer_view() -> None:
    from tests.runtime.fake_cuda import dev

    class Hi:
        value = -1

        def fill(self, v: int) -> None:
            self.value = v

    class Table:
        optimizer, update_type, times, capacity, vec = "Adam", "Global", 3, 4, 2

        def __init__(self) -> None:
            self.states = [dev(np.zeros((4, 2), np.float32)), dev(np.zeros((4, 2), np.float32))]
            self.hi = Hi()

        def state_arrays(self) -> list[np.ndarray]:
            return [np.array(s) for s in self.states]

    table = Table()
    view = tg.DeviceSparseOptimizer(table)
    assert (view.optimizer, view.update_type, view.state_kinds, view.times) == ("Adam", "Global", ("m", "v"), 3)
    view.times = 9
    assert table.times == 9 and len(view.states()) == 2
    m, v = np.zeros((4, 2)), np.zeros((4, 2))
    m[2, 1] = 0.5
    view.load_states([m, v.reshape(-1)])
    assert np.array_equal(view.states()[0], m) and table.hi.value == 3  # the Global span ends after row 2
    view.load_states([np.zeros(8), np.zeros(8)])
    assert table.hi.value == 0
    with pytest.raises(ValueError, match="expected 2 state kind\\(s\\) \\['m', 'v'\\], got 1"):
        view.load_states([m])
    with pytest.raises(ValueError, match="state 'v' has 6 values, expected 4×2"):
        view.load_states([m, np.zeros(6)])


def _twin_tables(one_hot: bool) -> tuple:
    from hgc.runtime.embedding.table import EmbeddingTable
    from hgc.runtime.optim.sparse import make_sparse_optimizer
    from tests.runtime.fake_cuda import FakeTable

    def table() -> EmbeddingTable:
        if one_hot:
            return EmbeddingTable("t", 3, None, "sum", (4, 5), True, rng=np.random.default_rng(1))
        return EmbeddingTable("t", 3, 9, "sum", (), False, rng=np.random.default_rng(1))

    cpu, dev = table(), table()
    return cpu, tg.DeviceTable(FakeTable(dev, make_sparse_optimizer("SGD", dev.capacity, 3)))


def test_device_table_load_is_the_cpu_tables() -> None:
    cpu, dev = _twin_tables(one_hot=False)
    r = np.random.default_rng(2)
    for keys, slots in (([7, -3, 11], [0, 1, 1]), ([11, 5, 7, 40], None), ([2**40, 8], [1, 0])):
        vecs = r.normal(size=(len(keys), 3)).astype(np.float32)
        k = np.asarray(keys, np.int64)
        cpu.load(k, vecs, None if slots is None else np.asarray(slots, np.uint64))
        dev.load(k, vecs, None if slots is None else np.asarray(slots, np.uint64))
        for a, b in zip(cpu.dump(), dev.dump()):
            assert np.array_equal(a, b)
        assert np.array_equal(cpu.slot_ids(), dev.slot_ids())
    assert np.array_equal(cpu.rows, dev.host_rows())
    with pytest.raises(ValueError, match="hash table 't': the keys to load must be distinct, got 1 repeated"):
        dev.load(np.array([1, 1]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rows of keys \\(2\\) and embeddings \\(3 values"):
        dev.load(np.array([1, 2]), np.zeros(3))
    from hgc.runtime.embedding.hash_table import TableFullError

    with pytest.raises(TableFullError):
        dev.load(np.arange(100, 110), np.zeros((10, 3)))


def test_device_table_load_one_hot() -> None:
    cpu, dev = _twin_tables(one_hot=True)
    vecs = np.arange(9, dtype=np.float32).reshape(3, 3)
    cpu.load(np.array([8, 0, 4]), vecs)
    dev.load(np.array([8, 0, 4]), vecs)
    assert np.array_equal(cpu.rows, dev.host_rows()) and dev.size == 9
    with pytest.raises(ValueError, match="key 9 is outside the one-hot table \\[0, 9\\)"):
        dev.load(np.array([9]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="must be distinct"):
        dev.load(np.array([1, 1]), np.zeros((2, 3)))


# -- the cuda code path on the fake device ----------------------------------------------------------------
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    with fake_cuda(monkeypatch):
        yield


def _on_cpu(build, *a, **kw):
    with config.patch(target="cpu"):
        m = build(*a, **kw)
        runtime(m)
    return m


def test_fake_cuda_trains_as_the_cpu_target(data: Data, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    ref = _on_cpu(wdl, data, seed=5, dropout=0.3, metrics_spec=ALL_METRICS)
    ref.fit(max_iter=12, display=4, eval_interval=6, snapshot=100)
    want = capsys.readouterr().out
    with fake_cuda(monkeypatch):
        m = wdl(data, seed=5, dropout=0.3, metrics_spec=ALL_METRICS)
        m.fit(max_iter=12, display=4, eval_interval=6, snapshot=100)
        t = runtime(m).trainer
        assert t.device and isinstance(t.executor, FakeCudaExecutor)
        got = capsys.readouterr().out
    assert "Target: cuda, fake GPU (device 0)" in got and "Target: cpu" in want

    def values(out: str, what: str) -> list[str]:
        return re.findall(what, out)

    for pattern in (r"Loss: ([\d.]+)", r"Evaluation, \w+: ([\d.na]+)"):
        assert values(got, pattern) == values(want, pattern) and values(got, pattern)
    for a, b in zip(dense_weights(ref), dense_weights(m)):
        assert np.array_equal(a, b)
    for name in EMBEDDINGS:
        assert np.array_equal(table_rows(ref, name), table_rows(m, name))
    assert runtime(m).trainer.dense_opt.step_count == runtime(ref).trainer.dense_opt.step_count == 12


def test_fake_cuda_metrics_and_exports_match_the_cpu(data: Data, fake, tmp_path) -> None:
    ref = _on_cpu(wdl, data, seed=2, lr=0.05, metrics_spec=ALL_METRICS)
    m = wdl(data, seed=2, lr=0.05, metrics_spec=ALL_METRICS)
    assert train_steps(ref, 30) == train_steps(m, 30)
    for model, name in ((ref, "ref"), (m, "dev")):
        for _ in range(4):
            assert model.eval()
            model.export_predictions(str(tmp_path / f"{name}.p"), str(tmp_path / f"{name}.l"))
    a, b = dict(ref.get_eval_metrics()), dict(m.get_eval_metrics())
    assert list(a) == list(b) == ["AUC", "AverageLoss", "HitRate"]
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-12), k
    for ext in ("p", "l"):
        assert (tmp_path / f"ref.{ext}").read_text() == (tmp_path / f"dev.{ext}").read_text()
    assert all(np.isnan(v) for _, v in m.get_eval_metrics())
    assert np.array_equal(eval_predictions(ref), eval_predictions(m))


def test_fake_cuda_check_out_tensor(data: Data, fake) -> None:
    m = wdl(data)
    with pytest.raises(TrainingError, match="'relu1' has no value from the last training step"):
        m.check_out_tensor("relu1", hgc.Tensor_t.Train)
    assert m.train()
    grad = m.check_out_tensor("relu1", hgc.Tensor_t.Train)
    assert grad.shape == (32, 8) and np.abs(grad).sum() > 0
    with pytest.raises(TrainingError, match="'relu1' has no value from the last evaluation step"):
        m.check_out_tensor("relu1", hgc.Tensor_t.Evaluate)
    assert m.eval()
    assert m.check_out_tensor("add", hgc.Tensor_t.Evaluate).shape == (32, 1)
    with pytest.raises(TrainingError, match="'wide' is a sparse input"):
        m.check_out_tensor("wide", hgc.Tensor_t.Evaluate)
    with pytest.raises(TrainingError, match="'fc1' was fused away"):
        m.check_out_tensor("fc1", hgc.Tensor_t.Evaluate)
    assert m.train()
    with pytest.raises(TrainingError, match="a training step has run since; call eval\\(\\) again"):
        m.check_out_tensor("add", hgc.Tensor_t.Evaluate)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_fake_cuda_nan_is_reported_at_the_next_report_point(data: Data, fake, tmp_path) -> None:
    m = wdl(data, hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.SGD), lr=1e30)
    with pytest.raises(TrainingError, match=r"Loss cannot converge \(loss = (nan|inf) at iteration 2\)"):
        m.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    assert runtime(m).trainer.iteration == 10  # the run went on to the end of fit, where the watch was read
    m = wdl(data, hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.SGD), lr=1e30)
    for _ in range(4):
        assert m.train()  # no read-back, no error yet
    with pytest.raises(TrainingError, match="at iteration 2"):
        m.get_current_loss()
    with pytest.raises(TrainingError, match="at iteration 2"):
        m.save_params_to_files(str(tmp_path / "never"), 1)
    assert not list(tmp_path.iterdir())


def test_fake_cuda_files_are_byte_identical_to_the_cpu_targets(data: Data, fake, tmp_path) -> None:
    ref = _on_cpu(wdl, data, seed=3)
    m = wdl(data, seed=3)
    train_steps(ref, 15)
    train_steps(m, 15)
    ref.save_params_to_files(str(tmp_path / "c"), 14)
    m.save_params_to_files(str(tmp_path / "g"), 14)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 * 9
    for f in files:
        if str(f).startswith("c"):
            other = tmp_path / ("g" + str(f)[1:])
            assert (tmp_path / f).read_bytes() == other.read_bytes(), f


@pytest.mark.parametrize("direction", ["cpu_to_cuda", "cuda_to_cpu"])
def test_fake_cuda_loads_what_the_cpu_saved_and_the_reverse(data: Data, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path, direction: str) -> None:
    def build(on_device: bool, seed: int):
        if on_device:
            with fake_cuda(monkeypatch):
                m = wdl(data, seed=seed)
                runtime(m)
            return m
        return _on_cpu(wdl, data, seed=seed)

    src, dst = build(direction == "cuda_to_cpu", 3), build(direction == "cpu_to_cuda", 4)
    with fake_cuda(monkeypatch):
        train_steps(src, 20)
        src.save_params_to_files(str(tmp_path / "s"), 19)
        prefix = str(tmp_path / "s")
        dst.load_dense_weights(f"{prefix}_dense_19.model")
        dst.load_dense_optimizer_states(f"{prefix}_opt_dense_19.model")
        dst.load_sparse_weights([f"{prefix}{i}_sparse_19.model" for i in range(2)])
        dst.load_sparse_optimizer_states(dict(zip(EMBEDDINGS, [f"{prefix}{i}_opt_sparse_19.model"
                                                               for i in range(2)])))
        for a, b in zip(dense_weights(src), dense_weights(dst)):
            assert np.array_equal(a, b)
        ts, td = runtime(src).trainer, runtime(dst).trainer
        for name in EMBEDDINGS:
            for x, y in zip(ts.tables[name].dump(), td.tables[name].dump()):
                assert np.array_equal(x, y)
            assert np.array_equal(ts.tables[name].slot_ids(), td.tables[name].slot_ids())
            assert td.sparse_opts[name].times == 20
        assert td.dense_opt.step_count == td.iteration == 20
        src.get_data_reader_train().set_source()
        assert train_steps(dst, 8) == train_steps(src, 8)  # the loaded model continues exactly


def test_fake_cuda_resume_from_a_snapshot_equals_the_uninterrupted_run(data: Data, fake, tmp_path) -> None:
    kw = {"lr": 0.02, "warmup_steps": 5, "decay_start": 12, "decay_steps": 30, "decay_power": 2.0, "end_lr": 0.001}
    prefix = str(tmp_path / "s")
    a = wdl(data, seed=5, dropout=0.3, **kw)
    a.fit(max_iter=10, display=1000, eval_interval=1000, snapshot=9, snapshot_prefix=prefix)
    a.get_data_reader_train().set_source()
    after = train_steps(a, 12)
    b = wdl(data, seed=5, dropout=0.3, **kw)
    b.load_dense_weights(f"{prefix}_dense_9.model")
    b.load_dense_optimizer_states(f"{prefix}_opt_dense_9.model")
    b.load_sparse_weights([f"{prefix}{i}_sparse_9.model" for i in range(2)])
    b.load_sparse_optimizer_states([f"{prefix}{i}_opt_sparse_9.model" for i in range(2)])
    assert train_steps(b, 12) == after
    for x, y in zip(dense_weights(a), dense_weights(b)):
        assert np.array_equal(x, y)


def test_fake_cuda_freezing(data: Data, fake) -> None:
    m = wdl(data)
    train_steps(m, 3)
    ex = runtime(m).trainer.executor
    assert ex.fused_steps == 3  # nothing frozen: the executor's fused step
    m.freeze_dense()
    m.freeze_embedding("e_wide")
    dense, wide, deep = dense_weights(m), table_rows(m, "e_wide"), table_rows(m, "e_deep")
    steps = runtime(m).trainer.dense_opt.step_count
    train_steps(m, 4)
    assert all(np.array_equal(a, b) for a, b in zip(dense, dense_weights(m)))
    assert np.array_equal(wide, table_rows(m, "e_wide")) and not np.array_equal(deep, table_rows(m, "e_deep"))
    assert runtime(m).trainer.dense_opt.step_count == steps
    assert ex.fused_steps == 3  # frozen parts: forward, backward and an update that skips them
    m.unfreeze_dense()
    train_steps(m, 1)
    assert runtime(m).trainer.dense_opt.step_count == steps + 1
    m.unfreeze_embedding()
    train_steps(m, 1)
    assert ex.fused_steps == 4


def test_fake_cuda_multi_task_loss_weights(tmp_path, fake) -> None:
    """Two labels, two BCE losses weighted 0.25 / 2.0: the same losses as on the cpu target."""
    from tests.runtime.tiny import DENSE, add_embeddings, make_data, new_model

    data = make_data(str(tmp_path / "d"), num_files=1, samples_per_file=100, label_dim=2)

    def two_task(target: str) -> hgc.Model:
        with config.patch(target=target):
            m = new_model(data, seed=4)
            m.add(hgc.Input(label_dim=[1, 1], label_name=["l1", "l2"], dense_dim=DENSE, dense_name="dense",
                            data_reader_sparse_param_array=[hgc.DataReaderSparseParam("wide", 2, True, 1),
                                                            hgc.DataReaderSparseParam("deep", 1, True, 2)]))
            add_embeddings(m)
            d = hgc.DenseLayer
            m.add(d(layer_type=hgc.Layer_t.Reshape, bottom_names=["e_deep"], top_names=["r1"], leading_dim=8))
            m.add(d(layer_type=hgc.Layer_t.Concat, bottom_names=["r1", "dense"], top_names=["c1"]))
            m.add(d(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["c1"], top_names=["a"], num_output=1))
            m.add(d(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["c1"], top_names=["b"], num_output=1))
            m.add(d(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=["a", "l1"], top_names=["la"]))
            m.add(d(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=["b", "l2"], top_names=["lb"]))
            m.compile(loss_names=["l1", "l2"], loss_weights=[0.25, 2.0])
            runtime(m)
        return m

    ref, dev = two_task("cpu"), two_task("cuda")
    assert runtime(dev).trainer.device and runtime(dev).trainer.loss_weights == {"la": 0.25, "lb": 2.0}
    assert train_steps(ref, 6) == train_steps(dev, 6)
    for model in (ref, dev):
        for _ in range(3):
            assert model.eval()
    a, b = dict(ref.get_eval_metrics()), dict(dev.get_eval_metrics())
    assert a["AUC"] == pytest.approx(b["AUC"], abs=1e-12)
