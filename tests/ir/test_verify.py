"""The IR verifier: a well-formed graph passes; each broken rule is reported precisely."""
from __future__ import annotations

import pytest

from hgc.errors import GraphError
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.types import B, TensorType
from hgc.ir.verify import verify


def source(g: Graph, width: int = 7) -> None:
    add_node(g, "Input", [], ["label", "x"],
             {"label_dims": (1,), "label_names": ("label",), "dense_dim": width, "dense_name": "x"},
             name="data")


def good() -> Graph:
    g = Graph()
    source(g)
    add_node(g, "InnerProduct", ["x"], ["fc1"], {"num_output": 5})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "InnerProduct", ["relu1"], ["fc2"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["fc2", "label"], ["loss"])
    return g


def test_good_graph_passes() -> None:
    verify(good())


def fails(g: Graph, *parts: str) -> str:
    with pytest.raises(GraphError) as info:
        verify(g)
    msg = str(info.value)
    for p in parts:
        assert p in msg, msg
    return msg


def test_unregistered_op() -> None:
    g = good()
    g.add(Node("NoSuchOp", ("relu1",), ("z",), types=(TensorType((B, 5)),)))
    fails(g, "NoSuchOp layer 'z'", "unknown op 'NoSuchOp'")


def test_input_count() -> None:
    g = good()
    g.add(Node("ReLU", ("fc1", "relu1"), ("z",), types=(TensorType((B, 5)),)))
    fails(g, "ReLU layer 'z'", "takes 1 bottom tensors, got 2", "['fc1', 'relu1']")


def test_input_produced_later() -> None:
    g = good()
    # corrupt the order: drop the fc1 -> relu1 edge and move relu1 before fc1
    g.nx.remove_edge("fc1", "relu1", key="fc1")
    g.nx.nodes["relu1"]["seq"] = 0.5
    g.nx.nodes["data"]["seq"] = 0.1
    fails(g, "ReLU layer 'relu1'", "bottom tensor 'fc1' is not produced by an earlier node",
          "produced later, by InnerProduct layer 'fc1'")


def test_input_never_produced() -> None:
    g = good()
    g.nx.add_node("orphan", node=Node("ReLU", ("ghost",), ("o",), types=(TensorType((B, 5)),)), seq=99.0)
    fails(g, "ReLU layer 'o'", "bottom tensor 'ghost'", "no node produces it")


def test_duplicate_top_across_nodes() -> None:
    g = good()
    dup = Node("ReLU", ("fc1",), ("relu1",), types=(TensorType((B, 5)),), name="again")
    g.nx.add_node("again", node=dup, seq=99.0)
    fails(g, "ReLU layer 'again'", "top tensor 'relu1' is already produced by node 'relu1'")


def test_duplicate_top_within_node() -> None:
    g = good()
    dup = Node("Slice", ("fc1",), ("s", "s"), Attrs(ranges=((0, 2), (2, 5))),
               (TensorType((B, 2)), TensorType((B, 3))), name="sl")
    g.nx.add_node("sl", node=dup, seq=99.0)
    fails(g, "Slice layer 'sl'", "top names ['s'] appear more than once")


def test_types_count() -> None:
    g = good()
    g.nx.add_node("r", node=Node("ReLU", ("fc1",), ("r",), types=()), seq=99.0)
    fails(g, "ReLU layer 'r'", "1 tops ['r'] but 0 types")


def test_recorded_types_must_match_inference() -> None:
    g = good()
    g.add(Node("InnerProduct", ("relu1",), ("fc9",), Attrs(num_output=3, weight_init_type="Default",
                                                          bias_init_type="Default"), (TensorType((B, 4)),)))
    fails(g, "InnerProduct layer 'fc9'", "recorded output types [float32(B, 4)]", "inferred [float32(B, 3)]",
          "[float32(B, 5)]")


def test_inference_failure_is_reported() -> None:
    g = good()
    g.add(Node("Concat", ("fc1", "loss"), ("cat",), Attrs(axis=1), (TensorType((B, 6)),)))
    fails(g, "Concat layer 'cat'", "shape inference fails",
          "[inputs: 'fc1' float32(B, 5), 'loss' float32(1, 1)]")


def test_attrs_must_pass_rules() -> None:
    g = good()
    g.add(Node("InnerProduct", ("relu1",), ("fc9",), Attrs(num_output=-3, weight_init_type="Default",
                                                          bias_init_type="Default"), (TensorType((B, -3)),)))
    fails(g, "InnerProduct layer 'fc9'", "argument 'num_output' = -3 is not allowed: must be > 0")


def test_unknown_attr() -> None:
    g = good()
    g.add(Node("ReLU", ("relu1",), ("r2",), Attrs(slope=0.1), (TensorType((B, 5)),)))
    fails(g, "ReLU layer 'r2'", "unknown attribute(s) ['slope']")


def test_missing_attr() -> None:
    g = good()
    g.add(Node("InnerProduct", ("relu1",), ("fc9",), Attrs(num_output=3), (TensorType((B, 3)),)))
    fails(g, "InnerProduct layer 'fc9'", "['bias_init_type', 'weight_init_type'] are missing")


def test_cycle() -> None:
    g = good()
    g.nx.add_edge("fc2", "fc1", key="fc2", tensor="fc2")
    fails(g, "the graph has a cycle", "'fc1' (fc1) -> 'relu1' (relu1) -> 'fc2' (fc2) -> 'fc1'")


def test_loss_has_no_users() -> None:
    g = good()
    g.add(Node("ReLU", ("loss",), ("after",), types=(TensorType((1, 1)),)))
    fails(g, "BinaryCrossEntropyLoss layer 'loss'", "the loss 'loss' is read by ReLU layer 'after'",
          "no users")


def test_input_types_are_not_inferred() -> None:
    g = Graph()
    source(g, width=3)
    verify(g)
    # input ops take their types from the data, so only their attributes are checked
    data = g.node("data")
    g2 = Graph()
    g2.add(data.replace(types=(TensorType((B, 1)), TensorType((B, 9)))))
    verify(g2)
    g3 = Graph()
    g3.add(data.replace(attrs=data.attrs.replace(key_dtype="int16")))
    fails(g3, "Input layer 'data'", "argument 'key_dtype' = 'int16' is not allowed")
