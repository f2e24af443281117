from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.optim.dense import make_dense_optimizer

SHAPES = [(7, 3), (1, 3), (5,)]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def reference(opt: str, w0: list[np.ndarray], grads: list[list[np.ndarray]], lrs: list[float], scaler: float,
              h: dict) -> list[np.ndarray]:
    """The formulas of facts §3.2 written element by element (float64)."""
    w = np.concatenate([x.reshape(-1) for x in w0]).astype(np.float64)
    s1, s2 = np.zeros_like(w), np.zeros_like(w)
    if opt == "AdaGrad":
        s1[:] = h.get("initial_accu_value", 0.0)
    mu, b1 = h.get("momentum_factor", 0.0), h.get("beta1", 0.9)
    b2, eps = h.get("beta2", 0.999), h.get("epsilon", 1e-7)
    for t, (gs, lr) in enumerate(zip(grads, lrs), start=1):
        g = np.concatenate([x.reshape(-1) for x in gs]) / scaler
        for i in range(w.shape[0]):
            if opt == "SGD":
                w[i] -= lr * g[i]
            elif opt == "MomentumSGD":
                s1[i] = mu * s1[i] - lr * g[i]
                w[i] += s1[i]
            elif opt == "Nesterov":
                a_new = mu * s1[i] - lr * g[i]
                w[i] = w[i] - mu * s1[i] + (1 + mu) * a_new
                s1[i] = a_new
            elif opt == "Adam":
                alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                s1[i] = b1 * s1[i] + (1 - b1) * g[i]
                s2[i] = b2 * s2[i] + (1 - b2) * g[i] ** 2
                w[i] -= alpha * s1[i] / (np.sqrt(s2[i]) + eps)
            elif opt == "AdaGrad":
                s1[i] += g[i] ** 2
                w[i] -= lr * g[i] / (np.sqrt(s1[i]) + eps)
            elif opt == "Ftrl":
                l1, l2, beta = h["lambda1"], h["lambda2"], h["beta"]
                n_new = s1[i] + g[i] ** 2
                s2[i] += g[i] + (np.sqrt(s1[i]) - np.sqrt(n_new)) * w[i] / lr
                s1[i] = n_new
                z = s2[i]
                w[i] = (l1 * np.sign(z) - z) / ((beta + np.sqrt(n_new)) / lr + l2) if abs(z) > l1 else 0.0
    return [w, s1, s2]


CASES = [("SGD", {}), ("MomentumSGD", {"momentum_factor": 0.85}), ("Nesterov", {"momentum_factor": 0.7}),
         ("Adam", {"beta1": 0.8, "beta2": 0.95, "epsilon": 1e-4}), ("AdaGrad", {"initial_accu_value": 0.3,
                                                                             "epsilon": 1e-5}),
         ("Ftrl", {"lambda1": 0.02, "lambda2": 0.1, "beta": 0.5})]


@pytest.mark.parametrize("opt,h", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_matches_the_formulas(opt: str, h: dict, dtype: type, tol: float) -> None:
    rng = np.random.default_rng(1)
    w0 = [rng.uniform(-1, 1, size=s) for s in SHAPES]
    steps = 5
    grads = [[rng.uniform(-2, 2, size=s) for s in SHAPES] for _ in range(steps)]
    lrs, scaler = [0.1, 0.05, 0.2, 0.01, 0.07], 8.0
    weights = [w.astype(dtype) for w in w0]
    optim = make_dense_optimizer(opt, weights, update_type="Local", atomic_update=True, **h)
    for gs, lr in zip(grads, lrs):
        optim.step([(g * scaler).astype(dtype) for g in gs], lr, scaler=scaler)
    ref_w, s1, s2 = reference(opt, w0, [[g for g in gs] for gs in grads], lrs, 1.0, h)
    got = np.concatenate([w.reshape(-1) for w in weights])
    assert all(w.dtype == dtype for w in weights)
    assert rel_err(got, ref_w) < tol
    states = optim.states()
    assert len(states) == {"SGD": 0, "MomentumSGD": 1, "Nesterov": 1, "Adam": 2, "AdaGrad": 1, "Ftrl": 2}[opt]
    for kind, ref in zip(states, (s1, s2)):
        assert [a.shape for a in kind] == SHAPES
        assert rel_err(np.concatenate([a.reshape(-1) for a in kind]), ref) < tol


def test_momentum_zero_is_sgd_and_states_start_at_zero() -> None:
    rng = np.random.default_rng(2)
    w_a, w_b = [rng.uniform(-1, 1, size=(3, 5))], None
    w_b = [w_a[0].copy()]
    mom, sgd = make_dense_optimizer("MomentumSGD", w_a), make_dense_optimizer("SGD", w_b)
    assert np.all(mom.states()[0][0] == 0)
    for _ in range(3):
        g = [rng.uniform(-1, 1, size=(3, 5))]
        mom.step(g, 0.3)
        sgd.step(g, 0.3)
    np.testing.assert_allclose(w_a[0], w_b[0], rtol=0, atol=1e-15)


def test_adagrad_accumulator_starts_at_initial_accu_value() -> None:
    opt = make_dense_optimizer("Adagrad", [np.ones((2, 3), np.float32)], initial_accu_value=0.1)
    np.testing.assert_array_equal(opt.states()[0][0], np.full((2, 3), 0.1, np.float32))


def test_load_states_round_trip_and_checks() -> None:
    rng = np.random.default_rng(3)
    a = make_dense_optimizer("Adam", [rng.uniform(size=(4, 3)), rng.uniform(size=(3,))])
    a.step([rng.uniform(size=(4, 3)), rng.uniform(size=(3,))], 0.1)
    b = make_dense_optimizer("Adam", [np.zeros((4, 3)), np.zeros(3)])
    b.load_states([[x.reshape(-1) for x in kind] for kind in a.states()])
    for ka, kb in zip(a.states(), b.states()):
        for x, y in zip(ka, kb):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="2 state kind"):
        b.load_states([[np.zeros((4, 3)), np.zeros(3)]])
    with pytest.raises(ValueError, match="expected 3"):
        b.load_states([[np.zeros((4, 3)), np.zeros(4)], [np.zeros((4, 3)), np.zeros(3)]])


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="'momentum'"):
        make_dense_optimizer("SGD", [], momentum=0.9)
    with pytest.raises(ValueError, match="optimizer_type='RMS'"):
        make_dense_optimizer("RMS", [])
    opt = make_dense_optimizer("SGD", [np.zeros(3)])
    with pytest.raises(ValueError, match="1 weights"):
        opt.step([np.zeros(3), np.zeros(3)], 0.1)
    with pytest.raises(ValueError, match="scaler=0"):
        opt.step([np.zeros(3)], 0.1, scaler=0)


def test_ftrl_with_zero_lr_changes_nothing() -> None:
    w = [np.array([0.3, -0.2, 0.0])]
    opt = make_dense_optimizer("Ftrl", w, lambda1=0.01)
    opt.step([np.array([1.0, 2.0, 3.0])], 0.0)
    np.testing.assert_array_equal(w[0], [0.3, -0.2, 0.0])
    assert np.all(opt.states()[0][0] == 0)
