import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "FmOrder2"


def test_infer_and_errors():
    assert infer(OP, {"out_dim": 5}, [TensorType((B, 35))]) == [TensorType((B, 5))]
    shape_error(OP, {"x": TensorType((B, 34))}, {"out_dim": 5}, "fm", r"width 34 must be a multiple of out_dim 5")
    shape_error(OP, {"x": TensorType((B, 7, 5))}, {"out_dim": 5}, "fm", r"2-D.*rank 3")
    with pytest.raises(ValueError, match=r"'out_dim' = 0"):
        check_attrs(OP, {})


def test_forward_matches_pairwise_sum():
    (x,) = random_inputs([(3, 7 * 5)], seed=1)
    (y,), _ = get_op(OP).forward(RefContext(), check_attrs(OP, {"out_dim": 5}), [x], [])
    v = x.reshape(3, 7, 5)
    pairs = sum(v[:, s] * v[:, t] for s in range(7) for t in range(s + 1, 7))
    assert rel_err(y, pairs) < 1e-12


def test_gradients():
    (x,) = random_inputs([(3, 7 * 5)], seed=2)
    check_grad(OP, {"out_dim": 5}, [x])


def test_json():
    _, written = round_trip(OP, {"out_dim": 11})
    assert written == {"out_dim": 11}
