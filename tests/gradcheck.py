"""Finite-difference gradient checks of the NumPy reference semantics (float64)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import TensorType


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def random_inputs(shapes: Sequence[tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, size=s) for s in shapes]


def check_grad(op_name: str, attrs: Mapping[str, Any], xs: list[np.ndarray], ws: list[np.ndarray] | None = None,
               *, grad_inputs: Sequence[int] | None = None, eps: float = 1e-6, tol: float = 1e-6,
               training: bool = True, seed: int = 0) -> None:
    """Compare backward() with central differences of L = Σ r ⊙ forward(x) for a random r.

    ``grad_inputs`` lists the inputs that take a gradient (default: all that backward returns).
    The forward must be deterministic for a fixed ``ctx.rng`` seed (dropout re-seeds per call).
    """
    op = get_op(op_name)
    full = check_attrs(op_name, attrs)
    ws = [np.asarray(w, np.float64) for w in (ws or [])]
    xs = [np.asarray(x, np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating) else np.asarray(x)
          for x in xs]

    def run(xs_: list, ws_: list) -> tuple[list, Any, RefContext]:
        ctx = RefContext(training=training, rng=np.random.default_rng(seed))
        ys, saved = op.forward(ctx, full, xs_, ws_)
        return ys, saved, ctx

    ys, saved, ctx = run(xs, ws)
    rng = np.random.default_rng(seed + 1)
    rs = [rng.uniform(-1, 1, size=np.shape(y)) for y in ys]

    def loss(xs_: list, ws_: list) -> float:
        return float(sum(np.sum(r * y) for r, y in zip(rs, run(xs_, ws_)[0])))

    gxs, gws = op.backward(ctx, full, saved, [r.copy() for r in rs])
    targets = [("x", i, xs) for i in (grad_inputs if grad_inputs is not None else range(len(xs)))
               if gxs[i] is not None] + [("w", i, ws) for i in range(len(ws))]
    assert targets, f"{op_name}: nothing to check"
    for kind, i, arrs in targets:
        analytic = (gxs if kind == "x" else gws)[i]
        assert analytic is not None, f"{op_name}: no gradient for {kind}{i}"
        num = np.zeros_like(arrs[i])
        it = np.nditer(arrs[i], flags=["multi_index"])
        for _ in it:
            idx = it.multi_index
            orig = arrs[i][idx]
            arrs[i][idx] = orig + eps
            lp = loss(xs, ws)
            arrs[i][idx] = orig - eps
            lm = loss(xs, ws)
            arrs[i][idx] = orig
            num[idx] = (lp - lm) / (2 * eps)
        err = rel_err(np.reshape(analytic, num.shape), num)
        assert err < tol, f"{op_name}: gradient of {kind}{i} off by relative error {err:.2e}"


def infer(op_name: str, attrs: Mapping[str, Any], types: Sequence[TensorType]) -> list[TensorType]:
    return list(get_op(op_name).infer(check_attrs(op_name, attrs), types))
