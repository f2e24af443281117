"""Small helpers for op tests: a graph holding given input tensors, and a JSON round trip."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hgc.ir.build import check_attrs
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.registry import get_op
from hgc.ir.types import TensorType


def graph_with(**tensors: TensorType) -> Graph:
    """A graph whose 'data' node produces the named tensors."""
    g = Graph()
    g.add(Node("Input", (), tuple(tensors), types=tuple(tensors.values()), name="data"))
    return g


def json_round_trip(op: str, attrs: Mapping[str, Any]) -> tuple[Attrs, dict[str, Any]]:
    """Write the checked attrs as JSON text, read them back; return (read attrs, written fields)."""
    full = check_attrs(op, attrs)
    written = json.loads(json.dumps(get_op(op).json_write(full)))
    back = check_attrs(op, get_op(op).json_read(written))
    assert back == full, f"{op}: {dict(full)} -> {written} -> {dict(back)}"
    return back, written
