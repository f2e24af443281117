import numpy as np
import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "WeightMultiply"


def test_infer_and_errors():
    assert infer(OP, {"weight_dims": [7, 3]}, [TensorType((B, 7))]) == [TensorType((B, 21))]
    shape_error(OP, {"x": TensorType((B, 6))}, {"weight_dims": [7, 3]}, "wm",
                r"weight_dims\[0\] = 7 must equal the input width 6")
    shape_error(OP, {"x": TensorType((B, 2, 7))}, {"weight_dims": [7, 3]}, "wm", r"rank 3")
    for bad in ((), (7,), (7, 0), (7, 3, 2)):
        with pytest.raises(ValueError, match=r"'weight_dims'"):
            check_attrs(OP, {"weight_dims": bad})


def test_forward_and_gradients():
    x, w = random_inputs([(4, 7), (7, 3)], seed=1)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {"weight_dims": [7, 3]}), [x], [w])
    for s in range(7):
        for j in range(3):
            assert rel_err(y[:, s * 3 + j], x[:, s] * w[s, j]) < 1e-12
    check_grad(OP, {"weight_dims": [7, 3]}, [x], [w])


@pytest.mark.parametrize("kind,bound", [("Default", np.sqrt(6 / 80)), ("XavierUniform", np.sqrt(6 / 80)),
                                        ("Uniform", 1 / 80), ("XavierNorm", 2 * np.sqrt(2 / 80) / 0.8796256610)])
def test_init(kind, bound):
    attrs = check_attrs(OP, {"weight_dims": [16, 4], "weight_init_type": kind})
    (w,) = get_op(OP).init(attrs, [TensorType((B, 16))], np.random.default_rng(0))
    assert w.shape == (16, 4) and w.dtype == np.float32
    assert np.abs(w).max() <= bound + 1e-7 and np.abs(w).max() > bound / 3
    assert [s.name for s in get_op(OP).weights(attrs, [TensorType((B, 16))])] == ["W"]


def test_zero_init_and_json():
    attrs = check_attrs(OP, {"weight_dims": [2, 5], "weight_init_type": "Zero"})
    assert np.all(get_op(OP).init(attrs, [TensorType((B, 2))], np.random.default_rng(0))[0] == 0)
    _, written = round_trip(OP, {"weight_dims": [2, 5], "weight_init_type": "Zero"})
    assert written == {"weight_dims": [2, 5], "weight_init": "Zero"}
    round_trip(OP, {"weight_dims": [9, 1]})
