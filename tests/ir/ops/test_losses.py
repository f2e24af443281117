import numpy as np
import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

BCE, CE, MCE = "BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss"
LOSS = [TensorType((1, 1))]


def run(op, attrs, pred, label, g=1.0):
    full = check_attrs(op, attrs)
    (loss,), saved = get_op(op).forward(RefContext(), full, [pred, label], [])
    gxs, gws = get_op(op).backward(RefContext(), full, saved, [np.full((1, 1), g)])
    assert loss.shape == (1, 1) and gxs[1] is None and gws == []
    return float(loss[0, 0]), gxs[0]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_common_traits():
    for op in (BCE, CE, MCE):
        assert get_op(op).kind == "loss" and "loss" in get_op(op).traits
    assert "fp32_only" in get_op(CE).traits and "fp32_only" in get_op(MCE).traits
    assert "fp32_only" not in get_op(BCE).traits


# -- BinaryCrossEntropyLoss ----------------------------------------------------------------
def test_bce_infer_and_errors():
    assert infer(BCE, {}, [TensorType((B, 1), "float16"), TensorType((B, 1))]) == LOSS
    shape_error(BCE, {"p": TensorType((B, 2)), "y": TensorType((B, 2))}, {}, "loss", r"one logit.*\(B, 1\)")
    shape_error(BCE, {"p": TensorType((B, 1)), "y": TensorType((B * 2, 1))}, {}, "loss", r"same shape")


def test_bce_matches_formula_and_is_stable():
    (x,) = random_inputs([(9, 1)], seed=1)
    x = 3 * x
    y = (np.random.default_rng(2).uniform(size=(9, 1)) > 0.5).astype(float)
    loss, grad = run(BCE, {}, x, y, g=2.5)
    s = sigmoid(x)
    assert abs(loss - np.mean(-(y * np.log(s) + (1 - y) * np.log(1 - s)))) < 1e-12
    assert rel_err(grad, 2.5 * (s - y) / 9) < 1e-12
    big, _ = run(BCE, {}, np.array([[80.0], [-80.0]]), np.array([[0.0], [1.0]]))
    assert np.isfinite(big) and abs(big - 80.0) < 1e-9


def test_bce_gradient():
    (x,) = random_inputs([(7, 1)], seed=3)
    y = np.random.default_rng(4).uniform(size=(7, 1))  # soft labels too
    check_grad(BCE, {}, [x, y], grad_inputs=[0])


# -- CrossEntropyLoss ------------------------------------------------------------------------
def test_ce_infer_and_errors():
    assert infer(CE, {}, [TensorType((B, 2)), TensorType((B, 2))]) == LOSS
    assert infer(CE, {}, [TensorType((B, 2)), TensorType((B, 1))]) == LOSS
    shape_error(CE, {"p": TensorType((B, 3)), "y": TensorType((B, 3))}, {}, "loss", r"two class logits")
    shape_error(CE, {"p": TensorType((B, 2)), "y": TensorType((B, 3))}, {}, "loss", r"label must be \(B, 2\)")


def test_ce_reads_the_label_row():
    x = np.array([[0.3, -1.2], [2.0, 0.5], [-0.4, 0.9]])
    onehot = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    cls = np.array([1, 0, 1])
    z = x - x.max(1, keepdims=True)
    a = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    want = -np.mean(np.log(a[np.arange(3), cls]))
    loss, grad = run(CE, {}, x, onehot)
    # HugeCTR's kernel reads label[i] of the (B, 2) buffer, i.e. [0, 1, 1] here: the wrong classes.
    assert abs(loss - want) < 1e-12
    assert rel_err(grad, (a - onehot) / 3) < 1e-12
    loss1, grad1 = run(CE, {}, x, np.array([[0.9], [0.2], [0.5]]))  # class index form: >= 0.5 is class 1
    assert abs(loss1 - want) < 1e-12 and rel_err(grad1, grad) < 1e-12


@pytest.mark.parametrize("width", [1, 2])
def test_ce_gradient(width):
    (x,) = random_inputs([(6, 2)], seed=5)
    cls = np.array([0, 1, 1, 0, 1, 0])
    y = cls[:, None].astype(float) if width == 1 else np.eye(2)[cls]
    check_grad(CE, {}, [x, y], grad_inputs=[0])


# -- MultiCrossEntropyLoss -----------------------------------------------------------------
TW = (0.5, 2.0, 1.0)


def test_mce_infer_and_errors():
    assert infer(MCE, {"target_weight_vec": TW}, [TensorType((B, 3)), TensorType((B, 3))]) == LOSS
    shape_error(MCE, {"p": TensorType((B, 3)), "y": TensorType((B, 3))}, {"target_weight_vec": (1.0, 1.0)},
                "loss", r"target_weight_vec has 2 entries but the label width is 3")
    shape_error(MCE, {"p": TensorType((B, 3)), "y": TensorType((B, 2))}, {"target_weight_vec": TW},
                "loss", r"same shape")


def test_mce_masks_and_weights():
    (x,) = random_inputs([(5, 3)], seed=6)
    y = np.random.default_rng(7).integers(0, 2, (5, 3)).astype(float)
    y[1, 2] = y[3, 0] = -1.0
    loss, grad = run(MCE, {"target_weight_vec": TW}, x, y)
    keep = y > -0.5
    s = sigmoid(x)
    bce = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    tw = np.array(TW)[None, :]
    assert abs(loss - np.sum(np.where(keep, tw * bce, 0)) / 15) < 1e-12
    assert rel_err(grad, np.where(keep, tw * (s - y), 0) / 15) < 1e-12
    assert grad[1, 2] == 0 and grad[3, 0] == 0


def test_mce_gradient():
    (x,) = random_inputs([(5, 3)], seed=8)
    y = np.random.default_rng(9).integers(0, 2, (5, 3)).astype(float)
    y[0, 1] = -1.0
    check_grad(MCE, {"target_weight_vec": TW}, [x, y], grad_inputs=[0])


# -- attributes and JSON ---------------------------------------------------------------------
def test_regularizer_attrs_and_json():
    with pytest.raises(ValueError, match=r"'regularizer_type' = 'L3'"):
        check_attrs(BCE, {"regularizer_type": "L3"})
    with pytest.raises(TypeError, match=r"target_weight_vec"):
        check_attrs(BCE, {"target_weight_vec": (1.0,)})
    _, written = round_trip(BCE, {})
    assert written == {}
    _, written = round_trip(CE, {"use_regularizer": True, "regularizer_type": "L2", "lambda": 0.01})
    assert written == {"regularizer": "L2", "lambda": 0.01}
    _, written = round_trip(MCE, {"target_weight_vec": TW, "use_regularizer": True, "lambda": 0.5})
    assert written == {"target_weight": [0.5, 2.0, 1.0], "regularizer": "L1", "lambda": 0.5}
