"""Evaluation metrics (facts §6.1): AUC, AverageLoss, HitRate, plus NDCG and SMAPE.

Each metric accumulates over evaluation batches with ``update(pred, label, size, loss)`` (only the first
``size`` rows of a padded batch count), returns its value from ``finalize()`` and starts over after
``reset()``. ``pred`` are probabilities (the sigmoid outputs), shaped (n,) or (n, label_dim).
A value that is undefined for the data seen (an AUC class with no positives or no negatives, a HitRate with
no prediction above the threshold, no batch at all) is NaN.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

AUC_CLAMP = (np.float32(1e-7), np.float32(1.0 - 1e-7))
HIT_THRESHOLD = 0.8


def _rows(a: np.ndarray, size: int) -> np.ndarray:
    a = np.asarray(a)
    a = a.reshape(a.shape[0], int(np.prod(a.shape[1:]))) if a.ndim > 1 else a.reshape(-1, 1)
    if not 0 <= size <= a.shape[0]:
        raise ValueError(f"size={size} must lie in [0, {a.shape[0]}] (the batch's rows)")
    return a[:size]


def _pair(pred: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    p, y = _rows(pred, size), _rows(label, size)
    if p.shape != y.shape:
        raise ValueError(f"predictions {np.shape(pred)} and labels {np.shape(label)} differ in shape")
    return p, y


def roc_auc(pred: np.ndarray, label: np.ndarray) -> float:
    """Exact ROC AUC of one class; tied predictions form one step of the curve (as sklearn's roc_auc_score).

    Predictions are clamped to [1e-7, 1 − 1e-7] in float32 first; a label counts as positive when > 0.5.
    """
    p = np.clip(np.asarray(pred, np.float32).reshape(-1), *AUC_CLAMP)
    y = (np.asarray(label).reshape(-1) > 0.5).astype(np.int64)
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(p)), p.shape[0] - 1]
    tps = np.r_[0, np.cumsum(y)[ends]].astype(np.float64)
    fps = np.r_[0, ends + 1].astype(np.float64) - tps
    area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) / 2.0
    return float(area / (n_pos * n_neg))


class Metric(ABC):
    """Accumulates one evaluation metric."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.reset()

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def update(self, pred: np.ndarray, label: np.ndarray, size: int, loss: float | None = None) -> None:
        """Add one batch (its first ``size`` rows)."""

    @abstractmethod
    def finalize(self) -> float:
        """The metric over every batch since the last reset."""


class _Collecting(Metric):
    """Keeps the predictions and labels of every batch."""

    def reset(self) -> None:
        self._pred: list[np.ndarray] = []
        self._label: list[np.ndarray] = []

    def update(self, pred: np.ndarray, label: np.ndarray, size: int, loss: float | None = None) -> None:
        p, y = _pair(pred, label, size)
        self._pred.append(np.array(p, np.float32))
        self._label.append(np.array(y, np.float32))

    def _collected(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._pred:
            return np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32)
        return np.concatenate(self._pred), np.concatenate(self._label)


class AUC(_Collecting):
    """ROC AUC over all samples; with several label columns, the mean of the per-class AUCs."""

    name = "AUC"

    def reset(self) -> None:
        super().reset()
        self.per_class: list[float] = []

    def finalize(self) -> float:
        p, y = self._collected()
        if p.shape[0] == 0:
            self.per_class = []
            return float("nan")
        self.per_class = [roc_auc(p[:, c], y[:, c]) for c in range(p.shape[1])]
        return float(np.mean(self.per_class))


class AverageLoss(Metric):
    """Mean of the per-batch loss values (the batch-mean loss plus the regularizer term)."""

    name = "AverageLoss"

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    def update(self, pred: np.ndarray, label: np.ndarray, size: int, loss: float | None = None) -> None:
        if loss is None:
            raise ValueError("AverageLoss.update() needs the batch's loss value (loss=...)")
        self._sum += float(loss)
        self._count += 1

    def finalize(self) -> float:
        return self._sum / self._count if self._count else float("nan")


class HitRate(Metric):
    """hits/checked: checked = predictions > 0.8, hits = those whose label is 1 (a cumulative hit rate)."""

    name = "HitRate"

    def reset(self) -> None:
        self._checked, self._hits = 0, 0

    def update(self, pred: np.ndarray, label: np.ndarray, size: int, loss: float | None = None) -> None:
        p, y = _pair(pred, label, size)
        above = p > HIT_THRESHOLD
        self._checked += int(above.sum())
        self._hits += int((above & (y == 1)).sum())

    def finalize(self) -> float:
        return self._hits / self._checked if self._checked else float("nan")


def ndcg(pred: np.ndarray, label: np.ndarray) -> float:
    """NDCG of the whole list ranked by prediction (gain = label, discount 1/log2(rank + 1)).

    Tied predictions share the mean gain of their group, so the value does not depend on the input order.
    """
    p = np.asarray(pred, np.float64).reshape(-1)
    y = np.asarray(label, np.float64).reshape(-1)
    discount = 1.0 / np.log2(np.arange(p.shape[0]) + 2.0)
    ideal = float(np.sort(y)[::-1] @ discount)
    if ideal == 0.0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
    group_gain = np.add.reduceat(ys, starts) / np.diff(np.r_[starts, ps.shape[0]])
    group_disc = np.add.reduceat(discount, starts)
    return float(group_gain @ group_disc / ideal)


class NDCG(_Collecting):
    """NDCG over all samples; mean over label columns."""

    name = "NDCG"

    def finalize(self) -> float:
        p, y = self._collected()
        if p.shape[0] == 0:
            return float("nan")
        return float(np.mean([ndcg(p[:, c], y[:, c]) for c in range(p.shape[1])]))


class SMAPE(Metric):
    """Mean of |p − y| / ((p + y)/2) over all predictions; a pair with p + y = 0 contributes 0."""

    name = "SMAPE"

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    def update(self, pred: np.ndarray, label: np.ndarray, size: int, loss: float | None = None) -> None:
        p, y = _pair(pred, label, size)
        p, y = p.astype(np.float64), y.astype(np.float64)
        half = (p + y) / 2.0
        diff = np.abs(p - y)
        terms = np.divide(diff, half, out=np.zeros_like(diff), where=half != 0)
        self._sum += float(terms.sum())
        self._count += terms.size

    def finalize(self) -> float:
        return self._sum / self._count if self._count else float("nan")


METRICS: dict[str, type[Metric]] = {m.name: m for m in (AUC, AverageLoss, HitRate, NDCG, SMAPE)}


def make_metric(name: str) -> Metric:
    """A fresh metric by its MetricsType name."""
    if name not in METRICS:
        raise ValueError(f"metric {name!r} is not a MetricsType; choose one of {list(METRICS)}")
    return METRICS[name]()


def compute_metrics(names: Sequence[str], preds: np.ndarray, labels: np.ndarray,
                    avg_loss: float) -> list[tuple[str, float]]:
    """(name, value) of each named metric over whole-evaluation predictions and labels (n, k).

    AverageLoss is ``avg_loss`` (the mean of the per-batch losses the caller collected).
    """
    out = []
    for name in names:
        key = str(getattr(name, "name", name))
        if key == "AverageLoss":
            out.append((key, float(avg_loss)))
            continue
        metric = make_metric(key)
        metric.update(preds, labels, int(np.shape(preds)[0]))
        out.append((key, metric.finalize()))
    return out
