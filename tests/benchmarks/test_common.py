"""The benchmark harness without a GPU: baseline discovery and parsing, the ratio table, key generators in
the baselines' shape, every benchmark model compiling for the cuda target in every precision, batches that
fit the compiled inputs, the segmentation of a step into CUDA graphs and eager launches, and the Raw file
the end-to-end benchmark writes."""
from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import common
import dcn
import deepfm
import dlrm
import e2e
import wdl

MODELS = {"dlrm": dlrm, "dcn": dcn, "deepfm": deepfm, "wdl": wdl}
SHARED = BENCH.parents[1] / "shared" / "bench"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/bench is not beside the repository")
def test_baseline_copies_equal_the_shared_scripts() -> None:
    for name in ("torch_dlrm_baseline.py", "torch_ctr_baselines.py"):
        assert filecmp.cmp(BENCH / "baselines" / name, SHARED / name, shallow=False), name


def test_baselines_are_found_and_parsed() -> None:
    assert (common.find_baselines(str(BENCH / "baselines")) / "torch_ctr_baselines.py").is_file()
    text = ("2.11.0 NVIDIA H200\n"
            "torch_dlrm mode=eager batch=65536 rows/table=1000000 dim=128: 1.769 M samples/s  (37.05 ms/iter) "
            "loss=0.6930\n"
            "mode compile_bf16 failed: RuntimeError('no triton')\n"
            "torch_wdl mode=eager batch=16384 rows/slot=1000000: 2.529 M samples/s (6.48 ms/iter) loss=0.1708\n")
    got = common.parse_baseline(text)
    assert [g["status"] for g in got] == ["ok", "failed", "ok"]
    assert got[0]["samples_per_s"] == pytest.approx(1.769e6) and got[0]["ms_per_iter"] == 37.05
    assert got[1]["mode"] == "compile_bf16" and "triton" in got[1]["reason"]
    assert got[2]["batch"] == 16384 and got[2]["loss"] == pytest.approx(0.1708)


def test_ratios_and_table() -> None:
    recs = [common.record("dlrm", "hgc", "fp16+graph", 65536, 10.8e6, 6.07),
            common.record("dlrm", "torch", "eager", 65536, 1.8e6, 36.4),
            common.record("dlrm", "torch", "compile_bf16", 65536, 5.4e6, 12.1),
            common.record("dcn", "hgc", "fp32", 16384, None, None, status="n/a", reason="not built")]
    r = {x["mode"]: x for x in common.ratios(recs)}
    assert r["fp16+graph"]["x_eager"] == pytest.approx(6.0) and r["fp16+graph"]["x_compile_bf16"] == pytest.approx(2.0)
    assert r["fp32"]["x_eager"] is None
    text = common.table(recs)
    assert "6.00" in text and "2.00" in text and "n/a: not built" in text
    assert len({len(line) for line in text.splitlines()[2:4]}) == 1  # aligned columns


def test_summary_reads_json_lines(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    info = {"gpu": "X", "date": "d", "commit": "abc1234"}
    common.write_json(str(f), [common.record("wdl", "hgc", "fp32", 16384, 3.1e6, 5.3)], info)
    line = json.loads(f.read_text().splitlines()[0])
    assert line["commit"] == "abc1234" and line["samples_per_s"] == 3.1e6
    assert "abc1234" in common.summary(str(f)) and "wdl" in common.summary(str(f))


def test_commit_is_read_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HGC_COMMIT", raising=False)
    c = common.commit()
    assert c == "unknown" or (len(c) == 7 and int(c, 16) >= 0)
    monkeypatch.setenv("HGC_COMMIT", "feedbee")
    assert common.commit() == "feedbee"


def test_key_generators_follow_the_baselines() -> None:
    rng = np.random.default_rng(3)
    k = common.powerlaw(rng, 200_003, 1000)
    assert k.dtype == np.int64 and k.min() >= 0 and k.max() <= 999
    assert np.mean(k < 32) > 0.45  # log-uniform: half the draws below sqrt(rows)
    s = common.slot_powerlaw_keys(np.random.default_rng(1), 37, 26, 1, 1000).reshape(37, 26)
    assert np.all(s // 1000 == np.arange(26)[None, :])
    w = wdl.keys("wide_data", np.random.default_rng(2), 41, 1, 2, 500).reshape(41, 2)
    assert np.all(w[:, 0] < 500) and np.all((w[:, 1] >= 500) & (w[:, 1] < 1000))
    u = dlrm.keys("data1", np.random.default_rng(4), 13, 26, 1, 77)
    assert u.shape == (13 * 26,) and u.max() < 77


@pytest.mark.parametrize("precision", common.PRECISIONS)
@pytest.mark.parametrize("name", list(MODELS))
def test_models_compile_for_the_cuda_target(name: str, precision: str) -> None:
    mod = MODELS[name]
    rows = 1000
    graph, plan, times = common.compile_model(mod.BENCH.build(mod.BENCH.batch, rows, common.solver_kwargs(precision)))
    assert plan.batch == mod.BENCH.batch and set(times) == {"passes_s", "lower_s"}
    want = "float32" if precision in ("fp32", "tf32") else {"fp16": "float16", "bf16": "bfloat16"}[precision]
    assert plan.compute_dtype == want
    _, _, sparse = common.input_layout(graph)
    for e in plan.embeddings:
        slots = next(s.slots for s in sparse if s.name == e.input)
        span = 2 * rows if e.input == "wide_data" else slots * rows
        assert e.capacity >= span, f"{e.name}: {e.capacity} rows for {span} keys"
    if precision == "tf32":
        from hgc.codegen.plan import GemmCall

        gemms = [op for st in plan.forward for op in st.ops if isinstance(op, GemmCall)]
        assert gemms and all(g.compute_type == "tf32" for g in gemms)


@pytest.mark.parametrize("name", list(MODELS))
def test_batches_fit_the_compiled_inputs(name: str) -> None:
    mod = MODELS[name]
    rows = 1000
    graph, plan, _ = common.compile_model(mod.BENCH.build(64, rows, {}))
    batches = common.host_batches(mod.BENCH, graph, 64, rows, 2, seed=0)
    assert len(batches) == 2 and not np.array_equal(batches[0].dense, batches[1].dense)
    b = batches[0]
    assert b.label.shape == (64, sum(d for _, d in plan.inputs.labels)) and b.dense.shape == (64, plan.inputs.dense_dim)
    for (sname, slots), sb in zip(plan.inputs.sparse, b.sparse):
        e = next(x for x in plan.embeddings if x.input == sname)
        assert sb.slot_num == slots and sb.row_offsets.shape == (64 * slots + 1,)
        assert sb.row_offsets[-1] == sb.keys.size
        if e.one_hot:
            assert sb.keys.max() < min(e.slot_size_array)
        else:
            assert sb.keys.max() < e.capacity


def test_a_step_splits_into_graphs_and_eager_launches() -> None:
    from hgc.codegen.plan import GemmCall, KernelLaunch
    from hgc.runtime.cuda import graph

    _, plan, _ = common.compile_model(dcn.build(128, 1000, {}))
    units = graph.step_units(plan)
    assert not any(getattr(op, "phase", "") == "update" for _, op in units)
    runs = graph.segments(units)
    eager = [op for cap, run in runs if not cap for _, op in run]
    captured = [op for cap, run in runs if cap for _, op in run]
    assert all(isinstance(op, KernelLaunch) for op in eager)
    assert {op.function for op in eager} == {"fwd", "bwd", "step"}  # Dropout forward / backward, the optimizer
    assert any(isinstance(op, GemmCall) for op in captured)
    assert sum(1 for cap, _ in runs if cap) == 5  # graphs between the 2 + 2 Dropout launches and the optimizer
    assert graph.baked([op for _, op in units]) == ("loss_weight:loss",)


def test_raw_file_round_trip(tmp_path: Path) -> None:
    from hgc.runtime.data.reader import DataReader

    path = str(tmp_path / "d.raw")
    e2e.write_raw(path, 300, 50, seed=1)
    r = DataReader("Raw", path, 100, label_dims=1, dense_dim=13, sparse=[(26, 1, True)], slot_size_array=[50] * 26,
                   repeat=False, num_workers=1)
    try:
        b = r.read()
    finally:
        r.close()
    raw = np.fromfile(path, np.int32).reshape(300, 40)
    assert b.n == 100
    assert np.array_equal(b.label[:, 0], raw[:100, 0].astype(np.float32))
    assert np.array_equal(b.sparse[0].keys.astype(np.int64), raw[:100, 14:].reshape(-1).astype(np.int64))
    assert np.allclose(b.dense, np.log1p(raw[:100, 1:14].astype(np.float32)))
