"""Loss layers: inputs [pred, label], one output — the mean loss over the batch, shape (1, 1).

BinaryCrossEntropyLoss: pred and label (B, 1); pred is a logit, the sigmoid is inside the loss.
    l = max(x, 0) − x·y + log(1 + e^{−|x|}) (stable), loss = mean_b l, d loss/dx = (σ(x) − y)/B.
CrossEntropyLoss: pred (B, 2) logits, softmax over the two classes, l = −Σ_c y_c·log a_c,
    d loss/dx = (a − y)/B. The label is either (B, 2) — a one-hot row (a probability row in general)
    — or (B, 1) — a class index, class 1 where label ≥ 0.5 and class 0 otherwise. (HugeCTR requires
    (B, 2) but reads one value per sample at the wrong offset; hgc reads the row. DESIGN.md §7.)
CrossEntropy and MultiCrossEntropy are fp32 only in HugeCTR.
MultiCrossEntropyLoss: pred and label (B, L); per-element sigmoid cross-entropy weighted by
    ``target_weight_vec`` (L weights), labels < −0.5 masked out (no loss, no gradient);
    loss = Σ tw_j·l_bj / (B·L), d loss/dx_bj = tw_j·(σ(x_bj) − y_bj)/(B·L).

backward returns [d loss/d pred · gys[0], None]: the label takes no gradient. The regularizer
(``use_regularizer``, ``regularizer_type``, ``lambda``) is applied by the runtime, not here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.ir.ops._common import float_list, non_negative, one_of, require
from hgc.ir.ops._numeric import acc_dtype, require_float
from hgc.ir.registry import Attr, OpDef, RefContext, register
from hgc.ir.types import TensorType

LOSS_TYPE = TensorType((1, 1), "float32")


def is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be True or False"


REGULARIZER_ATTRS = (Attr("use_regularizer", False, is_bool, "add a weight regularizer term"),
                     Attr("regularizer_type", "L1", one_of("L1", "L2"), "Regularizer_t name"),
                     Attr("lambda", 0.0, non_negative, "regularizer strength"))


def _pair(xs: Sequence[TensorType]) -> tuple[TensorType, TensorType]:
    pred, label = xs
    require_float(pred, "pred")
    require_float(label, "label")
    require(pred.rank == 2, f"pred must be 2-D (B, n), got {pred}")
    return pred, label


def bce_infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    pred, label = _pair(xs)
    require(pred.width == 1, f"pred must hold one logit per sample, (B, 1), got {pred}")
    require(pred.shape == label.shape, f"pred {pred} and label {label} must have the same shape")
    return [LOSS_TYPE]


def ce_infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    pred, label = _pair(xs)
    require(pred.width == 2, f"pred must hold two class logits per sample, (B, 2), got {pred}")
    require(label.rank == 2 and label.shape[0] == pred.shape[0] and label.width in (1, 2),
            f"label must be (B, 2) like pred {pred}, or (B, 1) class indices, got {label}")
    return [LOSS_TYPE]


def multi_infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    pred, label = _pair(xs)
    require(pred.shape == label.shape, f"pred {pred} and label {label} must have the same shape")
    tw = attrs["target_weight_vec"]
    require(len(tw) == pred.width, f"target_weight_vec has {len(tw)} entries but the label width is "
                                   f"{pred.width}: {list(tw)}")
    return [LOSS_TYPE]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bce(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _loss(value: Any, dt: np.dtype) -> np.ndarray:
    return np.full((1, 1), value, dtype=dt)


def bce_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    dt = acc_dtype(xs[0])
    x, y = xs[0].astype(dt), xs[1].astype(dt)
    return [_loss(_bce(x, y).mean(), dt)], (x, y, xs[0].dtype)


def bce_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, y, dtype = saved
    g = (_sigmoid(x) - y) / x.shape[0] * gys[0].reshape(())
    return [g.astype(dtype), None], []


def ce_targets(label: np.ndarray, dt: np.dtype) -> np.ndarray:
    """(B, 2) target rows: the label itself, or the one-hot row of a (B, 1) class index."""
    if label.shape[1] == 2:
        return label.astype(dt)
    cls = (label[:, 0] >= 0.5).astype(np.intp)
    return np.eye(2, dtype=dt)[cls]


def ce_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    dt = acc_dtype(xs[0])
    x, y = xs[0].astype(dt), ce_targets(xs[1], dt)
    z = x - x.max(axis=1, keepdims=True)
    log_a = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -(y * log_a).sum(axis=1).mean()
    return [_loss(loss, dt)], (np.exp(log_a), y, xs[0].dtype)


def ce_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    a, y, dtype = saved
    g = (a - y) / a.shape[0] * gys[0].reshape(())
    return [g.astype(dtype), None], []


def multi_forward(ctx: RefContext, attrs: Mapping[str, Any], xs: list, ws: list) -> tuple[list, Any]:
    dt = acc_dtype(xs[0])
    x, y = xs[0].astype(dt), xs[1].astype(dt)
    keep = (y >= -0.5).astype(dt)
    tw = np.asarray(attrs["target_weight_vec"], dt)[None, :]
    loss = (tw * keep * _bce(x, y)).sum() / x.size
    return [_loss(loss, dt)], (x, y, keep * tw, xs[0].dtype)


def multi_backward(ctx: RefContext, attrs: Mapping[str, Any], saved: Any, gys: list) -> tuple[list, list]:
    x, y, scale, dtype = saved
    g = scale * (_sigmoid(x) - y) / x.size * gys[0].reshape(())
    return [g.astype(dtype), None], []


def reg_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    if not attrs["use_regularizer"]:
        return {}
    return {"regularizer": attrs["regularizer_type"], "lambda": attrs["lambda"]}


def reg_read(d: Mapping[str, Any]) -> dict[str, Any]:
    if "regularizer" not in d:
        return {"use_regularizer": False}
    return {"use_regularizer": True, "regularizer_type": d["regularizer"], "lambda": d.get("lambda", 0.0)}


def multi_write(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {"target_weight": list(attrs["target_weight_vec"]), **reg_write(attrs)}


def multi_read(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"target_weight_vec": tuple(d.get("target_weight", ())), **reg_read(d)}


def _register(name: str, infer: Any, forward: Any, backward: Any, extra: tuple[Attr, ...] = (),
              traits: frozenset[str] = frozenset(), write: Any = reg_write, read: Any = reg_read) -> OpDef:
    return register(OpDef(name=name, kind="loss", attrs=REGULARIZER_ATTRS + extra, infer=infer,
                          num_inputs=(2, 2), traits=frozenset({"loss"}) | traits, forward=forward,
                          backward=backward, json_write=write, json_read=read, doc=__doc__ or ""))


BCE_LOSS = _register("BinaryCrossEntropyLoss", bce_infer, bce_forward, bce_backward)
CE_LOSS = _register("CrossEntropyLoss", ce_infer, ce_forward, ce_backward, traits=frozenset({"fp32_only"}))
MULTI_CE_LOSS = _register(
    "MultiCrossEntropyLoss", multi_infer, multi_forward, multi_backward,
    extra=(Attr("target_weight_vec", (), float_list, "one weight per label column"),),
    traits=frozenset({"fp32_only"}), write=multi_write, read=multi_read)
