import numpy as np
import pytest

from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


@pytest.mark.parametrize("shape", [(B, 7), (B, 3, 5), (4, 9)])
def test_infer_keeps_type(shape):
    t = TensorType(shape, "float16")
    assert infer("Dropout", {"dropout_rate": 0.3}, [t]) == [t]


@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.1, "half"])
def test_rate_outside_open_unit_interval(rate):
    g = graph_with(x=TensorType((B, 3)))
    with pytest.raises(ValueError, match=r"Dropout layer 'd'.*'dropout_rate'.*strictly between 0 and 1"):
        add_node(g, "Dropout", ["x"], ["d"], {"dropout_rate": rate})


def test_training_scales_kept_values_and_drops_about_p():
    x = np.random.default_rng(1).uniform(0.5, 1.5, size=(301, 157)).astype(np.float32)
    ctx = RefContext(training=True, rng=np.random.default_rng(7))
    (y,), saved = get_op("Dropout").forward(ctx, {"dropout_rate": 0.3}, [x], [])
    kept = y != 0
    assert y.dtype == np.float32
    assert np.allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.3) < 0.01
    g = np.ones_like(x)
    (gx,), _ = get_op("Dropout").backward(ctx, {"dropout_rate": 0.3}, saved, [g])
    assert np.allclose(gx[kept], 1 / 0.7) and np.all(gx[~kept] == 0)


def test_eval_is_identity():
    (x,) = random_inputs([(5, 7)])
    op = get_op("Dropout")
    (y,), saved = op.forward(RefContext(training=False), {"dropout_rate": 0.6}, [x], [])
    assert np.array_equal(y, x)
    g = np.full_like(x, 0.25)
    assert np.array_equal(op.backward(RefContext(training=False), {"dropout_rate": 0.6}, saved, [g])[0][0], g)


def test_mask_depends_on_the_rng():
    (x,) = random_inputs([(9, 9)])
    op = get_op("Dropout")
    a = op.forward(RefContext(rng=np.random.default_rng(1)), {"dropout_rate": 0.5}, [x], [])[0][0]
    b = op.forward(RefContext(rng=np.random.default_rng(2)), {"dropout_rate": 0.5}, [x], [])[0][0]
    c = op.forward(RefContext(rng=np.random.default_rng(1)), {"dropout_rate": 0.5}, [x], [])[0][0]
    assert not np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_with_fixed_seed(shape, training):
    check_grad("Dropout", {"dropout_rate": 0.4}, random_inputs([shape]), training=training, seed=11)


def test_json_and_traits():
    assert json_round_trip("Dropout", {"dropout_rate": 0.2})[1] == {"rate": 0.2}
    assert get_op("Dropout").json_read({}) == {}
    assert {"random", "elementwise"} <= get_op("Dropout").traits
