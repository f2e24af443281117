import numpy as np
import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "MultiCross"
N, L, K = 7, 2, 3


def test_infer_and_errors():
    assert infer(OP, {"num_layers": 3}, [TensorType((B, 13))]) == [TensorType((B, 13))]
    shape_error(OP, {"x": TensorType((B, 2, 13))}, {"num_layers": 1}, "mc", r"2-D \(B, n\).*rank 3")
    with pytest.raises(ValueError, match=r"'num_layers' = 0"):
        check_attrs(OP, {})
    with pytest.raises(ValueError, match=r"'projection_dim' = -1"):
        check_attrs(OP, {"num_layers": 1, "projection_dim": -1})


def test_weight_order():
    v1 = get_op(OP).weights(check_attrs(OP, {"num_layers": L}), [TensorType((B, N))])
    assert [(s.name, s.shape) for s in v1] == [("w0", (1, N)), ("b0", (1, N)), ("w1", (1, N)), ("b1", (1, N))]
    v2 = get_op(OP).weights(check_attrs(OP, {"num_layers": L, "projection_dim": K}), [TensorType((B, N))])
    assert [(s.name, s.shape) for s in v2] == [("U0", (N, K)), ("V0", (K, N)), ("b0", (1, N)),
                                               ("U1", (N, K)), ("V1", (K, N)), ("b1", (1, N))]


def test_v1_forward_matches_formula():
    x0, w0, b0, w1, b1 = random_inputs([(5, N), (1, N), (1, N), (1, N), (1, N)], seed=1)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {"num_layers": 2}), [x0], [w0, b0, w1, b1])
    x = x0
    for w, b in ((w0, b0), (w1, b1)):
        x = np.stack([x0[i] * float(np.dot(x[i], w[0])) for i in range(5)]) + b + x
    assert rel_err(y, x) < 1e-12


def test_v2_forward_matches_formula():
    x0, *ws = random_inputs([(5, N), (N, K), (K, N), (1, N), (N, K), (K, N), (1, N)], seed=2)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {"num_layers": 2, "projection_dim": K}), [x0], ws)
    x = x0
    for u, v, b in (ws[:3], ws[3:]):
        x = x0 * (np.einsum("bi,ik,kj->bj", x, u, v) + b) + x
    assert rel_err(y, x) < 1e-12


def test_v1_gradients():
    x0, *ws = random_inputs([(5, N), (1, N), (1, N), (1, N), (1, N)], seed=3)
    check_grad(OP, {"num_layers": L}, [x0], ws)


def test_v2_gradients():
    x0, *ws = random_inputs([(5, N), (N, K), (K, N), (1, N), (N, K), (K, N), (1, N)], seed=4)
    check_grad(OP, {"num_layers": L, "projection_dim": K}, [x0], ws)


@pytest.mark.parametrize("kind", ["Default", "Uniform", "XavierNorm", "XavierUniform"])
def test_init_v1(kind):
    n = 400
    ws = get_op(OP).init(check_attrs(OP, {"num_layers": 2, "weight_init_type": kind, "bias_init_type": kind}),
                         [TensorType((B, n))], np.random.default_rng(0))
    w = np.concatenate([ws[0], ws[2]])
    assert abs(w.std() / np.sqrt(1 / n) - 1) < 0.1  # untruncated normal: some values beyond 2 std
    assert np.abs(w).max() > 2 * np.sqrt(1 / n)
    assert np.all(ws[1] == 0) and np.all(ws[3] == 0) and all(a.dtype == np.float32 for a in ws)


def test_init_v2_and_zero():
    n, k = 300, 5
    attrs = check_attrs(OP, {"num_layers": 1, "projection_dim": k})
    u, v, b = get_op(OP).init(attrs, [TensorType((B, n))], np.random.default_rng(1))
    std = np.sqrt(2 / (n + k))
    assert abs(u.std() / std - 1) < 0.1 and abs(v.std() / std - 1) < 0.1 and np.all(b == 0)
    zero = get_op(OP).init(attrs.replace(weight_init_type="Zero"), [TensorType((B, n))], np.random.default_rng(1))
    assert all(np.all(a == 0) for a in zero)


def test_json():
    _, written = round_trip(OP, {"num_layers": 3})
    assert written == {"mc_param": {"num_layers": 3}}
    _, written = round_trip(OP, {"num_layers": 2, "projection_dim": 4, "bias_init_type": "Zero"})
    assert written == {"mc_param": {"num_layers": 2, "projection_dim": 4, "bias_init": "Zero"}}
