"""The IR verifier: structural and type checks that every graph must pass (run after each pass).

Checks, in order: the graph is acyclic; walking the nodes in order, every op is registered, takes that
many inputs, reads only tensors produced by an earlier node, produces tensors no other node produces
and has one type per output; its attributes are complete and pass their rules; re-running the op's
shape inference on the input types gives back the recorded types (not for input ops, whose types come
from the data); and no node reads the output of a loss.
"""
from __future__ import annotations

import networkx as nx

from hgc.errors import GraphError, ShapeError
from hgc.ir.build import check_attrs
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.registry import OpDef, get_op
from hgc.ir.types import TensorType


def _types_str(types: tuple[TensorType, ...] | list[TensorType]) -> str:
    return "[" + ", ".join(str(t) for t in types) + "]"


def _check_acyclic(graph: Graph) -> None:
    g = graph.nx
    if nx.is_directed_acyclic_graph(g):
        return
    cycle = nx.find_cycle(g)
    path = " -> ".join(f"'{u}' ({k})" for u, _, k in cycle) + f" -> '{cycle[0][0]}'"
    raise GraphError(f"verify: the graph has a cycle: {path}")


def _op(node: Node) -> OpDef:
    try:
        return get_op(node.op)
    except KeyError as e:
        raise GraphError(f"verify: {node.label()}: {e.args[0]}") from None


def _check_node(graph: Graph, node: Node, op: OpDef, produced: dict[str, tuple[str, TensorType]]) -> None:
    label = f"verify: {node.label()}"
    lo, hi = op.num_inputs
    if len(node.inputs) < lo or (hi is not None and len(node.inputs) > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
        raise GraphError(f"{label}: {node.op} takes {want} bottom tensors, got {len(node.inputs)}: "
                         f"{list(node.inputs)}")
    for t in node.inputs:
        if t not in produced:
            later = [n.label() for n in graph.nodes() if t in n.outputs]
            where = f"it is produced later, by {later[0]}" if later else "no node produces it"
            raise GraphError(f"{label}: bottom tensor '{t}' is not produced by an earlier node ({where})")
    if len(set(node.outputs)) != len(node.outputs):
        dups = sorted({t for t in node.outputs if node.outputs.count(t) > 1})
        raise GraphError(f"{label}: top names {dups} appear more than once in {list(node.outputs)}")
    for t in node.outputs:
        if t in produced:
            raise GraphError(f"{label}: top tensor '{t}' is already produced by node '{produced[t][0]}'; "
                             f"top names must be unique")
        if t in node.inputs:
            raise GraphError(f"{label}: tensor '{t}' is both a bottom and a top")
    if len(node.types) != len(node.outputs):
        raise GraphError(f"{label}: {len(node.outputs)} tops {list(node.outputs)} but "
                         f"{len(node.types)} types")

    try:
        full = check_attrs(node.op, node.attrs, node.label())
    except (TypeError, ValueError) as e:
        raise GraphError(f"verify: {e}") from None
    missing = sorted(set(full) - set(node.attrs))
    if missing:
        raise GraphError(f"{label}: attribute(s) {missing} are missing (nodes hold every attribute, "
                         f"defaults included; build them with hgc.ir.build.make_node)")

    if op.kind == "input":
        return
    in_types = [produced[t][1] for t in node.inputs]
    try:
        inferred = tuple(op.infer(node.attrs, in_types))
    except (ShapeError, ValueError, KeyError, TypeError) as e:
        shapes = ", ".join(f"'{t}' {ty}" for t, ty in zip(node.inputs, in_types))
        raise GraphError(f"{label}: shape inference fails: {e} [inputs: {shapes}]") from None
    if inferred != node.types:
        raise GraphError(f"{label}: recorded output types {_types_str(node.types)} differ from the "
                         f"inferred {_types_str(inferred)} for inputs "
                         f"{_types_str(in_types)}")


def verify(graph: Graph) -> None:
    """Raise GraphError naming the first node (and rule) that makes ``graph`` malformed."""
    _check_acyclic(graph)
    produced: dict[str, tuple[str, TensorType]] = {}
    nodes = graph.nodes()
    ops: dict[str, OpDef] = {}
    for node in nodes:
        op = ops[node.name] = _op(node)
        _check_node(graph, node, op, produced)
        for t, ty in zip(node.outputs, node.types):
            produced[t] = (node.name, ty)
    for node in nodes:
        if ops[node.name].kind != "loss":
            continue
        for t in node.outputs:
            readers = [n.label() for n in nodes if t in n.inputs]
            if readers:
                raise GraphError(f"verify: {node.label()}: the loss '{t}' is read by {', '.join(readers)}; "
                                 f"a loss must have no users")
