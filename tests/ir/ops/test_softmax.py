import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (4, 9)])
def test_infer(shape):
    assert infer("Softmax", {}, [TensorType(shape, "float16")]) == [TensorType(shape, "float16")]


def test_infer_masked():
    x, m = TensorType((B, 2, 5, 5)), TensorType((B, 1, 1, 5))
    assert infer("Softmax", {"factor": 0.125}, [x, m]) == [x]
    assert infer("Softmax", {}, [x, TensorType((B, 1, 5, 5))]) == [x]


@pytest.mark.parametrize("mask,pattern", [
    ((B, 5), r"must have the rank of the scores"),
    ((B, 1, 1, 4), r"must share the last dimension"),
    ((B, 3, 1, 5), r"every mask dimension must equal the scores' or be 1"),
])
def test_mask_errors(mask, pattern):
    g = graph_with(s=TensorType((B, 2, 5, 5)), m=TensorType(mask))
    with pytest.raises(ShapeError,
                       match=rf"Softmax layer 'p'.*masked Softmax.*{pattern}.*\[inputs: 's'.*'m'"):
        add_node(g, "Softmax", ["s", "m"], ["p"])


def test_three_inputs_are_rejected():
    t = TensorType((B, 5))
    g = graph_with(a=t, b=t, c=t)
    with pytest.raises(ShapeError, match=r"Softmax layer 'p': takes 1\.\.2 bottom tensors, got 3"):
        add_node(g, "Softmax", ["a", "b", "c"], ["p"])


def test_forward_matches_formula():
    (x,) = random_inputs([(5, 7)])
    y = get_op("Softmax").forward(RefContext(), {"factor": 1.0}, [x], [])[0][0]
    assert rel_err(y, np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)) < 1e-14


def test_large_logits_do_not_overflow():
    x = np.array([[1000.0, 999.0, -1000.0], [1e4, 1e4, 1e4]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        y = get_op("Softmax").forward(RefContext(), {"factor": 1.0}, [x], [])[0][0]
    e = np.exp([1.0, 0.0])
    assert np.allclose(y[0], [e[0] / e.sum(), e[1] / e.sum(), 0.0]) and np.allclose(y[1], 1 / 3)


def test_masked_forward_matches_formula():
    x, = random_inputs([(2, 3, 4, 4)])
    lengths = np.array([2, 4])
    mask = (np.arange(4)[None, :] < lengths[:, None]).astype(np.float64).reshape(2, 1, 1, 4)
    y = get_op("Softmax").forward(RefContext(), {"factor": 0.5}, [x, mask], [])[0][0]
    z = x * 0.5 - (1 - mask) * 10000.0
    want = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    assert rel_err(y, want) < 1e-13
    assert np.all(y[0, :, :, 2:] < 1e-4)


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_gradients(shape):
    check_grad("Softmax", {}, random_inputs([shape]))


def test_masked_gradient():
    x, = random_inputs([(2, 3, 4, 5)], seed=5)
    mask = np.array([1.0, 1.0, 0.0, 1.0, 0.0] * 2).reshape(2, 1, 1, 5)
    check_grad("Softmax", {"factor": 0.3}, [x, mask], grad_inputs=[0])
    gxs, _ = get_op("Softmax").backward(
        RefContext(), {"factor": 0.3},
        get_op("Softmax").forward(RefContext(), {"factor": 0.3}, [x, mask], [])[1], [np.ones_like(x)])
    assert gxs[1] is None


def test_json():
    assert json_round_trip("Softmax", {"factor": 0.125})[1] == {"factor": 0.125}
    assert get_op("Softmax").json_read({}) == {"factor": 1.0}
