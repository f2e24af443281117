import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape", [(B, 13), (B, 3, 5), (7, 2)])
def test_infer_flips_precision(shape):
    assert infer("Cast", {}, [TensorType(shape)]) == [TensorType(shape, "float16")]
    assert infer("Cast", {}, [TensorType(shape, "float16")]) == [TensorType(shape, "float32")]


def test_other_dtypes_are_rejected():
    g = graph_with(x=TensorType((B, 4), "int32"))
    with pytest.raises(ShapeError,
                       match=r"Cast layer 'h'.*float32 <-> float16, got a int32 input.*'x' int32\(B, 4\)"):
        add_node(g, "Cast", ["x"], ["h"])


def test_forward_converts_and_backward_casts_back():
    (x,) = random_inputs([(5, 7)], seed=2)
    x = x.astype(np.float32)
    op = get_op("Cast")
    (y,), saved = op.forward(RefContext(), {}, [x], [])
    assert y.dtype == np.float16 and np.allclose(y, x.astype(np.float16))
    g = np.random.default_rng(0).uniform(-1, 1, size=(5, 7)).astype(np.float16)
    (gx,), _ = op.backward(RefContext(), {}, saved, [g])
    assert gx.dtype == np.float32 and np.array_equal(gx, g.astype(np.float32))
    (z,), _ = op.forward(RefContext(), {}, [y], [])
    assert z.dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_gradient_is_identity(shape):
    check_grad("Cast", {}, random_inputs([shape]))


def test_json_and_traits():
    assert json_round_trip("Cast", {})[1] == {}
    assert "elementwise" in get_op("Cast").traits
