"""Deterministic text form of a graph (the inverse is :func:`hgc.ir.parser.parse_graph`).

One header line holds the graph meta as JSON; then one line per node, in :meth:`Graph.nodes` order::

    graph {"model_name": "wdl"}
    InnerProduct(concat1) -> fc1: float32(B, 1024) {"bias_init_type": "Default", "num_output": 1024, ...}
    split = Slice(fc1) -> s0: float32(B, 512), s1: float32(B, 512) {"ranges": [[0, 512], [512, 1024]]}

``name =`` appears only when the node's name is not its default (the first top name). Names that are not
plain identifiers are written as JSON strings. Attribute values are JSON (tuples as lists, nested Attrs
as objects, floats in their shortest exact form), so the text is a faithful key for caches and diffs.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from hgc.errors import GraphError
from hgc.ir.graph import Graph
from hgc.ir.node import Node

HEADER = "graph"
BARE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def plain(value: Any, where: str = "value") -> Any:
    """A JSON-ready copy of an attribute value: Attrs/mappings → dict, tuples → lists.

    Raises GraphError naming ``where`` for values JSON cannot hold (sets, arrays, Batch dims …).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise GraphError(f"{where}: key {k!r} is not a string")
            out[k] = plain(v, f"{where}.{k}")
        return out
    raise GraphError(f"{where}: value {value!r} of type {type(value).__name__} has no JSON form")


def dumps(value: Any, where: str = "value") -> str:
    """One-line JSON of ``value`` (keys in the mapping's own order, ASCII only)."""
    return json.dumps(plain(value, where), ensure_ascii=True, allow_nan=True)


def name_str(name: str) -> str:
    """A tensor/node/op name as the text form writes it: bare when it is an identifier, else quoted."""
    return name if BARE_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=True)


def node_line(node: Node) -> str:
    default_name = node.outputs[0] if node.outputs else node.op
    head = "" if node.name == default_name else f"{name_str(node.name)} = "
    ins = ", ".join(name_str(t) for t in node.inputs)
    outs = ", ".join(f"{name_str(t)}: {ty}" for t, ty in zip(node.outputs, node.types))
    line = f"{head}{name_str(node.op)}({ins}) -> {outs}".rstrip()
    if len(node.attrs):
        line += " " + dumps(node.attrs, f"{node.label()} attrs")
    return line


def print_graph(graph: Graph) -> str:
    """The text form of ``graph``: a header line with its meta, then one line per node (newline-ended)."""
    for node in graph.nodes():
        if len(node.types) != len(node.outputs):
            raise GraphError(f"{node.label()}: {len(node.outputs)} outputs but {len(node.types)} types")
    lines = [f"{HEADER} {dumps(graph.meta, 'graph meta')}"]
    lines += [node_line(n) for n in graph.nodes()]
    return "\n".join(lines) + "\n"
