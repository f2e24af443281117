import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("op", ["ELU", "Sigmoid"])
@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (4, 9)])
def test_infer_keeps_type(op, shape):
    t = TensorType(shape, "float16")
    assert infer(op, {}, [t]) == [t]


@pytest.mark.parametrize("op", ["ELU", "Sigmoid"])
def test_sparse_input_is_rejected(op):
    g = graph_with(k=TensorType((B, 3, 2), "int64", sparse=True))
    with pytest.raises(ShapeError, match=rf"{op} layer 'a'.*sparse key tensor"):
        add_node(g, op, ["k"], ["a"])


def test_elu_alpha_must_be_a_number():
    g = graph_with(x=TensorType((B, 3)))
    with pytest.raises(ValueError, match=r"'elu_alpha' = 'x' .*must be a number"):
        add_node(g, "ELU", ["x"], ["a"], {"elu_alpha": "x"})


def test_elu_forward_matches_formula():
    (x,) = random_inputs([(5, 7)])
    y = get_op("ELU").forward(RefContext(), {"elu_alpha": 0.7}, [x], [])[0][0]
    want = np.array([[v if v >= 0 else 0.7 * (np.exp(v) - 1) for v in row] for row in x])
    assert rel_err(y, want) < 1e-14


def test_sigmoid_forward_matches_formula_and_does_not_overflow():
    (x,) = random_inputs([(5, 7)])
    y = get_op("Sigmoid").forward(RefContext(), {}, [x], [])[0][0]
    assert rel_err(y, 1 / (1 + np.exp(-x))) < 1e-14
    big = np.array([[-1000.0, 1000.0]], np.float32)
    with np.errstate(over="raise"):
        y = get_op("Sigmoid").forward(RefContext(), {}, [big], [])[0][0]
    assert np.array_equal(y, np.array([[0.0, 1.0]], np.float32))


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
@pytest.mark.parametrize("op,attrs", [("ELU", {"elu_alpha": 0.7}), ("ELU", {}), ("Sigmoid", {})])
def test_gradients(op, attrs, shape):
    (x,) = random_inputs([shape], seed=4)
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences off the ELU kink
    check_grad(op, attrs, [x])


def test_json():
    assert json_round_trip("ELU", {"elu_alpha": 0.25})[1] == {"elu_param": {"alpha": 0.25}}
    assert json_round_trip("Sigmoid", {})[1] == {}
