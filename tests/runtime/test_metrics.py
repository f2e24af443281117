from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from hgc.runtime.metrics import AUC, NDCG, SMAPE, AverageLoss, HitRate, compute_metrics, make_metric, roc_auc


def batches(pred: np.ndarray, label: np.ndarray, n: int,
            pad: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Split into batches of n real rows followed by `pad` rows of garbage that must be ignored."""
    out = []
    for lo in range(0, pred.shape[0], n):
        p, y = pred[lo:lo + n], label[lo:lo + n]
        junk = np.full((pad, *p.shape[1:]), 0.999)
        out.append((np.concatenate([p, junk]), np.concatenate([y, np.ones_like(junk)]), p.shape[0]))
    return out


def test_auc_equals_sklearn_with_ties_and_padding() -> None:
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=1237) < 0.3).astype(np.float32)
    p = np.round(np.clip(y * 0.2 + rng.uniform(size=1237) * 0.8, 0, 1), 2).astype(np.float32)  # many ties
    auc = AUC()
    for pb, yb, size in batches(p, y, 101, 5):
        auc.update(pb, yb, size)
    assert auc.finalize() == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    auc.reset()
    assert math.isnan(auc.finalize())


def test_auc_clamps_predictions_before_ranking() -> None:
    y = np.array([0, 1, 0, 1, 1, 0], np.float32)
    p = np.array([1e-9, 3e-8, 0.5, 1.0, 1 - 1e-9, 0.9999999], np.float32)
    clamped = np.clip(p, np.float32(1e-7), np.float32(1 - 1e-7))
    assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, clamped), abs=1e-12)
    assert roc_auc(p, y) != pytest.approx(roc_auc_score(y, p))


def test_multi_label_auc_is_the_mean_of_per_class_values() -> None:
    rng = np.random.default_rng(2)
    y = (rng.uniform(size=(301, 3)) < [0.2, 0.5, 0.7]).astype(np.float32)
    p = np.clip(0.3 * y + rng.uniform(size=(301, 3)) * 0.7, 0, 1).astype(np.float32)
    auc = AUC()
    for pb, yb, size in batches(p, y, 64, 3):
        auc.update(pb, yb, size)
    per = [roc_auc_score(y[:, c], p[:, c]) for c in range(3)]
    assert auc.finalize() == pytest.approx(np.mean(per), abs=1e-12)
    np.testing.assert_allclose(auc.per_class, per, atol=1e-12)


def test_auc_of_a_single_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.array([0.2, 0.7]), np.array([1.0, 1.0])))


def test_hit_rate_average_loss_smape() -> None:
    p = np.array([0.9, 0.81, 0.8, 0.95, 0.1, 0.99], np.float32)
    y = np.array([1, 0, 1, 1, 1, 0], np.float32)
    hr = HitRate()
    hr.update(p[:4], y[:4], 4)
    hr.update(np.r_[p[4:], 0.99], np.r_[y[4:], 1], 2)  # the padded last row is ignored
    assert hr.finalize() == pytest.approx(2 / 4)  # checked: 0.9, 0.81, 0.95, 0.99; hits: 0.9, 0.95
    hr.reset()
    assert math.isnan(hr.finalize())
    loss = AverageLoss()
    for v in (0.5, 0.25, 0.125):
        loss.update(p, y, 6, loss=v)
    assert loss.finalize() == pytest.approx(0.875 / 3)
    with pytest.raises(ValueError, match="loss"):
        loss.update(p, y, 6)
    sm = SMAPE()
    sm.update(np.r_[p, 0.0], np.r_[y, 0.0], 7)
    direct = [abs(a - b) / ((a + b) / 2) if a + b else 0.0 for a, b in zip(np.r_[p, 0.0].astype(float),
                                                                           np.r_[y, 0.0].astype(float))]
    assert sm.finalize() == pytest.approx(np.mean(direct), rel=1e-12)


def test_ndcg_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=211).astype(np.float32)
    p = np.round(rng.uniform(size=211), 1).astype(np.float32)
    m = NDCG()
    for pb, yb, size in batches(p, y, 50, 2):
        m.update(pb, yb, size)
    assert m.finalize() == pytest.approx(ndcg_score(y[None], p[None]), rel=1e-9)


def test_compute_metrics_and_factory() -> None:
    rng = np.random.default_rng(4)
    y = (rng.uniform(size=(97, 1)) < 0.5).astype(np.float32)
    p = rng.uniform(size=(97, 1)).astype(np.float32)
    got = dict(compute_metrics(["AUC", "AverageLoss", "HitRate"], p, y, 0.42))
    assert got["AUC"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]), abs=1e-12)
    assert got["AverageLoss"] == 0.42
    assert got["HitRate"] == pytest.approx(float(((p > 0.8) & (y == 1)).sum() / (p > 0.8).sum()))
    assert isinstance(make_metric("SMAPE"), SMAPE)
    with pytest.raises(ValueError, match="'F1'"):
        make_metric("F1")
    with pytest.raises(ValueError, match="size=9"):
        AUC().update(p[:4], y[:4], 9)
