"""L1/L2 regularisation of the dense weights (facts §1.4), with B the per-GPU batch size.

L1: term (λ/B)·Σ|w|, gradient +λ/B where w > 0 and −λ/B elsewhere (w = 0 included, as HugeCTR does).
L2: term (λ/(2B))·Σw², gradient (λ/B)·w.
The runtime adds ``term`` to the reported loss and starts each weight gradient from ``grads``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Regularizer:
    """Regularizer of the loss layer's ``regularizer_type`` ("L1" | "L2"), or none when ``kind`` is None."""

    def __init__(self, kind: str | None, lam: float, batch_size: int) -> None:
        if kind not in (None, "L1", "L2"):
            raise ValueError(f"regularizer_type={kind!r} must be 'L1' or 'L2'")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lambda={lam!r} must be a finite number >= 0")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} (per-GPU batch) must be an integer > 0")
        self.kind, self.lam, self.batch_size = kind, float(lam), batch_size

    def term(self, weights: Sequence[np.ndarray]) -> float:
        """The amount added to the loss."""
        if self.kind is None:
            return 0.0
        scale = self.lam / self.batch_size
        if self.kind == "L1":
            return scale * sum(float(np.abs(np.asarray(w, np.float64)).sum()) for w in weights)
        return 0.5 * scale * sum(float(np.square(np.asarray(w, np.float64)).sum()) for w in weights)

    def grads(self, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The initial weight gradients (same dtype and shape as each weight) before backprop adds to them."""
        scale = self.lam / self.batch_size
        out = []
        for w in weights:
            t = w.dtype.type
            if self.kind is None:
                out.append(np.zeros_like(w))
            elif self.kind == "L1":
                out.append(np.where(w > 0, t(scale), t(-scale)).astype(w.dtype))
            else:
                out.append(t(scale) * w)
        return out
