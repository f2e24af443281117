"""Shared harness of the model benchmarks (dlrm.py, dcn.py, deepfm.py, wdl.py): hgc against its PyTorch peer
in the same run on the same GPU.

For one model (a :class:`Bench`): for each precision (fp32, fp32 with TF32 GEMMs, fp16 mixed precision, bf16
mixed precision), build the model through hgc's Python API (``import hgc as hugectr``) in the baseline's
shape, compile and lower it, create the cuda executor with device-initialised embedding tables, and time
its steady-state training step on ``--nb`` in-memory batches that cycle (as the baseline does). Then run the
PyTorch baseline script (eager fp32 and torch.compile + bf16) in a subprocess, and print samples/s for each
and the ratios. ``HGC_DEBUG=2`` (or ``--profile``) adds the per-kernel table of a few profiled steps, with
achieved TFLOP/s and GB/s against the GPU's measured peaks (``--peaks FILE``: measured once, then read).

Every result is also one JSON line (``--json FILE`` appends). ``python benchmarks/common.py summary FILE``
prints the table of a whole run from those lines; ``python benchmarks/common.py peaks --peaks FILE``
measures the peaks alone.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
BASELINE_MODES = ("eager", "compile_bf16")
#: The baseline a precision is judged against (issue 6): fp32/TF32 against eager fp32, mixed against compile.
REFERENCE = {"fp32": "eager", "tf32": "eager", "fp16": "compile_bf16", "bf16": "compile_bf16"}
KeyFn = Callable[[str, np.random.Generator, int, int, int, int], np.ndarray]


# -- model definitions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bench:
    """One benchmarked model: its default shape, how to build it with hgc, its keys and its baseline.

    ``build(batch, rows, solver_kwargs)`` returns an uncompiled ``hgc.Model``; ``keys(input, rng, n, slots,
    nnz, rows)`` draws the keys of one sparse input (n·slots·nnz values, sample-major, fixed length);
    ``baseline`` is the script name in the baselines folder and its extra arguments.
    """

    name: str
    batch: int
    rows: int
    build: Callable[[int, int, dict[str, Any]], Any]
    keys: KeyFn
    baseline: tuple[str, tuple[str, ...]]
    lr: float = 1e-3
    note: str = ""


def solver_kwargs(precision: str) -> dict[str, Any]:
    """CreateSolver arguments of a precision variant."""
    if precision == "fp32":
        return {}
    if precision == "tf32":
        return {"enable_tf32_compute": True}
    if precision == "fp16":
        return {"use_mixed_precision": True, "scaler": 1024.0}
    if precision == "bf16":
        return {"use_mixed_precision": True, "hgc_low_precision": "bf16"}
    raise ValueError(f"precision '{precision}' is not one of {PRECISIONS}")


def uniform_keys(rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    """Uniform keys in [0, rows) per slot (one-hot tables index each slot's own rows)."""
    return rng.integers(0, rows, size=n * slots * nnz, dtype=np.int64)


def powerlaw(rng: np.random.Generator, size: int, rows: int) -> np.ndarray:
    """The baselines' power-law keys: exp(u·ln rows) - 1 for uniform u, clamped to [0, rows)."""
    u = rng.random(size, dtype=np.float32)
    k = (np.exp(u * np.float32(np.log(float(rows)))) - 1).astype(np.int64)
    return np.clip(k, 0, rows - 1)


def slot_powerlaw_keys(rng: np.random.Generator, n: int, slots: int, nnz: int, rows: int) -> np.ndarray:
    """Power-law keys per slot, made global by the slot's offset (slot · rows), as the baselines do."""
    local = powerlaw(rng, n * slots * nnz, rows).reshape(n, slots, nnz)
    return (local + (np.arange(slots, dtype=np.int64) * rows)[None, :, None]).reshape(-1)


# -- environment --------------------------------------------------------------------------------------
def commit() -> str:
    """The short commit of the working tree (HGC_COMMIT wins; read from .git without running git)."""
    if os.environ.get("HGC_COMMIT"):
        return os.environ["HGC_COMMIT"]
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.is_file():
                return path.read_text().strip()[:7]
            packed = git / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0][:7]
            return "unknown"
        return head[:7]
    except OSError:
        return "unknown"


def gpu_name() -> str:
    try:
        from hgc.runtime.cuda.device import cupy

        cp = cupy()
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001  (no CuPy / no GPU: the harness still reports)
        return "no GPU"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- options ------------------------------------------------------------------------------------------
@dataclass
class Options:
    batch: int
    rows: int
    iters: int = 50
    warmup: int = 5
    nb: int = 8
    precisions: tuple[str, ...] = PRECISIONS
    baseline_modes: tuple[str, ...] = BASELINE_MODES
    baseline: bool = True
    baseline_dir: str | None = None
    baseline_timeout: float = 300.0
    json: str | None = None
    peaks: str | None = None
    profile: bool = False
    profile_steps: int = 3
    top: int = 10
    graph: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_options(bench: Bench, argv: Sequence[str] | None = None) -> Options:
    from hgc.config import config

    ap = argparse.ArgumentParser(description=f"{bench.name}: hgc vs its PyTorch baseline, same run, same GPU")
    ap.add_argument("--batch", type=int, default=bench.batch)
    ap.add_argument("--rows", type=int, default=bench.rows, help="rows per table/slot (baseline --rows)")
    ap.add_argument("--iters", type=int, default=50, help="timed steps (hgc and the baseline)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (hgc: at least --nb)")
    ap.add_argument("--nb", type=int, default=8, help="in-memory batches the steps cycle over")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help=f"subset of {','.join(PRECISIONS)}")
    ap.add_argument("--baseline-modes", default=",".join(BASELINE_MODES))
    ap.add_argument("--no-baseline", action="store_true", help="run hgc only")
    ap.add_argument("--baseline-dir", default=None, help="folder of the torch_*_baseline(s).py scripts")
    ap.add_argument("--baseline-timeout", type=float, default=300.0)
    ap.add_argument("--json", default=None, help="append one JSON line per result to this file")
    ap.add_argument("--peaks", default=None, help="GPU peaks JSON: read if present, else measured and written")
    ap.add_argument("--profile", action="store_true", help="per-kernel table (also with HGC_DEBUG>=2)")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=10, help="rows of the kernel table (0: all)")
    ap.add_argument("--graph", choices=["auto", "on", "off", "both"], default="auto",
                    help="CUDA graph replay of the step (auto: when the executor supports it; both: time each)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    precisions = tuple(p for p in a.precisions.split(",") if p)
    for p in precisions:
        if p not in PRECISIONS:
            ap.error(f"--precisions: '{p}' is not one of {PRECISIONS}")
    return Options(batch=a.batch, rows=a.rows, iters=a.iters, warmup=a.warmup, nb=a.nb, precisions=precisions,
                   baseline_modes=tuple(m for m in a.baseline_modes.split(",") if m), baseline=not a.no_baseline,
                   baseline_dir=a.baseline_dir, baseline_timeout=a.baseline_timeout, json=a.json, peaks=a.peaks,
                   profile=a.profile or config.debug >= 2, profile_steps=a.profile_steps, top=a.top, graph=a.graph,
                   seed=a.seed)


# -- compiling --------------------------------------------------------------------------------------
def compile_model(model: Any) -> tuple[Any, Any, dict[str, float]]:
    """(optimized graph, ExecutablePlan, seconds per stage) of an uncompiled hgc Model, for the cuda target."""
    from hgc.codegen.lower import lower
    from hgc.config import config

    base = model.pass_context

    def context() -> Any:  # the solver's mixed-precision dtype (hgc_low_precision) may not reach the passes yet
        ctx = base()
        ctx.compute_dtype = getattr(model.solver, "compute_dtype", ctx.compute_dtype)
        return ctx

    model.pass_context = context
    t0 = time.perf_counter()
    with config.patch(target="cuda"):
        model.compile()
    t1 = time.perf_counter()
    res = model.compiled
    plan = lower(res.graph, res.plans, passes=[r.name for r in res.records])
    t2 = time.perf_counter()
    return res.graph, plan, {"passes_s": t1 - t0, "lower_s": t2 - t1}


def initial_weights(graph: Any, seed: int) -> dict[str, list[np.ndarray]]:
    """Every weighted node's weights from its op's initialiser (float32), by node name."""
    from hgc.ir.registry import get_op

    out: dict[str, list[np.ndarray]] = {}
    for i, n in enumerate(graph.nodes()):
        op = get_op(n.op)
        types = [graph.tensor_type(t) for t in n.inputs]
        if op.kind in ("dense", "loss") and op.weights(n.attrs, types):
            rng = np.random.default_rng([seed, i])
            out[n.name] = [np.asarray(w, np.float32) for w in op.init(n.attrs, types, rng)]
    return out


# -- data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SparseInput:
    name: str
    slots: int
    nnz: int


def input_layout(graph: Any) -> tuple[int, int, list[SparseInput]]:
    """(label columns, dense width, sparse inputs) of the graph's Input node; every input fixed-length."""
    inp = next(n for n in graph.nodes() if n.op == "Input").attrs
    sparse = []
    for s in inp["sparse"]:
        nnz = max(s["nnz_per_slot"])
        if not s["is_fixed_length"] and nnz != 1:
            raise ValueError(f"sparse input '{s['name']}' is variable-length; the benchmarks feed fixed length")
        sparse.append(SparseInput(s["name"], int(s["slot_num"]), int(nnz)))
    return int(sum(inp["label_dims"])), int(inp["dense_dim"]), sparse


def host_batches(bench: Bench, graph: Any, n: int, rows: int, count: int, seed: int) -> list[Any]:
    """``count`` host Batches of ``n`` samples: random 0/1 labels, uniform [0, 1) dense, the bench's keys."""
    from hgc.runtime.data.batch import Batch, SparseBatch

    labels, dense_dim, sparse = input_layout(graph)
    out = []
    for b in range(count):
        rng = np.random.default_rng([seed, 7919, b])
        label = (rng.random((n, labels)) < 0.5).astype(np.float32)
        dense = rng.random((n, dense_dim), dtype=np.float32)
        sbs = []
        for s in sparse:
            keys = bench.keys(s.name, rng, n, s.slots, s.nnz, rows)
            offsets = np.arange(0, n * s.slots * s.nnz + 1, s.nnz, dtype=np.int64)
            sbs.append(SparseBatch(offsets, keys, s.slots))
        out.append(Batch(n, label, dense, sbs))
    return out


# -- running hgc ----------------------------------------------------------------------------------------
def device_tables(plan: Any, kernels: Any, seed: int, reuse: dict[str, Any]) -> dict[str, Any]:
    """DeviceEmbeddings initialised on the GPU (uniform ±0.05, as the baselines), reusing ``reuse``'s tables
    when their spec is unchanged (a 13 GB table is not re-made per precision)."""
    from hgc.runtime.cuda.device import cupy
    from hgc.runtime.cuda.embedding import DeviceEmbedding

    cp = cupy()
    out = {}
    for e in plan.embeddings:
        old = reuse.pop(e.name, None)
        if old is not None and old.spec == e:
            out[e.name] = old
            continue
        del old
        gc.collect()
        cp.get_default_memory_pool().free_all_blocks()
        cp.random.seed(seed)
        rows = cp.random.random((e.capacity, e.vec_size), dtype=cp.float32)
        rows *= 0.1
        rows -= 0.05
        out[e.name] = DeviceEmbedding(e, kernels, rows)
    return out


def stage(executor: Any, batches: list[Any]) -> tuple[list[Any], str]:
    """The batches in the form the executor's steady state reads (device-resident when it can)."""
    try:
        from hgc.runtime.cuda.staging import to_device
    except ImportError:
        return batches, "host batches (copied to the GPU every step)"
    return [to_device(executor, b) for b in batches], "device-resident batches"


def graph_modes(executor: Any, mode: str) -> list[bool]:
    """The CUDA-graph settings to time: ``auto`` = on when the executor supports graphs, ``both`` = off then on."""
    supported = hasattr(executor, "use_cuda_graph")
    if mode == "both":
        return [False, True] if supported else [False]
    if mode == "on":
        return [True] if supported else [False]
    if mode == "off":
        return [False]
    return [supported]


def timed_steps(executor: Any, batches: list[Any], iters: int, warmup: int, lr: float, scaler: float
                ) -> tuple[float, float, float]:
    """(samples/s, ms per step, last loss): ``warmup`` untimed steps, then ``iters`` timed ones (wall clock
    between two device synchronisations)."""
    from hgc.runtime.cuda.device import cupy

    cp = cupy()
    losses: Any = {}
    nb = len(batches)
    for i in range(warmup):
        losses = executor.train_step(batches[i % nb], lr, scaler=scaler)
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for i in range(iters):
        losses = executor.train_step(batches[(warmup + i) % nb], lr, scaler=scaler)
    cp.cuda.Device().synchronize()
    dt = time.perf_counter() - t0
    n = batch_size(batches[0])
    loss = float(next(iter(losses.values()))) if losses else float("nan")
    return n * iters / dt, dt / iters * 1e3, loss


def batch_size(batch: Any) -> int:
    return int(getattr(batch, "n", None) or batch.size)


def profile_table(executor: Any, batches: list[Any], steps: int, lr: float, scaler: float, peaks: Any,
                  gemm_kind: str, top: int) -> str:
    """The per-kernel table of ``steps`` profiled steps (graph replay off: every operation is timed)."""
    from hgc.runtime.cuda.profile import Profiler, profiling

    was = getattr(executor, "use_cuda_graph", None)
    if was is not None:
        executor.use_cuda_graph = False
    prof = Profiler(gemm_kind)
    try:
        with profiling(prof):
            for i in range(steps):
                prof.step_begin()
                executor.train_step(batches[i % len(batches)], lr, scaler=scaler)
                prof.step_end()
    finally:
        if was is not None:
            executor.use_cuda_graph = was
    return prof.table(peaks, top or None)


def load_peaks(path: str | None) -> Any:
    """Peaks from ``path`` when it exists, else measured (and written there)."""
    from hgc.runtime.cuda.profile import Peaks, measure_peaks

    if path and os.path.isfile(path):
        with open(path) as f:
            d = json.load(f)
        return Peaks(d["name"], d["copy_gbs"], d["gemm_tflops"])
    peaks = measure_peaks()
    if path:
        with open(path, "w") as f:
            json.dump({"name": peaks.name, "copy_gbs": peaks.copy_gbs, "gemm_tflops": peaks.gemm_tflops}, f)
    return peaks


def run_hgc(bench: Bench, opts: Options, precision: str, tables: dict[str, Any], peaks: Any
            ) -> list[dict[str, Any]]:
    """Build, compile and time one precision variant (per CUDA-graph setting); returns the result records."""
    from hgc.config import config
    from hgc.runtime.cuda.device import cupy
    from hgc.runtime.cuda.executor import CudaExecutor
    from hgc.runtime.cuda.modules import Kernels

    cp = cupy()
    kw = solver_kwargs(precision)
    model = bench.build(opts.batch, opts.rows, kw)
    graph, plan, times = compile_model(model)
    t0 = time.perf_counter()
    kernels = Kernels(plan)
    times["kernels_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables.update(device_tables(plan, kernels, opts.seed, tables))
    ex = CudaExecutor(plan, initial_weights(graph, opts.seed), dict(tables), seed=opts.seed, kernels=kernels)
    cp.cuda.Device().synchronize()
    times["setup_s"] = time.perf_counter() - t0
    batches, how = stage(ex, host_batches(bench, graph, opts.batch, opts.rows, opts.nb, opts.seed))
    scaler = float(kw.get("scaler", 1.0))
    out = []
    with config.patch(debug=0):  # HGC_DEBUG's per-operation checks would distort the timing
        for on in graph_modes(ex, opts.graph):
            if hasattr(ex, "use_cuda_graph"):
                ex.use_cuda_graph = on
            sps, ms, loss = timed_steps(ex, batches, opts.iters, max(opts.warmup, opts.nb), bench.lr, scaler)
            err = getattr(ex, "_graph_error", "")
            mode = precision + ("+graph" if on else "")
            print(f"hgc {bench.name} {mode}: {sps / 1e6:.3f} M samples/s ({ms:.2f} ms/iter) loss={loss:.4f} "
                  f"[{how}; cuda graph {'on' if on else 'off'}{' (failed: ' + err + ')' if on and err else ''}; "
                  f"compile {times['passes_s']:.2f} s passes, {times['lower_s']:.2f} s lowering, "
                  f"{times['kernels_s']:.2f} s kernels]", flush=True)
            out.append(record(bench.name, "hgc", mode, opts.batch, sps, ms, loss=loss, input=how, cuda_graph=on,
                              graph_error=err[:200], **{k: round(v, 3) for k, v in times.items()}))
        if opts.profile:
            kind = {"fp32": "fp32", "tf32": "tf32"}.get(precision, "fp16")
            table_text = profile_table(ex, batches, opts.profile_steps, bench.lr, scaler, peaks, kind, opts.top)
            print(f"per-kernel table, hgc {bench.name} {precision}, batch {opts.batch}:\n{table_text}", flush=True)
            out[-1]["profile"] = table_text
    del ex, batches
    return out


# -- baselines ----------------------------------------------------------------------------------------
BASELINE_LINE = re.compile(r"mode=(?P<mode>\S+) batch=(?P<batch>\d+)[^:]*: (?P<msps>[\d.]+) M samples/s\s+"
                           r"\((?P<ms>[\d.]+) ms/iter\)(?:\s+loss=(?P<loss>\S+))?")
FAILED_LINE = re.compile(r"^mode (?P<mode>\S+) failed: (?P<why>.*)$")


def find_baselines(explicit: str | None = None) -> Path:
    """The folder of the PyTorch baseline scripts: ``explicit``, $HGC_BASELINES, ../shared/bench beside the
    repository, shared/bench inside it, or the copies in benchmarks/baselines."""
    candidates = [explicit, os.environ.get("HGC_BASELINES"), REPO.parent / "shared" / "bench",
                  REPO / "shared" / "bench", REPO / "benchmarks" / "baselines"]
    for c in candidates:
        if c and (Path(c) / "torch_dlrm_baseline.py").is_file():
            return Path(c)
    raise FileNotFoundError(f"no baseline scripts in any of {[str(c) for c in candidates if c]}")


def parse_baseline(text: str) -> list[dict[str, Any]]:
    """The (mode, batch, samples/s, ms/iter, loss) lines of a baseline's output, and its failed modes."""
    out = []
    for line in text.splitlines():
        m = BASELINE_LINE.search(line)
        if m:
            out.append({"mode": m["mode"], "batch": int(m["batch"]), "samples_per_s": float(m["msps"]) * 1e6,
                        "ms_per_iter": float(m["ms"]), "loss": float(m["loss"]) if m["loss"] else None,
                        "status": "ok"})
            continue
        m = FAILED_LINE.search(line.strip())
        if m:
            out.append({"mode": m["mode"], "status": "failed", "reason": m["why"]})
    return out


def run_baseline(bench: Bench, opts: Options) -> list[dict[str, Any]]:
    """Run the bench's PyTorch baseline in a subprocess; one record per mode."""
    folder = find_baselines(opts.baseline_dir)
    script, extra = bench.baseline
    cmd = [sys.executable, str(folder / script), "--batch", str(opts.batch), "--rows", str(opts.rows),
           "--iters", str(opts.iters), "--modes", ",".join(opts.baseline_modes), *extra]
    print("baseline:", " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.baseline_timeout, env=env,
                           check=False)
        text = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        text += f"\nbaseline timed out after {opts.baseline_timeout:.0f} s"
    print(text.strip(), flush=True)
    recs = []
    for r in parse_baseline(text):
        if r["status"] == "ok":
            recs.append(record(bench.name, "torch", r["mode"], r["batch"], r["samples_per_s"], r["ms_per_iter"],
                               loss=r["loss"], script=script, wall_s=round(time.perf_counter() - t0, 1)))
        else:
            recs.append(record(bench.name, "torch", r["mode"], opts.batch, None, None, status="failed",
                               reason=r["reason"][:300], script=script))
    for mode in opts.baseline_modes:
        if not any(r["mode"] == mode for r in recs):
            recs.append(record(bench.name, "torch", mode, opts.batch, None, None, status="failed",
                               reason="no result line (timeout or crash; see the log)", script=script))
    return recs


# -- results ------------------------------------------------------------------------------------------
def record(model: str, impl: str, mode: str, batch: int, sps: float | None, ms: float | None,
           status: str = "ok", **extra: Any) -> dict[str, Any]:
    rec = {"model": model, "impl": impl, "mode": mode, "batch": batch, "status": status,
           "samples_per_s": None if sps is None else round(sps, 1),
           "ms_per_iter": None if ms is None else round(ms, 3)}
    rec.update(extra)
    return rec


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per hgc result of a model: the ratio to each baseline mode of the same model."""
    base = {(r["model"], r["mode"]): r["samples_per_s"] for r in records
            if r["impl"] == "torch" and r["status"] == "ok" and r["samples_per_s"]}
    out = []
    for r in records:
        if r["impl"] != "hgc":
            continue
        row = dict(r)
        for mode in BASELINE_MODES:
            b = base.get((r["model"], mode))
            row[f"x_{mode}"] = (r["samples_per_s"] / b) if (b and r["samples_per_s"]) else None
        out.append(row)
    return out


def table(records: list[dict[str, Any]]) -> str:
    """The results table: every model's hgc and torch rows with samples/s and hgc's ratios."""
    rx = {(r["model"], r["mode"]): r for r in ratios(records)}
    head = f"{'model':7s} {'impl':5s} {'mode':13s} {'M samples/s':>11s} {'ms/iter':>8s} {'x eager':>8s} " \
           f"{'x compile_bf16':>14s}  note"
    lines = [head, "-" * len(head)]

    def fmt(v: float | None, spec: str) -> str:
        width = int(spec.split(".")[0])
        return format(v, spec) if v is not None else "-".rjust(width)

    for r in records:
        if r["impl"] == "hgc":
            x = rx[(r["model"], r["mode"])]
            e, c = x.get("x_eager"), x.get("x_compile_bf16")
            note = "" if r["status"] == "ok" else f"{r['status']}: {str(r.get('reason', ''))[:60]}"
        else:
            e = c = None
            note = "" if r["status"] == "ok" else f"{r['status']}: {str(r.get('reason', ''))[:60]}"
        sps = r["samples_per_s"] / 1e6 if r["samples_per_s"] else None
        lines.append(f"{r['model']:7s} {r['impl']:5s} {r['mode']:13s} {fmt(sps, '11.3f')} "
                     f"{fmt(r['ms_per_iter'], '8.2f')} {fmt(e, '8.2f')} {fmt(c, '14.2f')}  {note}")
    return "\n".join(lines)


def write_json(path: str | None, records: list[dict[str, Any]], info: dict[str, Any]) -> None:
    for r in records:
        line = json.dumps({**info, **{k: v for k, v in r.items() if k != "profile"}}, sort_keys=True)
        print("JSON", line)
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")


def env_info() -> dict[str, Any]:
    return {"gpu": gpu_name(), "date": now(), "commit": commit(), "host": platform.node()}


def main(bench: Bench, argv: Sequence[str] | None = None) -> int:
    """Run one model's benchmark (see the module docstring); returns the process exit code."""
    opts = parse_options(bench, argv)
    info = env_info()
    print(f"== {bench.name}: batch {opts.batch}, {opts.rows} rows per table/slot, {opts.iters} timed steps "
          f"over {opts.nb} in-memory batches; {info['gpu']}, {info['date']}, commit {info['commit']}", flush=True)
    if bench.note:
        print(bench.note)
    peaks = load_peaks(opts.peaks) if opts.profile and opts.precisions else None
    records: list[dict[str, Any]] = []
    tables: dict[str, Any] = {}
    from hgc.errors import NotBuiltError

    for precision in opts.precisions:
        try:
            records.extend(run_hgc(bench, opts, precision, tables, peaks))
        except NotBuiltError as e:
            print(f"hgc {bench.name} {precision}: not available yet: {e}", flush=True)
            records.append(record(bench.name, "hgc", precision, opts.batch, None, None, status="n/a",
                                  reason=str(e).splitlines()[0]))
        except Exception as e:  # noqa: BLE001  (report and go on with the next variant)
            traceback.print_exc()
            records.append(record(bench.name, "hgc", precision, opts.batch, None, None, status="failed",
                                  reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
        gc.collect()
    tables.clear()
    gc.collect()
    if opts.precisions:  # give the tables' memory back before the baseline allocates its own
        from hgc.runtime.cuda.device import cupy

        cupy().get_default_memory_pool().free_all_blocks()
    if opts.baseline:
        records += run_baseline(bench, opts)
    print(f"\n== results {bench.name} ({info['gpu']}, {info['date']}, commit {info['commit']})")
    print(table(records))
    write_json(opts.json, records, info)
    return 0


def summary(path: str) -> str:
    """The table of every result line in a JSON-lines file (a whole run)."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        return "no results"
    head = records[0]
    return f"{head.get('gpu')}, {head.get('date')}, commit {head.get('commit')}\n" + table(records)


def cli(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="benchmark helpers: 'summary FILE' or 'peaks --peaks FILE'")
    ap.add_argument("what", choices=["summary", "peaks"])
    ap.add_argument("file", nargs="?")
    ap.add_argument("--peaks", default=None)
    a = ap.parse_args(argv)
    if a.what == "summary":
        print(summary(a.file))
        return 0
    p = load_peaks(a.peaks)
    print(f"peaks on {p.name}: copy {p.copy_gbs:.0f} GB/s; GEMM TFLOP/s "
          + ", ".join(f"{k} {v:.0f}" for k, v in p.gemm_tflops.items()))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
