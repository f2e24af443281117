"""The default pass pipeline and the driver that runs it.

:func:`run_pipeline` runs the passes of :data:`DEFAULT_PIPELINE` in order, honouring
``ctx.disabled_passes`` and ``ctx.stop_after`` (pass names as in each module's ``NAME``, or the module
name, either case), verifying the graph after every pass when ``ctx.verify``, timing each pass, calling
``ctx.instruments``, adding each pass's stats to ``ctx.counters`` and ``hgc.config.config.counters``
(keys ``"<PassName>.<stat>"``) and, with ``ctx.dump_dir``, writing ``NNN_<PassName>.ir.txt`` and
``NNN_<PassName>.dot`` after every pass (``000_Initial`` is the graph as given; NNN is the pass's
position in the pipeline) and ``placement.txt`` once the placement plan exists.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from hgc.config import config
from hgc.errors import GraphError
from hgc.ir.graph import Graph
from hgc.passes import (
    dead_code,
    fuse_fc_relu,
    fuse_reshape_concat,
    group_fused_fc,
    plan_buffers,
    plan_placement,
    plan_precision,
    validate,
)
from hgc.passes.context import PassContext, PassRecord, PipelineResult

DEFAULT_PIPELINE: tuple[ModuleType, ...] = (
    validate,             # reject a malformed graph before anything rewrites it
    fuse_reshape_concat,  # Reshape/Concat over 3-D embedding outputs -> FusedReshapeConcat(General)
    fuse_fc_relu,         # InnerProduct -> ReLU -> FusedInnerProduct (bias + ReLU epilogue)
    group_fused_fc,       # chains of FusedInnerProducts -> GroupFusedInnerProduct
    dead_code,            # drop nodes that reach no loss (after the fusions, before any plan reads the graph)
    plan_placement,       # which GPU/rank holds which embedding rows; do they fit the workspace
    plan_buffers,         # liveness over forward + backward -> shared activation/gradient buffers
    plan_precision,       # compute dtype of every tensor and the Cast points (mixed precision)
)


def pass_names(passes: Sequence[ModuleType] = DEFAULT_PIPELINE) -> list[str]:
    return [p.NAME for p in passes]


def resolve_pass(name: str, passes: Sequence[ModuleType] = DEFAULT_PIPELINE) -> str:
    """The NAME of the pass called ``name`` (its NAME or its module name, any case)."""
    for p in passes:
        module = getattr(p, "__name__", p.NAME).rsplit(".", 1)[-1]
        if name.lower() in (p.NAME.lower(), module.lower()):
            return p.NAME
    raise ValueError(f"unknown pass '{name}'; known passes: {', '.join(pass_names(passes))}")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _dump_graph(dump: Path, stem: str, graph: Graph) -> None:
    from hgc.ir.dot import to_dot
    from hgc.ir.printer import print_graph

    _write(dump / f"{stem}.ir.txt", print_graph(graph))
    _write(dump / f"{stem}.dot", to_dot(graph, stem))


def _verify(verify: Callable[[Graph], None], graph: Graph, after: str) -> None:
    try:
        verify(graph)
    except GraphError as e:
        raise GraphError(f"after pass {after}: {e}") from e


def run_pipeline(graph: Graph, ctx: PassContext,
                 passes: Sequence[ModuleType] = DEFAULT_PIPELINE) -> PipelineResult:
    disabled = {resolve_pass(n, passes) for n in ctx.disabled_passes}
    stop = resolve_pass(ctx.stop_after, passes) if ctx.stop_after else None
    verify = validate.load_verifier() if ctx.verify else None
    dump = Path(ctx.dump_dir) if ctx.dump_dir is not None else None
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        _dump_graph(dump, "000_Initial", graph)
    records: list[PassRecord] = []
    for index, p in enumerate(passes, 1):
        if p.NAME not in disabled:
            before = graph
            t0 = time.perf_counter()
            result = p.run(graph, ctx)
            ms = (time.perf_counter() - t0) * 1e3
            if verify is not None and p is not validate:
                _verify(verify, result.graph, p.NAME)
            for fn in ctx.instruments:
                fn(p.NAME, before, result)
            for k, v in result.stats.items():
                ctx.counters[f"{p.NAME}.{k}"] += v
                config.counters[f"{p.NAME}.{k}"] += v
            records.append(PassRecord(p.NAME, ms, result.changed, len(before), len(result.graph),
                                      dict(result.stats)))
            graph = result.graph
            if dump is not None:
                _dump_graph(dump, f"{index:03d}_{p.NAME}", graph)
        if p.NAME == stop:
            break
    if dump is not None and "placement" in ctx.plans:
        _write(dump / "placement.txt", plan_placement.format_placement(ctx.plans["placement"]))
    return PipelineResult(graph, records, dict(ctx.plans))


def format_pass_table(records: Sequence[PassRecord]) -> str:
    """One row per pass run: name, time, whether it changed the graph, node counts, fusions, stats."""
    rows = [("pass", "ms", "changed", "nodes", "fusions", "stats")]
    for r in records:
        stats = " ".join(f"{k}={v}" for k, v in r.stats.items() if k != "fusions")
        rows.append((r.name, f"{r.ms:.2f}", "yes" if r.changed else "no", f"{r.nodes_before} -> {r.nodes_after}",
                     str(r.stats["fusions"]) if "fusions" in r.stats else "-", stats))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]),
                 row[3].ljust(widths[3]), row[4].rjust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
    total = sum(r.ms for r in records)
    lines.append(f"{len(records)} pass(es), {total:.2f} ms")
    return "\n".join(lines)
