import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node, check_attrs
from hgc.ir.ops.prelu_dice import DICE_MOMENTUM
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs, rel_err
from tests.ir.ops._tiny import graph_with, json_round_trip

ATTRS = {"elu_alpha": 0.3, "eps": 1e-5}


def dice(x, mean, var, a=0.3, eps=1e-5):
    p = 1 / (1 + np.exp(-(x - mean) / np.sqrt(var + eps)))
    return p * x + (1 - p) * a * x


@pytest.mark.parametrize("shape", [(B, 7), (5, 36), (B / 2, 3)])
def test_infer(shape):
    assert infer("PReLU_Dice", ATTRS, [TensorType(shape)]) == [TensorType(shape)]


def test_rank_error():
    g = graph_with(x=TensorType((B, 3, 4)))
    with pytest.raises(ShapeError,
                       match=r"PReLU_Dice layer 'd'.*2-D input \(B, H\), got rank 3.*'x' float32\(B, 3, 4\)"):
        add_node(g, "PReLU_Dice", ["x"], ["d"], ATTRS)


def test_eps_must_be_positive():
    g = graph_with(x=TensorType((B, 3)))
    with pytest.raises(ValueError, match=r"'eps' = 0 .*must be > 0"):
        add_node(g, "PReLU_Dice", ["x"], ["d"], {"eps": 0})


def test_training_uses_batch_statistics():
    (x,) = random_inputs([(9, 5)], seed=2)
    y = get_op("PReLU_Dice").forward(RefContext(training=True), ATTRS, [x], [])[0][0]
    assert rel_err(y, dice(x, x.mean(0), x.var(0))) < 1e-12


def test_running_statistics_average_then_decay():
    op = get_op("PReLU_Dice")
    ctx = RefContext(training=True)
    batches = random_inputs([(6, 4)] * 3, seed=8)
    for x in batches:
        op.forward(ctx, ATTRS, [x], [])
    assert ctx.state["updates"] == 3
    assert rel_err(ctx.state["running_mean"], np.mean([x.mean(0) for x in batches], axis=0)) < 1e-12
    assert rel_err(ctx.state["running_var"], np.mean([x.var(0) for x in batches], axis=0)) < 1e-12
    ctx.state["updates"] = 1000
    before = ctx.state["running_mean"].copy()
    (x,) = random_inputs([(6, 4)], seed=9)
    op.forward(ctx, ATTRS, [x], [])
    want = (1 - DICE_MOMENTUM) * before + DICE_MOMENTUM * x.mean(0)
    assert rel_err(ctx.state["running_mean"], want) < 1e-12


def test_inference_uses_running_statistics():
    op = get_op("PReLU_Dice")
    mean, var = np.array([0.1, -0.2, 0.3]), np.array([0.5, 1.5, 2.0])
    ctx = RefContext(training=False, state={"running_mean": mean, "running_var": var, "updates": 5})
    (x,) = random_inputs([(4, 3)], seed=1)
    y = op.forward(ctx, ATTRS, [x], [])[0][0]
    assert rel_err(y, dice(x, mean, var)) < 1e-12
    assert rel_err(y, dice(x, x.mean(0), x.var(0))) > 1e-3
    assert ctx.state["updates"] == 5  # evaluation leaves the statistics alone
    # one sample at a time gives the same rows (no dependence on the rest of the batch)
    assert rel_err(op.forward(ctx, ATTRS, [x[2:3]], [])[0][0], y[2:3]) < 1e-14


def test_inference_without_statistics_falls_back_to_the_batch():
    (x,) = random_inputs([(7, 3)])
    y = get_op("PReLU_Dice").forward(RefContext(training=False), ATTRS, [x], [])[0][0]
    assert rel_err(y, dice(x, x.mean(0), x.var(0))) < 1e-12


@pytest.mark.parametrize("shape", [(5, 7), (9, 3)])
@pytest.mark.parametrize("alpha", [0.3, 1.7])
def test_training_gradient_includes_the_statistics(shape, alpha):
    check_grad("PReLU_Dice", {"elu_alpha": alpha, "eps": 1e-3}, random_inputs([shape]))


def test_inference_gradient_with_running_statistics():
    op = get_op("PReLU_Dice")
    attrs = check_attrs("PReLU_Dice", ATTRS)
    state = {"running_mean": np.array([0.1, -0.2, 0.3, 0.0]), "running_var": np.array([0.5, 1.5, 2.0, 0.7])}
    (x,) = random_inputs([(5, 4)], seed=3)
    r = np.random.default_rng(4).uniform(-1, 1, size=x.shape)

    def loss(v):
        return float(np.sum(r * op.forward(RefContext(training=False, state=state), attrs, [v], [])[0][0]))

    _, saved = op.forward(RefContext(training=False, state=state), attrs, [x], [])
    (gx,), _ = op.backward(RefContext(training=False), attrs, saved, [r])
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = 1e-6
        num[idx] = (loss(x + d) - loss(x - d)) / 2e-6
    assert rel_err(gx, num) < 1e-6


def test_json_writes_alpha_and_reads_both_keys():
    _, written = json_round_trip("PReLU_Dice", {"elu_alpha": 0.3, "eps": 1e-6})
    assert written == {"prelu_dice_param": {"alpha": 0.3, "eps": 1e-6}}
    hugectr_style = {"prelu_dice_param": {"elu_alpha": 0.25, "eps": 1e-8}}
    assert get_op("PReLU_Dice").json_read(hugectr_style) == {"elu_alpha": 0.25, "eps": 1e-8}
    assert {"fp32_only", "stateful"} <= get_op("PReLU_Dice").traits
    assert get_op("PReLU_Dice").weights(check_attrs("PReLU_Dice", {}), [TensorType((B, 3))]) == ()
