"""The graph API (hgc.ir.graph), the frozen node record (hgc.ir.node) and symbolic batch dimensions
(hgc.ir.types): producers, users, order, add / erase / replace / copy / renumber and their errors."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import networkx as nx
import pytest

from hgc.errors import GraphError
from hgc.ir.build import add_node, make_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.types import B, Batch, TensorType, numel, parse_dim
from tests.passes._graphs import with_input


def diamond() -> Graph:
    """dense -> fc1 -> (relu1, sig1) -> add -> fc2 -> loss."""
    g = with_input(dense_dim=7)
    add_node(g, "InnerProduct", ["dense"], ["fc1"], {"num_output": 5})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "Sigmoid", ["fc1"], ["sig1"])
    add_node(g, "Add", ["relu1", "sig1"], ["sum1"])
    add_node(g, "InnerProduct", ["sum1"], ["fc2"], {"num_output": 1})
    add_node(g, "BinaryCrossEntropyLoss", ["fc2", "label"], ["loss"])
    return g


def test_queries() -> None:
    g = diamond()
    assert [n.name for n in g.nodes()] == ["data", "fc1", "relu1", "sig1", "sum1", "fc2", "loss"]
    assert len(g) == 7 and "sum1" in g and "nope" not in g
    assert g.producer("relu1").op == "ReLU" and g.producer("dense").name == "data"
    assert [n.name for n in g.users("fc1")] == ["relu1", "sig1"]
    assert [n.name for n in g.users("label")] == ["loss"] and g.users("loss") == []
    assert g.tensor_type("fc1") == TensorType((B, 5)) and g.tensor_type("loss") == TensorType((1, 1))
    assert list(g.tensors())[:3] == ["label", "dense", "fc1"]
    assert [n.name for n in g.find("InnerProduct")] == ["fc1", "fc2"]
    assert isinstance(g.nx, nx.MultiDiGraph) and g.nx.has_edge("fc1", "sum1") is False
    assert set(g.nx.successors("fc1")) == {"relu1", "sig1"}
    with pytest.raises(GraphError, match="no node named 'x'"):
        g.node("x")
    with pytest.raises(GraphError, match="tensor 'x' is not produced by any node"):
        g.users("x")


def test_add_errors_name_the_layer_and_tensor() -> None:
    g = diamond()
    t = (TensorType((B, 5)),)
    with pytest.raises(GraphError, match="ReLU layer 'relu1': a node named 'relu1' already exists"):
        g.add(Node("ReLU", ("fc1",), ("other",), types=t, name="relu1"))
    with pytest.raises(GraphError, match="bottom tensor 'ghost' is not produced by any earlier layer"):
        g.add(Node("ReLU", ("ghost",), ("r",), types=t))
    with pytest.raises(GraphError, match="top tensor 'fc1' is already produced by InnerProduct layer 'fc1'"):
        g.add(Node("ReLU", ("sum1",), ("fc1",), types=t, name="again"))
    with pytest.raises(GraphError, match="duplicate top names"):
        g.add(Node("Slice", ("fc1",), ("a", "a"), types=t * 2))
    with pytest.raises(GraphError, match="2 outputs but 1 types"):
        g.add(Node("Slice", ("fc1",), ("a", "b"), types=t))
    assert len(g) == 7  # nothing half-added


def test_erase_only_unread_nodes() -> None:
    g = diamond()
    with pytest.raises(GraphError, match="cannot erase ReLU layer 'relu1': tensor 'relu1' is read by"):
        g.erase("relu1")
    add_node(g, "ReLU", ["sum1"], ["dangling"])
    g.erase("dangling")
    assert "dangling" not in g and not g.has_tensor("dangling")
    add_node(g, "ReLU", ["sum1"], ["dangling"])  # the name and the tensor are free again
    assert [n.name for n in g.users("sum1")] == ["fc2", "dangling"]


def test_replace_keeps_position_and_rewires_readers() -> None:
    g = diamond()
    fused = make_node(g, "FusedInnerProduct", ["dense"], ["relu1"], {"num_output": 5, "pos_type": "Isolated",
                                                                   "act_type": "Relu"})
    sig = make_node(g, "InnerProduct", ["dense"], ["sig1"], {"num_output": 5})
    g.replace(["fc1", "relu1", "sig1"], [fused, sig])
    assert [n.name for n in g.nodes()] == ["data", "relu1", "sig1", "sum1", "fc2", "loss"]
    assert g.producer("relu1").op == "FusedInnerProduct" and g.producer("sig1").op == "InnerProduct"
    assert [n.name for n in g.users("relu1")] == ["sum1"]
    assert [n.name for n in g.users("dense")] == ["relu1", "sig1"]
    assert not g.has_tensor("fc1")
    g.renumber()
    add_node(g, "ReLU", ["sum1"], ["late"])
    assert g.nodes()[-1].name == "late"  # renumbering keeps later additions last among independent nodes


def test_replace_errors_leave_the_graph_unchanged() -> None:
    g = diamond()
    before = g.copy()
    with pytest.raises(GraphError, match=r"tensor 'sig1' is still read but no new node produces it"):
        g.replace(["sig1"], [make_node(g, "Sigmoid", ["fc1"], ["other"])])
    wide = Node("InnerProduct", ("dense",), ("sig1",), Attrs(num_output=6), (TensorType((B, 6)),), "sig1")
    with pytest.raises(GraphError, match=r"tensor 'sig1' changes type float32\(B, 5\)"):
        g.replace(["sig1"], [wide])
    assert g == before


def test_copy_and_equality() -> None:
    g = diamond()
    c = g.copy()
    assert c == g and c is not g and c.meta == g.meta
    c.erase("loss")
    assert c != g and len(g) == 7
    assert Graph({"model_name": "a"}) != Graph({"model_name": "b"})


def test_nodes_are_frozen_plain_data() -> None:
    n = Node("InnerProduct", ["x"], ["y"], {"num_output": 3, "ranges": [[0, 1], [1, 2]]},
             [TensorType((B, 3))])
    assert n.inputs == ("x",) and n.outputs == ("y",) and n.name == "y" and isinstance(n.attrs, Attrs)
    assert n.attrs["ranges"] == ((0, 1), (1, 2)) and hash(n.attrs) == hash(Attrs(n.attrs))
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.op = "ReLU"  # type: ignore[misc]
    with pytest.raises(TypeError):
        n.attrs["num_output"] = 4  # type: ignore[index]
    m = n.replace(attrs=n.attrs.replace(num_output=4))
    assert m.attrs["num_output"] == 4 and n.attrs["num_output"] == 3 and m != n
    assert Node("Input", (), ("a", "b")).name == "a" and Node("Input", (), ()).name == "Input"
    assert n.label() == "InnerProduct layer 'y'"


def test_batch_dimensions() -> None:
    assert str(B) == "B" and str(B * 26) == "26*B" and str(B / 2) == "B/2" and str(26 * B / 4) == "13*B/2"
    for d in (B, B * 26, B / 2, 26 * B / 4, 7):
        assert parse_dim(str(d)) == d
    assert (B * 3).at(10) == 30 and Batch(Fraction(3, 2)).at(4) == 6
    with pytest.raises(ValueError, match="not whole for batch size 3"):
        (B / 2).at(3)
    assert numel((B, 4, 5)) == B * 20 and numel((3, 4)) == 12
    with pytest.raises(ValueError, match="more than one batch dimension"):
        numel((B, B))
    assert TensorType((B, 26, 2), "uint32", sparse=True).concrete(5) == (5, 26, 2)
    with pytest.raises(ValueError, match="dtype 'float8'"):
        TensorType((B,), "float8")
