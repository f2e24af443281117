import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import infer
from tests.ir.ops._tiny import graph_with, json_round_trip

ATTRS = {"max_sequence_len_from": 3, "max_sequence_len_to": 5}


@pytest.mark.parametrize("n", [B, 7])
def test_infer(n):
    t = TensorType((n, 1))
    assert infer("SequenceMask", ATTRS, [t, t]) == [TensorType((n, 1, 3, 5))]


@pytest.mark.parametrize("a,b,pattern", [
    ((B, 2), (B, 1), r"takes two \(B, 1\) length tensors"),
    ((B, 1), (B / 2, 1), r"must have one shape and dtype"),
])
def test_errors(a, b, pattern):
    g = graph_with(f=TensorType(a), t=TensorType(b))
    with pytest.raises(ShapeError, match=rf"SequenceMask layer 'mask'.*{pattern}"):
        add_node(g, "SequenceMask", ["f", "t"], ["mask"], ATTRS)


def test_lengths_must_be_positive():
    t = TensorType((B, 1))
    g = graph_with(f=t, t=t)
    with pytest.raises(ValueError, match=r"'max_sequence_len_to' = 0 .*integer >= 1"):
        add_node(g, "SequenceMask", ["f", "t"], ["mask"], {"max_sequence_len_to": 0})


def test_forward_matches_definition():
    src = np.array([[2.0], [0.0], [3.0]], np.float32)
    dst = np.array([[4.0], [1.0], [5.0]], np.float32)
    ys, _ = get_op("SequenceMask").forward(RefContext(), ATTRS, [src, dst], [])
    y = ys[0]
    assert y.shape == (3, 1, 3, 5) and y.dtype == np.float32
    for b in range(3):
        for i in range(3):
            for j in range(5):
                assert y[b, 0, i, j] == float(i < src[b, 0] and j < dst[b, 0])


def test_no_gradient_and_json():
    gxs, gws = get_op("SequenceMask").backward(RefContext(), ATTRS, None, [np.ones((2, 1, 3, 5))])
    assert gxs == [None, None] and gws == []
    _, written = json_round_trip("SequenceMask", ATTRS)
    assert written == {"max_sequence_len_from": 3, "max_sequence_len_to": 5}
