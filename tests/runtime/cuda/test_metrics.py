"""The cuda target's metric code (hgc.runtime.cuda.metrics) run with NumPy arrays: the same functions the GPU
runs with CuPy arrays, checked against scikit-learn and the cpu target's metrics; the NaN-watch kernel
compiles for sm_90."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hgc.codegen import nvrtc
from hgc.runtime.cuda import metrics as dm
from hgc.runtime.metrics import compute_metrics
from hgc.runtime.trainer import predictions


def ties(n: int, seed: int, cols: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Predictions on a grid of 0.01 (heavy ties, exact 0 and 1 included) and labels that follow them."""
    r = np.random.default_rng(seed)
    y = (r.uniform(size=(n, cols)) < 0.35).astype(np.float64)
    p = np.round(np.clip(0.25 * y + 0.8 * r.uniform(size=(n, cols)) - 0.02, 0, 1), 2)
    return p, y


@pytest.mark.parametrize("n", [1, 2, 17, 1001, 40000])
def test_auc_equals_sklearn_on_ties_heavy_data(n: int) -> None:
    p, y = ties(n, seed=n)
    y[0] = 1.0
    if n > 1:
        y[1] = 0.0
    got = dm.roc_auc(p, y)
    if n == 1:
        assert math.isnan(got)
        return
    clamped = np.clip(p.astype(np.float32), np.float32(1e-7), np.float32(1 - 1e-7))
    assert got == pytest.approx(roc_auc_score(y.reshape(-1), clamped.reshape(-1)), abs=1e-6)
    assert got == pytest.approx(roc_auc_score(y.reshape(-1), clamped.reshape(-1)), abs=1e-12)


def test_auc_of_one_class_is_nan_and_labels_count_above_one_half() -> None:
    assert math.isnan(dm.roc_auc(np.array([0.3, 0.9]), np.array([0.0, 0.4])))
    p, y = np.array([0.2, 0.9, 0.5, 0.5]), np.array([0.0, 0.7, 1.0, 0.2])
    assert dm.roc_auc(p, y) == pytest.approx(roc_auc_score(y > 0.5, p), abs=1e-12)


def test_metrics_match_the_cpu_targets_for_several_columns() -> None:
    p, y = ties(3001, seed=5, cols=3)
    names = ["AUC", "AverageLoss", "HitRate", "NDCG", "SMAPE"]
    got = dm.metrics(names, p, y, 0.4375)
    want = compute_metrics(names, p, y, 0.4375)
    assert [k for k, _ in got] == names
    for (k, a), (_, b) in zip(got, want):
        assert a == pytest.approx(b, abs=1e-12), k
    empty = dm.metrics(["AUC", "HitRate"], np.zeros((0, 1)), np.zeros((0, 1)), 0.0)
    assert all(math.isnan(v) for _, v in empty)


def test_hit_rate_counts_predictions_above_0_8() -> None:
    p = np.array([[0.9], [0.81], [0.8], [0.95], [0.1]])
    y = np.array([[1.0], [0.0], [1.0], [1.0], [1.0]])
    assert dm.hit_rate(p, y) == pytest.approx(2 / 3)
    assert math.isnan(dm.hit_rate(p[2:3], y[2:3]))


@pytest.mark.parametrize("op", ["BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss"])
def test_predictions_are_the_cpu_targets(op: str) -> None:
    r = np.random.default_rng(3)
    x = r.normal(0, 4, size=(37, 2 if op == "CrossEntropyLoss" else 3)).astype(np.float32)
    np.testing.assert_array_equal(dm.predictions(op, x), predictions(op, x.astype(np.float64)))


def test_eval_accumulator() -> None:
    acc = dm.EvalAccumulator()
    assert not acc and all(math.isnan(v) for _, v in acc.result(["AUC", "AverageLoss"]))
    p, y = ties(300, seed=9)
    losses = [0.5, 0.25, 0.75]
    for i, part in enumerate(np.array_split(np.arange(300), 3)):
        acc.add(p[part], y[part], np.array([losses[i]]))
    got = dict(acc.result(["AUC", "AverageLoss", "HitRate"]))
    want = dict(compute_metrics(["AUC", "AverageLoss", "HitRate"], p, y, float(np.mean(losses))))
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_total_loss_weights_and_regularizer() -> None:
    losses = [(np.array([[0.5]], np.float32), 1.0), (np.array([[0.25]], np.float32), 3.0)]
    flat = np.array([1.5, -2.0, 0.0, 0.5], np.float32)
    assert dm.total_loss(np, losses)[0] == 0.5 + 0.75
    assert dm.total_loss(np, losses, ("L1", 0.1, flat))[0] == pytest.approx(1.25 + 0.1 * 4.0)
    assert dm.total_loss(np, losses, ("L2", 0.1, flat))[0] == pytest.approx(1.25 + 0.05 * 6.5)
    assert dm.total_loss(np, [])[0] == 0.0


@pytest.mark.skipif(nvrtc.available() is None, reason="no NVRTC library and no nvcc")
def test_the_nan_watch_kernel_compiles() -> None:
    res = nvrtc.compile_source(dm.WATCH_SOURCE, "hgc_loss_watch", arch="sm_90")
    assert "hgc_loss_watch" in res.resources
