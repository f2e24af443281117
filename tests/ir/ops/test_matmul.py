import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


def T(*shape):
    return TensorType(tuple(shape))


@pytest.mark.parametrize("a,b,out", [
    ((B, 5), (5, 3), (B, 3)),
    ((B, 4, 5), (B, 5, 7), (B, 4, 7)),
    ((B, 2, 4, 5), (B, 2, 5, 3), (B, 2, 4, 3)),
    ((B, 5), (5, 2, 3), (B, 2, 3)),
])
def test_infer(a, b, out):
    assert infer("MatrixMultiply", {}, [T(*a), T(*b)]) == [T(*out)]


@pytest.mark.parametrize("a,b,pattern", [
    ((B, 5), (4, 3), r"needs \(\.\., m, n\) x \(\.\., n, k\)"),
    ((B, 4, 5), (B / 2, 5, 7), r"must share the leading \(batch/head\) dims"),
    ((B, 2, 4, 5), (B, 3, 5, 7), r"must share the leading \(batch/head\) dims"),
    ((B, 4, 5), (5, 7), r"takes 2-D x 2-D, 3-D x 3-D, 4-D x 4-D or 2-D x 3-D"),
    ((B, 5), (4, 2, 3), r"2-D x 3-D needs \(m, n\) x \(n, g, h\)"),
    ((B,), (1, 3), r"need at least 2 dims"),
])
def test_errors(a, b, pattern):
    g = graph_with(a=T(*a), b=T(*b))
    with pytest.raises(ShapeError, match=rf"MatrixMultiply layer 'mm'.*{pattern}.*\[inputs: 'a'"):
        add_node(g, "MatrixMultiply", ["a", "b"], ["mm"])


def test_forward_matches_numpy():
    a, b = random_inputs([(3, 4, 5), (3, 5, 2)])
    y = get_op("MatrixMultiply").forward(RefContext(), {}, [a, b], [])[0][0]
    assert rel_err(y, np.einsum("bmn,bnk->bmk", a, b)) < 1e-14
    a, b = random_inputs([(4, 5), (5, 2, 3)])
    y = get_op("MatrixMultiply").forward(RefContext(), {}, [a, b], [])[0][0]
    assert y.shape == (4, 2, 3) and rel_err(y, np.einsum("mn,ngh->mgh", a, b)) < 1e-14


@pytest.mark.parametrize("a,b", [((5, 7), (7, 3)), ((3, 4, 7), (3, 7, 2)), ((2, 3, 4, 5), (2, 3, 5, 2)),
                                 ((5, 4), (4, 2, 3))])
def test_gradients(a, b):
    check_grad("MatrixMultiply", {}, random_inputs([a, b]))


def test_json_and_traits():
    assert json_round_trip("MatrixMultiply", {})[1] == {}
    assert "fp32_only" in get_op("MatrixMultiply").traits
