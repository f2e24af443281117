"""Lowering of LayerNorm, PReLU_Dice (running statistics for inference) and WeightMultiply: specs, states
and scratch, and forward/backward run on the host interpreter against the reference semantics."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.codegen.lower import lower
from hgc.ir.build import add_node
from hgc.ir.ops.prelu_dice import DICE_MOMENTUM
from tests.codegen._plan_interp import HostPlan, check_graph, reference, rel_err, seeded_plan
from tests.codegen.test_lower import check_signatures
from tests.passes._graphs import with_input


def norm_weights(d: int, seed: int) -> list[np.ndarray]:
    r = np.random.default_rng(seed)
    return [r.uniform(0.5, 1.5, (1, d)), r.uniform(-0.5, 0.5, (1, d))]


@pytest.mark.parametrize("three_d", [False, True])
def test_layer_norm_matches_the_reference(three_d: bool) -> None:
    g = with_input(21, 1)
    x = "dense"
    if three_d:
        add_node(g, "Reshape", ["dense"], ["x3"], {"leading_dim": 7, "time_step": 3})  # (B, 3, 7)
        x = "x3"
    add_node(g, "LayerNorm", [x], ["y"], {"eps": 1e-3})
    d = 7 if three_d else 21
    plan, _ = check_graph(g, 9, ["y"], {"y": norm_weights(d, 5)}, np.random.default_rng(6))
    assert check_signatures(plan) >= 3
    scratch = {b.tensor: b for b in plan.buffers if b.kind == "scratch"}
    assert scratch["y/mean"].numel.at(9) == (27 if three_d else 9)  # one mean per row


def test_weight_multiply_matches_the_reference() -> None:
    g = with_input(11, 1)
    add_node(g, "WeightMultiply", ["dense"], ["y"], {"weight_dims": (11, 3)})
    w = [np.random.default_rng(7).uniform(-1, 1, (11, 3))]
    plan, _ = check_graph(g, 13, ["y"], {"y": w}, np.random.default_rng(8))
    assert check_signatures(plan) == 5  # fwd, wgrad_part, wgrad_finish, bwd_x and the optimizer step


def dice_graph():
    g = with_input(13, 1)
    add_node(g, "PReLU_Dice", ["dense"], ["y"], {"elu_alpha": 0.2, "eps": 1e-4})
    return g


def test_dice_train_backward_and_states() -> None:
    g = dice_graph()
    plan, host = check_graph(g, 17, ["y"], {}, np.random.default_rng(9))
    assert {s.name for s in plan.states} == {"y/running_mean", "y/running_var", "y/updates"}
    modes = sorted(op.mode for s in plan.forward if s.node == "y" for op in s.ops)
    assert modes == ["eval", "train"]
    spec = next(k for k in plan.kernels if k.template == "dice")
    assert spec.params["momentum"] == DICE_MOMENTUM and spec.params["alpha"] == 0.2
    assert check_signatures(plan) == 3


def test_dice_inference_uses_running_statistics() -> None:
    g = dice_graph()
    host = HostPlan(seeded_plan(g, 17, ["y"]), 17, {})
    r = np.random.default_rng(10)
    state: dict = {}
    # nothing trained yet: evaluation falls back to the batch's own statistics, as HugeCTR does
    x = r.uniform(-1, 2, (17, 13))
    host.set("dense", x)
    host.forward(training=False)
    values, _, _ = reference(g, {"dense": x}, {}, {}, state=state, training=False)
    assert rel_err(host.view("y"), values["y"]) < 1e-12
    for step in range(4):
        x = r.uniform(-1, 2, (17, 13)) * (step + 1)
        host.set("dense", x)
        host.forward(training=True)
        reference(g, {"dense": x}, {}, {}, state=state)
    assert rel_err(host.states["y/running_mean"], state["y"]["running_mean"]) < 1e-12
    assert rel_err(host.states["y/running_var"], state["y"]["running_var"]) < 1e-12
    x = r.uniform(-1, 2, (17, 13))
    host.set("dense", x)
    host.forward(training=False)
    values, _, _ = reference(g, {"dense": x}, {}, {}, state=state, training=False)
    assert rel_err(host.view("y"), values["y"]) < 1e-12
    batch_stats, _, _ = reference(g, {"dense": x}, {}, {}, training=False)
    assert rel_err(host.view("y"), batch_stats["y"]) > 1e-3  # the running statistics made a difference


def test_layer_norm_in_a_loss_graph_lowers() -> None:
    g = with_input(6, 6)
    add_node(g, "InnerProduct", ["dense"], ["fc"], {"num_output": 6})
    add_node(g, "LayerNorm", ["fc"], ["ln"])
    add_node(g, "PReLU_Dice", ["ln"], ["dice"])
    add_node(g, "WeightMultiply", ["dice"], ["wm"], {"weight_dims": (6, 1)})
    add_node(g, "MultiCrossEntropyLoss", ["wm", "label"], ["loss"], {"target_weight_vec": (1.0,) * 6})
    plan = lower(g, batch=8)
    assert check_signatures(plan) > 8
    assert [s.node for s in plan.backward][1:5] == ["loss", "wm", "dice", "ln"]
