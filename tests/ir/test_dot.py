"""DOT export: well-formed structure, labels, escaping and determinism (no graphviz needed)."""
from __future__ import annotations

import re

from hgc.ir.build import add_node
from hgc.ir.dot import to_dot
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.types import B, TensorType

QSTR = r'"(?:[^"\\]|\\.)*"'
NODE = re.compile(rf"^  ({QSTR}) \[label=({QSTR})(?:, [a-z]+=(?:{QSTR}|[a-z0-9]+))*\];$")
EDGE = re.compile(rf"^  ({QSTR}) -> ({QSTR}) \[label=({QSTR})\];$")


def unquote(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s[1:-1])


def parse_dot(text: str) -> tuple[str, dict[str, str], list[tuple[str, str, str]]]:
    """A small reader for the DOT subset to_dot writes: (title, node → label, edges)."""
    lines = text.rstrip("\n").split("\n")
    head = re.fullmatch(rf"digraph ({QSTR}) \{{", lines[0])
    assert head, lines[0]
    assert lines[-1] == "}"
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for line in lines[1:-1]:
        if re.fullmatch(r"  (rankdir|node|edge)\b.*;", line):
            continue
        if m := EDGE.match(line):
            edges.append((unquote(m.group(1)), unquote(m.group(2)), unquote(m.group(3))))
        elif m := NODE.match(line):
            name = unquote(m.group(1))
            assert name not in nodes, f"node {name} declared twice"
            nodes[name] = unquote(m.group(2))
        else:
            raise AssertionError(f"not a DOT statement: {line!r}")
    for u, v, _ in edges:
        assert u in nodes and v in nodes, (u, v)
    return unquote(head.group(1)), nodes, edges


def small() -> Graph:
    g = Graph({"model_name": "tiny"})
    g.add(Node("Input", (), ("label", "dense"), types=(TensorType((B, 1)), TensorType((B, 13))), name="data"))
    add_node(g, "InnerProduct", ["dense"], ["fc1"], {"num_output": 7})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "Concat", ["relu1", "dense"], ["cat"])
    return g


def test_structure_and_labels() -> None:
    title, nodes, edges = parse_dot(to_dot(small()))
    assert title == "tiny"
    assert nodes == {"data": "Input\ndata", "fc1": "InnerProduct\nfc1", "relu1": "ReLU\nrelu1",
                     "cat": "Concat\ncat"}
    assert edges == [("data", "fc1", "dense\nfloat32(B, 13)"), ("fc1", "relu1", "fc1\nfloat32(B, 7)"),
                     ("relu1", "cat", "relu1\nfloat32(B, 7)"), ("data", "cat", "dense\nfloat32(B, 13)")]


def test_escaping_and_default_title() -> None:
    g = Graph()
    g.add(Node("Input", (), ('a "q"',), types=(TensorType((26 * B, 11)),), name='in\\put'))
    g.add(Node("ReLU", ('a "q"',), ("r\nx",), types=(TensorType((26 * B, 11)),)))
    text = to_dot(g)
    title, nodes, edges = parse_dot(text)
    assert title == "hgc"
    assert nodes['in\\put'] == 'Input\nin\\put' and nodes["r\nx"] == "ReLU\nr\nx"
    assert edges == [('in\\put', "r\nx", 'a "q"\nfloat32(26*B, 11)')]
    assert to_dot(g, name="custom").startswith('digraph "custom" {')


def test_deterministic() -> None:
    assert to_dot(small()) == to_dot(small()) == to_dot(small().copy())
