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


TRUNC = 0.8796256610  # std of N(0, 1) truncated to ±2


@pytest.mark.parametrize("kind", ["Default", "Uniform", "XavierUniform", "XavierNorm", "Zero"])
@pytest.mark.parametrize("op", ["InnerProduct", "FusedInnerProduct"])
def test_every_initializer_follows_its_formula(kind, op):
    n_in, n_out = 301, 257
    attrs = {"num_output": n_out, "weight_init_type": kind, "bias_init_type": kind}
    if op == "FusedInnerProduct":
        attrs.update(pos_type="Non", act_type="Relu")
    w, b = get_op(op).init(attrs, [TensorType((B, n_in))], np.random.default_rng(5))
    assert w.shape == (n_in, n_out) and b.shape == (1, n_out) and w.dtype == b.dtype == np.float32
    if kind == "Zero":
        assert not w.any() and not b.any()
        return
    fan = n_in + n_out
    # (uniform bound or None, normal sigma before truncation or None) for W and b (facts §1.5)
    want = {"Default": ((None, np.sqrt(2 / fan) / TRUNC), (None, np.sqrt(1 / n_out))),
            "Uniform": ((1 / fan, None), (1 / n_out, None)),
            "XavierUniform": ((np.sqrt(6 / fan), None), (np.sqrt(6 / n_out), None)),
            "XavierNorm": ((None, np.sqrt(2 / fan) / TRUNC), (None, np.sqrt(2 / n_out) / TRUNC))}[kind]
    for x, (bound, sigma) in zip((w, b), want):
        x = x.astype(np.float64).ravel()
        assert abs(x.mean()) < 0.1 * x.std()
        if bound is not None:
            assert np.abs(x).max() <= bound and np.abs(x).max() > 0.95 * bound
            assert abs(x.std() / (bound / np.sqrt(3)) - 1) < 0.1
        else:  # truncated at 2 sigma (DESIGN.md §7), so the spread is sigma * 0.8796
            assert np.abs(x).max() <= 2 * sigma + 1e-7 and np.abs(x).max() > 1.8 * sigma
            assert abs(x.std() / (sigma * TRUNC) - 1) < 0.1
