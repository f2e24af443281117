import numpy as np

from hgc.ir.build import add_node
from hgc.ir.types import B, TensorType
from hgc.passes import fuse_fc_relu
from hgc.passes.context import PassContext
from tests.passes._graphs import evaluate, mlp, ops_of, random_weights, rel_err, with_input


def test_fc_relu_pairs_become_fused_layers_named_like_the_fc():
    g = with_input(dense_dim=7)
    add_node(g, "InnerProduct", ["dense"], ["fc1"], {"num_output": 5, "weight_init_type": "XavierUniform",
                                                      "bias_init_type": "Zero"})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    mlp(g, "relu1", [3], prefix="top", relu=False)
    r = fuse_fc_relu.run(g, PassContext())
    assert r.changed and r.stats == {"fusions": 1}
    fused = r.graph.node("fc1")
    assert fused.op == "FusedInnerProduct"
    assert fused.inputs == ("dense",) and fused.outputs == ("relu1",)
    assert dict(fused.attrs) == {"num_output": 5, "weight_init_type": "XavierUniform", "bias_init_type": "Zero",
                                 "pos_type": "Non", "act_type": "Relu"}
    assert fused.types == (TensorType((B, 5)),)
    assert not r.graph.has_tensor("fc1")
    assert r.graph.node("top1").inputs == ("relu1",)
    assert ops_of(r.graph) == ["Input", "FusedInnerProduct", "InnerProduct"]
    assert ops_of(g) == ["Input", "InnerProduct", "ReLU", "InnerProduct"]  # the input graph is untouched


def test_fc_read_elsewhere_or_without_relu_stays():
    g = with_input(dense_dim=6)
    add_node(g, "InnerProduct", ["dense"], ["fc1"], {"num_output": 4})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "Add", ["fc1", "relu1"], ["skip"])  # the pre-activation is needed
    add_node(g, "InnerProduct", ["skip"], ["fc2"], {"num_output": 3})
    add_node(g, "Sigmoid", ["fc2"], ["sig"])  # not a ReLU
    add_node(g, "ReLU", ["dense"], ["relu_in"])  # a ReLU not after an FC
    r = fuse_fc_relu.run(g, PassContext())
    assert not r.changed and r.stats == {"fusions": 0}
    assert ops_of(r.graph) == ops_of(g)


def test_every_pair_of_a_chain_fuses_and_numerics_match():
    g = with_input(dense_dim=9)
    mlp(g, "dense", [7, 5, 3])
    r = fuse_fc_relu.run(g, PassContext())
    assert r.stats["fusions"] == 3
    assert [n.name for n in r.graph.nodes()] == ["data", "fc1", "fc2", "fc3"]
    assert r.graph.node("fc3").outputs == ("relu_fc3",)
    rng = np.random.default_rng(3)
    w = random_weights(g, rng)
    x = rng.uniform(-2, 2, size=(11, 9))
    gy = rng.uniform(-1, 1, size=(11, 3))
    before, gb = evaluate(g, {"dense": x}, w, {"relu_fc3": gy})
    after, ga = evaluate(r.graph, {"dense": x}, w, {"relu_fc3": gy})
    assert rel_err(after["relu_fc3"], before["relu_fc3"]) < 1e-12
    assert rel_err(ga["dense"], gb["dense"]) < 1e-12
