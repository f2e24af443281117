"""DeadCodeElimination: drop nodes whose outputs never reach a loss.

A node is kept when it is a loss, when one of its outputs reaches a loss, or when it is an Input or an
embedding (they hold the data pipeline and the tables a checkpoint must save even if no loss reads
them) — and so is everything that feeds a kept node. All other nodes are removed, readers first. A
graph without any loss (an inference graph) is left as it is: there is nothing to measure liveness by.
A multi-output node is kept whole when any of its outputs is live (for example an Interaction whose
gradient-buffer alias nobody reads).

Preconditions: a verified graph. Ordering: after the fusions (a fusion can leave nothing dead, but a
user's unused branch is dropped before placement and buffer planning look at the graph).
"""
from __future__ import annotations

import networkx as nx

from hgc.ir.graph import Graph
from hgc.passes._kinds import is_embedding, is_input, is_loss
from hgc.passes.context import PassContext, PassResult

NAME = "DeadCodeElimination"


def live_nodes(graph: Graph) -> set[str] | None:
    """Names of the nodes to keep, or None when the graph has no loss."""
    nodes = graph.nodes()
    losses = [n.name for n in nodes if is_loss(n)]
    if not losses:
        return None
    roots = losses + [n.name for n in nodes if is_input(n) or is_embedding(n)]
    live = set(roots)
    for r in roots:
        live |= nx.ancestors(graph.nx, r)
    return live


def run(graph: Graph, ctx: PassContext) -> PassResult:
    live = live_nodes(graph)
    if live is None:
        return PassResult(graph, False, {"removed": 0, "no_loss": 1})
    g = graph.copy()
    dead = [n.name for n in reversed(g.nodes()) if n.name not in live]
    for name in dead:
        g.erase(name)
    return PassResult(g, bool(dead), {"removed": len(dead)})
