import numpy as np
import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "LayerNorm"


@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (B, 2, 3, 5)])
def test_infer(shape):
    assert infer(OP, {}, [TensorType(shape)]) == [TensorType(shape)]


def test_errors():
    shape_error(OP, {"x": TensorType((B,))}, {}, "ln", r"rank 2, 3 or 4.*rank 1")
    shape_error(OP, {"x": TensorType((B, 2, 3, 4, 5))}, {}, "ln", r"rank 5")


def test_forward_matches_formula():
    (x,) = random_inputs([(3, 4, 7)], seed=2)
    rng = np.random.default_rng(1)
    gamma, beta = rng.uniform(0.5, 1.5, (1, 7)), rng.uniform(-1, 1, (1, 7))
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {"eps": 1e-3}), [x], [gamma, beta])
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    assert rel_err(y, (x - mean) / np.sqrt(var + 1e-3) * gamma[0] + beta[0]) < 1e-12


@pytest.mark.parametrize("shape", [(5, 7), (3, 2, 5)])
def test_gradients(shape):
    x, gamma, beta = random_inputs([shape, (1, shape[-1]), (1, shape[-1])], seed=3)
    check_grad(OP, {"eps": 1e-2}, [x], [gamma, beta])


def test_init_and_json():
    attrs = check_attrs(OP, {"beta_init_type": "Zero"})
    g, b = get_op(OP).init(attrs, [TensorType((B, 2, 9))], np.random.default_rng(0))
    assert g.shape == b.shape == (1, 9) and np.all(g == 1) and np.all(b == 0)
    _, written = round_trip(OP, {"eps": 1e-6, "gamma_init_type": "Zero"})
    assert written == {"ln_param": {"eps": 1e-6, "gamma_init": "Zero"}}
