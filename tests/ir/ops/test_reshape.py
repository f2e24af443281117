import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


def T(*shape, dtype="float32"):
    return TensorType(tuple(shape), dtype)


# -- leading_dim / time_step ---------------------------------------------------------------------
@pytest.mark.parametrize("shape,attrs,out", [
    ((B, 26, 11), {"leading_dim": 11}, (B * 26, 11)),          # DeepFM
    ((B, 429), {"leading_dim": 429}, (B, 429)),
    ((B, 26, 11), {"leading_dim": 286}, (B, 286)),
    ((B, 3), {"leading_dim": 6}, (B / 2, 6)),                  # rows of two samples
    ((B, 6, 5), {"leading_dim": 5, "time_step": 3}, (B * 2, 3, 5)),
    ((7, 6), {"leading_dim": 3}, (14, 3)),
])
def test_leading_dim(shape, attrs, out):
    assert infer("Reshape", attrs, [T(*shape, dtype="float16")]) == [T(*out, dtype="float16")]


@pytest.mark.parametrize("shape,attrs,pattern", [
    ((B, 6), {"leading_dim": 4}, r"non-divisible leading_dim 4: 6\*B elements"),
    ((B, 26, 11), {"leading_dim": 11, "time_step": 4}, r"non-divisible leading_dim 11 x time_step 4"),
    ((7, 5), {"leading_dim": 3}, r"non-divisible leading_dim 3: 35 elements are not divisible by 3"),
])
def test_leading_dim_errors(shape, attrs, pattern):
    g = graph_with(x=T(*shape))
    with pytest.raises(ShapeError, match=rf"Reshape layer 'r': {pattern}.*\[inputs: 'x'"):
        add_node(g, "Reshape", ["x"], ["r"], attrs)


# -- selected --------------------------------------------------------------------------------------
def test_selected():
    x = T(B, 5, 3)
    assert infer("Reshape", {"selected": True, "selected_slots": [4, 0]}, [x]) == [T(B, 6)]
    assert infer("Reshape", {"selected": True}, [x]) == [T(B, 15)]


@pytest.mark.parametrize("shape,slots,pattern", [
    ((B, 15), [0], r"needs a 3-D input \(B, slots, vec\), got rank 2"),
    ((B, 5, 3), [1, 5], r"selected_slots \[5\] are outside \[0, 5\)"),
    ((B, 2, 3), [0, 1, 0], r"selects 3 slots but the input has only 2"),
    ((B, B, 3), [0], r"slot count \(dim 1 of float32\(B, B, 3\)\) must not depend on the batch size"),
])
def test_selected_errors(shape, slots, pattern):
    g = graph_with(x=T(*shape))
    with pytest.raises(ShapeError, match=rf"Reshape layer 'r': .*{pattern}"):
        add_node(g, "Reshape", ["x"], ["r"], {"selected": True, "selected_slots": slots})


def test_negative_slot_is_a_value_error():
    g = graph_with(x=T(B, 5, 3))
    with pytest.raises(ValueError, match=r"'selected_slots' = \[-1\].*integers >= 0"):
        add_node(g, "Reshape", ["x"], ["r"], {"selected": True, "selected_slots": [-1]})


def test_selected_forward_and_zeroed_gradient():
    (x,) = random_inputs([(4, 5, 3)])
    op = get_op("Reshape")
    attrs = {"selected": True, "selected_slots": (3, 1), "leading_dim": 0, "time_step": 0, "shape": ()}
    (y,), saved = op.forward(RefContext(), attrs, [x], [])
    assert rel_err(y, np.concatenate([x[:, 3, :], x[:, 1, :]], axis=1)) == 0
    (gx,), _ = op.backward(RefContext(), attrs, saved, [np.ones_like(y)])
    assert np.all(gx[:, [0, 2, 4], :] == 0) and np.all(gx[:, [1, 3], :] == 1)


@pytest.mark.parametrize("slots", [[3, 1], [2, 2, 0], []])
def test_selected_gradient(slots):
    check_grad("Reshape", {"selected": True, "selected_slots": slots}, random_inputs([(3, 4, 7)]))


# -- shape ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,target,out", [
    ((B, 10, 32), [-1, 32], (B * 10, 32)),
    ((B, 320), [-1, 10, 32], (B, 10, 32)),
    ((B, 4, 6), [-1, 2, 48], (B / 4, 2, 48)),
    ((B, 12), [3, -1], (3, B * 4)),
])
def test_shape_mode(shape, target, out):
    assert infer("Reshape", {"shape": target}, [T(*shape)]) == [T(*out)]


@pytest.mark.parametrize("target,pattern,err", [
    ([-1, 7], r"non-divisible Reshape shape \[-1, 7\]", ShapeError),
    ([4, 5], r"exactly one -1", ValueError),
    ([-1, -1, 4], r"exactly one -1", ValueError),
    ([-1, 0], r"other than the -1 placeholder must be > 0", ValueError),
])
def test_shape_mode_errors(target, pattern, err):
    g = graph_with(x=T(B, 10))
    with pytest.raises(err, match=rf"Reshape layer 'r'.*{pattern}"):
        add_node(g, "Reshape", ["x"], ["r"], {"shape": target})


def test_mode_priority_selected_then_shape_then_leading_dim():
    x = T(B, 5, 3)
    assert infer("Reshape", {"selected": True, "selected_slots": [1], "leading_dim": 15}, [x]) == [T(B, 3)]
    assert infer("Reshape", {"leading_dim": 3, "shape": [-1, 15]}, [x]) == [T(B, 15)]
    assert infer("Reshape", {"leading_dim": 3}, [x]) == [T(B * 5, 3)]
    assert infer("Reshape", {}, [x]) == [T(B * 15, 1)]  # leading_dim defaults to 1 (seed argument list)


def test_view_forward_matches_numpy():
    (x,) = random_inputs([(4, 6, 5)])
    op = get_op("Reshape")
    base = {"selected": False, "selected_slots": (), "shape": (), "leading_dim": 0, "time_step": 0}
    y = op.forward(RefContext(), {**base, "leading_dim": 5}, [x], [])[0][0]
    assert y.shape == (24, 5) and np.array_equal(y, x.reshape(24, 5))
    y = op.forward(RefContext(), {**base, "leading_dim": 5, "time_step": 3}, [x], [])[0][0]
    assert y.shape == (8, 3, 5) and np.array_equal(y.ravel(), x.ravel())
    y = op.forward(RefContext(), {**base, "shape": (-1, 2, 15)}, [x], [])[0][0]
    assert y.shape == (4, 2, 15) and np.array_equal(y.ravel(), x.ravel())


@pytest.mark.parametrize("shape,attrs", [((5, 7), {"leading_dim": 7}), ((3, 4, 7), {"leading_dim": 14}),
                                         ((3, 4, 7), {"leading_dim": 7, "time_step": 2}),
                                         ((3, 4, 7), {"shape": [-1, 2, 7]})])
def test_view_gradients(shape, attrs):
    check_grad("Reshape", attrs, random_inputs([shape]))


def test_json_modes():
    assert json_round_trip("Reshape", {"leading_dim": 11})[1] == {"leading_dim": 11, "time_step": 0}
    written = json_round_trip("Reshape", {"leading_dim": 5, "time_step": 3})[1]
    assert written == {"leading_dim": 5, "time_step": 3}
    assert json_round_trip("Reshape", {"selected": True, "selected_slots": [2, 0]})[1] == {"selected": [2, 0]}
    assert json_round_trip("Reshape", {"shape": [-1, 10, 32]})[1] == {"shape": [-1, 10, 32]}
    assert get_op("Reshape").json_read({"leading_dim": 4}) == {"leading_dim": 4, "time_step": 0}
    assert "shape_only" in get_op("Reshape").traits
