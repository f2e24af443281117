"""The per-kernel table (HGC_DEBUG=2): every operation of a training step is timed, the held GPU makes
the events time the kernels rather than the host's launches, and the table reads as documented."""
from __future__ import annotations

import pytest

from tests.gpu._util import gpu

pytestmark = pytest.mark.gpu
cp = gpu()

from hgc.runtime.cuda.profile import Profiler, profiling
from tests.gpu.test_executor import make_batch, setup


def profiled(hold_ms: float, steps: int = 3) -> Profiler:
    graph, _, _, ex, _ = setup("dlrm", batch=301)
    batch = make_batch(graph, 301, seed=5)
    ex.train_step(batch, 0.01)  # compile and warm up outside the profile
    prof = Profiler("fp32", hold_ms=hold_ms)
    with profiling(prof):
        for _ in range(steps):
            prof.step_begin()
            ex.train_step(batch, 0.01)
            prof.step_end()
    return prof


def test_every_operation_is_timed_and_the_table_reads() -> None:
    prof = profiled(hold_ms=30.0)
    rows = prof.rows()
    kinds = {r.kind for r in rows}
    assert {"gemm", "kernel", "embedding"} <= kinds
    assert all(r.ms > 0 and r.calls > 0 for r in rows)
    assert prof.steps == 3 and prof.step_ms > 0
    # regions do not overlap and lie inside the steps (the hold is before each step's first event)
    assert sum(r.ms for r in rows) <= prof.step_ms / prof.steps * 1.02
    table = prof.table(top=5)
    assert "ms/step" in table and "GB/s" in table and len(table.splitlines()) >= 5 + 2


def test_the_hold_takes_the_launch_gaps_out_of_the_step() -> None:
    """A held step runs its queued kernels back to back: it takes less GPU time than one the host feeds
    launch by launch (this small DLRM is launch-bound)."""
    held, fed = profiled(hold_ms=40.0), profiled(hold_ms=0.0)
    assert held.step_ms < fed.step_ms
