"""The one node record of the IR: frozen, plain data, comparable."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hgc.ir.types import TensorType


def freeze(value: Any) -> Any:
    """Lists become tuples (recursively) so attributes are hashable and compare by value."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return Attrs(value)
    return value


class Attrs(Mapping[str, Any]):
    """An immutable, hashable mapping of attribute name → plain value (int, float, str, bool, tuples)."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[str, Any] | None = None, **kw: Any) -> None:
        d = dict(items or {}, **kw)
        object.__setattr__(self, "_d", {k: freeze(d[k]) for k in sorted(d)})

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        return hash(tuple(self._d.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._d) == dict(other)

    def __repr__(self) -> str:
        return f"Attrs({self._d!r})"

    def replace(self, **kw: Any) -> Attrs:
        return Attrs({**self._d, **kw})


@dataclass(frozen=True)
class Node:
    """One operation: ``op`` (a registry key) reads tensors ``inputs`` and writes tensors ``outputs``.

    ``types`` holds the inferred type of each output. ``name`` is unique in a graph; by default the
    first output's name (HugeCTR layers are known by their top names).
    """

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Attrs = field(default_factory=Attrs)
    types: tuple[TensorType, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "types", tuple(self.types))
        if not isinstance(self.attrs, Attrs):
            object.__setattr__(self, "attrs", Attrs(self.attrs))
        if not self.name:
            object.__setattr__(self, "name", self.outputs[0] if self.outputs else self.op)

    def replace(self, **kw: Any) -> Node:
        d = {f: getattr(self, f) for f in ("op", "inputs", "outputs", "attrs", "types", "name")}
        d.update(kw)
        return Node(**d)

    def label(self) -> str:
        """How errors name this node: its op and its first top name."""
        return f"{self.op} layer '{self.name}'"
