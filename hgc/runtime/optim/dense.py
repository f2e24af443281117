"""Dense optimizers (facts §3.2) updating a list of weight arrays in place.

``step(grads, lr, scaler)`` takes the raw weight gradients of the step, still multiplied by the loss scaler,
and divides them by ``scaler`` itself (g = wgrad/scaler, as every HugeCTR optimizer does). States have the
weights' dtype (fp32 for the model's fp32 master weights) and start at zero, except AdaGrad's accumulator,
which starts at ``initial_accu_value`` (set as a value, not byte-wise). The math is dtype-generic so tests can
run it in float64.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from hgc.runtime.optim.names import OptHyper, optimizer_name


class DenseOptimizer(ABC):
    """Base: holds the weights, one state list per state kind, and the step count."""

    name: ClassVar[str] = ""
    state_kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, weights: Sequence[np.ndarray], hyper: OptHyper | None = None) -> None:
        self.weights = list(weights)
        self.hyper = hyper or OptHyper()
        self.step_count = 0  # updates done so far; Adam's t of the next step is step_count + 1
        self._states = [[self._initial_state(kind, w) for w in self.weights] for kind in self.state_kinds]

    def _initial_state(self, kind: str, w: np.ndarray) -> np.ndarray:
        return np.zeros_like(w)

    def states(self) -> list[list[np.ndarray]]:
        """One list per state kind (file order, facts §5.3), each with one array per weight."""
        return self._states

    def load_states(self, states: Sequence[Sequence[np.ndarray]]) -> None:
        """Replace the states (same layout as states(); values are copied in)."""
        if len(states) != len(self.state_kinds):
            raise ValueError(f"{self.name}: expected {len(self.state_kinds)} state kind(s) "
                             f"{list(self.state_kinds)}, got {len(states)}")
        for kind, mine, theirs in zip(self.state_kinds, self._states, states):
            if len(theirs) != len(mine):
                raise ValueError(f"{self.name}: state '{kind}' has {len(theirs)} arrays for {len(mine)} "
                                 f"weights")
            for i, (a, b) in enumerate(zip(mine, theirs)):
                if np.size(b) != a.size:
                    raise ValueError(f"{self.name}: state '{kind}' of weight {i} has {np.size(b)} values, "
                                     f"expected {a.size}")
                a[...] = np.asarray(b).reshape(a.shape)

    def step(self, grads: Sequence[np.ndarray], lr: float, scaler: float = 1.0) -> None:
        """One update of every weight with g = grads[i] / scaler and learning rate lr."""
        if len(grads) != len(self.weights):
            raise ValueError(f"{self.name}: {len(grads)} gradients for {len(self.weights)} weights")
        if scaler == 0:
            raise ValueError(f"{self.name}: scaler=0 is not allowed (gradients are divided by it)")
        self.step_count += 1
        self._begin(float(lr))
        for i, (w, g) in enumerate(zip(self.weights, grads)):
            g = np.asarray(g)
            if g.size != w.size:
                raise ValueError(f"{self.name}: gradient {i} has shape {g.shape}, weight has {w.shape}")
            g = g.reshape(w.shape).astype(w.dtype, copy=False)
            if scaler != 1:
                g = g / w.dtype.type(scaler)
            self._update(i, w, g, float(lr))

    def _begin(self, lr: float) -> None:
        """Per-step scalars shared by all weights (Adam's α_t)."""

    @abstractmethod
    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        """Update weight i in place with its un-scaled gradient g."""


class SGD(DenseOptimizer):
    """w ← w − lr·g."""

    name = "SGD"

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        w -= w.dtype.type(lr) * g


class MomentumSGD(DenseOptimizer):
    """m ← μ·m − lr·g; w ← w + m."""

    name, state_kinds = "MomentumSGD", ("momentum",)

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        m, t = self._states[0][i], w.dtype.type
        m *= t(self.hyper.momentum_factor)
        m -= t(lr) * g
        w += m


class Nesterov(DenseOptimizer):
    """a' = μ·a − lr·g; w ← w − μ·a + (1+μ)·a'; a ← a'."""

    name, state_kinds = "Nesterov", ("accum",)

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        a, t, mu = self._states[0][i], w.dtype.type, self.hyper.momentum_factor
        new = t(mu) * a - t(lr) * g
        w += t(1.0 + mu) * new - t(mu) * a
        a[...] = new


class Adam(DenseOptimizer):
    """Adam with bias correction folded into α_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ) and ε outside the root (TF's ε-hat)."""

    name, state_kinds = "Adam", ("m", "v")

    def _begin(self, lr: float) -> None:
        h, t = self.hyper, self.step_count
        self._alpha = lr * np.sqrt(1.0 - h.beta2 ** t) / (1.0 - h.beta1 ** t)

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        m, v, t, h = self._states[0][i], self._states[1][i], w.dtype.type, self.hyper
        m *= t(h.beta1)
        m += t(1.0 - h.beta1) * g
        v *= t(h.beta2)
        v += t(1.0 - h.beta2) * g * g
        w -= t(self._alpha) * m / (np.sqrt(v) + t(h.epsilon))


class AdaGrad(DenseOptimizer):
    """G ← G + g²; w ← w − lr·g/(√G + ε); G starts at initial_accu_value."""

    name, state_kinds = "AdaGrad", ("accum",)

    def _initial_state(self, kind: str, w: np.ndarray) -> np.ndarray:
        return np.full_like(w, self.hyper.initial_accu_value)

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        acc, t = self._states[0][i], w.dtype.type
        acc += g * g
        w -= t(lr) * g / (np.sqrt(acc) + t(self.hyper.epsilon))


class Ftrl(DenseOptimizer):
    """FTRL-proximal (facts §3.2), with ``beta`` added to √n' in the denominator as in the FTRL paper.

    n' = n + g²; z ← z + g + (√n − √n')·w/lr; w = (λ₁·sign(z) − z)/((β + √n')/lr + λ₂) where |z| > λ₁, else 0.
    A step with lr = 0 (a frozen part) leaves weights and states unchanged.
    """

    name, state_kinds = "Ftrl", ("n", "z")

    def _update(self, i: int, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        if lr == 0:
            return
        n, z, t, h = self._states[0][i], self._states[1][i], w.dtype.type, self.hyper
        root_old = np.sqrt(n)
        n += g * g
        root_new = np.sqrt(n)
        z += g + (root_old - root_new) * w / t(lr)
        denom = (t(h.beta) + root_new) / t(lr) + t(h.lambda2)
        l1 = t(h.lambda1)
        w[...] = np.where(np.abs(z) > l1, (l1 * np.sign(z) - z) / denom, t(0))


DENSE_OPTIMIZERS: dict[str, type[DenseOptimizer]] = {
    c.name: c for c in (SGD, MomentumSGD, Nesterov, Adam, AdaGrad, Ftrl)}


def make_dense_optimizer(optimizer_type: str, weights: Sequence[np.ndarray], **params: Any) -> DenseOptimizer:
    """The dense optimizer named by ``optimizer_type`` over ``weights``.

    ``params`` are CreateOptimizer's fields; update_type and atomic_update only concern embeddings and are
    accepted and ignored here.
    """
    params = dict(params)
    params.pop("update_type", None)
    params.pop("atomic_update", None)
    hyper = OptHyper.from_kwargs("make_dense_optimizer", **params)
    return DENSE_OPTIMIZERS[optimizer_name(optimizer_type)](weights, hyper)
