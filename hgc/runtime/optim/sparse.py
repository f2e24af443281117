"""Embedding (sparse) optimizers: update the rows of one table per ``Update_t`` (facts §3.3, DESIGN §7).

``update(table, rows, grads, lr, scaler)`` takes the touched rows (distinct) with their summed gradients
(duplicate keys already added together, still multiplied by the loss scaler; g = grads/scaler here).

* Local: only touched rows change, weights and states alike.
* Global: the whole table moves every step. Adam, MomentumSGD and Nesterov use their textbook recurrences with
  g = 0 for untouched rows, which is the net effect HugeCTR documents, computed without dividing by μ or β
  (so momentum_factor = 0 works). SGD and AdaGrad behave as Local.
* LazyGlobal (Adam only): a touched row first pays the update it owes for the steps since it was last
  touched (stale moments, bias correction of that step), then refreshes its moments; see ``_lazy_adam``.

States are preallocated per row (``capacity × vec``); rows beyond the highest row ever touched have zero
state, so the Global passes stop there. Computation runs in the table's dtype; states are stored in
``state_dtype`` (fp16 under mixed precision).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.runtime.optim.names import OptHyper, optimizer_name, update_name

SPARSE_STATE_KINDS = {"Adam": ("m", "v"), "MomentumSGD": ("momentum",), "Nesterov": ("accum",),
                      "AdaGrad": ("accum",), "SGD": ()}


class SparseOptimizer:
    """Optimizer state and update rule of one embedding table."""

    def __init__(self, optimizer_type: str, update_type: str, capacity: int, vec_size: int, *,
                 atomic_update: bool = True, state_dtype: Any = np.float32,
                 hyper: OptHyper | None = None) -> None:
        self.optimizer = optimizer_name(optimizer_type)
        self.update_type = update_name(update_type)
        if self.optimizer not in SPARSE_STATE_KINDS:
            raise ValueError(f"optimizer_type={optimizer_type!r} is not available for embeddings; "
                             f"choose one of {list(SPARSE_STATE_KINDS)}")
        if self.update_type == "LazyGlobal" and self.optimizer != "Adam":
            raise ValueError(f"update_type='LazyGlobal' works with the Adam optimizer only, "
                             f"got optimizer_type={self.optimizer!r}")
        self.capacity, self.vec_size = int(capacity), int(vec_size)
        self.atomic_update = bool(atomic_update)  # SGD's atomic scatter: same math as the summed update
        self.hyper = hyper or OptHyper()
        self.state_dtype = np.dtype(state_dtype)
        fill = self.hyper.initial_accu_value if self.optimizer == "AdaGrad" else 0.0
        self._states = [np.full((self.capacity, self.vec_size), fill, self.state_dtype)
                        for _ in SPARSE_STATE_KINDS[self.optimizer]]
        self.times = 0  # Adam's step counter; the first update uses t = 1
        self.prev_time = (np.ones(self.capacity, np.uint64) if self.update_type == "LazyGlobal"
                          else np.zeros(0, np.uint64))
        self._hi = 0  # rows [0, _hi) may have non-zero state

    @property
    def state_kinds(self) -> tuple[str, ...]:
        return SPARSE_STATE_KINDS[self.optimizer]

    def states(self) -> list[np.ndarray]:
        """The whole preallocated state buffer of each kind (Adam: m, v), as the optimizer file holds them."""
        return self._states

    def load_states(self, states: list[np.ndarray]) -> None:
        """Replace the state buffers (values are copied and converted to ``state_dtype``)."""
        if len(states) != len(self._states):
            raise ValueError(f"sparse {self.optimizer}: expected {len(self._states)} state kind(s) "
                             f"{list(self.state_kinds)}, got {len(states)}")
        for kind, mine, theirs in zip(self.state_kinds, self._states, states):
            if np.size(theirs) != mine.size:
                raise ValueError(f"sparse {self.optimizer}: state '{kind}' has {np.size(theirs)} values, "
                                 f"expected {self.capacity}×{self.vec_size}")
            mine[...] = np.asarray(theirs).reshape(mine.shape)
        used = np.zeros(self.capacity, bool)
        for mine in self._states:
            used |= np.any(mine != 0, axis=1)
        self._hi = int(np.flatnonzero(used)[-1]) + 1 if used.any() else 0

    def update(self, table: np.ndarray, rows: np.ndarray, grads: np.ndarray, lr: float,
               scaler: float = 1.0) -> None:
        """Apply one step to ``table`` (capacity × vec) in place; ``rows`` must be distinct."""
        if table.shape != (self.capacity, self.vec_size):
            raise ValueError(f"sparse {self.optimizer}: table shape {table.shape} is not "
                             f"({self.capacity}, {self.vec_size})")
        if scaler == 0:
            raise ValueError(f"sparse {self.optimizer}: scaler=0 is not allowed (gradients are divided by "
                             f"it)")
        rows = np.asarray(rows, np.int64).reshape(-1)
        ct = table.dtype.type
        g = np.asarray(grads).reshape(rows.shape[0], self.vec_size).astype(table.dtype) / ct(scaler)
        if rows.size:
            self._hi = max(self._hi, int(rows.max()) + 1)
        lr = float(lr)
        if self.optimizer == "SGD":
            table[rows] -= ct(lr) * g
        elif self.optimizer == "AdaGrad":
            acc = self._get(0, rows, ct) + g * g
            self._set(0, rows, acc)
            table[rows] -= ct(lr) * g / (np.sqrt(acc) + ct(self.hyper.epsilon))
        elif self.optimizer == "MomentumSGD":
            self._momentum(table, rows, g, lr)
        elif self.optimizer == "Nesterov":
            self._nesterov(table, rows, g, lr)
        elif self.update_type == "LazyGlobal":
            self._lazy_adam(table, rows, g, lr)
        else:
            self._adam(table, rows, g, lr)

    # -- state access in the compute dtype ----------------------------------------------------------
    def _get(self, k: int, rows: np.ndarray | slice, ct: Any) -> np.ndarray:
        """State rows in the compute dtype; for a slice of matching dtype this is a view (edits land)."""
        s = self._states[k][rows]
        return s if isinstance(rows, slice) and s.dtype == np.dtype(ct) else s.astype(ct)

    def _set(self, k: int, rows: np.ndarray | slice, values: np.ndarray) -> None:
        if not np.may_share_memory(values, self._states[k]):
            self._states[k][rows] = values

    # -- rules --------------------------------------------------------------------------------------
    def _momentum(self, table: np.ndarray, rows: np.ndarray, g: np.ndarray, lr: float) -> None:
        ct, mu = table.dtype.type, self.hyper.momentum_factor
        if self.update_type == "Local":
            m = ct(mu) * self._get(0, rows, ct) - ct(lr) * g
            self._set(0, rows, m)
            table[rows] += m
            return
        span = slice(0, self._hi)
        m = self._get(0, span, ct)
        m *= ct(mu)
        m[rows] -= ct(lr) * g
        table[span] += m
        self._set(0, span, m)

    def _nesterov(self, table: np.ndarray, rows: np.ndarray, g: np.ndarray, lr: float) -> None:
        ct, mu = table.dtype.type, self.hyper.momentum_factor
        if self.update_type == "Local":
            a = self._get(0, rows, ct)
            new = ct(mu) * a - ct(lr) * g
            self._set(0, rows, new)
            table[rows] += ct(1.0 + mu) * new - ct(mu) * a
            return
        span = slice(0, self._hi)
        a = self._get(0, span, ct)
        a *= ct(mu)
        table[span] += ct(mu) * a
        a[rows] -= ct(lr) * g
        table[rows] -= ct((1.0 + mu) * lr) * g
        self._set(0, span, a)

    def _alpha(self, t: int, lr: float) -> float:
        h = self.hyper
        return lr * np.sqrt(1.0 - h.beta2 ** t) / (1.0 - h.beta1 ** t)

    def _adam(self, table: np.ndarray, rows: np.ndarray, g: np.ndarray, lr: float) -> None:
        ct, h = table.dtype.type, self.hyper
        self.times += 1
        alpha, eps = ct(self._alpha(self.times, lr)), ct(h.epsilon)
        if self.update_type == "Local":
            m = ct(h.beta1) * self._get(0, rows, ct) + ct(1.0 - h.beta1) * g
            v = ct(h.beta2) * self._get(1, rows, ct) + ct(1.0 - h.beta2) * g * g
            self._set(0, rows, m)
            self._set(1, rows, v)
            table[rows] -= alpha * m / (np.sqrt(v) + eps)
            return
        span = slice(0, self._hi)
        m, v = self._get(0, span, ct), self._get(1, span, ct)
        m *= ct(h.beta1)
        v *= ct(h.beta2)
        m[rows] += ct(1.0 - h.beta1) * g
        v[rows] += ct(1.0 - h.beta2) * g * g
        table[span] -= alpha * m / (np.sqrt(v) + eps)
        self._set(0, span, m)
        self._set(1, span, v)

    def _lazy_adam(self, table: np.ndarray, rows: np.ndarray, g: np.ndarray, lr: float) -> None:
        """LazyGlobal Adam, per touched row with T = this step and p = the step it was last touched (init 1).

        w −= lr/(1−β₁)·√(1−β₂ᵖ)/(1−β₁ᵖ)·(1−β₁^(T−p))·m/(√v+ε)   (the steps p … T−1 it skipped)
        m ← β₁^(T−p)·m + (1−β₁)·g;  v ← β₂^(T−p)·v + (1−β₂)·g²;  p ← T
        """
        ct, h = table.dtype.type, self.hyper
        self.times += 1
        T = self.times
        p = self.prev_time[rows].astype(np.float64)
        skipped = T - p
        owed = (lr / (1.0 - h.beta1)) * np.sqrt(1.0 - h.beta2 ** p) / (1.0 - h.beta1 ** p) \
            * (1.0 - h.beta1 ** skipped)
        m, v = self._get(0, rows, ct), self._get(1, rows, ct)
        table[rows] -= owed.astype(ct)[:, None] * m / (np.sqrt(v) + ct(h.epsilon))
        m = (h.beta1 ** skipped).astype(ct)[:, None] * m + ct(1.0 - h.beta1) * g
        v = (h.beta2 ** skipped).astype(ct)[:, None] * v + ct(1.0 - h.beta2) * g * g
        self._set(0, rows, m)
        self._set(1, rows, v)
        self.prev_time[rows] = np.uint64(T)


def make_sparse_optimizer(optimizer_type: str, capacity: int, vec_size: int, *, update_type: str = "Global",
                          atomic_update: bool = True, state_dtype: Any = np.float32,
                          **params: Any) -> SparseOptimizer:
    """A SparseOptimizer from CreateOptimizer's fields (beta1, beta2, epsilon, initial_accu_value, …)."""
    hyper = OptHyper.from_kwargs("make_sparse_optimizer", **params)
    return SparseOptimizer(optimizer_type, update_type, capacity, vec_size, atomic_update=atomic_update,
                           state_dtype=state_dtype, hyper=hyper)
