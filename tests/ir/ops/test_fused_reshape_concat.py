import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip

OPS = ["FusedReshapeConcat", "FusedReshapeConcatGeneral"]


def T(*shape):
    return TensorType(tuple(shape))


@pytest.mark.parametrize("shapes,item,ad,general", [
    ([(B, 11, 18), (B, 11, 18)], (B * 10, 36), (B, 36), (B * 11, 36)),
    ([(B, 3, 5), (B, 3, 2), (B, 3, 7)], (B * 2, 14), (B, 14), (B * 3, 14)),
    ([(4, 2, 5)], (4, 5), (4, 5), (8, 5)),
])
def test_infer(shapes, item, ad, general):
    xs = [T(*s) for s in shapes]
    assert infer("FusedReshapeConcat", {}, xs) == [T(*item), T(*ad)]
    assert infer("FusedReshapeConcatGeneral", {}, xs) == [T(*general)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes,pattern", [
    ([(B, 3, 5), (B, 15)], r"must all be 3-D \(B, S, v\)"),
    ([(B, 3, 5), (B, 4, 5)], r"must share the slot count"),
    ([(B, 3, 5), (B / 2, 3, 5)], r"must share the batch dimension"),
    ([(B, 3, B)], r"must not depend on the batch size"),
])
def test_errors(op, shapes, pattern):
    g = graph_with(**{f"x{i}": T(*s) for i, s in enumerate(shapes)})
    tops = ["item", "ad"] if op == "FusedReshapeConcat" else ["rows"]
    with pytest.raises(ShapeError, match=rf"{op} layer '{tops[0]}'.*{pattern}"):
        add_node(g, op, [f"x{i}" for i in range(len(shapes))], tops)


def test_single_slot_has_no_items():
    g = graph_with(x=T(B, 1, 5))
    with pytest.raises(ShapeError, match=r"needs at least 2 slots \(S-1 items \+ 1 ad\), got S = 1"):
        add_node(g, "FusedReshapeConcat", ["x"], ["item", "ad"])


def test_forward_matches_numpy():
    a, b = random_inputs([(3, 4, 2), (3, 4, 5)])
    item, ad = get_op("FusedReshapeConcat").forward(RefContext(), {}, [a, b], [])[0]
    rows = get_op("FusedReshapeConcatGeneral").forward(RefContext(), {}, [a, b], [])[0][0]
    for n in range(3):
        for s in range(4):
            row = np.concatenate([a[n, s], b[n, s]])
            assert np.array_equal(rows[n * 4 + s], row)
            if s < 3:
                assert np.array_equal(item[n * 3 + s], row)
            else:
                assert np.array_equal(ad[n], row)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes", [[(3, 4, 7)], [(3, 5, 2), (3, 5, 3)]])
def test_gradients(op, shapes):
    check_grad(op, {}, random_inputs(shapes))


@pytest.mark.parametrize("op", OPS)
def test_json_and_traits(op):
    assert json_round_trip(op, {})[1] == {}
    assert {"shape_only", "fp32_only"} <= get_op(op).traits
