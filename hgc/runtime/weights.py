"""Dense weights in HugeCTR's file order, independent of how passes regroup layers.

Weights are initialised on the graph as the user built it (one generator per weighted layer, seeded from
the solver seed and the layer's position) and stay in that order: it is the dense file's order (facts §5.2).
The compiled graph's weighted nodes then take theirs by name: a fused node keeps the name of the first layer
it absorbed (FusedInnerProduct, GroupFusedInnerProduct) and takes the weights of that layer and of the layers
after it, as many as its own weight list holds. Layers a pass removed keep their (untrained) weights in the
file.
"""
from __future__ import annotations

import numpy as np

from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.registry import WeightSpec, get_op


def weight_specs(graph: Graph, node: Node) -> list[WeightSpec]:
    """The trainable dense weights of ``node`` (none for inputs and embeddings)."""
    op = get_op(node.op)
    if op.kind not in ("dense", "loss"):
        return []
    return list(op.weights(node.attrs, [graph.tensor_type(t) for t in node.inputs]))


def init_dense_weights(graph: Graph, seed: int) -> list[np.ndarray]:
    """All trainable dense weights of ``graph`` in file order, initialised with each op's HugeCTR initialiser."""
    out: list[np.ndarray] = []
    for i, node in enumerate(graph.nodes()):
        specs = weight_specs(graph, node)
        if not specs:
            continue
        op = get_op(node.op)
        ws = op.init(node.attrs, [graph.tensor_type(t) for t in node.inputs], np.random.default_rng([seed, i]))
        if [tuple(w.shape) for w in ws] != [tuple(s.shape) for s in specs]:
            raise AssertionError(f"{node.label()}: init shapes {[w.shape for w in ws]} differ from "
                                 f"weight specs {[s.shape for s in specs]}")
        out.extend(np.ascontiguousarray(w, np.float32) for w in ws)
    return out


def weight_slices(user: Graph, compiled: Graph, flat: list[np.ndarray]) -> dict[str, slice]:
    """Where each weighted node of ``compiled`` finds its weights in the flat file-order list of ``user``'s
    weights (checked against the node's weight shapes)."""
    start: dict[str, int] = {}
    i = 0
    for node in user.nodes():
        start[node.name] = i
        i += len(weight_specs(user, node))
    if i != len(flat):
        raise ValueError(f"the graph has {i} dense weights, {len(flat)} were given")
    out: dict[str, slice] = {}
    for node in compiled.nodes():
        specs = weight_specs(compiled, node)
        if not specs:
            continue
        if node.name not in start:
            raise ValueError(f"{node.label()}: no layer of the model is named '{node.name}', so its weights "
                             f"have no place in the dense file")
        span = slice(start[node.name], start[node.name] + len(specs))
        part = flat[span]
        if [tuple(w.shape) for w in part] != [tuple(s.shape) for s in specs]:
            raise ValueError(f"{node.label()}: weights {[s.name for s in specs]} expect shapes "
                             f"{[tuple(s.shape) for s in specs]}, the model's layers from '{node.name}' on hold "
                             f"{[tuple(w.shape) for w in part]}")
        out[node.name] = span
    return out
