import sys

import pytest

from hgc.errors import GraphError
from hgc.ir.node import Node
from hgc.ir.types import B, TensorType
from hgc.passes import validate
from hgc.passes.context import PassContext
from tests.passes._graphs import mlp, with_input


def test_valid_graph_passes_unchanged():
    g = with_input(dense_dim=5)
    mlp(g, "dense", [3])
    r = validate.run(g, PassContext())
    assert r.graph is g and not r.changed and r.stats == {"nodes_checked": 3}


def test_malformed_graph_is_rejected():
    g = with_input(dense_dim=5)
    g.add(Node("ReLU", ("dense",), ("bad",), types=(TensorType((B, 4)),)))  # ReLU keeps the shape (B, 5)
    with pytest.raises(GraphError, match=r"ReLU layer 'bad'.*\(B, 4\).*\(B, 5\)"):
        validate.run(g, PassContext())


def test_without_a_verifier_module_the_pass_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "hgc.ir.verify", None)  # makes the import fail as if the file were absent
    g = with_input(dense_dim=5)
    g.add(Node("ReLU", ("dense",), ("bad",), types=(TensorType((B, 4)),)))
    r = validate.run(g, PassContext())
    assert r.stats == {"verifier_missing": 1} and not r.changed
