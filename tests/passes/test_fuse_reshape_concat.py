import numpy as np
import pytest

from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.types import B, TensorType
from hgc.passes import fuse_reshape_concat
from hgc.passes.context import PassContext
from tests.passes._graphs import evaluate, ops_of, random_weights, rel_err, with_input

SLOTS = 3
WIDTHS = (4, 5)


def blocks(slots: int = SLOTS, widths: tuple[int, ...] = WIDTHS) -> Graph:
    """Input → per width v: InnerProduct to slots*v, Reshape to a 3-D (B, slots, v) tensor 'x<i>'."""
    g = with_input(dense_dim=6)
    for i, v in enumerate(widths):
        add_node(g, "InnerProduct", ["dense"], [f"p{i}"], {"num_output": slots * v})
        add_node(g, "Reshape", [f"p{i}"], [f"x{i}"], {"leading_dim": v, "time_step": slots})
    return g


def check_numerics(before: Graph, after: Graph, outputs: list[str]) -> None:
    """Forward values and the gradient reaching 'dense' agree between the two graphs."""
    rng = np.random.default_rng(7)
    w = random_weights(before, rng)
    x = rng.uniform(-2, 2, size=(5, 6))
    vals, _ = evaluate(before, {"dense": x}, w)
    seeds = {t: rng.uniform(-1, 1, size=vals[t].shape) for t in outputs}
    vb, gb = evaluate(before, {"dense": x}, w, seeds)
    va, ga = evaluate(after, {"dense": x}, w, seeds)
    for t in outputs:
        assert rel_err(va[t], vb[t]) < 1e-12
    assert rel_err(ga["dense"], gb["dense"]) < 1e-12


def test_pattern_a_reshapes_then_concat_becomes_general():
    g = blocks()
    for i, v in enumerate(WIDTHS):
        add_node(g, "Reshape", [f"x{i}"], [f"r{i}"], {"leading_dim": v})
    add_node(g, "Concat", ["r0", "r1"], ["cat"], {"axis": 1})
    add_node(g, "InnerProduct", ["cat"], ["head"], {"num_output": 2})
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.changed
    assert r.stats == {"fusions": 1, "pattern_A": 1, "nodes_removed": 2}
    fused = r.graph.node("cat")
    assert fused.op == "FusedReshapeConcatGeneral"
    assert fused.inputs == ("x0", "x1") and fused.outputs == ("cat",)
    assert fused.types == (TensorType((B * SLOTS, sum(WIDTHS))),)
    assert not r.graph.has_tensor("r0") and not r.graph.has_tensor("r1")
    check_numerics(g, r.graph, ["head"])


def test_pattern_b_concat_then_reshape_becomes_general():
    g = blocks()
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["rows"], {"leading_dim": sum(WIDTHS)})
    add_node(g, "InnerProduct", ["rows"], ["head"], {"num_output": 2})
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.stats == {"fusions": 1, "pattern_B": 1, "nodes_removed": 1}
    fused = r.graph.node("rows")
    assert fused.op == "FusedReshapeConcatGeneral" and fused.inputs == ("x0", "x1") and fused.outputs == ("rows",)
    assert "cat3" not in r.graph
    check_numerics(g, r.graph, ["head"])


@pytest.mark.parametrize("slots", [2, 4])
def test_pattern_c_din_split_becomes_fused_reshape_concat(slots):
    g = blocks(slots)
    width = sum(WIDTHS)
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["ad"], {"selected": True, "selected_slots": (slots - 1,)})
    add_node(g, "Reshape", ["cat3"], ["his"], {"selected": True, "selected_slots": tuple(range(slots - 1))})
    add_node(g, "Reshape", ["his"], ["item"], {"leading_dim": width})
    add_node(g, "InnerProduct", ["item"], ["item_fc"], {"num_output": 3})
    add_node(g, "InnerProduct", ["ad"], ["ad_fc"], {"num_output": 2})
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.stats == {"fusions": 1, "pattern_C": 1, "nodes_removed": 3}
    fused = r.graph.node("cat3")
    assert fused.op == "FusedReshapeConcat"
    assert fused.inputs == ("x0", "x1") and fused.outputs == ("item", "ad")
    assert fused.types == (TensorType((B * (slots - 1), width)), TensorType((B, width)))
    assert ops_of(r.graph).count("Reshape") == 2  # only the two that make the 3-D blocks
    check_numerics(g, r.graph, ["item_fc", "ad_fc"])


def test_pattern_c_with_two_slots_uses_the_selected_output_directly():
    g = blocks(2)
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["ad"], {"selected": True, "selected_slots": (1,)})
    add_node(g, "Reshape", ["cat3"], ["his"], {"selected": True, "selected_slots": (0,)})
    add_node(g, "Add", ["his", "ad"], ["both"])
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.stats["pattern_C"] == 1
    assert r.graph.node("cat3").outputs == ("his", "ad")
    check_numerics(g, r.graph, ["both"])


def test_patterns_that_are_not_equivalent_are_left_alone():
    # a reshape read by another node: its (B*S, v) value must stay
    g = blocks()
    for i, v in enumerate(WIDTHS):
        add_node(g, "Reshape", [f"x{i}"], [f"r{i}"], {"leading_dim": v})
    add_node(g, "Concat", ["r0", "r1"], ["cat"], {"axis": 1})
    add_node(g, "InnerProduct", ["r0"], ["peek"], {"num_output": 2})
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.stats == {"fusions": 0} and "FusedReshapeConcatGeneral" not in ops_of(r.graph)
    # blocks of different (batch, slots) whose row counts happen to agree: (B, 3, 4) and (3B, 1, 5)
    g = blocks(widths=(4,))
    add_node(g, "InnerProduct", ["dense"], ["q"], {"num_output": 15})
    add_node(g, "Reshape", ["q"], ["y"], {"leading_dim": 5, "time_step": 1})
    add_node(g, "Reshape", ["x0"], ["r0"], {"leading_dim": 4})
    add_node(g, "Reshape", ["y"], ["r1"], {"leading_dim": 5})
    add_node(g, "Concat", ["r0", "r1"], ["cat"], {"axis": 1})
    assert fuse_reshape_concat.run(g, PassContext()).stats["fusions"] == 0
    # leading_dim other than the vector size: the rows are not one slot each
    g = blocks()
    add_node(g, "Reshape", ["x0"], ["r0"], {"leading_dim": 2})  # (B, 3, 4) -> (6B, 2)
    add_node(g, "Concat", ["r0"], ["cat"], {"axis": 1})
    assert fuse_reshape_concat.run(g, PassContext()).stats["fusions"] == 0
    # an axis-2 concat read by two nodes is not a pattern B (nor a C: no selected reshapes)
    g = blocks()
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["rows"], {"leading_dim": sum(WIDTHS)})
    add_node(g, "ReduceSum", ["cat3"], ["total"], {"axis": 1})
    assert fuse_reshape_concat.run(g, PassContext()).stats["fusions"] == 0
    # a 3-D concat along slots (axis 1) then reshape: rows are not slot-major per sample
    g = blocks(widths=(4, 4))
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 1})
    add_node(g, "Reshape", ["cat3"], ["rows"], {"leading_dim": 4})
    assert fuse_reshape_concat.run(g, PassContext()).stats["fusions"] == 0


def test_single_input_and_repeated_input_concats_fuse():
    g = blocks()
    add_node(g, "Reshape", ["x0"], ["r0"], {"leading_dim": 4})
    add_node(g, "Concat", ["r0", "r0"], ["cat"], {"axis": 1})
    add_node(g, "Reshape", ["x1"], ["r1"], {"leading_dim": 5})
    add_node(g, "Concat", ["r1"], ["solo"], {"axis": 1})
    r = fuse_reshape_concat.run(g, PassContext())
    assert r.stats["fusions"] == 2 and r.stats["pattern_A"] == 2
    assert r.graph.node("cat").inputs == ("x0", "x0")
    assert r.graph.node("solo").types == (TensorType((B * SLOTS, 5)),)
    check_numerics(g, r.graph, ["cat", "solo"])


def test_selected_reshapes_that_do_not_cover_the_slots_are_not_a_split():
    g = blocks(4)
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["ad"], {"selected": True, "selected_slots": (3,)})
    add_node(g, "Reshape", ["cat3"], ["his"], {"selected": True, "selected_slots": (0, 1)})  # slot 2 missing
    add_node(g, "Reshape", ["his"], ["item"], {"leading_dim": sum(WIDTHS)})
    assert fuse_reshape_concat.run(g, PassContext()).stats["fusions"] == 0


@pytest.mark.parametrize("ctx", [PassContext(use_mixed_precision=True), PassContext(compute_dtype="bfloat16")])
def test_no_fusion_in_low_precision(ctx):
    g = blocks()
    add_node(g, "Concat", ["x0", "x1"], ["cat3"], {"axis": 2})
    add_node(g, "Reshape", ["cat3"], ["rows"], {"leading_dim": sum(WIDTHS)})
    r = fuse_reshape_concat.run(g, ctx)
    assert not r.changed and r.stats == {"fusions": 0, "skipped_low_precision": 1}
    assert ops_of(r.graph) == ops_of(g)
