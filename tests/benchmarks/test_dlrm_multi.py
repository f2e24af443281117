"""benchmarks/dlrm_multi.py without GPUs: the ratio table against either target, and the stage timer's
bookkeeping (wrapped methods still return their results; calls and times per label)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import dlrm_multi


def _record(config: str, gpus: int, sps: float) -> dict[str, Any]:
    return {"config": config, "gpus": gpus, "per_gpu_batch": 65536, "sps": sps, "ms": 1.0, "host_ms": 0.5}


def test_report_marks_the_target() -> None:
    recs = [_record("single", 1, 10e6), _record("inprocess", 2, 19e6), _record("mpi", 2, 17e6)]
    text = dlrm_multi.report(recs)
    assert "| inprocess | 2 | 65536 | 19.000 M | 1.00 | 0.50 | 1.900 | ✔ ≥ 1.85 |" in text
    assert "| mpi | 2 | 65536 | 17.000 M | 1.00 | 0.50 | 1.700 | ✘ ≥ 1.85 |" in text
    logical = dlrm_multi.report([_record("single", 1, 10e6), _record("inprocess", 2, 9.6e6)], 0.95)
    assert "0.960 | ✔ ≥ 0.95 |" in logical
    failed = dlrm_multi.report([{"config": "mpi", "status": "skipped", "reason": "mpirun is not installed"}])
    assert "| mpi | | | skipped: mpirun is not installed | | | | |" in failed


def test_stage_timer_counts_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlrm_multi, "synchronize", lambda ex: None)

    class Table:
        def forward(self, x: int) -> int:
            return x + 1

        backward = update = forward

    class Ex:
        def __init__(self) -> None:
            self.tables = {"t": Table()}
            self.replicas = [Table(), Table()]

    ex = Ex()
    timer = dlrm_multi.StageTimer(ex)
    timer.install()
    assert ex.tables["t"].forward(1) == 2 and ex.replicas[1].backward(5) == 6
    ex.tables["t"].forward(3)
    assert timer.times["table t.forward"][0] == 2 and timer.times["dense[1].backward"][0] == 1
    table = timer.table(2)
    assert "table t.forward" in table and "1.0" in table
