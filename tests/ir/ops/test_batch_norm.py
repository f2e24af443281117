import numpy as np
import pytest

from hgc.ir.build import check_attrs
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._model_ops import round_trip, shape_error

OP = "BatchNorm"


def params(n: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, (1, n)), rng.uniform(-1, 1, (1, n))]


def test_infer_keeps_type():
    assert infer(OP, {}, [TensorType((B, 7))]) == [TensorType((B, 7))]
    assert infer(OP, {}, [TensorType((B * 3, 5), "float16")]) == [TensorType((B * 3, 5), "float16")]


def test_errors():
    shape_error(OP, {"x": TensorType((B, 3, 5))}, {}, "bn", r"2-D \(B, n\).*rank 3")
    shape_error(OP, {"k": TensorType((B, 3, 1), "int64", sparse=True)}, {}, "bn", r"dense floating-point")
    with pytest.raises(ValueError, match=r"'factor' = 1.5.*\[0, 1\]"):
        check_attrs(OP, {"factor": 1.5})
    with pytest.raises(ValueError, match=r"'eps' = 0"):
        check_attrs(OP, {"eps": 0})


def test_training_forward_and_running_stats():
    (x,) = random_inputs([(9, 5)], seed=4)
    gamma, beta = params(5)
    ctx = RefContext(training=True)
    attrs = check_attrs(OP, {"factor": 0.3, "eps": 1e-3})
    (y,), _ = get_op(OP).forward(ctx, attrs, [x], [gamma, beta])
    mean, var = x.mean(0), ((x - x.mean(0)) ** 2).sum(0) / 9
    assert rel_err(y, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta) < 1e-12
    # started at mean 0, var 1; the unbiased batch variance is folded in
    assert rel_err(ctx.state["mean"], 0.3 * mean) < 1e-12
    assert rel_err(ctx.state["var"], 0.7 + 0.3 * var * 9 / 8) < 1e-12
    # evaluation normalises with the running statistics
    ctx.training = False
    (x2,) = random_inputs([(4, 5)], seed=5)
    (y2,), _ = get_op(OP).forward(ctx, attrs, [x2], [gamma, beta])
    rm, rv = 0.3 * mean, 0.7 + 0.3 * var * 9 / 8
    assert rel_err(y2, gamma * (x2 - rm) / np.sqrt(rv + 1e-3) + beta) < 1e-12


def test_default_factor_keeps_last_batch_stats():
    ctx = RefContext(training=True)
    attrs = check_attrs(OP, {})
    for seed in (1, 2):
        (x,) = random_inputs([(6, 3)], seed=seed)
        get_op(OP).forward(ctx, attrs, [x], params(3))
    assert rel_err(ctx.state["mean"], x.mean(0)) < 1e-12
    assert rel_err(ctx.state["var"], x.var(0, ddof=1)) < 1e-12


@pytest.mark.parametrize("training", [True, False])
def test_gradients(training):
    (x,) = random_inputs([(7, 5)], seed=6)
    check_grad(OP, {"factor": 0.4, "eps": 1e-2}, [x], params(5), training=training)


@pytest.mark.parametrize("kind,gamma", [("Default", 1.0), ("Uniform", 1.0), ("XavierNorm", 1.0), ("Zero", 0.0)])
def test_init(kind, gamma):
    attrs = check_attrs(OP, {"gamma_init_type": kind, "beta_init_type": kind})
    g, b = get_op(OP).init(attrs, [TensorType((B, 11))], np.random.default_rng(0))
    assert g.shape == b.shape == (1, 11) and g.dtype == np.float32
    assert np.all(g == gamma) and np.all(b == 0)
    assert [w.name for w in get_op(OP).weights(attrs, [TensorType((B, 11))])] == ["gamma", "beta"]


def test_json():
    _, written = round_trip(OP, {"factor": 0.25, "eps": 1e-4, "gamma_init_type": "Zero"})
    assert written == {"bn_param": {"factor": 0.25, "eps": 1e-4, "gamma_init": "Zero"}}
    round_trip(OP, {})


def test_traits():
    assert {"has_weights", "stateful"} <= get_op(OP).traits
    for op in ("FusedInnerProduct", "GroupFusedInnerProduct", "MultiCross"):
        assert {"has_weights", "gemm"} <= get_op(op).traits
    assert "stateful" not in get_op("LayerNorm").traits
