import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape,attrs,out", [
    ((B, 7), {"axis": 0, "factor": 3}, (B, 21)),
    ((B, 7), {"axis": 1, "factor": 3.0}, (B * 3, 7)),
    ((5, 1), {"axis": 1, "factor": 4}, (20, 1)),
])
def test_infer(shape, attrs, out):
    assert infer("Scale", attrs, [TensorType(shape)]) == [TensorType(out)]


@pytest.mark.parametrize("shape,attrs,pattern,err", [
    ((B, 3, 7), {"axis": 0, "factor": 2}, r"Scale takes a 2-D input \(B, n\), got rank 3", ShapeError),
    ((B, 7), {"axis": 2, "factor": 2}, r"'axis' = 2 .*must be one of \[0, 1\]", ValueError),
    ((B, 7), {"axis": 0, "factor": 2.5}, r"'factor' = 2.5 .*whole number >= 1", ValueError),
    ((B, 7), {"axis": 0, "factor": 0}, r"'factor' = 0 .*whole number >= 1", ValueError),
    ((3, B), {"axis": 0, "factor": 2}, r"width that does not depend on the batch", ShapeError),
])
def test_errors(shape, attrs, pattern, err):
    g = graph_with(x=TensorType(shape))
    with pytest.raises(err, match=rf"Scale layer 'sc'.*{pattern}"):
        add_node(g, "Scale", ["x"], ["sc"], attrs)


def test_forward_repeats():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    y0 = get_op("Scale").forward(RefContext(), {"axis": 0, "factor": 3}, [x], [])[0][0]
    y1 = get_op("Scale").forward(RefContext(), {"axis": 1, "factor": 2}, [x], [])[0][0]
    assert np.array_equal(y0, [[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]])
    assert np.array_equal(y1, [[1, 2], [1, 2], [3, 4], [3, 4]])


@pytest.mark.parametrize("axis", [0, 1])
def test_backward_sums_the_copies(axis):
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    op = get_op("Scale")
    (y,), saved = op.forward(RefContext(), {"axis": axis, "factor": 3}, [x], [])
    g = np.arange(y.size, dtype=np.float64).reshape(y.shape) + 1
    (gx,), _ = op.backward(RefContext(), {"axis": axis, "factor": 3}, saved, [g])
    want = g.reshape(2, 2, 3).sum(axis=2) if axis == 0 else g.reshape(2, 3, 2).sum(axis=1)
    assert np.array_equal(gx, want)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("factor", [1, 3])
def test_gradients(axis, factor):
    check_grad("Scale", {"axis": axis, "factor": factor}, random_inputs([(5, 7)]))


def test_json_and_traits():
    written = json_round_trip("Scale", {"axis": 0, "factor": 4.0})[1]
    assert written == {"scale_param": {"axis": 0, "factor": 4.0}}
    assert "fp32_only" in get_op("Scale").traits
