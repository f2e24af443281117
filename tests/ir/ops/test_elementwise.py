import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("op", ["Add", "ElementwiseMultiply", "Sub"])
@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (4, 9)])
def test_infer_keeps_shape_and_dtype(op, shape):
    t = TensorType(shape, "float16")
    assert infer(op, {}, [t, t]) == [t]


def test_add_and_multiply_take_many_inputs():
    t = TensorType((B, 3, 5))
    assert infer("Add", {}, [t] * 4) == [t]
    assert infer("ElementwiseMultiply", {}, [t] * 3) == [t]


@pytest.mark.parametrize("op", ["Add", "ElementwiseMultiply", "Sub"])
def test_shape_mismatch_names_layer_and_shapes(op):
    g = graph_with(a=TensorType((B, 7)), b=TensorType((B, 6)))
    with pytest.raises(ShapeError,
                       match=rf"{op} layer 'y'.*same shape.*\(B, 7\).*\(B, 6\).*'a' float32\(B, 7\)"):
        add_node(g, op, ["a", "b"], ["y"])


@pytest.mark.parametrize("op", ["Add", "ElementwiseMultiply"])
def test_dtype_mismatch(op):
    g = graph_with(a=TensorType((B, 7)), b=TensorType((B, 7), "float16"))
    with pytest.raises(ShapeError, match="same dtype"):
        add_node(g, op, ["a", "b"], ["y"])


@pytest.mark.parametrize("op", ["Add", "ElementwiseMultiply", "Sub"])
def test_one_input_is_rejected(op):
    g = graph_with(a=TensorType((B, 7)))
    with pytest.raises(ShapeError, match=rf"{op} layer 'y': takes 2(\.\.n)? bottom tensors, got 1"):
        add_node(g, op, ["a"], ["y"])


def test_sub_takes_exactly_two():
    g = graph_with(a=TensorType((B, 7)), b=TensorType((B, 7)), c=TensorType((B, 7)))
    with pytest.raises(ShapeError, match=r"Sub layer 'y': takes 2 bottom tensors, got 3"):
        add_node(g, "Sub", ["a", "b", "c"], ["y"])


def test_sparse_input_is_rejected():
    k = TensorType((B, 3, 2), "int64", sparse=True)
    g = graph_with(a=k, b=k)
    with pytest.raises(ShapeError, match="sparse key tensor"):
        add_node(g, "Add", ["a", "b"], ["y"])


def test_forward_matches_numpy():
    a, b, c = random_inputs([(5, 7)] * 3, seed=3)
    ctx = RefContext()
    assert rel_err(get_op("Add").forward(ctx, {}, [a, b, c], [])[0][0], a + b + c) < 1e-15
    assert rel_err(get_op("Sub").forward(ctx, {}, [a, b], [])[0][0], a - b) < 1e-15
    assert rel_err(get_op("ElementwiseMultiply").forward(ctx, {}, [a, b, c], [])[0][0], a * b * c) < 1e-15


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
@pytest.mark.parametrize("op,n", [("Add", 3), ("Sub", 2), ("ElementwiseMultiply", 3)])
def test_gradients(op, n, shape):
    check_grad(op, {}, random_inputs([shape] * n, seed=n))


def test_multiply_gradient_with_a_zero_factor():
    """dx_i is the product of the other factors even where some factor is 0 (HugeCTR zeroes it)."""
    a, b, c = random_inputs([(5, 7)] * 3, seed=9)
    a[1, 2] = 0.0
    b[3, :] = 0.0
    check_grad("ElementwiseMultiply", {}, [a, b, c])
    op = get_op("ElementwiseMultiply")
    ys, saved = op.forward(RefContext(), {}, [a, b, c], [])
    g = np.ones_like(a)
    gxs, _ = op.backward(RefContext(), {}, saved, [g])
    assert gxs[0][1, 2] == pytest.approx(b[1, 2] * c[1, 2]) and gxs[0][1, 2] != 0
    assert np.all(gxs[1][3, :] == a[3, :] * c[3, :])


def test_traits_and_json():
    assert "fp32_only" in get_op("Sub").traits and "elementwise" in get_op("Sub").traits
    assert "fp32_only" not in get_op("Add").traits
    for op in ("Add", "Sub", "ElementwiseMultiply"):
        assert json_round_trip(op, {})[1] == {}
