import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


def T(*shape, dtype="float32"):
    return TensorType(tuple(shape), dtype)


def test_infer_2d():
    assert infer("Concat", {}, [T(B, 3), T(B, 13), T(B, 1)]) == [T(B, 17)]


def test_infer_3d_axis_1_and_2():
    assert infer("Concat", {"axis": 1}, [T(B, 3, 5), T(B, 4, 5)]) == [T(B, 7, 5)]
    assert infer("Concat", {"axis": 2}, [T(B, 3, 5), T(B, 3, 2), T(B, 3, 9)]) == [T(B, 3, 16)]


@pytest.mark.parametrize("types,attrs,pattern", [
    ([T(B, 3, 5, 2), T(B, 3, 5, 2)], {}, r"2-D or 3-D inputs, got rank 4"),
    ([T(B, 3), T(B, 3, 5)], {}, r"same rank"),
    ([T(B, 3), T(B, 5, dtype="float16")], {}, r"one dtype"),
    ([T(B, 3), T(B, 5)], {"axis": 2}, r"2-D Concat joins along axis 1, got axis 2"),
    ([T(B, 3, 5), T(B, 3, 5)], {"axis": 0}, r"3-D Concat joins along axis 1 or 2, got axis 0"),
    ([T(B, 3, 5), T(B, 4, 6)], {"axis": 1}, r"equal dim 2 in every input.*\(B, 3, 5\).*\(B, 4, 6\)"),
    ([T(B, 3, 5), T(B, 4, 5)], {"axis": 2}, r"equal dim 1 in every input"),
    ([T(B, 3), T(B / 2, 5)], {}, r"equal dim 0 in every input"),
    ([T(3, B), T(3, 5)], {}, r"must not depend on the batch size"),
])
def test_errors(types, attrs, pattern):
    g = graph_with(**{f"x{i}": t for i, t in enumerate(types)})
    with pytest.raises(ShapeError, match=rf"Concat layer 'cat': .*{pattern}.*\[inputs: 'x0'"):
        add_node(g, "Concat", [f"x{i}" for i in range(len(types))], ["cat"], attrs)


def test_forward_matches_numpy():
    a, b = random_inputs([(3, 4, 5), (3, 2, 5)])
    y = get_op("Concat").forward(RefContext(), {"axis": 1}, [a, b], [])[0][0]
    assert y.shape == (3, 6, 5)
    assert rel_err(y[:, :4], a) == 0 and rel_err(y[:, 4:], b) == 0


@pytest.mark.parametrize("shapes,axis", [([(5, 7), (5, 3)], 1), ([(3, 4, 7), (3, 2, 7), (3, 1, 7)], 1),
                                         ([(3, 4, 7), (3, 4, 2)], 2)])
def test_gradients(shapes, axis):
    check_grad("Concat", {"axis": axis}, random_inputs(shapes))


def test_json():
    assert json_round_trip("Concat", {"axis": 2})[1] == {"axis": 2}
    assert get_op("Concat").json_read({}) == {"axis": 1}
    assert "shape_only" in get_op("Concat").traits
