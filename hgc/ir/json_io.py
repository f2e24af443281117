"""HugeCTR's graph JSON, both ways, and the 2.x JSON model configuration (facts §5.5).

Graph JSON (``Model.graph_to_json`` / ``construct_from_json``) is ``{"layers": [...], "model_name": ...}``:
layer 0 is the ``Data`` layer (the Input node), then one entry per embedding, then the dense layers in
graph order. What a layer adds besides ``type``/``bottom``/``top`` comes from its op's
``OpDef.json_write`` and is read back by ``OpDef.json_read``; this module owns the Data layer and the
embeddings' optimizer blocks.

The reader also takes the older layout that HugeCTR 2.x (and the 3.0 ``huge_ctr`` binary) used: a Data
layer carrying ``source``/``eval_source``/``check``, sparse inputs given by ``max_feature_num_per_sample``
(and ``max_nnz``), embeddings sized by ``max_vocabulary_size_per_gpu`` with an integer ``combiner``,
and top-level ``solver``/``optimizer`` sections (:func:`load_legacy_config`).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgc.errors import GraphError, ShapeError
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.ops.embeddings import state_copies, workspace_for
from hgc.ir.printer import plain
from hgc.ir.registry import OpDef, get_op

#: CreateOptimizer's defaults: the fields of an optimizer Attrs (meta["optimizer"], embedding optimizer).
OPTIMIZER_DEFAULTS: dict[str, Any] = {
    "optimizer_type": "Adam", "update_type": "Global", "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7,
    "initial_accu_value": 0.0, "momentum_factor": 0.0, "atomic_update": True, "lambda1": 0.0, "lambda2": 0.0,
    "beta": 0.0,
}
#: optimizer type → (its JSON hyper-parameter block, the fields that block holds).
HPARAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Adam": ("adam_hparam", ("beta1", "beta2", "epsilon")),
    "AdaGrad": ("adagrad_hparam", ("initial_accu_value", "epsilon")),
    "MomentumSGD": ("momentum_sgd_hparam", ("momentum_factor",)),
    "Nesterov": ("nesterov_hparam", ("momentum_factor",)),
    "SGD": ("sgd_hparam", ("atomic_update",)),
    "Ftrl": ("ftrl_hparam", ("beta", "lambda1", "lambda2")),
    "RMSProp": ("rmsprop_hparam", ("beta", "epsilon")),
}
OPTIMIZER_ALIASES = {"Adagrad": "AdaGrad"}  # the 3.x API text spells it this way
UPDATE_TYPES = ("Global", "Local", "LazyGlobal")
#: learning-rate fields a 2.x optimizer block may carry in its <x>_hparam.
LR_FIELDS = ("learning_rate", "warmup_steps", "decay_start", "decay_steps", "decay_power", "end_lr")
KEY_TYPES = {"I64": "int64", "I32": "uint32"}  # 2.x solver.input_key_type → key dtype
SLOT_TYPES = ("DistributedSlot", "LocalizedSlot")
DATA_KEYS = ("type", "name", "label", "dense", "sparse")  # everything else in a Data layer is reader config


# -- errors -------------------------------------------------------------------------------------
class _Bad(Exception):
    """A key of the JSON that is missing or holds a bad value (turned into a GraphError with its place)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key, self.problem = key, problem


@contextlib.contextmanager
def _at(where: str) -> Iterator[None]:
    """Prefix any error raised while reading one layer with the file and layer."""
    try:
        yield
    except _Bad as e:
        raise GraphError(f"{where}: key '{e.key}' {e.problem}") from None
    except ShapeError as e:
        raise ShapeError(f"{where}: {e}") from None
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None
    except KeyError as e:
        raise GraphError(f"{where}: key {e.args[0]!r} is missing") from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise GraphError(f"{where}: bad value: {e}") from None


def _get(d: Any, key: str, path: str, default: Any = ...) -> Any:
    if not isinstance(d, Mapping):
        raise _Bad(path or key, f"must be a JSON object, got {json.dumps(d)}")
    full = f"{path}.{key}" if path else key
    if key not in d:
        if default is ...:
            raise _Bad(full, "is missing")
        return default
    return d[key]


def _int(v: Any, key: str, minimum: int | None = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
        rule = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        raise _Bad(key, f"must be {rule}, got {json.dumps(v)}")
    return v


def _num(v: Any, key: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _Bad(key, f"must be a number, got {json.dumps(v)}")
    return float(v)


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise _Bad(key, f"must be true or false, got {json.dumps(v)}")
    return v


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise _Bad(key, f"must be a non-empty string, got {json.dumps(v)}")
    return v


def _names(v: Any, key: str) -> list[str]:
    """A bottom/top field: one name or a list of names."""
    if isinstance(v, str):
        return [_str(v, key)]
    if isinstance(v, list) and v:
        return [_str(x, f"{key}[{i}]") for i, x in enumerate(v)]
    raise _Bad(key, f"must be a tensor name or a non-empty list of names, got {json.dumps(v)}")


def _bottom_top(layer: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    return _names(_get(layer, "bottom", ""), "bottom"), _names(_get(layer, "top", ""), "top")


def _one_or_list(names: tuple[str, ...]) -> str | list[str]:
    return names[0] if len(names) == 1 else list(names)


# -- optimizer blocks ---------------------------------------------------------------------------
def _optimizer_type(name: Any, key: str) -> str:
    name = OPTIMIZER_ALIASES.get(name, name) if isinstance(name, str) else name
    if name not in HPARAMS:
        raise _Bad(key, f"must be one of {list(HPARAMS)}, got {json.dumps(name)}")
    return name


def optimizer_json(opt: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON optimizer block (``type``, ``update_type``, ``<x>_hparam``) of an optimizer Attrs."""
    full = {**OPTIMIZER_DEFAULTS, **opt}
    try:
        kind = _optimizer_type(full["optimizer_type"], "optimizer_type")
    except _Bad as e:
        raise GraphError(f"optimizer: '{e.key}' {e.problem}") from None
    if full["update_type"] not in UPDATE_TYPES:
        raise GraphError(f"optimizer: 'update_type' must be one of {list(UPDATE_TYPES)}, "
                         f"got {full['update_type']!r}")
    block, fields = HPARAMS[kind]
    return {"type": kind, "update_type": full["update_type"], block: {f: full[f] for f in fields}}


def read_optimizer(block: Any, path: str = "optimizer") -> tuple[Attrs, dict[str, Any]]:
    """An optimizer block → (optimizer Attrs with CreateOptimizer defaults filled, learning-rate fields)."""
    kind = _optimizer_type(_get(block, "type", path), f"{path}.type")
    update = _get(block, "update_type", path, "Global")
    if update not in UPDATE_TYPES:
        raise _Bad(f"{path}.update_type", f"must be one of {list(UPDATE_TYPES)}, got {json.dumps(update)}")
    if update == "LazyGlobal" and kind != "Adam":
        raise _Bad(f"{path}.update_type", f'"LazyGlobal" works only with the Adam optimizer, got type '
                                          f"{json.dumps(kind)}")
    key, fields = HPARAMS[kind]
    hp = _get(block, key, path, {})
    if not isinstance(hp, Mapping):
        raise _Bad(f"{path}.{key}", f"must be a JSON object, got {json.dumps(hp)}")
    out = dict(OPTIMIZER_DEFAULTS, optimizer_type=kind, update_type=update)
    for f in fields:
        if f in hp:
            check = _bool if f == "atomic_update" else _num
            out[f] = check(hp[f], f"{path}.{key}.{f}")
    lr = {f: _num(hp[f], f"{path}.{key}.{f}") for f in LR_FIELDS if f in hp}
    for f in ("warmup_steps", "decay_start", "decay_steps"):
        if f in lr:
            lr[f] = _int(hp[f], f"{path}.{key}.{f}")
    return Attrs(out), lr


# -- writing ------------------------------------------------------------------------------------
def _kind(node: Node) -> str:
    try:
        return get_op(node.op).kind
    except KeyError as e:
        raise GraphError(f"{node.label()}: {e.args[0]}") from None


def _data_entry(node: Node) -> dict[str, Any]:
    a = node.attrs
    try:
        names, dims = tuple(a["label_names"]), tuple(a["label_dims"])
        label = {"top": _one_or_list(names), "label_dim": dims[0] if len(dims) == 1 else list(dims)}
        sparse = [{"top": s["name"], "type": "DistributedSlot", "nnz_per_slot": list(s["nnz_per_slot"]),
                   "is_fixed_length": s["is_fixed_length"], "slot_num": s["slot_num"]} for s in a["sparse"]]
        dense = {"top": a["dense_name"], "dense_dim": a["dense_dim"]}
        return {"type": "Data", "label": label, "dense": dense, "sparse": sparse}
    except KeyError as e:
        raise GraphError(f"{node.label()}: attribute {e.args[0]!r} is missing; "
                         f"the Data layer needs it") from None


def _layer_entry(node: Node, op: OpDef, attrs: Attrs | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": node.op, "bottom": _one_or_list(node.inputs),
                             "top": _one_or_list(node.outputs)}
    try:
        extra = op.json_write(node.attrs if attrs is None else attrs)
    except (KeyError, TypeError, ValueError) as e:
        raise GraphError(f"{node.label()}: cannot write its JSON entry: {e}") from None
    for k, v in extra.items():
        if k in entry:
            raise GraphError(f"{node.label()}: {node.op}.json_write returned the reserved key '{k}'")
        entry[k] = plain(v, f"{node.label()} JSON field '{k}'")
    return entry


def dump_graph_json(graph: Graph) -> dict[str, Any]:
    """HugeCTR's graph JSON of ``graph`` as plain Python data (what ``json.load`` of the file gives)."""
    nodes = graph.nodes()
    kinds = {n.name: _kind(n) for n in nodes}
    inputs = [n for n in nodes if kinds[n.name] == "input"]
    if len(inputs) != 1:
        raise GraphError(f"graph JSON needs exactly one Input node, the graph has {len(inputs)}: "
                         f"{[n.name for n in inputs]}")
    layers = [_data_entry(inputs[0])]
    model_opt = graph.meta.get("optimizer")
    for n in nodes:
        if kinds[n.name] == "embedding":
            opt = n.attrs.get("optimizer") or model_opt
            block = None if opt is None else optimizer_json(opt)
            attrs = n.attrs
            if block is not None and "optimizer" in attrs:
                # the op sees the optimizer in effect, so sizes it derives (max_vocabulary_size_global) agree
                attrs = attrs.replace(optimizer=Attrs({**opt, "optimizer_type": block["type"]}))
            entry = _layer_entry(n, get_op(n.op), attrs)
            if block is not None:
                entry["optimizer"] = block
            layers.append(entry)
    layers += [_layer_entry(n, get_op(n.op)) for n in nodes if kinds[n.name] not in ("input", "embedding")]
    out: dict[str, Any] = {"layers": layers}
    if graph.meta.get("model_name"):
        out["model_name"] = graph.meta["model_name"]
    return out


def write_graph_json(graph: Graph, path: str | Path) -> None:
    """Write the graph JSON of ``graph`` to ``path`` (2-space indent), atomically: temp file, then rename."""
    path = Path(path)
    text = json.dumps(dump_graph_json(graph), indent=2) + "\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- reading ------------------------------------------------------------------------------------
def _read_source(source: str | Path | Mapping[str, Any]) -> tuple[str, Any]:
    """(name for messages, parsed JSON). A str that starts with '{' is JSON text, any other str a path."""
    if isinstance(source, Mapping):
        return "<dict>", source
    if isinstance(source, str) and source.lstrip().startswith("{"):
        name, text = "<string>", source
    else:
        name = str(source)
        text = Path(source).read_text(encoding="utf-8")
    try:
        return name, json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphError(f"{name}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


def _read_data(layer: Mapping[str, Any], key_dtype: str) -> tuple[dict[str, Any], list[str]]:
    """The Data layer → Input attributes and output names."""
    label = _get(layer, "label", "")
    tops, dims = _get(label, "top", "label"), _get(label, "label_dim", "label")
    if isinstance(tops, str):
        names, label_dims = (_str(tops, "label.top"),), (_int(dims, "label.label_dim", 1),)
    else:
        names = tuple(_names(tops, "label.top"))
        if not isinstance(dims, list) or len(dims) != len(names):
            raise _Bad("label.label_dim", f"must be a list of {len(names)} integers (one per label top), "
                                          f"got {json.dumps(dims)}")
        label_dims = tuple(_int(d, f"label.label_dim[{i}]", 1) for i, d in enumerate(dims))
    dense = _get(layer, "dense", "")
    dense_name = _str(_get(dense, "top", "dense"), "dense.top")
    dense_dim = _int(_get(dense, "dense_dim", "dense"), "dense.dense_dim")
    entries = _get(layer, "sparse", "", [])
    if not isinstance(entries, list):
        raise _Bad("sparse", f"must be a list, got {json.dumps(entries)}")
    sparse = []
    for j, s in enumerate(entries):
        p = f"sparse[{j}]"
        top = _str(_get(s, "top", p), f"{p}.top")
        slot_num = _int(_get(s, "slot_num", p), f"{p}.slot_num", 1)
        kind = _get(s, "type", p, "DistributedSlot")
        if kind not in SLOT_TYPES:
            raise _Bad(f"{p}.type", f"must be one of {list(SLOT_TYPES)}, got {json.dumps(kind)}")
        if "nnz_per_slot" in s:
            v = s["nnz_per_slot"]
            if isinstance(v, list):
                if len(v) != slot_num:
                    raise _Bad(f"{p}.nnz_per_slot", f"must have slot_num = {slot_num} entries, got {len(v)}")
                nnz = tuple(_int(x, f"{p}.nnz_per_slot[{i}]", 1) for i, x in enumerate(v))
            else:
                nnz = (_int(v, f"{p}.nnz_per_slot", 1),) * slot_num
        elif "max_feature_num_per_sample" in s:
            # 2.x form: only a bound on the keys per sample is known, so any slot may hold that many
            limit = _int(s["max_feature_num_per_sample"], f"{p}.max_feature_num_per_sample", 1)
            nnz = (_int(s.get("max_nnz", limit), f"{p}.max_nnz", 1),) * slot_num
        else:
            raise _Bad(f"{p}.nnz_per_slot", "is missing (nor is the 2.x max_feature_num_per_sample given)")
        fixed = _bool(_get(s, "is_fixed_length", p, False), f"{p}.is_fixed_length")
        sparse.append(Attrs(name=top, slot_num=slot_num, nnz_per_slot=nnz, is_fixed_length=fixed))
    attrs = {"label_dims": label_dims, "label_names": names, "dense_dim": dense_dim, "dense_name": dense_name,
             "sparse": tuple(sparse), "key_dtype": key_dtype}
    return attrs, [*names, dense_name, *(s["name"] for s in sparse)]


def _workspace_mb(vocab: int, vec: int, opt: Mapping[str, Any]) -> int:
    """Smallest workspace (MB) whose vocabulary per GPU (facts §2.3) is at least ``vocab``."""
    return workspace_for(vocab, vec, state_copies(opt["optimizer_type"], opt["update_type"]))


def _normalize_embedding(layer: Mapping[str, Any], opt: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite 2.x embedding fields (integer combiner, vocabulary size per GPU) into today's keys."""
    hp = dict(_get(layer, "sparse_embedding_hparam", ""))
    p = "sparse_embedding_hparam"
    comb = hp.get("combiner")
    if isinstance(comb, int) and not isinstance(comb, bool):
        if comb not in (0, 1):
            raise _Bad(f"{p}.combiner", f"must be \"sum\", \"mean\", 0 (sum) or 1 (mean), got {comb}")
        hp["combiner"] = ("sum", "mean")[comb]
    if "workspace_size_per_gpu_in_mb" not in hp and "max_vocabulary_size_per_gpu" in hp:
        vocab = _int(hp.pop("max_vocabulary_size_per_gpu"), f"{p}.max_vocabulary_size_per_gpu")
        vec = _int(_get(hp, "embedding_vec_size", p), f"{p}.embedding_vec_size", 1)
        hp["workspace_size_per_gpu_in_mb"] = _workspace_mb(vocab, vec, opt)
    return {**layer, "sparse_embedding_hparam": hp}


def _lookup(type_name: str) -> OpDef:
    try:
        return get_op(type_name)
    except KeyError as e:
        raise GraphError(f"unknown layer type '{type_name}' ({e.args[0]})") from None


def _layer_where(name: str, i: int, layer: Any) -> str:
    if not isinstance(layer, Mapping):
        return f"{name}: layer {i}"
    top = layer.get("top")
    top = top if isinstance(top, str) else (top[0] if isinstance(top, list) and top else None)
    shown = f" '{top}'" if isinstance(top, str) else ""
    return f"{name}: layer {i} ({layer.get('type', '?')}{shown})"


def _key_dtype(data: Mapping[str, Any], name: str) -> str | None:
    solver = data.get("solver")
    if not isinstance(solver, Mapping) or "input_key_type" not in solver:
        return None
    v = solver["input_key_type"]
    if v not in KEY_TYPES:
        raise GraphError(f"{name}: key 'solver.input_key_type' must be one of {list(KEY_TYPES)}, "
                         f"got {json.dumps(v)}")
    return KEY_TYPES[v]


def _check_key_dtype(key_dtype: str | None) -> None:
    allowed = sorted(set(KEY_TYPES.values()))
    if key_dtype is not None and key_dtype not in allowed:
        raise ValueError(f"key_dtype = {key_dtype!r} is not allowed: must be None or one of {allowed}")


def _build(data: Any, name: str, include_dense_network: bool, key_dtype: str | None
           ) -> tuple[Graph, dict[str, Any]]:
    """Rebuild the graph; also return the lr fields of a top-level optimizer section (2.x)."""
    if not isinstance(data, Mapping):
        raise GraphError(f"{name}: the top level must be a JSON object, got {type(data).__name__}")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers:
        got = "nothing" if layers is None else "[]" if layers == [] else type(layers).__name__
        raise GraphError(f"{name}: key 'layers' must be a non-empty list of layer objects, got {got}")
    meta: dict[str, Any] = {}
    lr: dict[str, Any] = {}
    model_name = data.get("model_name")
    if model_name is not None:
        if not isinstance(model_name, str):
            raise GraphError(f"{name}: key 'model_name' must be a string, got {json.dumps(model_name)}")
        if model_name:
            meta["model_name"] = model_name
    model_opt: Attrs | None = None
    if "optimizer" in data:
        with _at(name):
            model_opt, lr = read_optimizer(data["optimizer"])
        meta["optimizer"] = model_opt
    key_dtype = key_dtype or _key_dtype(data, name) or "uint32"
    graph = Graph(meta)

    first = layers[0]
    with _at(_layer_where(name, 0, first)):
        if _get(first, "type", "") != "Data":
            raise _Bad("type", f"of layer 0 must be \"Data\", got {json.dumps(first.get('type'))}")
        _lookup("Input")
        attrs, outputs = _read_data(first, key_dtype)
        add_node(graph, "Input", [], outputs, attrs, name="data")

    for i, layer in enumerate(layers[1:], 1):
        with _at(_layer_where(name, i, layer)):
            type_name = _str(_get(layer, "type", ""), "type")
            if type_name == "Data":
                raise _Bad("type", "\"Data\" may only be the type of layer 0")
            op = _lookup(type_name)
            if op.kind == "input":
                raise _Bad("type", f"{json.dumps(type_name)} is an input op; only layer 0 (Data) may be one")
            if op.kind == "embedding":
                bottom, top = _bottom_top(layer)
                if len(bottom) != 1 or len(top) != 1:
                    raise _Bad("bottom" if len(bottom) != 1 else "top", "must name exactly one tensor")
                opt = read_optimizer(layer["optimizer"])[0] if "optimizer" in layer else None
                entry = _normalize_embedding(layer, opt or model_opt or OPTIMIZER_DEFAULTS)
                attrs = dict(op.json_read(entry))
                if any(a.name == "optimizer" for a in op.attrs):
                    attrs["optimizer"] = opt
                add_node(graph, type_name, bottom, top, attrs, name=top[0])
            elif include_dense_network:
                bottoms, tops = _bottom_top(layer)
                add_node(graph, type_name, bottoms, tops, op.json_read(layer))
    return graph, lr


def load_graph_json(source: str | Path | Mapping[str, Any], include_dense_network: bool = True,
                    key_dtype: str | None = None) -> Graph:
    """Rebuild a graph from HugeCTR graph JSON (a path, JSON text, or the parsed dict).

    Shapes are inferred and checked as layers are added. With ``include_dense_network=False`` only the
    Data layer and the embeddings are kept (``construct_from_json``). ``key_dtype`` ("uint32" | "int64")
    sets the sparse key type, which graph JSON does not record; by default it comes from a 2.x
    ``solver.input_key_type``, else "uint32" (HugeCTR's ``i64_input_key=False``). An embedding's
    optimizer block becomes its ``optimizer`` attribute.
    """
    _check_key_dtype(key_dtype)
    name, data = _read_source(source)
    return _build(data, name, include_dense_network, key_dtype)[0]


@dataclass(frozen=True)
class LegacyConfig:
    """A HugeCTR 2.x JSON model configuration, split into what each part of hgc needs.

    ``graph`` carries the model optimizer in ``meta["optimizer"]``. ``solver`` is the ``solver`` section
    as written (empty when the file has none: the 2.3 Python interface passes it in code).
    ``optimizer`` holds the optimizer Attrs fields plus ``learning_rate`` (solver default 0.001 when not
    given) and any schedule fields (warmup_steps, decay_start, decay_steps, decay_power, end_lr).
    ``reader`` holds the Data layer's reader fields (source, eval_source, check, …) as written.
    """

    graph: Graph
    solver: dict[str, Any]
    optimizer: dict[str, Any]
    reader: dict[str, Any]


def load_legacy_config(path: str | Path, key_dtype: str | None = None) -> LegacyConfig:
    """Read the 2.x JSON model configuration that ``Session`` takes (sections solver, optimizer, layers)."""
    _check_key_dtype(key_dtype)
    name, data = _read_source(Path(path))
    if not isinstance(data, Mapping):
        raise GraphError(f"{name}: the top level must be a JSON object, got {type(data).__name__}")
    if "optimizer" not in data:
        raise GraphError(f"{name}: section 'optimizer' is missing (a 2.x configuration holds solver, "
                         f"optimizer and layers)")
    solver = data.get("solver", {})
    if not isinstance(solver, Mapping):
        raise GraphError(f"{name}: section 'solver' must be a JSON object, got {json.dumps(solver)}")
    graph, lr = _build(data, name, True, key_dtype)
    optimizer = {**graph.meta["optimizer"], "learning_rate": 0.001, **lr}
    data_layer = data["layers"][0]
    reader = {k: v for k, v in data_layer.items() if k not in DATA_KEYS}
    return LegacyConfig(graph, dict(solver), optimizer, reader)
