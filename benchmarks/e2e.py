"""End to end: DLRM trained from a Raw file on disk through hgc's reader, against the in-memory rate; and
DLRM's compile time, cold and from the caches.

1. Writes a Raw file of ``--samples`` DLRM samples (label, 13 dense, 26 one-hot keys local to their slot;
   int32, HugeCTR's Raw layout) unless it exists.
2. Times the training step on ``--nb`` device-resident batches (the in-memory rate, as benchmarks/dlrm.py),
   then on batches read from the file by ``DataReader("Raw", ...)`` worker threads and staged to the GPU
   by the executor (pinned double buffers, copy stream: the copy of batch i+1 overlaps step i). Prints
   both rates and their ratio (issue 6: end to end >= 90 % of in memory).
3. ``--compile``: runs this script's compile stage twice in fresh processes sharing one new cache
   directory: passes + lowering (hgc's plan cache) + kernels (NVRTC through CuPy, cubin cache). The first
   is cold, the second reads the caches.

    python benchmarks/e2e.py [--samples 4194304] [--workers 12] [--precision fp16] [--compile]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import dlrm
import numpy as np

DENSE, SLOTS = 13, 26


def write_raw(path: str, samples: int, rows: int, seed: int = 0) -> None:
    """A Raw file: per sample int32 label (0/1), 13 int32 dense values >= 0, 26 int32 keys in [0, rows)."""
    rng = np.random.default_rng(seed)
    chunk = 1 << 20
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for a in range(0, samples, chunk):
            m = min(chunk, samples - a)
            block = np.empty((m, 1 + DENSE + SLOTS), np.int32)
            block[:, 0] = rng.integers(0, 2, m)
            block[:, 1:1 + DENSE] = rng.integers(0, 1000, (m, DENSE))
            block[:, 1 + DENSE:] = rng.integers(0, rows, (m, SLOTS))
            f.write(block.tobytes())
    os.replace(tmp, path)


def compile_stage(batch: int, rows: int, precision: str) -> dict[str, float]:
    """Model → passes → plan (hgc's plan cache) → loaded kernels; seconds per stage."""
    from hgc.codegen import cache
    from hgc.codegen.lower import lower
    from hgc.codegen.render import template_names
    from hgc.config import config
    from hgc.ir.printer import print_graph
    from hgc.runtime.cuda.modules import Kernels

    t0 = time.perf_counter()
    model = dlrm.build(batch, rows, common.solver_kwargs(precision))
    with config.patch(target="cuda"):
        model.compile()
    res = model.compiled
    t1 = time.perf_counter()
    passes = [r.name for r in res.records]
    key = cache.plan_key(print_graph(res.graph), repr((batch, precision, passes)), template_names())
    plan = cache.load(key)
    hit = plan is not None
    if plan is None:
        plan = lower(res.graph, res.plans, passes=passes)
        cache.store(key, plan)
    t2 = time.perf_counter()
    Kernels(plan)
    t3 = time.perf_counter()
    return {"passes_s": t1 - t0, "plan_s": t2 - t1, "plan_cache_hit": float(hit), "kernels_s": t3 - t2,
            "total_s": t3 - t0}


def compile_times(batch: int, rows: int, precision: str) -> list[dict[str, float]]:
    """The compile stage cold, then cached, each in a fresh process over one new cache directory."""
    out = []
    with tempfile.TemporaryDirectory(prefix="hgc_compile_") as d:
        env = dict(os.environ, HGC_CACHE_DIR=d, CUPY_CACHE_DIR=os.path.join(d, "cupy"))
        for _ in range(2):
            p = subprocess.run([sys.executable, __file__, "--compile-stage", "--batch", str(batch), "--rows", str(rows),
                                "--precision", precision], capture_output=True, text=True, env=env, check=False)
            line = [x for x in p.stdout.splitlines() if x.startswith("COMPILE ")]
            if not line:
                print(p.stdout + p.stderr)
                raise RuntimeError("the compile stage printed no result")
            out.append(json.loads(line[-1][len("COMPILE "):]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "hgc_e2e_dlrm.raw"))
    ap.add_argument("--samples", type=int, default=64 * 65536)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--nb", type=int, default=8)
    ap.add_argument("--precision", default="fp16", choices=common.PRECISIONS)
    ap.add_argument("--graph", choices=["on", "off"], default="on")
    ap.add_argument("--compile", action="store_true", help="also time compiling cold and from the caches")
    ap.add_argument("--no-train", action="store_true", help="only the compile times")
    ap.add_argument("--compile-stage", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.compile_stage:
        print("COMPILE " + json.dumps(compile_stage(a.batch, a.rows, a.precision)), flush=True)
        return 0
    info = common.env_info()
    print(f"== e2e dlrm {a.precision}: batch {a.batch}, {info['gpu']}, {info['date']}, commit {info['commit']}")
    records: list[dict[str, Any]] = []
    if a.compile:
        cold, warm = compile_times(a.batch, a.rows, a.precision)
        for what, t in (("cold", cold), ("cached", warm)):
            print(f"compile dlrm ({what}): {t['total_s']:.2f} s = passes {t['passes_s']:.2f} + plan "
                  f"{t['plan_s']:.2f} (cache {'hit' if t['plan_cache_hit'] else 'miss'}) + kernels "
                  f"{t['kernels_s']:.2f}", flush=True)
            records.append({"model": "dlrm", "impl": "hgc", "mode": f"compile_{what}", **t})
    if not a.no_train:
        records += train(a)
    common.write_json(a.json, [dict(r, status=r.get("status", "ok")) for r in records], info)
    return 0


def train(a: argparse.Namespace) -> list[dict[str, Any]]:
    from hgc.config import config
    from hgc.runtime.cuda.device import cupy
    from hgc.runtime.cuda.executor import CudaExecutor
    from hgc.runtime.cuda.modules import Kernels
    from hgc.runtime.cuda.staging import pinned_batch
    from hgc.runtime.data.reader import DataReader

    cp = cupy()
    if not os.path.exists(a.data) or os.path.getsize(a.data) != a.samples * 4 * (1 + DENSE + SLOTS):
        t = time.perf_counter()
        write_raw(a.data, a.samples, a.rows)
        print(f"wrote {a.samples} samples to {a.data} in {time.perf_counter() - t:.1f} s", flush=True)
    kw = common.solver_kwargs(a.precision)
    graph, plan, _ = common.compile_model(dlrm.build(a.batch, a.rows, kw))
    kernels = Kernels(plan)
    tables = common.device_tables(plan, kernels, 0, {})
    ex = CudaExecutor(plan, common.initial_weights(graph, 0), tables, seed=0, kernels=kernels)
    ex.use_cuda_graph = a.graph == "on"
    scaler = float(kw.get("scaler", 1.0))
    slot_sizes = [a.rows] * SLOTS
    reader = DataReader("Raw", a.data, a.batch, label_dims=1, dense_dim=DENSE, sparse=[(SLOTS, 1, True)],
                        slot_size_array=slot_sizes, repeat=True, num_workers=a.workers, prefetch=4,
                        pin=pinned_batch)  # as the Trainer's readers on the cuda target
    out = []
    try:
        with config.patch(debug=0):
            host = [reader.read() for _ in range(a.nb)]
            batches, how = common.stage(ex, host)
            sps_mem, ms_mem, _ = common.timed_steps(ex, batches, a.iters, max(a.nb, 5), dlrm.BENCH.lr, scaler)
            print(f"in memory ({how}): {sps_mem / 1e6:.3f} M samples/s ({ms_mem:.2f} ms/iter)", flush=True)
            out.append(common.record("dlrm", "hgc", f"{a.precision}_in_memory", a.batch, sps_mem, ms_mem))
            for _ in range(5):  # warm: the staging buffers and the reader's queues
                ex.train_step(reader.read(), dlrm.BENCH.lr, scaler=scaler)
            cp.cuda.Device().synchronize()
            t0 = time.perf_counter()
            waited = 0.0
            for _ in range(a.iters):
                t = time.perf_counter()
                b = reader.read()
                waited += time.perf_counter() - t
                ex.train_step(b, dlrm.BENCH.lr, scaler=scaler)
            cp.cuda.Device().synchronize()
            dt = time.perf_counter() - t0
    finally:
        reader.close()
    sps = a.batch * a.iters / dt
    print(f"end to end (Raw file, {a.workers} reader workers): {sps / 1e6:.3f} M samples/s "
          f"({dt / a.iters * 1e3:.2f} ms/iter; {waited / a.iters * 1e3:.2f} ms/iter waiting for the reader) = "
          f"{100 * sps / sps_mem:.0f} % of in memory", flush=True)
    out.append(common.record("dlrm", "hgc", f"{a.precision}_end_to_end", a.batch, sps, dt / a.iters * 1e3,
                             ratio_in_memory=round(sps / sps_mem, 3), reader_wait_ms=round(waited / a.iters * 1e3, 3),
                             workers=a.workers))
    return out


if __name__ == "__main__":
    sys.exit(main())
