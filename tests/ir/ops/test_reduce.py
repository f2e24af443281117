import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("shape,axis,out", [((B, 7), 1, (B, 1)), ((B, 3, 5), 2, (B, 3, 1)),
                                            ((B, 3, 5), 0, (1, 3, 5)), ((9,), 0, (1,))])
def test_infer(op, shape, axis, out):
    assert infer(op, {"axis": axis}, [TensorType(shape)]) == [TensorType(out)]


def test_default_axis_is_1():
    assert infer("ReduceSum", {}, [TensorType((B, 4, 6))]) == [TensorType((B, 1, 6))]


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("shape,attrs,pattern,err", [
    ((B, 7), {"axis": 2}, r"axis 2 is outside \[0, 2\) for a rank-2 input", ShapeError),
    ((B, 7), {"axis": -1}, r"'axis' = -1 .*integer >= 0", ValueError),
    ((B, 2, 3, 4), {"axis": 1}, r"takes a 1-D to 3-D input, got rank 4", ShapeError),
    ((B, 0, 3), {"axis": 2}, r"has a zero-sized dimension", ShapeError),
])
def test_errors(op, shape, attrs, pattern, err):
    g = graph_with(x=TensorType(shape))
    with pytest.raises(err, match=rf"{op} layer 'r'.*{pattern}"):
        add_node(g, op, ["x"], ["r"], attrs)


def test_forward_matches_numpy():
    (x,) = random_inputs([(3, 4, 5)])
    for axis in range(3):
        s = get_op("ReduceSum").forward(RefContext(), {"axis": axis}, [x], [])[0][0]
        m = get_op("ReduceMean").forward(RefContext(), {"axis": axis}, [x], [])[0][0]
        want = np.expand_dims(np.add.reduce(x, axis=axis), axis)
        assert rel_err(s, want) < 1e-14 and rel_err(m, want / x.shape[axis]) < 1e-14


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("shape,axis", [((5, 7), 1), ((5, 7), 0), ((3, 4, 7), 1), ((3, 4, 7), 2)])
def test_gradients(op, shape, axis):
    check_grad(op, {"axis": axis}, random_inputs([shape]))


def test_json_and_traits():
    assert json_round_trip("ReduceSum", {"axis": 2})[1] == {"axis": 2}
    assert json_round_trip("ReduceMean", {"axis": 0})[1] == {"axis": 0}
    assert "fp32_only" in get_op("ReduceMean").traits and "fp32_only" not in get_op("ReduceSum").traits
