"""The Trainer on the cuda target (HGC_TARGET=cuda): fit in both modes with its log lines, evaluation and the
GPU metrics, snapshots in HugeCTR's layouts byte-identical to the cpu target's for the same state, loading
both ways between the targets, construct_from_json, freezing, the low-level API, BatchNorm statistics,
multi-task loss weights, the learning-rate schedule, determinism and exact resumption, and the NaN watch.

Comparisons with the cpu target start from the same weights (same seed) and read the same batches; fp32 on
both sides (no TF32), so the losses agree to rounding: LOSS_TOL relative per step over the few steps these
tests take (GEMM summation orders differ between cuBLAS and NumPy, ~1e-7 per operation, and Adam turns that
into slowly growing weight differences). Results within one target must be bitwise equal.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.gpu._util import gpu

pytestmark = pytest.mark.gpu
cp = gpu()

import hgc  # noqa: E402
from hgc.config import config  # noqa: E402
from hgc.errors import TrainingError  # noqa: E402
from hgc.runtime.cuda import metrics as dm  # noqa: E402
from tests.runtime.tiny import (  # noqa: E402
    BATCH,
    DENSE,
    Data,
    add_embeddings,
    add_input,
    dense_weights,
    dlrm,
    eval_predictions,
    make_data,
    new_model,
    runtime,
    table_rows,
    train_steps,
    wdl,
)

LOSS_TOL = 1e-4
EMBEDDINGS = ("e_wide", "e_deep")
ALL_METRICS = {hgc.MetricsType.AUC: 1.0, hgc.MetricsType.AverageLoss: 0.0, hgc.MetricsType.HitRate: 0.0}
PREFIX = r"^\[HCTR\]\[\d\d:\d\d:\d\d\.\d{3}\]\[INFO\]\[RK0\]\[main\]: "
Opt, Upd = hgc.Optimizer_t, hgc.Update_t


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return make_data(str(tmp_path_factory.mktemp("tiny_gpu")))


def on(target: str, build=wdl, *args, **kw) -> hgc.Model:
    """A model built, compiled and given its runtime under ``target``."""
    with config.patch(target=target):
        m = build(*args, **kw)
        runtime(m)
    assert runtime(m).trainer.target == target
    return m


def lines(out: str, pattern: str) -> list[re.Match]:
    return list(re.finditer(PREFIX + pattern + "$", out, re.MULTILINE))


def close(a: list[float], b: list[float], tol: float = LOSS_TOL) -> bool:
    """Same length, and each pair within ``tol`` relative (NaN matches NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (np.abs(a - b) <= tol * np.maximum(np.abs(b), 1e-3))))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def snapshot(prefix: str, i: int) -> dict[str, object]:
    return {"dense": f"{prefix}_dense_{i}.model", "dense_opt": f"{prefix}_opt_dense_{i}.model",
            "sparse": [f"{prefix}{k}_sparse_{i}.model" for k in range(2)],
            "sparse_opt": [f"{prefix}{k}_opt_sparse_{i}.model" for k in range(2)]}


def load_all(m: hgc.Model, files: dict, form: str = "list") -> None:
    m.load_dense_weights(files["dense"])
    m.load_dense_optimizer_states(files["dense_opt"])
    if form == "list":
        m.load_sparse_weights(files["sparse"])
        m.load_sparse_optimizer_states(files["sparse_opt"])
    else:
        m.load_sparse_weights(dict(zip(EMBEDDINGS, files["sparse"])))
        m.load_sparse_optimizer_states(dict(zip(EMBEDDINGS, files["sparse_opt"])))


def file_bytes(folder, stem: str) -> dict[str, bytes]:
    """Every file of the snapshot ``stem`` (sparse folders included), by its name after the stem."""
    return {str(p.relative_to(folder))[len(stem):]: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and str(p.relative_to(folder)).startswith(stem)}


# -- fit ---------------------------------------------------------------------------------------------------
def test_fit_non_epoch_on_the_gpu(data: Data, capsys: pytest.CaptureFixture) -> None:
    ref = on("cpu", wdl, data, seed=4, metrics_spec=ALL_METRICS)
    ref.fit(max_iter=20, display=5, eval_interval=10, snapshot=100)
    want = capsys.readouterr().out
    m = on("cuda", wdl, data, seed=4, metrics_spec=ALL_METRICS)
    m.fit(max_iter=20, display=5, eval_interval=10, snapshot=100)
    out = capsys.readouterr().out
    assert lines(out, r"Target: cuda, .*\(device \d+\)")
    iters = lines(out, r"Iter: (\d+) Time\(5 iters\): [\d.]+s Loss: ([\d.]+) lr:0\.010000")
    assert [int(x.group(1)) for x in iters] == [5, 10, 15, 20]
    ref_losses = [float(x.group(2)) for x in lines(want, r"Iter: (\d+) .* Loss: ([\d.]+) .*")]
    assert close([float(x.group(2)) for x in iters], ref_losses, 1e-3)  # printed with 6 decimals
    evals = lines(out, r"Evaluation, (\w+): (nan|[\d.]+)")
    assert [x.group(1) for x in evals] == ["AUC", "AverageLoss", "HitRate"] * 2
    ref_evals = [float(x.group(2)) for x in lines(want, r"Evaluation, (\w+): (nan|[\d.]+)")]
    assert close([float(x.group(2)) for x in evals], ref_evals, 1e-3)
    assert lines(out, r"Finish 20 iterations with batchsize: 32 in [\d.]+s\.")
    assert runtime(m).trainer.iteration == 20


def test_fit_epoch_mode_and_the_auc_stop(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = on("cuda", wdl, data, repeat=False, drop_incomplete_batch=False, max_eval_batches=100)
    m.fit(num_epochs=2, display=1, eval_interval=7, snapshot=1000)
    out = capsys.readouterr().out
    per_epoch = 2 * 300 // BATCH + 1
    assert [int(x.group(1)) for x in lines(out, r"Iter: (\d+) .*")] == list(range(1, 2 * per_epoch + 1))
    assert lines(out, rf"Finish 2 epochs {2 * per_epoch} global iterations with batchsize 32 in [\d.]+s\.")
    m = on("cuda", wdl, data, metrics_spec={hgc.MetricsType.AUC: 0.7})
    m.fit(max_iter=300, display=1000, eval_interval=5, snapshot=1000)
    hit = lines(capsys.readouterr().out, r"Hit target accuracy AUC 0\.700000 at (\d+) / 300 iterations .*")
    assert len(hit) == 1 and int(hit[0].group(1)) < 300


# -- evaluation and metrics ---------------------------------------------------------------------------------
def test_gpu_auc_equals_sklearn_on_ties_heavy_data() -> None:
    from sklearn.metrics import roc_auc_score

    r = np.random.default_rng(11)
    y = (r.uniform(size=(200003, 2)) < [0.3, 0.6]).astype(np.float64)
    p = np.round(np.clip(0.2 * y + 0.8 * r.uniform(size=y.shape), 0, 1), 2)  # ~100 distinct values
    got = dm.metrics(["AUC", "HitRate"], cp.asarray(p), cp.asarray(y), 0.0)
    want = np.mean([roc_auc_score(y[:, c], p[:, c].astype(np.float32)) for c in range(2)])
    assert abs(dict(got)["AUC"] - want) <= 1e-6
    above = p > 0.8
    assert dict(got)["HitRate"] == pytest.approx((above & (y == 1)).sum() / above.sum(), abs=1e-12)


def test_metrics_match_the_exported_predictions_and_the_cpu(data: Data, tmp_path) -> None:
    from sklearn.metrics import roc_auc_score

    ref = on("cpu", wdl, data, seed=2, lr=0.05, metrics_spec=ALL_METRICS)
    m = on("cuda", wdl, data, seed=2, lr=0.05, metrics_spec=ALL_METRICS)
    assert close(train_steps(m, 40), train_steps(ref, 40), 1e-3)
    pred_file, label_file = str(tmp_path / "p.txt"), str(tmp_path / "l.txt")
    for _ in range(5):
        assert m.eval() and ref.eval()
        m.export_predictions(pred_file, label_file)
    got, want = dict(m.get_eval_metrics()), dict(ref.get_eval_metrics())
    p, y = (np.loadtxt(f, ndmin=2).reshape(-1) for f in (pred_file, label_file))
    assert p.shape == (5 * BATCH,)
    assert got["AUC"] == pytest.approx(roc_auc_score(y, p), abs=2e-3)  # the file holds 6 digits
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-3, abs=1e-3, nan_ok=True), k
    assert all(np.isnan(v) for _, v in m.get_eval_metrics())


def test_multi_task_loss_weights(tmp_path) -> None:
    data = make_data(str(tmp_path / "d"), num_files=1, samples_per_file=200, label_dim=2)

    def two_task() -> hgc.Model:
        m = new_model(data, seed=4, metrics_spec=ALL_METRICS)
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
        return m

    ref, m = on("cpu", two_task), on("cuda", two_task)
    assert runtime(m).trainer.loss_weights == {"la": 0.25, "lb": 2.0}
    assert close(train_steps(m, 10), train_steps(ref, 10))
    for model in (m, ref):
        for _ in range(3):
            assert model.eval()
    got, want = dict(m.get_eval_metrics()), dict(ref.get_eval_metrics())
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-4, nan_ok=True), k


# -- optimizers, schedule, freezing ---------------------------------------------------------------------------
LR = {"Adam": 0.01, "AdaGrad": 0.1, "MomentumSGD": 0.05, "Nesterov": 0.05, "SGD": 0.2}


@pytest.mark.parametrize("name,update", [(o, u) for o in LR for u in ("Global", "Local")] + [("Adam", "LazyGlobal")])
def test_every_optimizer_and_update_type_as_on_the_cpu(data: Data, name: str, update: str) -> None:
    momentum = 0.9 if name in ("MomentumSGD", "Nesterov") else 0.0

    def opt() -> hgc.OptParamsPy:
        return hgc.CreateOptimizer(optimizer_type=getattr(Opt, name), update_type=getattr(Upd, update),
                                   momentum_factor=momentum)

    ref, m = on("cpu", wdl, data, opt(), lr=LR[name]), on("cuda", wdl, data, opt(), lr=LR[name])
    assert close(train_steps(m, 12), train_steps(ref, 12), 1e-3)
    for a, b in zip(dense_weights(m), dense_weights(ref)):
        assert rel(a, b) < 1e-3
    for e in EMBEDDINGS:
        assert rel(table_rows(m, e), table_rows(ref, e)) < 1e-3
    o = runtime(m).trainer.sparse_opts["e_deep"]
    assert (o.optimizer, o.update_type) == (name, update)


def test_the_learning_rate_schedule_reaches_the_gpu(data: Data, capsys: pytest.CaptureFixture) -> None:
    schedule = {"lr": 0.02, "warmup_steps": 3, "decay_start": 5, "decay_steps": 4, "decay_power": 2.0,
                "end_lr": 0.002}
    sgd = hgc.CreateOptimizer(optimizer_type=Opt.SGD)
    ref = on("cpu", wdl, data, sgd, **schedule)
    ref.fit(max_iter=11, display=1, eval_interval=100, snapshot=100)
    want = capsys.readouterr().out
    m = on("cuda", wdl, data, hgc.CreateOptimizer(optimizer_type=Opt.SGD), **schedule)
    m.fit(max_iter=11, display=1, eval_interval=100, snapshot=100)
    out = capsys.readouterr().out
    assert re.findall(r"lr:([0-9.]+)", out) == re.findall(r"lr:([0-9.]+)", want)
    assert close([float(x) for x in re.findall(r"Loss: ([0-9.]+)", out)],
                 [float(x) for x in re.findall(r"Loss: ([0-9.]+)", want)], 1e-3)
    w0 = dense_weights(m)
    m.set_learning_rate(0.0)
    assert m.train()
    assert all(np.array_equal(a, b) for a, b in zip(w0, dense_weights(m)))


def test_freeze_and_unfreeze(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = on("cuda", wdl, data)
    train_steps(m, 5)
    m.freeze_dense()
    m.freeze_embedding("e_wide")
    dense, wide, deep = dense_weights(m), table_rows(m, "e_wide"), table_rows(m, "e_deep")
    steps = runtime(m).trainer.dense_opt.step_count
    m.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    out = capsys.readouterr().out
    assert "Dense network trainable: False" in out and "Sparse embedding e_wide trainable: False" in out
    assert all(np.array_equal(a, b) for a, b in zip(dense, dense_weights(m)))
    assert np.array_equal(wide, table_rows(m, "e_wide")) and not np.array_equal(deep, table_rows(m, "e_deep"))
    assert runtime(m).trainer.dense_opt.step_count == steps
    m.unfreeze_dense()
    m.unfreeze_embedding()
    m.freeze_embedding()
    deep = table_rows(m, "e_deep")
    train_steps(m, 3)
    assert not np.array_equal(dense[0], dense_weights(m)[0]) and np.array_equal(deep, table_rows(m, "e_deep"))
    m.unfreeze_embedding("e_wide")
    train_steps(m, 3)
    assert not np.array_equal(wide, table_rows(m, "e_wide")) and np.array_equal(deep, table_rows(m, "e_deep"))


# -- the low-level API ---------------------------------------------------------------------------------------
def test_low_level_api(data: Data, tmp_path) -> None:
    m = on("cuda", wdl, data)
    with pytest.raises(TrainingError, match="call eval\\(\\) first"):
        m.export_predictions(str(tmp_path / "p"), str(tmp_path / "l"))
    m.start_data_reading()
    assert m.train()
    loss = m.get_current_loss()
    assert 0.3 < loss < 1.5 and loss == runtime(m).trainer.current_loss
    for _ in range(12):  # non-epoch mode: the evaluation source wraps around
        assert m.eval()
    assert m.check_out_tensor("add", hgc.Tensor_t.Evaluate).shape == (BATCH, 1)
    with pytest.raises(TrainingError, match="'wide' is a sparse input"):
        m.check_out_tensor("wide", hgc.Tensor_t.Evaluate)
    with pytest.raises(TrainingError, match="'label' has no value from the last training step"):
        m.check_out_tensor("label", hgc.Tensor_t.Train)
    assert len(m.get_eval_metrics()) == 1
    m.export_predictions(str(tmp_path / "p"), str(tmp_path / "l"))
    assert len((tmp_path / "p").read_text().split()) == BATCH
    assert m.train()
    with pytest.raises(TrainingError, match="a training step has run since"):
        m.check_out_tensor("add", hgc.Tensor_t.Evaluate)
    try:  # a gradient is served when its device buffer is its own, else the error says why
        g = m.check_out_tensor("relu1", hgc.Tensor_t.Train)
        assert g.shape == (BATCH, 8)
    except TrainingError as e:
        assert "shares device memory" in str(e)


def test_eval_predictions_equal_the_cpu_targets(data: Data) -> None:
    ref, m = on("cpu", wdl, data, seed=6), on("cuda", wdl, data, seed=6)
    train_steps(ref, 8)
    train_steps(m, 8)
    assert rel(eval_predictions(m), eval_predictions(ref)) < 1e-4


# -- files -----------------------------------------------------------------------------------------------
def test_snapshots_by_fit(data: Data, tmp_path) -> None:
    prefix = str(tmp_path / "w")
    m = on("cuda", wdl, data)
    m.fit(max_iter=12, display=100, eval_interval=100, snapshot=5, snapshot_prefix=prefix)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(f"{stem}_{i}.model" for i in (5, 10) for stem in
                           ("w_dense", "w_opt_dense", "w0_sparse", "w1_sparse", "w0_opt_sparse", "w1_opt_sparse"))
    assert sorted(os.listdir(tmp_path / "w1_sparse_5.model")) == ["emb_vector", "key", "slot_id"]


@pytest.mark.parametrize("direction", ["cpu_to_cuda", "cuda_to_cpu"])
def test_files_load_across_targets_and_save_byte_identical(data: Data, tmp_path, direction: str) -> None:
    """Train on one target and save; load into the other, which then holds the same state (weights, states,
    tables bitwise) and writes the same bytes; and both continue alike."""
    src_t, dst_t = direction.split("_to_")
    src = on(src_t, wdl, data, seed=3)
    train_steps(src, 20)
    src.save_params_to_files(str(tmp_path / "a"), 19)
    dst = on(dst_t, wdl, data, seed=4)
    assert not np.array_equal(dense_weights(src)[0], dense_weights(dst)[0])
    load_all(dst, snapshot(str(tmp_path / "a"), 19), "dict" if dst_t == "cuda" else "list")
    for a, b in zip(dense_weights(src), dense_weights(dst)):
        assert np.array_equal(a, b)
    ts, td = runtime(src).trainer, runtime(dst).trainer
    for kind_a, kind_b in zip(ts.dense_opt.states(), td.dense_opt.states()):
        assert all(np.array_equal(x, y) for x, y in zip(kind_a, kind_b))
    for e in EMBEDDINGS:
        assert all(np.array_equal(x, y) for x, y in zip(ts.tables[e].dump(), td.tables[e].dump()))
        assert all(np.array_equal(x, y) for x, y in zip(ts.sparse_opts[e].states(), td.sparse_opts[e].states()))
        assert td.sparse_opts[e].times == 20
    assert td.iteration == td.dense_opt.step_count == 20
    dst.save_params_to_files(str(tmp_path / "b"), 19)
    a, b = file_bytes(tmp_path, "a"), file_bytes(tmp_path, "b")
    assert len(a) == 9 and a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k
    src.get_data_reader_train().set_source()
    assert close(train_steps(dst, 8), train_steps(src, 8))


def test_construct_from_json_and_continue(data: Data, tmp_path) -> None:
    a = on("cuda", wdl, data, seed=3)
    train_steps(a, 20)
    a.save_params_to_files(str(tmp_path / "a"), 19)
    a.graph_to_json(str(tmp_path / "graph.json"))

    def from_json() -> hgc.Model:
        b = new_model(data, seed=8)
        b.construct_from_json(graph_config_file=str(tmp_path / "graph.json"), include_dense_network=True)
        b.compile()
        return b

    b = on("cuda", from_json)
    load_all(b, snapshot(str(tmp_path / "a"), 19))
    assert np.array_equal(eval_predictions(a), eval_predictions(b))
    a.get_data_reader_train().set_source()
    assert train_steps(b, 10) == train_steps(a, 10)  # same target, same state: bitwise


def test_batchnorm_statistics_are_saved_and_loaded(data: Data, tmp_path) -> None:
    # SGD, not Adam: fc1's bias gradient is rounding noise (BatchNorm's input gradient sums to zero over the
    # batch), which Adam would scale up to steps of ±lr that differ between the targets
    def with_bn() -> hgc.Model:
        m = new_model(data, hgc.CreateOptimizer(optimizer_type=hgc.Optimizer_t.SGD), seed=9)
        add_input(m)
        add_embeddings(m)
        d = hgc.DenseLayer
        m.add(d(layer_type=hgc.Layer_t.Reshape, bottom_names=["e_deep"], top_names=["r1"], leading_dim=8))
        m.add(d(layer_type=hgc.Layer_t.Concat, bottom_names=["r1", "dense"], top_names=["c1"]))
        m.add(d(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["c1"], top_names=["fc1"], num_output=6))
        m.add(d(layer_type=hgc.Layer_t.BatchNorm, bottom_names=["fc1"], top_names=["bn1"], factor=0.9, eps=1e-5))
        m.add(d(layer_type=hgc.Layer_t.ReLU, bottom_names=["bn1"], top_names=["r"]))
        m.add(d(layer_type=hgc.Layer_t.InnerProduct, bottom_names=["r"], top_names=["fc2"], num_output=1))
        m.add(d(layer_type=hgc.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc2", "label"], top_names=["loss"]))
        m.compile()
        return m

    ref, m = on("cpu", with_bn), on("cuda", with_bn)
    assert close(train_steps(m, 10), train_steps(ref, 10))
    stats_ref, stats = runtime(ref).trainer.bn_stats("bn1"), runtime(m).trainer.bn_stats("bn1")
    for k in ("mean", "var"):
        assert rel(stats[k], stats_ref[k]) < 1e-4, k
    m.save_params_to_files(str(tmp_path / "m"), 9)
    assert (tmp_path / "m_dense_9.model.ntp.json").exists()
    fresh = on("cuda", with_bn)
    fresh.load_dense_weights(str(tmp_path / "m_dense_9.model"))
    for k in ("mean", "var"):
        assert np.array_equal(runtime(fresh).trainer.bn_stats("bn1")[k], stats[k])


# -- determinism and resuming ------------------------------------------------------------------------------
def test_same_seed_same_run(data: Data) -> None:
    runs = [train_steps(on("cuda", wdl, data, seed=s, dropout=0.3), 25) for s in (11, 11, 12)]
    assert runs[0] == runs[1]  # bitwise, Dropout masks included
    assert runs[0] != runs[2]
    a, b = on("cuda", dlrm, data, seed=3), on("cuda", dlrm, data, seed=3)
    assert train_steps(a, 10) == train_steps(b, 10)
    assert all(np.array_equal(x, y) for x, y in zip(dense_weights(a), dense_weights(b)))


def test_resume_from_a_snapshot_equals_the_uninterrupted_run(data: Data, tmp_path) -> None:
    schedule = {"lr": 0.02, "warmup_steps": 5, "decay_start": 12, "decay_steps": 30, "decay_power": 2.0,
                "end_lr": 0.001}
    prefix = str(tmp_path / "s")
    a = on("cuda", wdl, data, seed=5, dropout=0.3, **schedule)
    a.fit(max_iter=10, display=1000, eval_interval=1000, snapshot=9, snapshot_prefix=prefix)
    a.get_data_reader_train().set_source()
    after = train_steps(a, 15)
    b = on("cuda", wdl, data, seed=5, dropout=0.3, **schedule)
    load_all(b, snapshot(prefix, 9))
    t = runtime(b).trainer
    assert (t.iteration, t.dense_opt.step_count, t.scheduler.step, t.sparse_opts["e_deep"].times) == (10,) * 4
    assert train_steps(b, 15) == after
    for x, y in zip(dense_weights(a), dense_weights(b)):
        assert np.array_equal(x, y)
    for e in EMBEDDINGS:
        assert np.array_equal(table_rows(a, e), table_rows(b, e))


# -- NaN / Inf -----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_an_exploding_loss_names_its_iteration(data: Data) -> None:
    sgd = hgc.CreateOptimizer(optimizer_type=Opt.SGD)
    with pytest.raises(TrainingError) as cpu_err:
        on("cpu", wdl, data, sgd, lr=1e30).fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    first = int(re.search(r"at iteration (\d+)\)", str(cpu_err.value)).group(1))
    m = on("cuda", wdl, data, hgc.CreateOptimizer(optimizer_type=Opt.SGD), lr=1e30)
    with pytest.raises(TrainingError, match=r"Loss cannot converge \(loss = (nan|inf|-inf) at iteration \d+\)") as e:
        m.fit(max_iter=10, display=100, eval_interval=100, snapshot=100)
    it = int(re.search(r"at iteration (\d+)\)", str(e.value)).group(1))
    print(f"first non-finite loss: cpu at iteration {first}, cuda at {it}")
    assert 2 <= it <= 10 and abs(it - first) <= 1  # the loss layers may overflow one step apart
    assert runtime(m).trainer.iteration == 10  # read at the end of fit: the steady state does not synchronise


def test_nan_in_the_data_is_reported_at_the_next_read(data: Data) -> None:
    m = on("cuda", wdl, data)
    train_steps(m, 3)
    trainer = runtime(m).trainer
    batch = trainer._next_batch("train")
    batch.dense[5, 1] = np.nan
    trainer.step(batch)  # no read-back: no error yet
    assert m.train()
    with pytest.raises(TrainingError, match=r"loss = nan at iteration 4\)"):
        m.get_current_loss()
    with pytest.raises(TrainingError, match="at iteration 4"):
        m.fit(max_iter=2, display=100, eval_interval=100, snapshot=100)
