"""Helpers for the tests of the model-level ops: a source graph, error checks, JSON round trips."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node, check_attrs
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.registry import get_op
from hgc.ir.types import TensorType


def source(**tensors: TensorType) -> Graph:
    """A graph whose 'data' node produces the named tensors."""
    g = Graph()
    g.add(Node("Input", (), tuple(tensors), types=tuple(tensors.values()), name="data"))
    return g


def shape_error(op: str, tensors: Mapping[str, TensorType], attrs: Mapping[str, Any], top: str,
                rule: str, outputs: Sequence[str] | None = None) -> None:
    """Adding ``op`` on ``tensors`` fails with a ShapeError naming the layer, every input and ``rule``."""
    g = source(**tensors)
    with pytest.raises(ShapeError) as info:
        add_node(g, op, list(tensors), list(outputs or [top]), attrs)
    msg = str(info.value)
    assert f"{op} layer '{top}'" in msg, msg
    for name, ty in tensors.items():
        assert f"'{name}' {ty}" in msg, msg
    assert re.search(rule, msg), f"{rule!r} not in {msg!r}"


def round_trip(op: str, attrs: Mapping[str, Any], entry: Mapping[str, Any] | None = None
               ) -> tuple[Attrs, dict[str, Any]]:
    """json_write → JSON text → json_read gives the same checked attrs; returns (attrs, written)."""
    full = check_attrs(op, attrs)
    written = json.loads(json.dumps(get_op(op).json_write(full)))
    back = check_attrs(op, get_op(op).json_read({**(entry or {}), **written}))
    assert back == full, f"{op}: {dict(full)} -> {written} -> {dict(back)}"
    return back, written
