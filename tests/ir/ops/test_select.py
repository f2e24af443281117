import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape,attrs,out", [
    ((B, 7), {"dim": 1, "index": [6, 0, 3]}, (B, 3)),
    ((B, 5, 3), {"dim": 1, "index": [4]}, (B, 1, 3)),
    ((B, 5, 3), {"dim": 2, "index": [2, 2, 0, 1]}, (B, 5, 4)),
])
def test_infer(shape, attrs, out):
    assert infer("Select", attrs, [TensorType(shape, "float16")]) == [TensorType(out, "float16")]


@pytest.mark.parametrize("attrs,pattern,err", [
    ({"dim": 0, "index": [1]}, r"'dim' = 0 .*dim 0 is the batch dimension", ValueError),
    ({"dim": 1, "index": []}, r"'index' = \[\] .*must not be empty", ValueError),
    ({"dim": 1, "index": [-2]}, r"'index' .*integers >= 0", ValueError),
    ({"dim": 3, "index": [0]}, r"Select dim 3 is outside a rank-3 input", ShapeError),
    ({"dim": 2, "index": [0, 3]}, r"Select index \[3\] is outside \[0, 3\) of dim 2", ShapeError),
])
def test_errors(attrs, pattern, err):
    g = graph_with(x=TensorType((B, 5, 3)))
    with pytest.raises(err, match=rf"Select layer 'sel'.*{pattern}"):
        add_node(g, "Select", ["x"], ["sel"], attrs)


def test_forward_matches_numpy():
    (x,) = random_inputs([(4, 5, 3)])
    y = get_op("Select").forward(RefContext(), {"dim": 1, "index": (4, 1)}, [x], [])[0][0]
    assert np.array_equal(y, np.stack([x[:, 4], x[:, 1]], axis=1))


@pytest.mark.parametrize("shape,attrs", [((5, 7), {"dim": 1, "index": [6, 0, 6]}),
                                         ((3, 4, 7), {"dim": 2, "index": [1, 5]}),
                                         ((3, 4, 7), {"dim": 1, "index": [3]})])
def test_gradients(shape, attrs):
    check_grad("Select", attrs, random_inputs([shape]))


def test_json():
    assert json_round_trip("Select", {"dim": 2, "index": [3, 1]})[1] == {"dim": 2, "index": [3, 1]}
