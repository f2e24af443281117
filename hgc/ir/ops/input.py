"""Input: the data layer. No inputs; outputs, in order, every label, the dense features, every sparse input.

Attributes: ``label_dims`` / ``label_names`` (one entry per label tensor), ``dense_dim`` (>= 0) and
``dense_name``, ``sparse`` (one Attrs{name, slot_num, nnz_per_slot (one max-nnz per slot),
is_fixed_length} per sparse input) and ``key_dtype`` ("uint32", or "int64" for 64-bit keys).
Types: label (B, label_dim) and dense (B, dense_dim) float32; sparse (B, slot_num, max nnz) of
``key_dtype``, marked sparse. The node is named "data". The runtime's readers produce the values;
this op has no reference semantics.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hgc.ir.ops._common import one_of, require
from hgc.ir.ops._numeric import is_int, non_negative_int
from hgc.ir.registry import Attr, OpDef, register
from hgc.ir.types import B, TensorType

KEY_DTYPES = ("uint32", "int64")
SPARSE_FIELDS = ("name", "slot_num", "nnz_per_slot", "is_fixed_length")


def _positive_ints(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) > 0 and all(is_int(i) and i > 0 for i in v)
    return None if ok else "must be a non-empty list of positive integers"


def _names(v: Any) -> str | None:
    ok = isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(s, str) and s for s in v)
    return None if ok else "must be a non-empty list of non-empty strings"


def _name(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def sparse_entry_rule(i: int, e: Any) -> str | None:
    """Why sparse entry ``i`` is malformed, or None."""
    if not isinstance(e, Mapping):
        return f"entry {i} must be a mapping with fields {list(SPARSE_FIELDS)}, got {e!r}"
    missing = [f for f in SPARSE_FIELDS if f not in e]
    extra = sorted(set(e) - set(SPARSE_FIELDS))
    if missing or extra:
        return f"entry {i} must have exactly the fields {list(SPARSE_FIELDS)} (missing {missing}, unknown {extra})"
    where = f"entry {i} ('{e['name']}')"
    if _name(e["name"]):
        return f"entry {i}: name must be a non-empty string, got {e['name']!r}"
    if not (is_int(e["slot_num"]) and e["slot_num"] > 0):
        return f"{where}: slot_num must be an integer > 0, got {e['slot_num']!r}"
    nnz = e["nnz_per_slot"]
    if not (isinstance(nnz, (list, tuple)) and all(is_int(k) and k > 0 for k in nnz)):
        return f"{where}: nnz_per_slot must be a list of integers > 0, got {nnz!r}"
    if len(nnz) != e["slot_num"]:
        return f"{where}: nnz_per_slot has {len(nnz)} entries but slot_num is {e['slot_num']}"
    if not isinstance(e["is_fixed_length"], bool):
        return f"{where}: is_fixed_length must be True or False, got {e['is_fixed_length']!r}"
    return None


def sparse_rule(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)):
        return "must be a list of sparse-input entries"
    for i, e in enumerate(v):
        rule = sparse_entry_rule(i, e)
        if rule:
            return rule
    return None


def output_names(attrs: Mapping[str, Any]) -> list[str]:
    """Top names in output order: labels, dense, sparse inputs."""
    return [*attrs["label_names"], attrs["dense_name"], *(s["name"] for s in attrs["sparse"])]


def infer(attrs: Mapping[str, Any], xs: Sequence[TensorType]) -> list[TensorType]:
    dims, names = attrs["label_dims"], attrs["label_names"]
    require(len(dims) == len(names),
            f"label_dims has {len(dims)} entries but label_names has {len(names)}: {list(dims)} vs {list(names)}")
    tops = output_names(attrs)
    dup = sorted({t for t in tops if tops.count(t) > 1})
    require(not dup, f"label, dense and sparse names must be unique, repeated: {dup}")
    out = [TensorType((B, d), "float32") for d in dims]
    out.append(TensorType((B, attrs["dense_dim"]), "float32"))
    for s in attrs["sparse"]:
        out.append(TensorType((B, s["slot_num"], max(s["nnz_per_slot"])), attrs["key_dtype"], sparse=True))
    return out


INPUT = register(OpDef(
    name="Input",
    kind="input",
    attrs=(Attr("label_dims", check=_positive_ints, doc="width of each label tensor"),
           Attr("label_names", check=_names, doc="name of each label tensor"),
           Attr("dense_dim", check=non_negative_int, doc="number of dense features"),
           Attr("dense_name", check=_name, doc="name of the dense tensor"),
           Attr("sparse", (), sparse_rule, "one entry per sparse input"),
           Attr("key_dtype", "uint32", one_of(*KEY_DTYPES), "key type of the sparse inputs")),
    infer=infer,
    num_inputs=(0, 0),
    doc=__doc__ or "",
))
