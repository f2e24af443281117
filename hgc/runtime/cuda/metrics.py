"""Losses and evaluation metrics on the GPU for the cuda target: the per-step total loss and the NaN watch that
needs no host synchronisation, the predictions of an evaluation batch, and AUC / HitRate / AverageLoss over an
evaluation computed where the predictions are.

The metric functions take NumPy or CuPy arrays (the array module is the inputs'), so the host tests check the
same code against scikit-learn; the definitions are those of :mod:`hgc.runtime.metrics` (AUC: predictions
clamped to [1e-7, 1 − 1e-7] in float32, tied predictions form one step of the ROC curve; HitRate: hits over
predictions above 0.8; a value with no data is NaN).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgc.runtime.metrics import AUC_CLAMP, HIT_THRESHOLD, compute_metrics

DEVICE_METRICS = ("AUC", "AverageLoss", "HitRate")


def array_module(a: Any) -> Any:
    """numpy or cupy, whichever ``a`` belongs to."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


# -- metrics -------------------------------------------------------------------------------------------
def roc_auc(pred: Any, label: Any) -> float:
    """Exact ROC AUC of one class (as hgc.runtime.metrics.roc_auc and sklearn's roc_auc_score), computed by
    the array module of ``pred``: one sort, one cumulative sum."""
    xp = array_module(pred)
    p = xp.clip(pred.reshape(-1).astype(xp.float32), AUC_CLAMP[0], AUC_CLAMP[1])
    y = (label.reshape(-1) > 0.5).astype(xp.float64)
    n = int(p.shape[0])
    n_pos = int(round(float(y.sum())))
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = xp.argsort(-p)
    p, y = p[order], y[order]
    ends = xp.concatenate([xp.nonzero(p[1:] != p[:-1])[0], xp.asarray([n - 1])])
    cum = xp.cumsum(y)
    zero = xp.zeros(1, xp.float64)
    tps = xp.concatenate([zero, cum[ends]])
    fps = xp.concatenate([zero, (ends + 1).astype(xp.float64)]) - tps
    area = float(((fps[1:] - fps[:-1]) * (tps[1:] + tps[:-1])).sum()) / 2.0
    return area / (float(n_pos) * float(n_neg))


def hit_rate(pred: Any, label: Any) -> float:
    above = pred > HIT_THRESHOLD
    checked = int(above.sum())
    hits = int((above & (label == 1)).sum())
    return hits / checked if checked else float("nan")


def metrics(names: Sequence[str], preds: Any, labels: Any, avg_loss: float) -> list[tuple[str, float]]:
    """(name, value) of each metric over the whole evaluation: preds/labels (n, k) of one array module. AUC
    is the mean of the per-column AUCs; metrics other than AUC/AverageLoss/HitRate are computed on the host."""
    out: list[tuple[str, float]] = []
    host: tuple[np.ndarray, np.ndarray] | None = None
    for name in names:
        key = str(getattr(name, "name", name))
        if key == "AverageLoss":
            out.append((key, float(avg_loss)))
        elif key == "AUC":
            if preds.shape[0] == 0:
                out.append((key, float("nan")))
            else:
                out.append((key, float(np.mean([roc_auc(preds[:, c], labels[:, c])
                                                  for c in range(preds.shape[1])]))))
        elif key == "HitRate":
            out.append((key, hit_rate(preds, labels)))
        else:
            if host is None:
                xp = array_module(preds)
                host = (xp.asnumpy(preds) if xp is not np else preds, xp.asnumpy(labels) if xp is not np else labels)
            out.extend(compute_metrics([key], host[0], host[1], avg_loss))
    return out


def predictions(loss_op: str, pred: Any) -> Any:
    """The probabilities a loss layer's prediction tensor means at evaluation (float64), as
    hgc.runtime.trainer.predictions: softmax column 1 for CrossEntropyLoss, else the sigmoid."""
    xp = array_module(pred)
    x = pred.astype(xp.float64)
    if loss_op == "CrossEntropyLoss":
        e = xp.exp(x - x.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True))[:, 1:2]
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


class EvalAccumulator:
    """Predictions, labels and losses of the evaluation batches since the last ``take()``, kept where they
    were computed (device arrays on the cuda target)."""

    def __init__(self) -> None:
        self.preds: list[Any] = []
        self.labels: list[Any] = []
        self.losses: list[Any] = []

    def add(self, preds: Any, labels: Any, loss: Any) -> None:
        self.preds.append(preds)
        self.labels.append(labels)
        self.losses.append(loss)

    def __bool__(self) -> bool:
        return bool(self.preds)

    def result(self, names: Sequence[str]) -> list[tuple[str, float]]:
        """The metrics over every batch added (NaN for each when none was)."""
        if not self.preds:
            return [(str(getattr(n, "name", n)), float("nan")) for n in names]
        xp = array_module(self.preds[0])
        avg = float(xp.stack([xp.asarray(v, xp.float64).reshape(()) for v in self.losses]).mean())
        return metrics(names, xp.concatenate(self.preds), xp.concatenate(self.labels), avg)


# -- the training loss on the device -----------------------------------------------------------------------
WATCH_SOURCE = r"""
// hgc: the NaN/Inf watch of the training loss (one thread). Records the first iteration whose total loss is
// not finite, and that loss; later iterations leave the record alone.
extern "C" __global__ void hgc_loss_watch(const double* __restrict__ loss, long long iteration,
                                          long long* __restrict__ first_bad, double* __restrict__ bad_loss) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    const double v = loss[0];
    const long long bits = __double_as_longlong(v);
    const bool finite = ((bits >> 52) & 0x7ff) != 0x7ff;
    if (!finite && first_bad[0] == 0) {
        first_bad[0] = iteration;
        bad_loss[0] = v;
    }
}
"""


class LossWatch:
    """The first non-finite training loss, recorded on the device each step without a synchronisation and
    read by :meth:`first_bad` when the trainer reports (display, evaluation, snapshot, end of fit)."""

    def __init__(self) -> None:
        from hgc.codegen.nvrtc import import_cupy, raw_module

        self.cp: Any = import_cupy()
        module: Any = raw_module(WATCH_SOURCE, "hgc_loss_watch", ("hgc_loss_watch",))
        self._kernel = module.get_function("hgc_loss_watch")
        self._first = self.cp.zeros(1, self.cp.int64)
        self._loss = self.cp.zeros(1, self.cp.float64)

    def record(self, loss: Any, iteration: int) -> None:
        """Note ``loss`` (a float64 device scalar) as the total loss of training iteration ``iteration``."""
        self._kernel((1,), (32,), (loss, np.int64(iteration), self._first, self._loss))

    def first_bad(self) -> tuple[int, float] | None:
        """(iteration, loss) of the first non-finite loss so far, or None (synchronises)."""
        it = int(self._first.get()[0])
        return None if it == 0 else (it, float(self._loss.get()[0]))

    def reset(self) -> None:
        self._first.fill(0)
        self._loss.fill(0)


def total_loss(cp: Any, losses: Sequence[tuple[Any, float]], reg: tuple[str | None, float, Any] | None = None) -> Any:
    """Σ weight·loss (+ the regularizer term) as a float64 device scalar (shape (1,)), from the loss views of
    a forward: ``losses`` = [(loss view, weight)]; ``reg`` = (kind "L1" | "L2" | None, λ/B, flat weights)."""
    total = None
    for view, w in losses:
        v = view.reshape(-1)[:1].astype(cp.float64)
        if w != 1.0:
            v *= w
        total = v if total is None else total + v
    if total is None:
        total = cp.zeros(1, cp.float64)
    if reg is not None and reg[0] is not None:
        kind, scale, flat = reg
        if kind == "L1":
            total += scale * cp.abs(flat).sum(dtype=cp.float64)
        else:
            total += 0.5 * scale * cp.square(flat.astype(cp.float64)).sum()
    return total
