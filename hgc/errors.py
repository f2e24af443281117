"""Errors raised by hgc. Every message names the thing at fault, its value and the rule it breaks."""
from __future__ import annotations


class HgcError(Exception):
    """Base class of every error hgc raises on purpose."""


class ShapeError(HgcError, ValueError):
    """A layer cannot take the shapes of its inputs (raised at ``Model.add``)."""


class GraphError(HgcError, ValueError):
    """The graph is malformed: unknown tensor, duplicate name, cycle, verifier failure."""


class DataError(HgcError, ValueError):
    """A data file breaks its format. Names the file, the sample index, the byte offset and the rule."""

    def __init__(self, file: str, rule: str, sample: int | None = None, offset: int | None = None) -> None:
        self.file, self.rule, self.sample, self.offset = file, rule, sample, offset
        where = []
        if sample is not None:
            where.append(f"sample {sample}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        loc = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{file}{loc}: {rule}")


class PlacementError(HgcError, ValueError):
    """An embedding table does not fit where the placement plan must put it."""


class NotBuiltError(HgcError, NotImplementedError):
    """A documented capability that this build of hgc does not provide yet; the message names it."""

    def __init__(self, capability: str, where: str = "") -> None:
        suffix = f" (needed by {where})" if where else ""
        super().__init__(f"hgc does not implement {capability} yet{suffix}")


class TrainingError(HgcError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""
