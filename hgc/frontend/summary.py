"""``Model.summary()``'s table: one row per layer, in the order the model was built.

Columns: layer type, input tensor names, output tensor names, output shapes; a layer with several inputs
or outputs takes one line per name. The batch dimension prints as ``None`` (per-GPU batch), a multiple of
it as ``None*k`` (Reshape of (B, 26, 11) to leading_dim 11 gives ``(None*26, 11)``) and a fraction as
``None/k``. Tensors other than dense float32 add their kind and type (``sparse uint32``).
"""
from __future__ import annotations

from hgc.ir.graph import Graph
from hgc.ir.types import Batch, Dim, TensorType

HEADERS = ("Layer Type", "Input Name", "Output Name", "Output Shape")


def dim_str(d: Dim) -> str:
    if not isinstance(d, Batch):
        return str(d)
    n, den = d.scale.numerator, d.scale.denominator
    base = "None" if n == 1 else f"None*{n}"
    return base if den == 1 else f"{base}/{den}"


def type_str(t: TensorType) -> str:
    s = "(" + ", ".join(dim_str(d) for d in t.shape) + ")"
    if t.sparse:
        return f"{s} sparse {t.dtype}"
    return s if t.dtype == "float32" else f"{s} {t.dtype}"


def format_summary(graph: Graph, target: str) -> str:
    """The summary table of ``graph`` (newline-ended), headed by the target in use."""
    rows: list[list[list[str]]] = []
    for n in graph.nodes():
        rows.append([[n.op], list(n.inputs) or ["-"], list(n.outputs), [type_str(t) for t in n.types]])
    widths = [len(h) for h in HEADERS]
    for r in rows:
        for c, cell in enumerate(r):
            widths[c] = max(widths[c], *(len(s) for s in cell))
    widths = [w + 2 for w in widths]
    total = sum(widths)
    title = f" Model Summary (target: {target}) "
    lines = [title.center(total, "="), "".join(h.ljust(w) for h, w in zip(HEADERS, widths)).rstrip(),
             "-" * total]
    for r in rows:
        height = max(len(cell) for cell in r)
        for i in range(height):
            lines.append("".join((cell[i] if i < len(cell) else "").ljust(w)
                                 for cell, w in zip(r, widths)).rstrip())
        lines.append("-" * total)
    lines[-1] = "=" * total
    return "\n".join(lines) + "\n"
