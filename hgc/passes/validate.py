"""Validate: run the IR verifier on the graph as the frontend (or the JSON loader) built it.

Preconditions: none; this is the first pass, so later passes may assume a well-formed graph.
Ordering: first in the default pipeline. It never changes the graph.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from hgc.ir.graph import Graph
from hgc.passes.context import PassContext, PassResult

NAME = "Validate"


def load_verifier() -> Callable[[Graph], None] | None:
    """``hgc.ir.verify.verify``, or None while that module is not part of the build."""
    try:
        module = importlib.import_module("hgc.ir.verify")
    except ModuleNotFoundError as e:
        if e.name == "hgc.ir.verify":
            return None
        raise
    return module.verify


def run(graph: Graph, ctx: PassContext) -> PassResult:
    verify = load_verifier()
    if verify is None:
        return PassResult(graph, False, {"verifier_missing": 1})
    verify(graph)
    return PassResult(graph, False, {"nodes_checked": len(graph)})
