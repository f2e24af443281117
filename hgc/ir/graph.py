"""The dataflow graph: a networkx ``MultiDiGraph`` behind a small API.

Graph nodes are keyed by :attr:`Node.name` and carry the frozen :class:`Node` record. An edge
``producer → user`` exists per tensor the user reads (edge key = tensor name). Order is
deterministic: :meth:`Graph.nodes` is a topological order that breaks ties by insertion sequence.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from hgc.errors import GraphError
from hgc.ir.node import Attrs, Node
from hgc.ir.types import TensorType


class Graph:
    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self._g = nx.MultiDiGraph()
        self._producer: dict[str, tuple[str, int]] = {}
        self._seq = 0.0
        self.meta = Attrs(meta or {})  # graph-level facts (model name, batch sizes, vvgpu, precision …)

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def __contains__(self, name: str) -> bool:
        return name in self._g

    def node(self, name: str) -> Node:
        try:
            return self._g.nodes[name]["node"]
        except KeyError:
            raise GraphError(f"no node named '{name}' in the graph") from None

    def nodes(self) -> list[Node]:
        """All nodes in deterministic topological order."""
        order = nx.lexicographical_topological_sort(self._g, key=lambda n: self._g.nodes[n]["seq"])
        return [self._g.nodes[n]["node"] for n in order]

    def has_tensor(self, tensor: str) -> bool:
        return tensor in self._producer

    def tensors(self) -> dict[str, TensorType]:
        """Every tensor name → its type, in node order."""
        return {t: ty for n in self.nodes() for t, ty in zip(n.outputs, n.types)}

    def tensor_type(self, tensor: str) -> TensorType:
        name, i = self._lookup(tensor)
        return self.node(name).types[i]

    def producer(self, tensor: str) -> Node:
        return self.node(self._lookup(tensor)[0])

    def users(self, tensor: str) -> list[Node]:
        """Nodes that read ``tensor`` (each once), in graph order."""
        name, _ = self._lookup(tensor)
        seen = {v for _, v, k in self._g.out_edges(name, keys=True) if k == tensor}
        return [n for n in self.nodes() if n.name in seen]

    def find(self, op: str) -> list[Node]:
        return [n for n in self.nodes() if n.op == op]

    def _lookup(self, tensor: str) -> tuple[str, int]:
        try:
            return self._producer[tensor]
        except KeyError:
            raise GraphError(f"tensor '{tensor}' is not produced by any node") from None

    # -- mutation ----------------------------------------------------------------------------
    def add(self, node: Node, *, seq: float | None = None) -> Node:
        """Append ``node``. Its inputs must already be produced; its outputs and name must be new."""
        if node.name in self._g:
            raise GraphError(f"{node.label()}: a node named '{node.name}' already exists")
        for t in node.inputs:
            if t not in self._producer:
                raise GraphError(
                    f"{node.label()}: bottom tensor '{t}' is not produced by any earlier layer "
                    f"(known tensors: {', '.join(self._producer) or 'none'})")
        for t in node.outputs:
            if t in self._producer:
                raise GraphError(
                    f"{node.label()}: top tensor '{t}' is already produced by "
                    f"{self.producer(t).label()}; top names must be unique")
            if t in node.inputs:
                raise GraphError(f"{node.label()}: tensor '{t}' is both a bottom and a top")
        if len(set(node.outputs)) != len(node.outputs):
            raise GraphError(f"{node.label()}: duplicate top names {list(node.outputs)}")
        if len(node.types) != len(node.outputs):
            raise GraphError(f"{node.label()}: {len(node.outputs)} outputs but {len(node.types)} types")
        if seq is None:
            self._seq += 1
            seq = self._seq
        self._g.add_node(node.name, node=node, seq=seq)
        for i, t in enumerate(node.outputs):
            self._producer[t] = (node.name, i)
        for j, t in enumerate(node.inputs):
            src, i = self._producer[t]
            if not self._g.has_edge(src, node.name, key=t):
                self._g.add_edge(src, node.name, key=t, tensor=t)
        return node

    def erase(self, name: str) -> None:
        """Remove a node whose outputs nobody reads."""
        node = self.node(name)
        for t in node.outputs:
            users = [v for _, v, k in self._g.out_edges(name, keys=True) if k == t]
            if users:
                raise GraphError(f"cannot erase {node.label()}: tensor '{t}' is read by {users}")
        for t in node.outputs:
            del self._producer[t]
        self._g.remove_node(name)

    def replace(self, old: Iterable[str], new: Iterable[Node]) -> None:
        """Replace the nodes named ``old`` by ``new`` (which take over their position in the order).

        Tensors that ``old`` produced and that remaining nodes read must be produced by ``new``
        with the same type.
        """
        old = list(old)
        new = list(new)
        seq0 = min(self._g.nodes[n]["seq"] for n in old)
        readers = self._external_reads(old)
        saved = {n: self.node(n) for n in old}
        produced = {t: ty for nd in new for t, ty in zip(nd.outputs, nd.types)}
        for t, ty in readers.items():
            if t not in produced:
                raise GraphError(f"replace {old}: tensor '{t}' is still read but no new node produces it")
            if produced[t] != ty:
                raise GraphError(f"replace {old}: tensor '{t}' changes type {ty} → {produced[t]}")
        # detach edges to outside users, drop the old nodes, add the new ones, re-attach
        outside = [(u, v, k) for n in old for u, v, k in self._g.out_edges(n, keys=True) if v not in saved]
        for n in old:
            for t in saved[n].outputs:
                del self._producer[t]
            self._g.remove_node(n)
        for i, nd in enumerate(new):
            self.add(nd, seq=seq0 + i / (len(new) + 1))
        for _, v, k in outside:
            src, _ = self._producer[k]
            self._g.add_edge(src, v, key=k, tensor=k)

    def _external_reads(self, names: list[str]) -> dict[str, TensorType]:
        inside = set(names)
        out = {}
        for n in names:
            for _, v, k in self._g.out_edges(n, keys=True):
                if v not in inside:
                    out[k] = self.tensor_type(k)
        return out

    def copy(self) -> Graph:
        g = Graph(self.meta)
        for n in self.nodes():
            g.add(n)
        return g

    def renumber(self) -> None:
        """Make the insertion sequence equal the current topological order (after rewrites)."""
        for i, n in enumerate(self.nodes(), 1):
            self._g.nodes[n.name]["seq"] = float(i)
        self._seq = float(len(self))

    # -- equality ----------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.meta == other.meta and self.nodes() == other.nodes()

    def __repr__(self) -> str:
        return f"Graph({len(self)} nodes)"

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The underlying networkx graph (read it; mutate through this class)."""
        return self._g
