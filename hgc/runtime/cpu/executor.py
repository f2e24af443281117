"""Run one graph forward and backward on the host with the ops' reference semantics.

The executor holds no optimizer or data-reader logic: it maps a :class:`Batch` to tensors, runs the nodes
in order, and on ``backward`` returns dense weight gradients (per node) and embedding gradients (per
embedding node) for the trainer to apply.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.registry import RefContext, get_op
from hgc.runtime.data.batch import Batch, SparseBatch


class Embedding(Protocol):
    def forward(self, sparse: SparseBatch, training: bool) -> tuple[np.ndarray, Any]: ...
    def backward(self, saved: Any, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class StepResult:
    losses: dict[str, float]  # loss node name → its mean loss
    tensors: dict[str, Any]
    saved: dict[str, Any] = field(default_factory=dict)


def take_rows(batch: Batch, n: int) -> Batch:
    """The first n rows of a batch (drops padding)."""
    if n == batch.n:
        return batch
    sparse = []
    for s in batch.sparse:
        end = int(s.row_offsets[n * s.slot_num])
        sparse.append(SparseBatch(s.row_offsets[: n * s.slot_num + 1], s.keys[:end], s.slot_num))
    return Batch(n, batch.label[:n], batch.dense[:n], sparse)


class CpuExecutor:
    def __init__(self, graph: Graph, weights: dict[str, list[np.ndarray]],
                 embeddings: Mapping[str, Embedding], seed: int = 0) -> None:
        self.graph = graph
        self.nodes = graph.nodes()
        self.weights = weights
        self.embeddings = dict(embeddings)
        self.state: dict[str, dict[str, Any]] = {n.name: {} for n in self.nodes}
        self.seed = int(seed)
        self.step = 0  # training forwards so far; with the seed it fixes the random numbers of a step
        self.rng = np.random.default_rng([self.seed, 7919, 0])
        self.losses = [n for n in self.nodes if get_op(n.op).kind == "loss"]
        self._last: StepResult | None = None
        self.last_grads: dict[str, np.ndarray] = {}

    # -- forward ---------------------------------------------------------------------------
    def forward(self, batch: Batch, training: bool) -> StepResult:
        """Run every node on ``batch``. A training forward counts one step and draws its random numbers
        (Dropout masks) from a generator of (seed, step), so a run resumed at step n repeats them."""
        if training:
            self.step += 1
            self.rng = np.random.default_rng([self.seed, 7919, self.step])
        values: dict[str, Any] = {}
        saved: dict[str, Any] = {}
        for node in self.nodes:
            op = get_op(node.op)
            if op.kind == "input":
                values.update(self._inputs(node, batch))
            elif op.kind == "embedding":
                out, saved[node.name] = self.embeddings[node.name].forward(values[node.inputs[0]], training)
                values[node.outputs[0]] = out
            else:
                ctx = RefContext(training=training, rng=self.rng, state=self.state[node.name])
                xs = [values[t] for t in node.inputs]
                ys, saved[node.name] = op.forward(ctx, node.attrs, xs, self.weights.get(node.name, []))
                values.update(zip(node.outputs, ys))
        losses = {n.name: float(np.asarray(values[n.outputs[0]]).reshape(-1)[0]) for n in self.losses}
        self._last = StepResult(losses, values, saved)
        return self._last

    def _inputs(self, node: Node, batch: Batch) -> dict[str, Any]:
        a = node.attrs
        out: dict[str, Any] = {}
        col = 0
        for name, dim in zip(a["label_names"], a["label_dims"]):
            out[name] = batch.label[:, col:col + dim]
            col += dim
        if batch.label.shape[1] != col:
            raise ValueError(f"batch has {batch.label.shape[1]} label columns, the Input layer expects {col}")
        out[a["dense_name"]] = batch.dense
        if len(batch.sparse) != len(a["sparse"]):
            raise ValueError(f"batch has {len(batch.sparse)} sparse inputs, the Input layer expects "
                             f"{len(a['sparse'])}")
        for spec, sb in zip(a["sparse"], batch.sparse):
            out[spec["name"]] = sb
        return out

    # -- backward --------------------------------------------------------------------------
    def backward(self, loss_weights: Mapping[str, float] | None = None) -> tuple[dict[str, list[np.ndarray]],
                                                                               dict[str, tuple]]:
        """Gradients of Σ w·loss: (dense weight grads per node, (rows, row grads) per embedding)."""
        step = self._last
        if step is None:
            raise RuntimeError("backward() before forward()")
        values, saved = step.tensors, step.saved
        grads: dict[str, np.ndarray] = {}
        for n in self.losses:
            w = 1.0 if loss_weights is None else float(loss_weights.get(n.name, 1.0))
            grads[n.outputs[0]] = np.full((1, 1), w, dtype=np.asarray(values[n.outputs[0]]).dtype)
        wgrads: dict[str, list[np.ndarray]] = {}
        egrads: dict[str, tuple] = {}
        for node in reversed(self.nodes):
            op = get_op(node.op)
            if op.kind == "input":
                continue
            gys = [grads.get(t) for t in node.outputs]
            if all(g is None for g in gys):
                continue
            gys = [np.zeros_like(values[t]) if g is None else g for t, g in zip(node.outputs, gys)]
            if op.kind == "embedding":
                egrads[node.name] = self.embeddings[node.name].backward(saved[node.name], gys[0])
                continue
            ctx = RefContext(training=True, rng=self.rng, state=self.state[node.name])
            gxs, gws = op.backward(ctx, node.attrs, saved[node.name], gys)
            if gws:
                wgrads[node.name] = list(gws)
            for t, g in zip(node.inputs, gxs):
                if g is None:
                    continue
                src = values[t]
                if isinstance(src, SparseBatch):
                    continue
                g = np.asarray(g).reshape(np.shape(src))
                grads[t] = grads[t] + g if t in grads else g
        self.last_grads = grads
        return wgrads, egrads
