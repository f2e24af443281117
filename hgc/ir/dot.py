"""Graphviz DOT text of a graph: one box per node (op and name), one edge per tensor read (name and type).

The text is deterministic (node order, then input order), so dumps of two runs can be diffed.
"""
from __future__ import annotations

from hgc.ir.graph import Graph
from hgc.ir.registry import get_op

_KIND_STYLE = {
    "input": 'shape=parallelogram, style=filled, fillcolor="#dae8fc"',
    "embedding": 'shape=box3d, style=filled, fillcolor="#fff2cc"',
    "loss": 'shape=octagon, style=filled, fillcolor="#f8cecc"',
}


def quote(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, newlines as ``\\n``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _kind(op: str) -> str:
    try:  # unregistered ops are drawn too, as plain boxes
        return get_op(op).kind
    except KeyError:
        return "dense"


def to_dot(graph: Graph, name: str | None = None) -> str:
    """DOT text for ``graph``; ``name`` defaults to the model name in the graph meta, else "hgc"."""
    title = name or str(graph.meta.get("model_name") or "hgc")
    lines = [f"digraph {quote(title)} {{",
             "  rankdir=TB;",
             '  node [shape=box, fontname="monospace"];',
             '  edge [fontname="monospace", fontsize=10];']
    nodes = graph.nodes()
    for n in nodes:
        style = _KIND_STYLE.get(_kind(n.op))
        label = quote(n.op + "\n" + n.name)
        attrs = f"label={label}" + (f", {style}" if style else "")
        lines.append(f"  {quote(n.name)} [{attrs}];")
    for n in nodes:
        for t in n.inputs:
            label = quote(f"{t}\n{graph.tensor_type(t)}")
            lines.append(f"  {quote(graph.producer(t).name)} -> {quote(n.name)} [label={label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
