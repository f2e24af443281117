import numpy as np

from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.passes import group_fused_fc
from hgc.passes.context import PassContext
from tests.passes._graphs import evaluate, ops_of, random_weights, rel_err, with_input


def fused(g: Graph, x: str | list[str], top: str, n: int, act: str = "Relu", pos: str = "Non",
          winit: str = "Default") -> str:
    ins = [x] if isinstance(x, str) else x
    attrs = {"num_output": n, "act_type": act, "pos_type": pos, "weight_init_type": winit}
    add_node(g, "FusedInnerProduct", ins, [top], attrs, name=f"n_{top}")
    return top


def test_chain_of_three_becomes_one_group_named_like_the_head():
    g = with_input(dense_dim=9)
    fused(g, "dense", "f1", 7, winit="XavierNorm")
    fused(g, "f1", "f2", 5)
    fused(g, "f2", "f3", 3, act="Non", pos="Tail")
    add_node(g, "Sigmoid", ["f3"], ["out"])
    r = group_fused_fc.run(g, PassContext())
    assert r.changed
    assert r.stats == {"groups": 1, "grouped_layers": 3, "head": 1, "body": 1, "tail": 1, "fusions": 1}
    node = r.graph.node("n_f1")
    assert node.op == "GroupFusedInnerProduct"
    assert node.inputs == ("dense",) and node.outputs == ("f1", "f2", "f3")
    assert dict(node.attrs) == {"num_outputs": (7, 5, 3), "activations": ("Relu", "Relu", "Non"),
                                "weight_init_types": ("XavierNorm", "Default", "Default"),
                                "bias_init_types": ("Default", "Default", "Default")}
    assert ops_of(r.graph) == ["Input", "GroupFusedInnerProduct", "Sigmoid"]
    # same values and gradients, with the group's weights = the members' weights in order
    rng = np.random.default_rng(5)
    w = random_weights(g, rng)
    wg = {"n_f1": w["n_f1"] + w["n_f2"] + w["n_f3"]}
    x = rng.uniform(-2, 2, size=(13, 9))
    gy = rng.uniform(-1, 1, size=(13, 3))
    vb, gb = evaluate(g, {"dense": x}, w, {"out": gy})
    va, ga = evaluate(r.graph, {"dense": x}, wg, {"out": gy})
    assert rel_err(va["out"], vb["out"]) < 1e-12
    assert rel_err(ga["dense"], gb["dense"]) < 1e-12


def test_a_second_reader_of_an_intermediate_output_breaks_the_chain():
    g = with_input(dense_dim=6)
    fused(g, "dense", "f1", 8)
    fused(g, "f1", "f2", 6)
    add_node(g, "ReLU", ["f2"], ["side"])  # f2 is read outside the chain
    fused(g, "f2", "f3", 4)
    fused(g, "f3", "f4", 2)
    r = group_fused_fc.run(g, PassContext())
    assert r.stats["groups"] == 2 and r.stats["head"] == 2 and r.stats["tail"] == 2
    assert r.graph.node("n_f1").outputs == ("f1", "f2")
    assert r.graph.node("n_f3").outputs == ("f3", "f4")
    assert r.graph.node("side").inputs == ("f2",)


def test_identity_activation_ends_a_chain_and_lone_layers_stay():
    g = with_input(dense_dim=6)
    fused(g, "dense", "f1", 8)
    fused(g, "f1", "f2", 6, act="Non", pos="Tail")
    fused(g, "f2", "f3", 4)  # follows an identity layer: starts its own chain, which has one member
    r = group_fused_fc.run(g, PassContext())
    assert r.stats == {"groups": 1, "grouped_layers": 2, "head": 1, "tail": 1, "isolated": 1, "fusions": 1}
    assert r.graph.node("n_f1").op == "GroupFusedInnerProduct"
    lone = r.graph.node("n_f3")
    assert lone.op == "FusedInnerProduct" and lone.attrs["pos_type"] == "Non"


def test_head_keeps_the_gradient_buffer_input_and_later_two_input_layers_do_not_join():
    g = with_input(dense_dim=6)
    add_node(g, "ReLU", ["dense"], ["alias"])
    fused(g, ["dense", "alias"], "f1", 5)
    fused(g, "f1", "f2", 4)
    fused(g, "f2", "f3", 3)
    add_node(g, "ReLU", ["f3"], ["f3r"])
    fused(g, ["f3", "f3r"], "f4", 2)  # a second input: cannot be a chain member after the head
    r = group_fused_fc.run(g, PassContext())
    head = r.graph.node("n_f1")
    assert head.inputs == ("dense", "alias") and head.outputs == ("f1", "f2", "f3")
    assert r.graph.node("n_f4").op == "FusedInnerProduct"
    assert r.stats["groups"] == 1 and r.stats["isolated"] == 1


def test_single_layer_and_frontend_positions():
    g = with_input(dense_dim=6)
    fused(g, "dense", "f1", 3)
    r = group_fused_fc.run(g, PassContext())
    assert not r.changed and r.stats == {"isolated": 1, "groups": 0, "fusions": 0}
    # a GroupDenseLayer expanded by the frontend (Head, Body, Tail) is regrouped
    g = with_input(dense_dim=6)
    fused(g, "dense", "a", 8, pos="Head")
    fused(g, "a", "b", 8, pos="Body")
    fused(g, "b", "c", 1, act="Non", pos="Tail")
    r = group_fused_fc.run(g, PassContext())
    assert r.graph.node("n_a").attrs["num_outputs"] == (8, 8, 1)
    assert ops_of(r.graph) == ["Input", "GroupFusedInnerProduct"]
