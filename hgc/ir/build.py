"""Make checked nodes: apply attribute defaults and rules, infer output types, name errors well."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hgc.errors import GraphError, ShapeError
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.registry import get_op


def check_attrs(op_name: str, attrs: Mapping[str, Any], where: str = "") -> Attrs:
    """Fill defaults and apply each attribute's rule. Unknown or missing attributes are errors."""
    op = get_op(op_name)
    where = where or f"{op_name} layer"
    known = {a.name for a in op.attrs}
    unknown = set(attrs) - known
    if unknown:
        raise TypeError(f"{where}: unknown attribute(s) {sorted(unknown)}; {op_name} takes {sorted(known)}")
    out: dict[str, Any] = {}
    for a in op.attrs:
        if a.name in attrs:
            v = attrs[a.name]
        elif a.required:
            raise ValueError(f"{where}: argument '{a.name}' is required")
        else:
            v = a.default
        if a.check is not None:
            rule = a.check(v)
            if rule:
                raise ValueError(f"{where}: argument '{a.name}' = {v!r} is not allowed: {rule}")
        out[a.name] = v
    return Attrs(out)


def make_node(graph: Graph, op_name: str, inputs: Sequence[str], outputs: Sequence[str],
              attrs: Mapping[str, Any] | None = None, name: str = "") -> Node:
    """Build a node for ``graph`` (not added): attributes checked, output types inferred.

    Errors name the layer (op and top name), the input tensors and their shapes.
    """
    op = get_op(op_name)
    label = f"{op_name} layer '{name or (outputs[0] if outputs else op_name)}'"
    lo, hi = op.num_inputs
    if len(inputs) < lo or (hi is not None and len(inputs) > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
        raise ShapeError(f"{label}: takes {want} bottom tensors, got {len(inputs)}: {list(inputs)}")
    for t in inputs:
        if not graph.has_tensor(t):
            known = ", ".join(graph.tensors()) or "none"
            raise GraphError(f"{label}: bottom tensor '{t}' is not produced by any earlier layer "
                             f"(known tensors: {known})")
    full = check_attrs(op_name, attrs or {}, label)
    in_types = [graph.tensor_type(t) for t in inputs]
    try:
        types = tuple(op.infer(full, in_types))
    except (ShapeError, ValueError) as e:
        shapes = ", ".join(f"'{t}' {ty}" for t, ty in zip(inputs, in_types))
        raise ShapeError(f"{label}: {e} [inputs: {shapes}]") from None
    if len(types) != len(outputs):
        raise ShapeError(f"{label}: produces {len(types)} tensors but {len(outputs)} top names were given: "
                         f"{list(outputs)}")
    return Node(op_name, tuple(inputs), tuple(outputs), full, types, name)


def add_node(graph: Graph, op_name: str, inputs: Sequence[str], outputs: Sequence[str],
             attrs: Mapping[str, Any] | None = None, name: str = "") -> Node:
    return graph.add(make_node(graph, op_name, inputs, outputs, attrs, name))
