"""What every pass receives and returns."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hgc.ir.graph import Graph


@dataclass
class PassContext:
    """Options of one pipeline run, and the plans the planning passes leave behind.

    ``vvgpu`` is HugeCTR's device list (outer = nodes/ranks, inner = GPUs of that node). ``instruments`` are
    called as ``fn(pass_name, graph_before, result)`` after every pass.
    """

    vvgpu: list[list[int]] = field(default_factory=lambda: [[0]])
    batchsize: int = 2048
    batchsize_eval: int = 2048
    use_mixed_precision: bool = False
    enable_tf32_compute: bool = False
    compute_dtype: str = "float32"  # float32 | float16 | bfloat16 (hgc extension)
    target: str = "cpu"
    disabled_passes: frozenset[str] = frozenset()
    stop_after: str | None = None
    verify: bool = True
    dump_dir: Path | None = None
    instruments: list[Callable[[str, Graph, PassResult], None]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    plans: dict[str, Any] = field(default_factory=dict)  # "placement", "buffers", "precision", …

    @property
    def world_size(self) -> int:
        return sum(len(g) for g in self.vvgpu)


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    changed: bool
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PassRecord:
    """One row of the pass table: name, wall time, whether it changed the graph, node counts, stats."""

    name: str
    ms: float
    changed: bool
    nodes_before: int
    nodes_after: int
    stats: dict[str, int]


@dataclass(frozen=True)
class PipelineResult:
    graph: Graph
    records: list[PassRecord]
    plans: dict[str, Any]
