import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.registry import get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs


def test_infer_2d_and_3d():
    assert infer("InnerProduct", {"num_output": 7}, [TensorType((B, 5))]) == [TensorType((B, 7))]
    assert infer("InnerProduct", {"num_output": 3}, [TensorType((B, 4, 5))]) == [TensorType((B, 4, 3))]


def test_rank_error_names_layer_tensor_and_shape():
    g = Graph()
    g.add(Node("Input", (), ("x",), types=(TensorType((B, 2, 3, 4)),), name="data"))
    with pytest.raises(ShapeError, match=r"InnerProduct layer 'fc1'.*'x' float32\(B, 2, 3, 4\)"):
        add_node(g, "InnerProduct", ["x"], ["fc1"], {"num_output": 3})


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_gradients(shape):
    x, w, b = random_inputs([shape, (7, 3), (1, 3)])
    check_grad("InnerProduct", {"num_output": 3}, [x], [w, b])


def test_default_init_is_truncated():
    w, b = get_op("InnerProduct").init({"num_output": 300, "weight_init_type": "Default",
                                        "bias_init_type": "Default"}, [TensorType((B, 200))],
                                       np.random.default_rng(1))
    std = np.sqrt(2 / 500) / 0.8796256610
    assert w.shape == (200, 300) and b.shape == (1, 300)
    assert np.abs(w).max() <= 2 * std + 1e-7


def test_relu_grad():
    (x,) = random_inputs([(5, 9)])
    check_grad("ReLU", {}, [x])
