import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "GRU"
H, N, T, V = 3, 2, 4, 5
ATTRS = {"num_output": H, "batchsize": N, "SeqLength": T, "vector_size": V}
WSIZE = 3 * H * V + 3 * H * H + 3 * H


def test_infer():
    assert infer(OP, ATTRS, [TensorType((T * N, V))]) == [TensorType((T * N, H))]
    assert infer(OP, ATTRS, [TensorType((B * T, V))]) == [TensorType((B * T, H))]


def test_errors():
    shape_error(OP, {"x": TensorType((T * N, V + 1))}, ATTRS, "gru", r"width 6 must equal vector_size 5")
    shape_error(OP, {"x": TensorType((T * N + 1, V))}, ATTRS, "gru", r"rows 9 must equal SeqLength\*batchsize")
    shape_error(OP, {"x": TensorType((B, T, V))}, ATTRS, "gru", r"2-D.*rank 3")
    with pytest.raises(ShapeError, match=r"does not match \(SeqLength\*batchsize, vector_size\)"):
        get_op(OP).forward(RefContext(), check_attrs(OP, ATTRS), [np.ones((T * N + 2, V))], [np.zeros((1, WSIZE))])


def _sig(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def reference(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-sequence, per-step GRU straight from the documented equations and weight layout."""
    flat = w.reshape(-1)
    mats = [flat[i * H * V:(i + 1) * H * V].reshape(H, V) for i in range(3)]
    off = 3 * H * V
    rec = [flat[off + i * H * H: off + (i + 1) * H * H].reshape(H, H) for i in range(3)]
    bias = [flat[off + 3 * H * H + i * H: off + 3 * H * H + (i + 1) * H] for i in range(3)]
    out = np.zeros((T * N, H))
    for b in range(N):
        h = np.zeros(H)
        for t in range(T):
            xt = x[t * N + b]  # sequence-major rows
            r = _sig(mats[0] @ xt + rec[0] @ h + bias[0])
            z = _sig(mats[1] @ xt + rec[1] @ h + bias[1])
            n = np.tanh(mats[2] @ xt + r * (rec[2] @ h) + bias[2])
            h = (1 - z) * n + z * h
            out[t * N + b] = h
    return out


def test_forward_matches_equations():
    x, w = random_inputs([(T * N, V), (1, WSIZE)], seed=1)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, ATTRS), [x], [w])
    assert rel_err(y, reference(x, w)) < 1e-12


def test_gradients():
    x, w = random_inputs([(T * N, V), (1, WSIZE)], seed=2)
    check_grad(OP, ATTRS, [x], [0.7 * w])


def test_init_is_zero_and_json():
    for kind in ("Default", "XavierNorm", "Uniform"):
        attrs = check_attrs(OP, {**ATTRS, "weight_init_type": kind, "bias_init_type": kind})
        (w,) = get_op(OP).init(attrs, [TensorType((T * N, V))], np.random.default_rng(0))
        assert w.shape == (1, WSIZE) and w.dtype == np.float32 and not w.any()
    assert "fp32_only" in get_op(OP).traits
    _, written = round_trip(OP, {**ATTRS, "bias_init_type": "Zero"})
    assert written == {"gru_param": {"num_output": H, "batchsize": N, "SeqLength": T, "vector_size": V,
                                     "bias_init": "Zero"}}
