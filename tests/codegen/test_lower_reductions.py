"""Lowering of the two-stage column reductions (FC bias gradients with the fused dReLU, MultiCross v1/v2
weight gradients, WeightMultiply's weight gradient) and of the interaction's shared-memory sizes: launch
shapes, the partial-sum scratch views, and forward/backward run on the host interpreter against the
reference semantics, also at batches other than the one the plan was made for."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from hgc.codegen.lower import (
    COLUMN_MAX_PARTS,
    InteractionConfig,
    column_parts,
    interaction_config,
    interaction_smem,
    interaction_tc_smem,
    lower,
    row_parts,
)
from hgc.codegen.plan import Arg, ExecutablePlan, Extent, KernelLaunch
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from tests.codegen._plan_interp import HostPlan, check_graph, reference, rel_err, seeded_plan
from tests.codegen.test_lower import check_signatures
from tests.passes._graphs import with_input


def launches(plan: ExecutablePlan, phase: str = "backward") -> list[KernelLaunch]:
    return [op for s in getattr(plan, phase) for op in s.ops if isinstance(op, KernelLaunch)]


def pairs(plan: ExecutablePlan) -> list[tuple[KernelLaunch, KernelLaunch]]:
    """(stage 1, stage 2) launches of every column reduction of the backward, in order."""
    ls = launches(plan)
    out = []
    for i, op in enumerate(ls):
        if op.function.endswith("_part"):
            nxt = ls[i + 1]
            assert nxt.function.endswith("_finish") and nxt.spec == op.spec, f"{op.function}: no finish"
            out.append((op, nxt))
    return out


def check_pair(plan: ExecutablePlan, part: KernelLaunch, finish: KernelLaunch, cols: int) -> int:
    """The wiring every column reduction shares; returns its chunk count."""
    (view,) = [a for a in part.args if a.kind == "scratch" and "partials" in a.name]
    b = plan.binding(view.name, "scratch")
    chunks = part.launch.grid_y
    assert b.dtype == "float32" and b.shape == (Extent.const(chunks), Extent.const(cols))
    assert part.launch.block == (32, 8, 1) and part.launch.grid(plan.batch)[0] == -(-cols // 32)
    assert finish.args[0] == view and finish.args[1].value == Extent.const(chunks)
    assert finish.launch.block == (32, 8, 1) and finish.launch.grid_y == 1
    return chunks


def random_weights(plan: ExecutablePlan, seed: int) -> dict[str, list[np.ndarray]]:
    r = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for w in plan.weights:
        out.setdefault(w.node, []).append(r.uniform(-0.6, 0.6, w.shape))
    return out


def run_at(graph: Graph, plan: ExecutablePlan, batch: int, seeds: Sequence[str],
           weights: dict[str, list[np.ndarray]], seed: int) -> None:
    """Run ``plan`` (made for another batch) at ``batch`` on the host and compare with the reference."""
    r = np.random.default_rng(seed)
    host = HostPlan(plan, batch, weights)
    dense = r.uniform(-1.5, 1.5, host.view("dense").shape)
    host.set("dense", dense)
    host.forward()
    gys = {t: r.uniform(-1, 1, host.view(t, "gradient").shape) for t in seeds}
    for t, g in gys.items():
        host.set(t, g, "gradient")
    host.backward()
    values, grads, wgrads = reference(graph, {"dense": dense}, weights, gys)
    for t in seeds:
        assert rel_err(host.view(t), values[t]) < 1e-10, f"output {t} at batch {batch}"
    assert rel_err(host.view("dense", "gradient"), grads["dense"]) < 1e-10
    for node, gs in wgrads.items():
        for got, want in zip(host.wgrads(node), gs):
            assert rel_err(got, np.asarray(want).reshape(got.shape)) < 1e-10, f"{node} at batch {batch}"


# -- how many chunks ----------------------------------------------------------------------------
@pytest.mark.parametrize("rows,cols,want", [
    (65536, 1024, 128),  # DLRM's widest bias gradient: the shape benchmarks/micro.py measured
    (65536, 512, 256), (65536, 1, COLUMN_MAX_PARTS), (16384, 858, 152), (1000003, 1025, 125),
    (1, 1, 1), (3, 31, 1), (64, 33, 1), (65, 33, 2), (0, 7, 1)])
def test_column_parts(rows: int, cols: int, want: int) -> None:
    assert column_parts(rows, cols) == want


def test_column_parts_bounds() -> None:
    for rows in (1, 7, 100, 4097, 65536, 10 ** 7):
        for cols in (1, 31, 32, 33, 1025, 70000):
            p = column_parts(rows, cols)
            assert 1 <= p <= COLUMN_MAX_PARTS
            assert p <= max(1, -(-rows // 64))  # chunks of 64 rows or more (on average)


def test_interaction_shared_memory() -> None:
    assert interaction_smem(128, 26) == (27 * 129 * 4, (28 * 28 + 27 * 128) * 4)
    assert interaction_smem(16, 5) == (6 * 17 * 4, (8 * 8 + 6 * 16) * 4)
    assert interaction_smem(13, 3) == (4 * 14 * 4, (4 * 4 + 4 * 13) * 4)


def test_interaction_tensor_core_choice_and_shared_memory() -> None:
    # DLRM: 32 rows of 136 halves per warp; the forward's float Gram (32 x 36) fits over them; the backward
    # adds 32 x 40 halves of pair gradients (= 32 x 20 floats of one result column tile); 4 warps per block
    assert interaction_tc_smem(128, 26) == (32 * 136 * 2, 32 * 136 * 2 + 32 * 40 * 2)
    assert interaction_config("float16", 128, 26) == InteractionConfig(True, 128, 4, 4 * 8704, 4 * 11264)
    assert interaction_config("bfloat16", 16, 1) == InteractionConfig(True, 128, 4, 4 * 16 * 20 * 4,
                                                                       4 * (16 * 24 * 2 + 16 * 20 * 4))
    assert interaction_config("float16", 512, 26).block == 32  # 33 KB per warp: one warp per block
    for dtype, d, f in (("float32", 128, 26), ("float16", 13, 7), ("bfloat16", 128, 32)):  # float kernels
        assert interaction_config(dtype, d, f) == InteractionConfig(False, 128, 1, *interaction_smem(d, f))


# -- FC bias gradients ----------------------------------------------------------------------------
def fc_graph() -> Graph:
    g = with_input(13, 1)
    add_node(g, "FusedInnerProduct", ["dense"], ["h1"], {"num_output": 33, "act_type": "Relu"})
    add_node(g, "GroupFusedInnerProduct", ["h1"], ["g1", "g2"], {"num_outputs": (31, 5),
                                                                "activations": ("Relu", "Non")})
    add_node(g, "InnerProduct", ["g2"], ["y"], {"num_output": 1})
    return g


def test_fc_bias_gradients_two_stages_with_fused_drelu() -> None:
    g = fc_graph()
    plan = seeded_plan(g, 200, ["y"])
    fns = [(op.function, op.args[0].name if op.function == "drelu_bias_part" else "")
           for op, _ in pairs(plan)]
    # backward order: y (no activation; then its weight gradient by fc_narrow), the group's members last
    # to first, then h1
    assert fns == [("bias_part", ""), ("wgrad_part", ""), ("bias_part", ""), ("drelu_bias_part", "g1"),
                   ("drelu_bias_part", "h1")]
    assert not [op for op in launches(plan) if op.function in ("drelu", "bias_grad")]
    widths = [1, 5 * 1, 5, 31, 33]
    chunks = [check_pair(plan, p, f, w) for (p, f), w in zip(pairs(plan), widths)]
    assert chunks == [4, 4, 4, 4, 4]  # 200 rows: chunks of at least 64 rows
    # each member of the group has its own partials view; the finish adds into that member's bias
    (p1, f1), (p2, f2) = pairs(plan)[2:4]
    assert p1.args[1] != p2.args[2]
    assert f1.args[2] == Arg("wgrad", "g1", 3) and f2.args[2] == Arg("wgrad", "g1", 1)
    assert check_signatures(plan) > 8


@pytest.mark.parametrize("batch", [1, 3, 131, 200, 451])
def test_fc_bias_gradients_match_the_reference(batch: int) -> None:
    g = fc_graph()
    plan = seeded_plan(g, 200, ["y"])  # chunked for 200 rows, run at other batches too
    run_at(g, plan, batch, ["y"], random_weights(plan, 3), seed=batch)


# -- MultiCross -----------------------------------------------------------------------------------
def test_multi_cross_v2_weight_gradients() -> None:
    g = with_input(13, 1)
    add_node(g, "MultiCross", ["dense"], ["y"], {"num_layers": 3, "projection_dim": 3})
    plan = seeded_plan(g, 150, ["y"])
    ps = pairs(plan)
    assert len(ps) == 3
    for p, f in ps:
        assert check_pair(plan, p, f, 13) == 3
        assert p.function == "colsum_part"
    weights = random_weights(plan, 4)
    check_graph(g, 150, ["y"], weights, np.random.default_rng(5))
    for batch in (1, 7, 301):
        run_at(g, plan, batch, ["y"], weights, seed=batch)
    assert check_signatures(plan) > 5


def cross_v1_launches(plan: ExecutablePlan, node: str = "y") -> tuple[list[KernelLaunch], list[KernelLaunch]]:
    spec = [k.name for k in plan.kernels if k.template == "multi_cross"]
    return ([op for op in launches(plan, "forward") if op.spec in spec],
            [op for op in launches(plan) if op.spec in spec])


@pytest.mark.parametrize("layers,width,plan_batch", [(3, 13, 150), (1, 13, 150), (6, 45, 16384)])
def test_multi_cross_v1_lowering(layers: int, width: int, plan_batch: int) -> None:
    """v1: the forward of all layers in one launch; the backward one row launch per layer (weight-gradient
    partials per row chunk, grid = the plan's chunk count) and its finish, layer 0 writing the input's
    gradient (no separate finish pass); the host run equals the reference, also at other batches."""
    g = with_input(width, 1)
    add_node(g, "MultiCross", ["dense"], ["y"], {"num_layers": layers})
    plan = seeded_plan(g, plan_batch, ["y"])
    (spec,) = [k for k in plan.kernels if k.template == "multi_cross"]
    assert dict(spec.params) == {"dtype": "float32", "n": width, "layers": layers}
    fwd, bwd = cross_v1_launches(plan)
    (f,) = fwd
    assert f.function == "v1_fwd_all" and len(f.args) == 4 * layers + 2
    assert f.args[1:2 * layers + 1] == tuple(Arg("weight", "y", i) for i in range(2 * layers))
    assert f.args[3 * layers] == Arg("act", "y")  # x_L is the output; x_1 .. x_{L-1} scratch views
    assert all(a.kind == "scratch" for a in f.args[2 * layers + 1:4 * layers + 1] if a != Arg("act", "y"))
    assert f.launch.block == (32, 8, 1) and f.launch.grid(plan.batch)[0] == -(-plan_batch // 8)
    chunks = row_parts(plan_batch)
    assert chunks == min(COLUMN_MAX_PARTS, -(-plan_batch // 64))
    assert [op.function for op in bwd] == ["v1_bwd", "v1_wgrad_finish"] * layers
    for l, (row, fin) in zip(reversed(range(layers)), zip(bwd[::2], bwd[1::2])):
        part = row.args[9]
        b = plan.binding(part.name, "scratch")
        assert b.dtype == "float32" and b.shape == (Extent.const(chunks), Extent.const(2 * width))
        assert row.launch.block == (32, 8, 1) and row.launch.grid(1) == row.launch.grid(10 ** 6) == (chunks, 1, 1)
        assert row.args[3] == Arg("scratch", f"y/s{l}") == f.args[3 * layers + 1 + l]
        assert row.args[1] == (Arg("act", "dense") if l == 0 else f.args[2 * layers + l])
        assert row.args[6].value == Extent.const(0 if l == layers - 1 else 1)
        assert (row.args[7].kind == "grad") == (l == 0) and (row.args[7].kind == "null") == (l > 0)
        assert fin.args[0] == part and fin.args[1].value == Extent.const(chunks)
        assert fin.args[2:] == (Arg("wgrad", "y", 2 * l), Arg("wgrad", "y", 2 * l + 1))
        assert fin.launch.block == (32, 8, 1) and fin.launch.grid(plan.batch) == (-(-2 * width // 32), 1, 1)
    weights = random_weights(plan, 4)
    if plan_batch < 1000:
        check_graph(g, plan_batch, ["y"], weights, np.random.default_rng(5))
    for batch in (1, 7, 301):  # fewer rows than chunks (empty chunks), uneven chunks
        run_at(g, plan, batch, ["y"], weights, seed=batch)
    assert check_signatures(plan) > 2 * layers  # every launch of the plan (and the optimizer)


def test_multi_cross_v1_input_gradient_accumulates() -> None:
    """The input also feeds another reader: layer 0's backward adds into its gradient (gacc = 1)."""
    g = with_input(13, 1)
    add_node(g, "MultiCross", ["dense"], ["y"], {"num_layers": 2})
    add_node(g, "WeightMultiply", ["dense"], ["z"], {"weight_dims": (13, 2)})
    plan = seeded_plan(g, 90, ["y", "z"])
    _, bwd = cross_v1_launches(plan)
    last = bwd[-2]
    assert last.function == "v1_bwd" and last.args[7] == Arg("grad", "dense")
    assert last.args[8].value == Extent.const(1)
    check_graph(g, 90, ["y", "z"], random_weights(plan, 6), np.random.default_rng(7))


# -- WeightMultiply -------------------------------------------------------------------------------
def test_weight_multiply_chunks_at_other_batches() -> None:
    g = with_input(11, 1)
    add_node(g, "WeightMultiply", ["dense"], ["y"], {"weight_dims": (11, 3)})
    plan = seeded_plan(g, 300, ["y"])
    ((p, f),) = pairs(plan)
    assert check_pair(plan, p, f, 33) == 5
    weights = {"y": [np.random.default_rng(7).uniform(-1, 1, (11, 3))]}
    for batch in (1, 2, 299, 300, 1001):
        run_at(g, plan, batch, ["y"], weights, seed=batch)


# -- Interaction -----------------------------------------------------------------------------------
def interaction_graph(d: int, f: int) -> Graph:
    g = with_input(d * (f + 1), 1)
    add_node(g, "Slice", ["dense"], ["x", "rest"], {"ranges": ((0, d), (d, d * (f + 1)))})
    add_node(g, "Reshape", ["rest"], ["e"], {"leading_dim": d, "time_step": f})  # (B, f, d)
    add_node(g, "Interaction", ["x", "e"], ["y"])
    return g


@pytest.mark.parametrize("d,f", [(4, 3), (13, 7), (16, 5)])
def test_interaction_lowering_matches_the_reference(d: int, f: int) -> None:
    g = interaction_graph(d, f)
    plan, _ = check_graph(g, 9, ["y"], {}, np.random.default_rng(d))
    fwd_smem, bwd_smem = interaction_smem(d, f)
    (fl,) = [op for op in launches(plan, "forward") if op.spec.startswith("hgc_interaction")]
    (bl,) = [op for op in launches(plan) if op.spec.startswith("hgc_interaction")]
    assert (fl.launch.smem, bl.launch.smem) == (fwd_smem, bwd_smem)
    assert fl.launch.block == bl.launch.block == (128, 1, 1)
    assert check_signatures(plan) > 2


def test_interaction_too_large_for_shared_memory() -> None:
    from hgc.errors import NotBuiltError

    g = with_input(64 * 100, 1)
    add_node(g, "Slice", ["dense"], ["x", "rest"], {"ranges": ((0, 64), (64, 6400))})
    add_node(g, "Reshape", ["rest"], ["e"], {"leading_dim": 64, "time_step": 99})
    add_node(g, "Interaction", ["x", "e"], ["y"])
    with pytest.raises(NotBuiltError, match="shared"):
        lower(g, batch=4)
