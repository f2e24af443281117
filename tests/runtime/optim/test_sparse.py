from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.optim.sparse import make_sparse_optimizer

CAP, VEC, STEPS = 23, 3, 7
H = {"beta1": 0.8, "beta2": 0.9, "epsilon": 1e-3, "momentum_factor": 0.6, "initial_accu_value": 0.2}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def schedule(seed: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per step: distinct touched rows (never rows 19..22; step 3 touches nothing), their grads, lr."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(STEPS):
        k = 0 if step == 3 else int(rng.integers(1, 9))
        rows = rng.choice(19, size=k, replace=False).astype(np.int64)
        out.append((rows, rng.uniform(-1, 1, size=(k, VEC)), float(rng.uniform(0.01, 0.2))))
    return out


def run(opt: str, update: str, sched: list, scaler: float = 4.0, dtype: type = np.float64,
        state_dtype: type = np.float64, **h: float) -> tuple[np.ndarray, np.ndarray, object]:
    rng = np.random.default_rng(0)
    w0 = rng.uniform(-1, 1, size=(CAP, VEC))
    table = w0.astype(dtype)
    o = make_sparse_optimizer(opt, CAP, VEC, update_type=update, state_dtype=state_dtype, **h)
    for rows, g, lr in sched:
        o.update(table, rows, (g * scaler).astype(dtype), lr, scaler=scaler)
    return w0, table, o


def textbook(opt: str, w0: np.ndarray, sched: list, every_row: bool, h: dict) -> tuple[np.ndarray, list]:
    """Row-by-row textbook updates; every_row=True moves all rows with g = 0 where untouched (Global)."""
    w = w0.copy()
    s1, s2 = np.zeros_like(w), np.zeros_like(w)
    if opt == "AdaGrad":
        s1[:] = h["initial_accu_value"]
    b1, b2, eps, mu = h["beta1"], h["beta2"], h["epsilon"], h["momentum_factor"]
    for t, (rows, grads, lr) in enumerate(sched, start=1):
        g_of = {int(r): grads[i] for i, r in enumerate(rows)}
        for r in range(CAP):
            if r not in g_of and not every_row:
                continue
            g = g_of.get(r, np.zeros(VEC))
            for c in range(VEC):
                if opt == "SGD":
                    w[r, c] -= lr * g[c]
                elif opt == "AdaGrad":
                    s1[r, c] += g[c] ** 2
                    w[r, c] -= lr * g[c] / (np.sqrt(s1[r, c]) + eps)
                elif opt == "MomentumSGD":
                    s1[r, c] = mu * s1[r, c] - lr * g[c]
                    w[r, c] += s1[r, c]
                elif opt == "Nesterov":
                    new = mu * s1[r, c] - lr * g[c]
                    w[r, c] += -mu * s1[r, c] + (1 + mu) * new
                    s1[r, c] = new
                else:
                    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                    s1[r, c] = b1 * s1[r, c] + (1 - b1) * g[c]
                    s2[r, c] = b2 * s2[r, c] + (1 - b2) * g[c] ** 2
                    w[r, c] -= alpha * s1[r, c] / (np.sqrt(s2[r, c]) + eps)
    return w, [s1, s2]


@pytest.mark.parametrize("opt", ["SGD", "AdaGrad", "MomentumSGD", "Nesterov", "Adam"])
def test_local_moves_only_touched_rows_by_the_textbook_rule(opt: str) -> None:
    sched = schedule(1)
    w0, table, o = run(opt, "Local", sched, **H)
    ref, states = textbook(opt, w0, sched, every_row=False, h=H)
    assert rel_err(table, ref) < 1e-12
    for mine, theirs in zip(o.states(), states):
        assert mine.shape == (CAP, VEC) and rel_err(mine, theirs) < 1e-12
    np.testing.assert_array_equal(table[19:], w0[19:])
    touched = np.unique(np.concatenate([r for r, _, _ in sched]))
    untouched = np.setdiff1d(np.arange(19), touched)
    np.testing.assert_array_equal(table[untouched], w0[untouched])


@pytest.mark.parametrize("opt", ["MomentumSGD", "Nesterov", "Adam"])
def test_global_moves_every_row_with_stale_state(opt: str) -> None:
    sched = schedule(3)
    w0, table, o = run(opt, "Global", sched, **H)
    ref, states = textbook(opt, w0, sched, every_row=True, h=H)
    assert rel_err(table, ref) < 1e-12
    for mine, theirs in zip(o.states(), states):
        assert rel_err(mine, theirs) < 1e-12
    # a row touched once at the first step keeps drifting afterwards; never-touched rows stay put
    first_only = np.setdiff1d(sched[0][0], np.concatenate([r for r, _, _ in sched[1:]]))
    _, local_table, _ = run(opt, "Local", sched, **H)
    assert first_only.size and np.all(np.abs(table[first_only] - local_table[first_only]) > 1e-6)
    np.testing.assert_array_equal(table[19:], w0[19:])


def test_global_has_hugectrs_net_effect_and_survives_zero_momentum() -> None:
    """HugeCTR's two-pass forms (dividing by β and μ) give the same numbers when β, μ ≠ 0."""
    sched = schedule(2)
    b1, b2, eps, mu = H["beta1"], H["beta2"], H["epsilon"], H["momentum_factor"]
    w0, table, _ = run("Adam", "Global", sched, **H)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, (rows, g, lr) in enumerate(sched, start=1):
        m[rows] += (1 - b1) * g / b1
        v[rows] += (1 - b2) * g * g / b2
        m, v = b1 * m, b2 * v
        w -= lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    assert rel_err(table, w) < 1e-12
    w0, table, _ = run("MomentumSGD", "Global", sched, **H)
    w, m = w0.copy(), np.zeros_like(w0)
    for rows, g, lr in sched:
        m[rows] -= lr * g / mu
        m = mu * m
        w += m
    assert rel_err(table, w) < 1e-12
    w0, table, _ = run("MomentumSGD", "Global", sched, **{**H, "momentum_factor": 0.0})
    _, sgd, _ = run("SGD", "Global", sched, **H)
    assert np.all(np.isfinite(table)) and rel_err(table, sgd) < 1e-12


@pytest.mark.parametrize("opt", ["SGD", "AdaGrad"])
def test_global_sgd_and_adagrad_equal_local(opt: str) -> None:
    sched = schedule(4)
    _, glob, _ = run(opt, "Global", sched, **H)
    _, local, _ = run(opt, "Local", sched, **H)
    np.testing.assert_array_equal(glob, local)


def test_lazy_global_adam_follows_the_catch_up_rule() -> None:
    sched = schedule(5)
    w0, table, o = run("Adam", "LazyGlobal", sched, **H)
    b1, b2, eps = H["beta1"], H["beta2"], H["epsilon"]
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    prev = np.ones(CAP, np.int64)
    for T, (rows, grads, lr) in enumerate(sched, start=1):
        for i, r in enumerate(rows.tolist()):
            p = prev[r]
            skipped = T - p
            for c in range(VEC):
                w[r, c] -= (lr / (1 - b1)) * np.sqrt(1 - b2 ** p) / (1 - b1 ** p) * (1 - b1 ** skipped) \
                    * m[r, c] / (np.sqrt(v[r, c]) + eps)
                m[r, c] = b1 ** skipped * m[r, c] + (1 - b1) * grads[i, c]
                v[r, c] = b2 ** skipped * v[r, c] + (1 - b2) * grads[i, c] ** 2
            prev[r] = T
    assert rel_err(table, w) < 1e-12
    assert rel_err(o.states()[0], m) < 1e-12 and rel_err(o.states()[1], v) < 1e-12
    np.testing.assert_array_equal(o.prev_time, prev.astype(np.uint64))
    assert o.times == STEPS


def test_lazy_global_needs_adam() -> None:
    with pytest.raises(ValueError, match="update_type='LazyGlobal'.*optimizer_type='MomentumSGD'"):
        make_sparse_optimizer("MomentumSGD", 4, 2, update_type="LazyGlobal")
    with pytest.raises(ValueError, match="update_type='Eager'"):
        make_sparse_optimizer("Adam", 4, 2, update_type="Eager")
    with pytest.raises(ValueError, match="not available for embeddings"):
        make_sparse_optimizer("Ftrl", 4, 2)
    with pytest.raises(TypeError, match="'lr'"):
        make_sparse_optimizer("SGD", 4, 2, lr=0.1)


def test_sgd_atomic_update_is_the_summed_update() -> None:
    sched = schedule(6)
    w0, summed, _ = run("SGD", "Local", sched)
    table = w0.copy()
    o = make_sparse_optimizer("SGD", CAP, VEC, update_type="Local", atomic_update=True,
                              state_dtype=np.float64)
    assert o.atomic_update and o.states() == []
    for rows, g, lr in sched:
        o.update(table, rows, g * 4.0, lr, scaler=4.0)
    np.testing.assert_array_equal(table, summed)


def test_fp32_table_with_fp16_states() -> None:
    sched = schedule(7)
    w0, table, o = run("Adam", "Global", sched, dtype=np.float32, state_dtype=np.float16, **H)
    ref, _ = textbook("Adam", w0, sched, every_row=True, h=H)
    assert table.dtype == np.float32 and o.states()[0].dtype == np.float16
    assert rel_err(table - w0, ref - w0) < 2e-2
    o32 = make_sparse_optimizer("Adam", CAP, VEC, **H)
    t32 = w0.astype(np.float32)
    for rows, g, lr in sched:
        o32.update(t32, rows, g, lr)
    assert rel_err(t32, ref) < 1e-6


def test_load_states_and_checks() -> None:
    sched = schedule(8)
    _, table, o = run("Adam", "Global", sched, **H)
    fresh = make_sparse_optimizer("Adam", CAP, VEC, state_dtype=np.float64, **H)
    fresh.load_states([s.copy() for s in o.states()])
    for a, b in zip(fresh.states(), o.states()):
        np.testing.assert_array_equal(a, b)
    t1, t2 = table.copy(), table.copy()
    fresh.times = o.times
    o.update(t1, np.array([20]), np.ones((1, VEC)), 0.1)
    fresh.update(t2, np.array([20]), np.ones((1, VEC)), 0.1)
    np.testing.assert_array_equal(t1, t2)
    with pytest.raises(ValueError, match="expected 2 state kind"):
        fresh.load_states([o.states()[0]])
    with pytest.raises(ValueError, match="table shape"):
        fresh.update(np.zeros((CAP + 1, VEC)), np.array([0]), np.ones((1, VEC)), 0.1)
