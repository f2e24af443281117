"""GroupFusedInnerProduct: chains of FusedInnerProducts become one GroupFusedInnerProduct.

A chain is a maximal sequence f0 → f1 → … → fk of FusedInnerProduct nodes (k >= 1) in which the output
of every member but the last is read by exactly one node, the next member, as its only input. Anything
else that reads an intermediate output ends the chain there (that value must stay addressable by its
reader, and the grouped kernel would have to keep it anyway). A member with ``act_type "Non"`` can only
be the last of a chain (HugeCTR allows an identity activation only on a Tail), so it ends the chain too.
The head keeps its one or two inputs (the second is a two-output Interaction's gradient buffer); later
members have exactly one.

The group node is named like the head, its outputs are every member's output in order (so readers of
the last output, and of nothing else, keep their tensor names) and its attributes are ``num_outputs``,
``activations``, ``weight_init_types`` and ``bias_init_types`` taken from the members; its weights are
[W0, b0, W1, b1, …], the members' weights in order. Positions are counted in the stats: one Head and one
Tail per group, Body for the members between, Isolated for fused layers left alone. The frontend's
expansion of GroupDenseLayer (Head, Body…, Tail) is regrouped the same way; nodes are not renamed and
their ``pos_type`` is not rewritten.

Preconditions: FuseInnerProductReLU has run. Ordering: after it, before DeadCodeElimination.
"""
from __future__ import annotations

from collections import Counter

from hgc.errors import ShapeError
from hgc.ir.build import make_node
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.passes._kinds import is_registered
from hgc.passes.context import PassContext, PassResult

NAME = "GroupFusedInnerProduct"

MEMBER = "FusedInnerProduct"
GROUP = "GroupFusedInnerProduct"


def _next(graph: Graph, node: Node) -> Node | None:
    """The member after ``node`` in a chain, if the chain goes on."""
    if node.attrs.get("act_type") == "Non" or len(node.outputs) != 1:
        return None
    users = graph.users(node.outputs[0])
    if len(users) != 1:
        return None
    nxt = users[0]
    if nxt.op != MEMBER or nxt.inputs != node.outputs:
        return None
    return nxt


def chains(graph: Graph) -> list[list[Node]]:
    """Every maximal chain of FusedInnerProducts (length 1 included), in graph order."""
    nodes = graph.find(MEMBER)
    successor = {n.name: _next(graph, n) for n in nodes}
    has_prev = {s.name for s in successor.values() if s is not None}
    out = []
    for n in nodes:
        if n.name in has_prev:
            continue
        chain = [n]
        while (s := successor[chain[-1].name]) is not None:
            chain.append(s)
        out.append(chain)
    return out


def positions(length: int) -> list[str]:
    if length == 1:
        return ["Isolated"]
    return ["Head", *["Body"] * (length - 2), "Tail"]


def group_node(graph: Graph, chain: list[Node]) -> Node:
    attrs = {"num_outputs": tuple(m.attrs["num_output"] for m in chain),
             "activations": tuple(m.attrs["act_type"] for m in chain),
             "weight_init_types": tuple(m.attrs["weight_init_type"] for m in chain),
             "bias_init_types": tuple(m.attrs["bias_init_type"] for m in chain)}
    return make_node(graph, GROUP, chain[0].inputs, [m.outputs[0] for m in chain], attrs, name=chain[0].name)


def run(graph: Graph, ctx: PassContext) -> PassResult:
    g = graph.copy()
    stats: Counter[str] = Counter()
    for chain in chains(g):
        if len(chain) < 2:
            stats["isolated"] += 1
            continue
        if not is_registered(GROUP):
            stats["op_missing"] += 1
            continue
        try:
            node = group_node(g, chain)
        except ShapeError:
            stats["skipped"] += 1
            continue
        g.replace([m.name for m in chain], [node])
        stats["groups"] += 1
        stats["grouped_layers"] += len(chain)
        for pos in positions(len(chain)):
            stats[pos.lower()] += 1
    stats.setdefault("groups", 0)
    stats["fusions"] = stats["groups"]
    return PassResult(g, stats["groups"] > 0, dict(stats))
