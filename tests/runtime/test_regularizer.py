from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.regularizer import Regularizer


def weights() -> list[np.ndarray]:
    rng = np.random.default_rng(9)
    ws = [rng.uniform(-1, 1, size=(5, 3)), rng.uniform(-1, 1, size=(1, 7)).astype(np.float32)]
    ws[0][2, 1] = 0.0
    return ws


def test_l1_term_and_gradient() -> None:
    ws = weights()
    reg = Regularizer("L1", 0.3, 13)
    expect = 0.3 / 13 * sum(float(np.sum(np.abs(w.astype(np.float64)))) for w in ws)
    assert reg.term(ws) == pytest.approx(expect, rel=1e-12)
    grads = reg.grads(ws)
    for w, g in zip(ws, grads):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, np.where(w > 0, 0.3 / 13, -0.3 / 13), rtol=1e-6)
    assert grads[0][2, 1] == pytest.approx(-0.3 / 13)  # w = 0 takes −λ/B


def test_l2_term_and_gradient() -> None:
    ws = weights()
    reg = Regularizer("L2", 0.7, 9)
    expect = 0.7 / (2 * 9) * sum(float(np.sum(w.astype(np.float64) ** 2)) for w in ws)
    assert reg.term(ws) == pytest.approx(expect, rel=1e-12)
    for w, g in zip(ws, reg.grads(ws)):
        np.testing.assert_allclose(g, 0.7 / 9 * w.astype(np.float64), rtol=1e-6)
    # the L2 gradient is the derivative of the term
    eps, w0 = 1e-6, [w.astype(np.float64) for w in ws]
    w0[0][1, 2] += eps
    up = reg.term(w0)
    w0[0][1, 2] -= 2 * eps
    assert (up - reg.term(w0)) / (2 * eps) == pytest.approx(reg.grads(ws)[0][1, 2], rel=1e-6)


def test_none_and_bad_values() -> None:
    ws = weights()
    reg = Regularizer(None, 0.0, 4)
    assert reg.term(ws) == 0.0 and all(np.all(g == 0) for g in reg.grads(ws))
    with pytest.raises(ValueError, match="regularizer_type='L3'"):
        Regularizer("L3", 0.1, 4)
    with pytest.raises(ValueError, match="lambda=-1"):
        Regularizer("L2", -1, 4)
    with pytest.raises(ValueError, match="batch_size=0"):
        Regularizer("L2", 0.1, 0)
