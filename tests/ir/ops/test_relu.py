import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (4, 9)])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_infer_keeps_type(shape, dtype):
    t = TensorType(shape, dtype)
    assert infer("ReLU", {}, [t]) == [t]


def test_sparse_input_is_rejected():
    g = graph_with(k=TensorType((B, 3, 2), "int64", sparse=True))
    with pytest.raises(ShapeError, match=r"ReLU layer 'a'.*sparse key tensor"):
        add_node(g, "ReLU", ["k"], ["a"])


def test_forward_matches_formula():
    (x,) = random_inputs([(5, 7)], seed=2)
    y = get_op("ReLU").forward(RefContext(), {}, [x], [])[0][0]
    assert rel_err(y, np.where(x > 0, x, 0.0)) == 0.0
    x32 = x.astype(np.float32)
    assert get_op("ReLU").forward(RefContext(), {}, [x32], [])[0][0].dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_gradient(shape):
    (x,) = random_inputs([shape], seed=6)
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences off the kink at 0
    check_grad("ReLU", {}, [x])


def test_json():
    assert json_round_trip("ReLU", {})[1] == {}
