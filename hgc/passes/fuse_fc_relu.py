"""FuseInnerProductReLU: InnerProduct → ReLU becomes one FusedInnerProduct (bias + ReLU epilogue).

Pattern: an InnerProduct whose output is read by exactly one node, a ReLU. The FusedInnerProduct
that replaces the pair keeps the InnerProduct's node name, weights and initialisers (``num_output``,
``weight_init_type``, ``bias_init_type``), writes the ReLU's output tensor, and has ``pos_type "Non"``
(a stand-alone fused layer) and ``act_type "Relu"``. The InnerProduct's output tensor disappears. An
InnerProduct without a ReLU, or whose output is also read elsewhere, stays as it is (its pre-activation
value is needed). A pair the fused op cannot take (its shape inference refuses the input, for example
a 3-D input) is left alone and counted in ``skipped``.

Preconditions: a verified graph. Ordering: after FuseReshapeConcat, before GroupFusedInnerProduct
(which groups the FusedInnerProducts this pass makes).
"""
from __future__ import annotations

from collections import Counter

from hgc.errors import ShapeError
from hgc.ir.build import make_node
from hgc.ir.graph import Graph
from hgc.passes._kinds import is_registered
from hgc.passes.context import PassContext, PassResult

NAME = "FuseInnerProductReLU"

FUSED = "FusedInnerProduct"


def run(graph: Graph, ctx: PassContext) -> PassResult:
    g = graph.copy()
    stats: Counter[str] = Counter()
    for fc in g.find("InnerProduct"):
        users = g.users(fc.outputs[0])
        if len(users) != 1 or users[0].op != "ReLU":
            continue
        relu = users[0]
        if not is_registered(FUSED):
            stats["op_missing"] += 1
            continue
        attrs = {k: fc.attrs[k] for k in ("num_output", "weight_init_type", "bias_init_type")}
        attrs.update(pos_type="Non", act_type="Relu")
        try:
            fused = make_node(g, FUSED, fc.inputs, relu.outputs, attrs, name=fc.name)
        except ShapeError:
            stats["skipped"] += 1
            continue
        g.replace([fc.name, relu.name], [fused])
        stats["fusions"] += 1
    stats.setdefault("fusions", 0)
    return PassResult(g, stats["fusions"] > 0, dict(stats))
