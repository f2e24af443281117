"""The plan cache: keys follow IR, settings, templates and version; entries round-trip and are atomic."""
from __future__ import annotations

from pathlib import Path

import pytest

from hgc.codegen import cache
from hgc.codegen.lower import lower
from hgc.config import config
from hgc.ir.printer import print_graph
from hgc.passes.context import PassContext
from hgc.passes.pipeline import run_pipeline
from tests.codegen.test_lower import dlrm_graph


def test_key_depends_on_every_input() -> None:
    k = cache.plan_key("ir", "batch=8", ["loss", "elementwise"])
    assert k == cache.plan_key("ir", "batch=8", ["elementwise", "loss", "loss"])
    assert k != cache.plan_key("ir2", "batch=8", ["loss", "elementwise"])
    assert k != cache.plan_key("ir", "batch=16", ["loss", "elementwise"])
    assert k != cache.plan_key("ir", "batch=8", ["loss"])


def test_round_trip_and_misses(tmp_path: Path) -> None:
    res = run_pipeline(dlrm_graph(), PassContext(batchsize=24))
    plan = lower(res.graph, res.plans)
    key = cache.plan_key(print_graph(res.graph), "batch=24", [k.template for k in plan.kernels])
    with config.patch(cache_dir=str(tmp_path)):
        assert cache.load(key) is None
        path = cache.store(key, plan)
        assert path.parent == tmp_path / "plans" and not list(path.parent.glob(".*"))
        assert cache.load(key) == plan
        path.write_bytes(b"truncated")
        assert cache.load(key) is None


def test_store_leaves_no_partial_file(tmp_path: Path) -> None:
    class Unpicklable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("cannot pickle")

    with config.patch(cache_dir=str(tmp_path)):
        with pytest.raises(RuntimeError):
            cache.store("k", Unpicklable())  # type: ignore[arg-type]
        assert list((tmp_path / "plans").iterdir()) == []
