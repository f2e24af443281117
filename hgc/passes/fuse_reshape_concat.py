"""FuseReshapeConcat: Reshape/Concat patterns over 3-D tensors → FusedReshapeConcat(General).

FusedReshapeConcatGeneral maps k inputs (B, S, v_i) with one S to (B*S, sum v_i): row b*S + s holds
slot s of sample b, the inputs' vectors side by side. FusedReshapeConcat gives the same rows split in
two outputs: "item" (B*(S-1), sum v_i) with the first S-1 slots of every sample, and "ad" (B, sum v_i)
with the last slot. Three patterns compute exactly that (forward, and backward as the sum of the
consumers' gradients), so each becomes one fused node:

A. Reshape-then-Concat → General. ``Concat(axis=1)`` whose every input is a plain Reshape
   (``leading_dim = v_i``, ``time_step = 0``, not selected) of a 3-D tensor (B, S, v_i), all with the
   same (B, S), and no other node reads those reshapes: ``(B*S, v_i)`` blocks joined on columns.
   The fused node takes the Concat's name and output.
B. Concat-then-Reshape → General. A plain Reshape with ``leading_dim = sum v_i`` of a
   ``Concat(axis=2)`` of 3-D tensors (B, S, v_i) that nothing else reads. The fused node takes the
   Reshape's name and output.
C. The DIN split → FusedReshapeConcat. A ``Concat(axis=2)`` X of (B, S, v_i) tensors, S >= 2, read by
   exactly two selected Reshapes: one keeping slot [S-1] (the "ad" output), one keeping slots
   [0, …, S-2] whose output feeds only a plain Reshape with ``leading_dim = sum v_i`` (the "item"
   output; when S = 2 the selected Reshape's own output already is the item rows and is used as is
   unless such a Reshape follows). Both selected slot sets are disjoint and cover X, so the summed
   gradients equal the fused op's inverse scatter. The fused node takes the Concat's name.

Not fused: inputs that are not float32 (the fused ops are fp32-only), mixed/low-precision runs
(``ctx.use_mixed_precision`` or a float16/bfloat16 ``ctx.compute_dtype``: the fused ops would force
fp32 and casts around them, while Reshape and Concat run in half precision), and any intermediate
tensor read by a node outside the pattern.

Preconditions: a verified graph. Ordering: after Validate, before the FC fusions (it does not touch
them) and before DeadCodeElimination and the planning passes.
"""
from __future__ import annotations

from collections import Counter

from hgc.ir.build import make_node
from hgc.ir.graph import Graph
from hgc.ir.node import Node
from hgc.ir.types import Dim, TensorType
from hgc.passes._kinds import is_registered
from hgc.passes.context import PassContext, PassResult
from hgc.passes.plan_precision import low_dtype

NAME = "FuseReshapeConcat"

GENERAL = "FusedReshapeConcatGeneral"
SPLIT = "FusedReshapeConcat"


#: (fused inputs, fused outputs, names of the nodes it replaces, name of the fused node)
Match = tuple[list[str], list[str], list[str], str]


def plain_reshape(node: Node) -> bool:
    """A Reshape in ``leading_dim`` mode without ``time_step`` (output (N/L, L))."""
    a = node.attrs
    return (node.op == "Reshape" and not a.get("selected", False)
            and int(a.get("leading_dim", 0)) > 0 and int(a.get("time_step", 0)) == 0)


def selected_reshape(node: Node) -> bool:
    return node.op == "Reshape" and bool(node.attrs.get("selected", False))


def _blocks(types: list[TensorType]) -> tuple[Dim, int, int] | None:
    """(B, S, sum v_i) when every type is a float32 dense (B, S, v_i) with a shared (B, S)."""
    if not types or any(t.rank != 3 or t.sparse or t.dtype != "float32" for t in types):
        return None
    if len({t.shape[:2] for t in types}) != 1:
        return None
    widths = [t.shape[2] for t in types]
    slots = types[0].shape[1]
    if not isinstance(slots, int) or not all(isinstance(v, int) for v in widths):
        return None
    return types[0].shape[0], slots, sum(widths)  # type: ignore[arg-type]


def _only_user(graph: Graph, tensor: str, node: Node) -> bool:
    return [u.name for u in graph.users(tensor)] == [node.name]


def _match_a(graph: Graph, concat: Node) -> Match | None:
    if concat.op != "Concat" or concat.types[0].rank != 2:
        return None
    sources, reshapes = [], []
    for t in concat.inputs:
        r = graph.producer(t)
        if not plain_reshape(r) or not _only_user(graph, t, concat):
            return None
        (x,) = r.inputs
        xt = graph.tensor_type(x)
        if xt.rank != 3 or r.attrs.get("leading_dim", 0) != xt.shape[2]:
            return None
        sources.append(x)
        if r.name not in reshapes:
            reshapes.append(r.name)
    if _blocks([graph.tensor_type(x) for x in sources]) is None:
        return None
    return sources, [concat.outputs[0]], [*reshapes, concat.name], concat.name


def _axis2_concat(graph: Graph, tensor: str) -> tuple[Node, tuple[Dim, int, int]] | None:
    node = graph.producer(tensor)
    if node.op != "Concat" or node.types[0].rank != 3 or node.attrs.get("axis", 1) != 2:
        return None
    blocks = _blocks([graph.tensor_type(x) for x in node.inputs])
    return None if blocks is None else (node, blocks)


def _match_b(graph: Graph, reshape: Node) -> Match | None:
    if not plain_reshape(reshape):
        return None
    (x,) = reshape.inputs
    found = _axis2_concat(graph, x)
    if found is None:
        return None
    concat, (_, _, width) = found
    if reshape.attrs.get("leading_dim", 0) != width or not _only_user(graph, x, reshape):
        return None
    return list(concat.inputs), [reshape.outputs[0]], [concat.name, reshape.name], reshape.name


def _match_c(graph: Graph, concat: Node) -> Match | None:
    found = _axis2_concat(graph, concat.outputs[0]) if concat.op == "Concat" else None
    if found is None:
        return None
    _, (batch, slots, width) = found
    if slots < 2:
        return None
    users = graph.users(concat.outputs[0])
    if len(users) != 2 or not all(selected_reshape(u) and u.inputs == concat.outputs for u in users):
        return None
    ad = [u for u in users if tuple(u.attrs.get("selected_slots", ())) == (slots - 1,)]
    his = [u for u in users if tuple(u.attrs.get("selected_slots", ())) == tuple(range(slots - 1))]
    if len(ad) != 1 or len(his) != 1 or ad[0] is his[0]:
        return None
    ad_node, his_node = ad[0], his[0]
    replaced = [concat.name, ad_node.name, his_node.name]
    item_type = TensorType((batch * (slots - 1), width))
    followers = graph.users(his_node.outputs[0])
    if (len(followers) == 1 and plain_reshape(followers[0])
            and followers[0].attrs.get("leading_dim", 0) == width):
        item = followers[0].outputs[0]
        replaced.append(followers[0].name)
    elif slots == 2 and his_node.types[0] == item_type:
        item = his_node.outputs[0]
    else:
        return None
    return list(concat.inputs), [item, ad_node.outputs[0]], replaced, concat.name


PATTERNS = (("A", GENERAL, _match_a), ("B", GENERAL, _match_b), ("C", SPLIT, _match_c))


def run(graph: Graph, ctx: PassContext) -> PassResult:
    g = graph.copy()
    stats: Counter[str] = Counter()
    if low_dtype(ctx) != "float32":
        return PassResult(g, False, {"fusions": 0, "skipped_low_precision": 1})
    # One sweep suffices: a fused node is neither a Reshape nor a Concat, so no rewrite creates a
    # new match; nodes consumed by an earlier rewrite are gone from ``g`` and are skipped.
    for name in [n.name for n in g.nodes()]:
        for pattern, op, match in PATTERNS:
            if name not in g:
                break
            found = match(g, g.node(name))
            if found is None:
                continue
            if not is_registered(op):
                stats["op_missing"] += 1
                continue
            inputs, outputs, replaced, fused_name = found
            g.replace(replaced, [make_node(g, op, inputs, outputs, {}, name=fused_name)])
            stats["fusions"] += 1
            stats[f"pattern_{pattern}"] += 1
            stats["nodes_removed"] += len(replaced) - 1
    stats.setdefault("fusions", 0)
    return PassResult(g, stats["fusions"] > 0, dict(stats))
