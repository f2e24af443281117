"""Tiny graphs for the pass tests, built with hgc.ir.build.add_node (so every node is checked)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs
from hgc.ir.registry import RefContext, get_op


def with_input(dense_dim: int = 13, label_dim: int = 1, sparse: Sequence[tuple[str, int, int]] = (),
               meta: Mapping[str, Any] | None = None) -> Graph:
    """A graph holding only the Input node: 'label', 'dense' and the sparse inputs (name, slots, nnz)."""
    g = Graph(meta)
    add_node(g, "Input", [], ["label", "dense", *(s[0] for s in sparse)], {
        "label_dims": (label_dim,), "label_names": ("label",), "dense_dim": dense_dim, "dense_name": "dense",
        "sparse": tuple(Attrs(name=n, slot_num=k, nnz_per_slot=(nnz,) * k, is_fixed_length=False)
                        for n, k, nnz in sparse),
        "key_dtype": "int64"}, name="data")
    return g


def embedding(g: Graph, op: str, bottom: str, top: str, vec: int, *, workspace: float = 1,
              sizes: Sequence[int] = (), optimizer: Mapping[str, Any] | None = None, **extra: Any) -> None:
    attrs: dict[str, Any] = {"workspace_size_per_gpu_in_mb": workspace, "embedding_vec_size": vec,
                             "combiner": "sum", "slot_size_array": tuple(sizes),
                             "optimizer": None if optimizer is None else Attrs(optimizer), **extra}
    add_node(g, op, [bottom], [top], attrs)


def mlp(g: Graph, x: str, widths: Sequence[int], prefix: str = "fc", relu: bool = True) -> str:
    """InnerProduct (+ ReLU) layers fc1, relu1, fc2, relu2, ...; returns the last tensor name."""
    for i, w in enumerate(widths, 1):
        add_node(g, "InnerProduct", [x], [f"{prefix}{i}"], {"num_output": w})
        x = f"{prefix}{i}"
        if relu:
            add_node(g, "ReLU", [x], [f"relu_{prefix}{i}"])
            x = f"relu_{prefix}{i}"
    return x


def ops_of(g: Graph) -> list[str]:
    return [n.op for n in g.nodes()]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def evaluate(graph: Graph, feeds: Mapping[str, np.ndarray], weights: Mapping[str, list[np.ndarray]],
             out_grads: Mapping[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run the reference semantics node by node (float64): every tensor's value and, when
    ``out_grads`` seeds some tensors' gradients, every tensor's gradient (fan-out gradients summed)."""
    ctx = RefContext(training=True, rng=np.random.default_rng(0))
    values: dict[str, np.ndarray] = dict(feeds)
    saved: dict[str, Any] = {}
    nodes = [n for n in graph.nodes() if get_op(n.op).kind != "input"]
    for n in nodes:
        ys, saved[n.name] = get_op(n.op).forward(ctx, n.attrs, [values[t] for t in n.inputs],
                                                 list(weights.get(n.name, [])))
        values.update(zip(n.outputs, ys))
    grads: dict[str, Any] = dict(out_grads or {})
    if out_grads is None:
        return values, grads
    for n in reversed(nodes):
        gys = [grads.get(t, np.zeros_like(values[t])) for t in n.outputs]
        gxs, _ = get_op(n.op).backward(ctx, n.attrs, saved[n.name], gys)
        for t, gx in zip(n.inputs, gxs):
            if gx is not None:
                grads[t] = grads[t] + gx if t in grads else gx
    return values, grads


def random_weights(graph: Graph, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Random float64 weights for every node that has some, keyed by node name."""
    out = {}
    for n in graph.nodes():
        op = get_op(n.op)
        specs = op.weights(n.attrs, [graph.tensor_type(t) for t in n.inputs]) if op.kind != "input" else []
        if specs:
            out[n.name] = [rng.uniform(-1, 1, size=s.shape) for s in specs]
    return out
