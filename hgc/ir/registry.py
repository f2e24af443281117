"""The op registry: one :class:`OpDef` per op, holding everything hgc knows about it.

An op module (``hgc/ir/ops/<family>.py``) builds its ``OpDef`` and calls :func:`register`. The entry
carries the attribute schema (names are the HugeCTR Python argument names), shape/dtype inference,
traits, the weights it owns and how they are initialised, the NumPy reference semantics (forward and
backward, used by the cpu target and as the oracle of generated kernels) and the HugeCTR graph-JSON
mapping.

Reference semantics contract (dtype-generic: float32 in training, float64 in gradient tests)::

    forward(ctx, attrs, xs, ws)       -> (ys, saved)
    backward(ctx, attrs, saved, gys)  -> (gxs, gws)

``xs``/``ys``/``gys``/``gxs`` follow the node's inputs/outputs; ``ws``/``gws`` follow
:attr:`OpDef.weights`. ``gxs[i]`` may be ``None`` when input i takes no gradient (labels, Cast).
``backward`` returns the true gradient of ``forward`` (decided in DESIGN.md §7); losses return the
gradient of their reported mean loss times ``gys[0]``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgc.ir.types import TensorType

REQUIRED: Any = object()

#: Initializer_t names, as IR attributes hold them.
INITIALIZERS = ("Default", "Uniform", "XavierNorm", "XavierUniform", "Zero")


@dataclass(frozen=True)
class Attr:
    """One attribute: its HugeCTR argument name, default, and an optional rule.

    ``check(value)`` returns ``None`` when the value is allowed, else a phrase naming the rule
    (e.g. ``"must be > 0"``); the frontend turns it into a ``ValueError`` naming argument and value.
    """

    name: str
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class WeightSpec:
    """A trainable weight of a node: its name within the layer, shape and initializer attribute."""

    name: str
    shape: tuple[int, ...]
    init_attr: str = ""


@dataclass
class RefContext:
    """What the reference semantics may read besides tensors."""

    training: bool = True
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    state: dict[str, Any] = field(default_factory=dict)  # non-trainable per-node state (BatchNorm stats)


InferFn = Callable[[Mapping[str, Any], Sequence[TensorType]], Sequence[TensorType]]
WeightsFn = Callable[[Mapping[str, Any], Sequence[TensorType]], Sequence[WeightSpec]]
InitFn = Callable[[Mapping[str, Any], Sequence[TensorType], np.random.Generator], list[np.ndarray]]
ForwardFn = Callable[[RefContext, Mapping[str, Any], list, list], tuple[list, Any]]
BackwardFn = Callable[[RefContext, Mapping[str, Any], Any, list], tuple[list, list]]
JsonWriteFn = Callable[[Mapping[str, Any]], dict[str, Any]]
JsonReadFn = Callable[[Mapping[str, Any]], dict[str, Any]]


def _no_weights(attrs: Mapping[str, Any], types: Sequence[TensorType]) -> Sequence[WeightSpec]:
    return ()


def _no_json(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class OpDef:
    """Everything about one op. See the module docstring for the function contracts."""

    name: str
    kind: str  # "input" | "embedding" | "dense" | "loss"
    attrs: tuple[Attr, ...]
    infer: InferFn
    num_inputs: tuple[int, int | None] = (1, 1)  # min, max (None: unbounded)
    traits: frozenset[str] = frozenset()
    weights: WeightsFn = _no_weights
    init: InitFn | None = None
    forward: ForwardFn | None = None
    backward: BackwardFn | None = None
    json_write: JsonWriteFn = _no_json
    json_read: JsonReadFn = _no_json
    doc: str = ""

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(f"op {self.name} has no attribute '{name}'")

    def defaults(self) -> dict[str, Any]:
        return {a.name: a.default for a in self.attrs if not a.required}


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.name in _REGISTRY:
        raise ValueError(f"op '{op.name}' is registered twice")
    _REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}'; known ops: {', '.join(sorted(_REGISTRY))}") from None


def all_ops() -> dict[str, OpDef]:
    _load()
    return dict(_REGISTRY)


def _load() -> None:
    import hgc.ir.ops  # noqa: F401  (registers every op on first use)
