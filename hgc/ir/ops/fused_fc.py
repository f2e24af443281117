"""Fused fully connected layers: y = act(x·W + b), act = ReLU ("Relu") or identity ("Non").

FusedInnerProduct is one such layer. ``pos_type`` records where it sits in a HugeCTR fused MLP chain
(Head / Body / Tail, or Isolated / Non for a lone layer); only a Tail may go without activation, as in
HugeCTR. The math does not depend on the position: hgc passes one tensor between the layers of a chain,
not HugeCTR's four (output, ReLU mask, dReLU, db). A second input, allowed so a layer can follow a
two-output Interaction, is that Interaction's gradient-buffer alias: it must have the first input's shape,
the math ignores it and it receives no gradient.

GroupFusedInnerProduct is a whole chain in one node (made by a pass or loaded): every member's output is
an output of the node, in order; weights are [W0, b0, W1, b1, …], each pair initialised like InnerProduct.
:func:`members` gives the equivalent FusedInnerProduct attributes (Head/Body…/Tail, or Isolated alone).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.errors import ShapeError
from hgc.ir.ops import fc
from hgc.ir.ops._common import init_attr, init_fields, one_of, read_init_fields, require, rows
from hgc.ir.ops._numeric import is_int, positive_int, require_float
from hgc.ir.registry import INITIALIZERS, Attr, OpDef, RefContext, WeightSpec, register
from hgc.ir.types import TensorType

POSITIONS = ("Non", "Head", "Body", "Tail", "Isolated")
ACTIVATIONS = ("Relu", "Non")


def _json_enum(v: str) -> str:
    """IR enum name → HugeCTR JSON string (the JSON spells FcPosition_t/Activation_t 'Non' as 'None')."""
    return "None" if v == "Non" else v


def _ir_enum(v: str) -> str:
    return "Non" if v == "None" else v


def check_act(pos_type: str, act_type: str) -> None:
    if act_type == "Non" and pos_type != "Tail":
        raise ShapeError(f"act_type = 'Non' is not allowed with pos_type = '{pos_type}': only a Tail layer "
                         f"may have no activation")


def check_inputs(xs: Sequence[TensorType]) -> TensorType:
    """The data input; a second input must be a same-shaped gradient-buffer alias."""
    require_float(xs[0])
    if len(xs) == 2:
        require(xs[1].shape == xs[0].shape,
                f"the second input (the gradient buffer of a two-output Interaction) must have the first "
                f"input's shape {xs[0]}, got {xs[1]}")
    return xs[0]


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, act: str) -> tuple[np.ndarray, np.ndarray | None]:
    """act(x·W + b) on the rows of ``x``; also the ReLU mask (None for identity)."""
    y = rows(x) @ w + b
    mask = None
    if act == "Relu":
        mask = y > 0
        y = y * mask
    return y.reshape(*x.shape[:-1], w.shape[1]), mask


def dense_backward(x: np.ndarray, w: np.ndarray, mask: np.ndarray | None,
                   g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g2 = rows(g)
    if mask is not None:
        g2 = g2 * mask
    return fc.fc_backward(x, w, g2)


# -- FusedInnerProduct -------------------------------------------------------------------------
def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    check_act(attrs["pos_type"], attrs["act_type"])
    return fc.infer(attrs, [check_inputs(xs)])


def forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    w, b = ws
    y, mask = dense_forward(xs[0], w, b, attrs["act_type"])
    return [y], (xs[0], w, mask, len(xs))


def backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, w, mask, n_in = saved
    dx, dw, db = dense_backward(x, w, mask, gys[0])
    return [dx] + [None] * (n_in - 1), [dw, db]


def json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"fc_param": {"num_output": attrs["num_output"], **init_fields(attrs, fc.FC_INITS)},
            "position": _json_enum(attrs["pos_type"]), "activation": _json_enum(attrs["act_type"])}


def json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {"num_output": d["fc_param"]["num_output"], **read_init_fields(d["fc_param"], fc.FC_INITS)}
    if "position" in d:
        out["pos_type"] = _ir_enum(d["position"])
    if "activation" in d:
        out["act_type"] = _ir_enum(d["activation"])
    return out


FUSED_INNER_PRODUCT = register(OpDef(
    name="FusedInnerProduct",
    kind="dense",
    attrs=(Attr("num_output", 1, positive_int, "output width"),
           init_attr("weight_init_type"), init_attr("bias_init_type"),
           Attr("pos_type", "Non", one_of(*POSITIONS), "FcPosition_t name"),
           Attr("act_type", "Relu", one_of(*ACTIVATIONS), "Activation_t name")),
    infer=infer,
    num_inputs=(1, 2),
    traits=frozenset({"has_weights", "gemm"}),
    weights=lambda a, xs: fc.weights(a, xs[:1]),
    init=lambda a, xs, rng: fc.init_fc(a, xs[:1], rng),
    forward=forward,
    backward=backward,
    json_write=json_write,
    json_read=json_read,
    doc=__doc__ or "",
))


# -- GroupFusedInnerProduct --------------------------------------------------------------------
def _names_in(choices: Sequence[str]) -> Any:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (list, tuple)) and all(c in choices for c in v)
        return None if ok else f"must be a list of names from {list(choices)}"
    return check


def _positive_list(v: Any) -> str | None:
    ok = (isinstance(v, (list, tuple)) and len(v) > 0
          and all(is_int(i) and i > 0 for i in v))
    return None if ok else "must be a non-empty list of positive integers"


def members(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The FusedInnerProduct attributes of each layer of the group, in order.

    Empty ``activations`` / ``*_init_types`` mean all "Relu" / all "Default". Positions are Head,
    Body…, Tail; a group of one is Isolated (Tail when it has no activation).
    """
    n = len(attrs["num_outputs"])
    acts = attrs["activations"] or ("Relu",) * n
    winit = attrs["weight_init_types"] or ("Default",) * n
    binit = attrs["bias_init_types"] or ("Default",) * n
    for name, seq in (("activations", acts), ("weight_init_types", winit), ("bias_init_types", binit)):
        require(len(seq) == n, f"{name} has {len(seq)} entries but num_outputs has {n}: {list(seq)}")
    out = []
    for i in range(n):
        pos = "Head" if i == 0 else "Tail" if i == n - 1 else "Body"
        if n == 1:
            pos = "Isolated" if acts[0] == "Relu" else "Tail"  # only a Tail may go without activation
        if acts[i] == "Non" and i != n - 1:
            raise ShapeError(f"activations[{i}] = 'Non' is not allowed: only the last layer of a group may "
                             f"have no activation, got {list(acts)}")
        out.append({"num_output": attrs["num_outputs"][i], "weight_init_type": winit[i],
                    "bias_init_type": binit[i], "pos_type": pos, "act_type": acts[i]})
    return out


def group_infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    x = check_inputs(xs)
    out = []
    for m in members(attrs):
        (x,) = fc.infer(m, [x])
        out.append(x)
    return out


def group_weights(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[WeightSpec]:
    specs = []
    for i, (m, t) in enumerate(zip(members(attrs), [xs[0], *group_infer(attrs, xs)])):
        (w, b) = fc.weights(m, [t])
        specs += [WeightSpec(f"W{i}", w.shape, f"weight_init_types[{i}]"),
                  WeightSpec(f"b{i}", b.shape, f"bias_init_types[{i}]")]
    return specs


def group_init(attrs: Mapping[str, Any], xs: Sequence[TensorType], rng: np.random.Generator) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for m, t in zip(members(attrs), [xs[0], *group_infer(attrs, xs)]):
        out += fc.init_fc(m, [t], rng)
    return out


def group_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    x = xs[0]
    ys, saved = [], []
    for i, m in enumerate(members(attrs)):
        w, b = ws[2 * i], ws[2 * i + 1]
        y, mask = dense_forward(x, w, b, m["act_type"])
        saved.append((x, w, mask))
        ys.append(y)
        x = y
    return ys, (saved, len(xs))


def group_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    layers, n_in = saved
    gws: list = [None] * (2 * len(layers))
    carry = None  # gradient flowing back into layer i's output from layer i + 1
    for i in reversed(range(len(layers))):
        x, w, mask = layers[i]
        g = gys[i] if i < len(gys) else None
        if carry is not None:
            g = carry if g is None else g + carry
        if g is None:
            g = np.zeros((*x.shape[:-1], w.shape[1]), x.dtype)
        carry, gws[2 * i], gws[2 * i + 1] = dense_backward(x, w, mask, g)
    return [carry] + [None] * (n_in - 1), gws


def group_json_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """hgc's own block (HugeCTR writes a group as its member layers): each list as given, when set."""
    p: dict[str, Any] = {"num_outputs": list(attrs["num_outputs"])}
    if attrs["activations"]:
        p["activations"] = [_json_enum(a) for a in attrs["activations"]]
    for key, attr in (("weight_init", "weight_init_types"), ("bias_init", "bias_init_types")):
        if attrs[attr]:
            p[key] = list(attrs[attr])
    return {"group_fc_param": p}


def group_json_read(d: Mapping[str, Any]) -> dict[str, Any]:
    p = d["group_fc_param"]
    out: dict[str, Any] = {"num_outputs": tuple(p["num_outputs"])}
    if "activations" in p:
        out["activations"] = tuple(_ir_enum(a) for a in p["activations"])
    for key, attr in (("weight_init", "weight_init_types"), ("bias_init", "bias_init_types")):
        if key in p:
            out[attr] = tuple(p[key])
    return out


GROUP_FUSED_INNER_PRODUCT = register(OpDef(
    name="GroupFusedInnerProduct",
    kind="dense",
    attrs=(Attr("num_outputs", check=_positive_list, doc="output width of each layer"),
           Attr("activations", (), _names_in(ACTIVATIONS), "Activation_t name per layer (empty: all Relu)"),
           Attr("weight_init_types", (), _names_in(INITIALIZERS), "per layer (empty: all Default)"),
           Attr("bias_init_types", (), _names_in(INITIALIZERS), "per layer (empty: all Default)")),
    infer=group_infer,
    num_inputs=(1, 2),
    traits=frozenset({"has_weights", "gemm"}),
    weights=group_weights,
    init=group_init,
    forward=group_forward,
    backward=group_backward,
    json_write=group_json_write,
    json_read=group_json_read,
    doc=__doc__ or "",
))
