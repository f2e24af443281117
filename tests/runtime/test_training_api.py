"""The training API on the cpu target: fit() in both modes with its log lines, evaluation and metrics, the AUC
stop, snapshots, and the low-level API (train / eval / metrics / export / set_source / check_out_tensor)."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import hgc
from hgc.errors import TrainingError
from tests.runtime.tiny import BATCH, Data, make_data, runtime, train_steps, wdl

PREFIX = r"^\[HCTR\]\[\d\d:\d\d:\d\d\.\d{3}\]\[INFO\]\[RK0\]\[main\]: "
ALL_METRICS = {hgc.MetricsType.AUC: 1.0, hgc.MetricsType.AverageLoss: 0.0, hgc.MetricsType.HitRate: 0.0}
FULL_BATCHES = 2 * 300 // BATCH  # per epoch of the tiny dataset; one short batch of 24 is left over
EVAL_BATCHES = -(-300 // BATCH)  # 9 full and a short one of 12


def lines(out: str, pattern: str) -> list[re.Match]:
    return list(re.finditer(PREFIX + pattern + "$", out, re.MULTILINE))


# -- fit -------------------------------------------------------------------------------------------------
def test_fit_non_epoch_prints_hugectrs_lines(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = wdl(data, metrics_spec=ALL_METRICS)
    m.fit(max_iter=20, display=5, eval_interval=10, snapshot=100)
    out = capsys.readouterr().out
    assert lines(out, r"=+Model Fit=+")
    assert lines(out, "Use non-epoch mode with number of iterations: 20")
    assert lines(out, "Training batchsize: 32, evaluation batchsize: 32")
    assert lines(out, "Evaluation interval: 10, snapshot interval: 100")
    assert lines(out, "lr: 0.010000, warmup_steps: 1, end_lr: 0.000000")
    assert lines(out, f"Training source file: {re.escape(data.train)}")
    iters = lines(out, r"Iter: (\d+) Time\(5 iters\): [\d.]+s Loss: ([\d.]+) lr:0\.010000")
    assert [int(x.group(1)) for x in iters] == [5, 10, 15, 20]
    assert all(0 < float(x.group(2)) < 2 for x in iters)
    evals = lines(out, r"Evaluation, (\w+): (nan|[\d.]+)")
    assert [x.group(1) for x in evals] == ["AUC", "AverageLoss", "HitRate"] * 2  # MetricsType order, twice
    assert len(lines(out, r"Eval Time for 4 iters: [\d.]+s")) == 2
    assert lines(out, r"Finish 20 iterations with batchsize: 32 in [\d.]+s\.")
    assert runtime(m).trainer.iteration == 20


@pytest.mark.parametrize("drop", [True, False])
def test_fit_epoch_mode(data: Data, capsys: pytest.CaptureFixture, drop: bool) -> None:
    m = wdl(data, repeat=False, drop_incomplete_batch=drop, max_eval_batches=100)
    m.fit(num_epochs=2, display=1, eval_interval=7, snapshot=1000)
    out = capsys.readouterr().out
    per_epoch = FULL_BATCHES + (0 if drop else 1)
    assert lines(out, "Use epoch mode with number of epochs: 2")
    assert len(lines(out, "-+Epoch [01]-+")) == 2
    iters = [int(x.group(1)) for x in lines(out, r"Iter: (\d+) .*")]
    assert iters == list(range(1, 2 * per_epoch + 1))
    assert lines(out, rf"Finish 2 epochs {2 * per_epoch} global iterations with batchsize 32 in [\d.]+s\.")
    # each evaluation read the whole evaluation source (max_eval_batches is larger) and started it over
    aucs = [x.group(1) for x in lines(out, r"Evaluation, AUC: ([\d.]+)")]
    assert len(aucs) == 2 * per_epoch // 7
    n = 0
    while m.eval():
        n += 1
    assert n == EVAL_BATCHES and m.get_data_reader_eval().is_eof()


def test_auc_threshold_stops_fit(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = wdl(data, metrics_spec={hgc.MetricsType.AUC: 0.7})
    m.fit(max_iter=300, display=1000, eval_interval=5, snapshot=1000)
    out = capsys.readouterr().out
    hit = lines(out, r"Hit target accuracy AUC 0\.700000 at (\d+) / 300 iterations with batchsize 32 in "
                     r"[\d.]+s\. Average speed [\d.]+ records/s\.")
    assert len(hit) == 1
    stop = int(hit[0].group(1))
    assert stop < 300 and stop % 5 == 0 and runtime(m).trainer.iteration == stop
    aucs = [float(x.group(1)) for x in lines(out, r"Evaluation, AUC: ([\d.]+)")]
    assert aucs[-1] >= 0.7 and all(a < 0.7 for a in aucs[:-1])
    assert not lines(out, "Finish .*")


def test_snapshot_names_and_timing(data: Data, tmp_path, capsys: pytest.CaptureFixture) -> None:
    prefix = str(tmp_path / "w")
    m = wdl(data)
    m.fit(max_iter=12, display=100, eval_interval=100, snapshot=5, snapshot_prefix=prefix)
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(f"{stem}_{i}.model" for i in (5, 10) for stem in
                           ("w_dense", "w_opt_dense", "w0_sparse", "w1_sparse", "w0_opt_sparse", "w1_opt_sparse"))
    assert sorted(os.listdir(tmp_path / "w0_sparse_5.model")) == ["emb_vector", "key"]  # distributed
    assert sorted(os.listdir(tmp_path / "w1_sparse_5.model")) == ["emb_vector", "key", "slot_id"]  # localized
    out = capsys.readouterr().out
    assert len(lines(out, re.escape(f"Rank0: Write hash table to file {prefix}0_sparse_5.model"))) == 1
    assert len(lines(out, "Dumping dense optimizer states to file, successful")) == 2
    # snapshot 5 holds the model after 6 steps (HugeCTR's 0-based iteration)
    again = wdl(data)
    train_steps(again, 6)
    again.save_params_to_files(str(tmp_path / "x"), 5)
    for stem in ("dense", "opt_dense", "0_opt_sparse", "1_opt_sparse"):
        a, b = (tmp_path / f"w_{stem}_5.model", tmp_path / f"x_{stem}_5.model")
        if stem[0].isdigit():
            a, b = tmp_path / f"w{stem}_5.model", tmp_path / f"x{stem}_5.model"
        assert a.read_bytes() == b.read_bytes(), stem


# -- metrics ---------------------------------------------------------------------------------------------
def mann_whitney_auc(p: np.ndarray, y: np.ndarray) -> float:
    pos, neg = p[y > 0.5], p[y <= 0.5]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def test_metrics_match_the_exported_predictions(data: Data, tmp_path) -> None:
    m = wdl(data, metrics_spec=ALL_METRICS, lr=0.05)
    train_steps(m, 80)
    pred_file, label_file = str(tmp_path / "pred.txt"), str(tmp_path / "label.txt")
    for _ in range(5):
        assert m.eval()
        m.export_predictions(pred_file, label_file)
    metrics = m.get_eval_metrics()
    assert [name for name, _ in metrics] == ["AUC", "AverageLoss", "HitRate"]
    got = dict(metrics)
    p, y = (np.loadtxt(f, ndmin=2) for f in (pred_file, label_file))
    assert p.shape == y.shape == (5, BATCH)
    p, y = p.reshape(-1), y.reshape(-1)
    assert got["AUC"] == pytest.approx(mann_whitney_auc(p, y), abs=1e-4)
    batch_losses = -(y * np.log(p) + (1 - y) * np.log(1 - p)).reshape(5, BATCH).mean(axis=1)
    assert got["AverageLoss"] == pytest.approx(batch_losses.mean(), rel=1e-4)
    checked = p > 0.8
    assert checked.any() and got["HitRate"] == pytest.approx((checked & (y == 1)).sum() / checked.sum())
    assert np.isnan(dict(m.get_eval_metrics())["AUC"])  # nothing evaluated since the last call


# -- low-level API -------------------------------------------------------------------------------------------
def test_low_level_api(data: Data, tmp_path) -> None:
    m = wdl(data)
    with pytest.raises(TrainingError, match="call eval\\(\\) first"):
        m.export_predictions(str(tmp_path / "p"), str(tmp_path / "l"))
    m.start_data_reading()
    assert m.train()
    loss = m.get_current_loss()
    assert 0.3 < loss < 1.5 and loss == runtime(m).trainer.current_loss
    grad = m.check_out_tensor("relu1", hgc.Tensor_t.Train)
    assert grad.shape == (BATCH, 8) and grad.dtype == np.float32 and np.abs(grad).sum() > 0
    for _ in range(2 * EVAL_BATCHES):  # non-epoch mode: the evaluation source wraps around
        assert m.eval()
    out = m.check_out_tensor("add", hgc.Tensor_t.Evaluate)
    assert out.shape == (BATCH, 1)
    with pytest.raises(TrainingError, match="'fc1' was fused away"):
        m.check_out_tensor("fc1", hgc.Tensor_t.Evaluate)
    with pytest.raises(TrainingError, match="'wide' is a sparse input"):
        m.check_out_tensor("wide", hgc.Tensor_t.Evaluate)
    with pytest.raises(TrainingError, match="'label' has no value from the last training step"):
        m.check_out_tensor("label", hgc.Tensor_t.Train)
    with pytest.raises(ValueError, match="'tensor_name' = 'nope'"):
        m.check_out_tensor("nope", hgc.Tensor_t.Train)
    assert len(m.get_eval_metrics()) == 1
    m.export_predictions(str(tmp_path / "p"), str(tmp_path / "l"))  # the last batch survives get_eval_metrics
    assert len((tmp_path / "p").read_text().split()) == BATCH


def test_gen_loss_summary_off_reports_zero(data: Data, capsys: pytest.CaptureFixture) -> None:
    m = wdl(data, gen_loss_summary=False)
    m.fit(max_iter=4, display=2, eval_interval=100, snapshot=100)
    assert len(lines(capsys.readouterr().out, r"Iter: \d+ .* Loss: 0\.000000 lr:.*")) == 2
    assert m.get_current_loss() == 0.0


def test_epoch_mode_readers_stop_at_the_end_and_switch_sources(data: Data, tmp_path) -> None:
    other = make_data(str(tmp_path / "other"), seed=99, num_files=1, samples_per_file=100)
    m = wdl(data, repeat=False)
    train_reader, eval_reader = m.get_data_reader_train(), m.get_data_reader_eval()

    def drain(step) -> int:
        n = 0
        while step():
            n += 1
        return n

    assert not train_reader.is_eof()
    assert drain(m.train) == FULL_BATCHES and train_reader.is_eof()
    assert not m.train() and train_reader.is_eof()  # stays at its end until a new source is set
    train_reader.set_source()  # '' = the current source from its beginning
    assert drain(m.train) == FULL_BATCHES
    assert drain(m.eval) == EVAL_BATCHES and eval_reader.is_eof() and not m.eval()
    m.set_source(source=other.train, eval_source=other.test)
    assert not train_reader.is_eof() and not eval_reader.is_eof()
    assert drain(m.train) == 100 // BATCH
    assert drain(m.eval) == 4  # 100 samples: three full batches and a short one
    trained = runtime(m).trainer.iteration
    assert trained == 2 * FULL_BATCHES + 100 // BATCH
    with pytest.raises(ValueError, match="'file_name' = .*no such file"):
        train_reader.set_source(str(tmp_path / "missing.txt"))


def test_set_source_is_for_epoch_mode(data: Data) -> None:
    m = wdl(data)
    with pytest.raises(ValueError, match="set_source is for epoch mode"):
        m.set_source(source=data.train, eval_source=data.test)
