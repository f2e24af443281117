"""Dense weights in HugeCTR's file order, independent of how passes regroup layers.

Weights are initialised on the graph as the user built it (one generator per weighted layer, seeded from
the solver seed and the layer's position), then handed out to any graph whose weighted nodes cover the same
weights in the same order (fusion passes keep order and shapes).
"""
from __future__ import annotations

import numpy as np

from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.registry import WeightSpec, get_op


def weight_specs(graph: Graph, node: Node) -> list[WeightSpec]:
    op = get_op(node.op)
    in_types = [graph.tensor_type(t) for t in node.inputs]
    return list(op.weights(node.attrs, in_types))


def init_dense_weights(graph: Graph, seed: int) -> list[np.ndarray]:
    """All trainable dense weights of ``graph`` in file order, initialised with each op's HugeCTR initialiser."""
    out: list[np.ndarray] = []
    for i, node in enumerate(graph.nodes()):
        op = get_op(node.op)
        if op.kind not in ("dense", "loss") or not weight_specs(graph, node):
            continue
        in_types = [graph.tensor_type(t) for t in node.inputs]
        rng = np.random.default_rng([seed, i])
        ws = op.init(node.attrs, in_types, rng) if op.init else []
        specs = weight_specs(graph, node)
        if [tuple(w.shape) for w in ws] != [tuple(s.shape) for s in specs]:
            raise AssertionError(f"{node.label()}: init shapes {[w.shape for w in ws]} differ from "
                                 f"weight specs {[s.shape for s in specs]}")
        out.extend(np.ascontiguousarray(w, np.float32) for w in ws)
    return out


def split_weights(graph: Graph, flat: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Hand the flat file-order list out to ``graph``'s weighted nodes (by node name)."""
    out: dict[str, list[np.ndarray]] = {}
    i = 0
    for node in graph.nodes():
        specs = weight_specs(graph, node) if get_op(node.op).kind in ("dense", "loss") else []
        if not specs:
            continue
        part = flat[i:i + len(specs)]
        for s, w in zip(specs, part):
            if tuple(w.shape) != tuple(s.shape):
                raise ValueError(f"{node.label()}: weight '{s.name}' expects shape {s.shape}, got {w.shape}")
        if len(part) != len(specs):
            raise ValueError(f"{node.label()}: {len(specs)} weights expected, only {len(part)} left")
        out[node.name] = part
        i += len(specs)
    if i != len(flat):
        raise ValueError(f"{len(flat) - i} weights left over after handing out to the graph's layers")
    return out
