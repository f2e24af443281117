import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape,indices,out", [((B, 7), [0, 5, 2], (3, 7)), ((9, 4), [8], (1, 4)),
                                               ((B * 3, 5), [1, 1], (2, 5))])
def test_infer(shape, indices, out):
    assert infer("Gather", {"indices": indices}, [TensorType(shape)]) == [TensorType(out)]


@pytest.mark.parametrize("shape,indices,pattern,err", [
    ((B, 7), [], r"'indices' = \[\] .*must not be empty", ValueError),
    ((B, 7), [0, -1], r"'indices' .*integers >= 0", ValueError),
    ((B, 3, 7), [0], r"Gather takes a 2-D input \(rows, n\), got rank 3", ShapeError),
    ((6, 7), [2, 6], r"Gather indices \[6\] are outside the 6 input rows", ShapeError),
])
def test_errors(shape, indices, pattern, err):
    g = graph_with(x=TensorType(shape))
    with pytest.raises(err, match=rf"Gather layer 'gat'.*{pattern}"):
        add_node(g, "Gather", ["x"], ["gat"], {"indices": indices})


def test_rows_beyond_a_symbolic_batch_fail_at_run_time():
    (x,) = random_inputs([(4, 3)])
    with pytest.raises(ShapeError, match=r"Gather indices \[4\] are outside the 4 input rows"):
        get_op("Gather").forward(RefContext(), {"indices": (0, 4)}, [x], [])


def test_forward_matches_numpy():
    (x,) = random_inputs([(6, 5)])
    y = get_op("Gather").forward(RefContext(), {"indices": (5, 0, 5)}, [x], [])[0][0]
    assert np.array_equal(y, np.stack([x[5], x[0], x[5]]))


@pytest.mark.parametrize("shape,indices", [((5, 7), [4, 0, 4, 2]), ((9, 3), [8])])
def test_gradients(shape, indices):
    check_grad("Gather", {"indices": indices}, random_inputs([shape]))


def test_json_and_traits():
    assert json_round_trip("Gather", {"indices": [3, 1]})[1] == {"indices": [3, 1]}
    assert {"fp32_only", "shape_only"} <= get_op("Gather").traits
