"""DLRM on one and on two GPUs at a fixed per-GPU batch: samples/s of each and the ratio (issue 7: two GPUs
at >= 1.85x one GPU).

Each configuration runs in a process of its own (fresh GPU memory):

* ``single``    vvgpu [[0]]: the single-GPU cuda executor (with CUDA graphs when the solver asks, the default);
* ``inprocess`` vvgpu [[0, 1]], one process driving both GPUs, peer copies between them;
* ``nccl``      vvgpu [[0, 1]], one process, through NCCL (HGC_DIST_BACKEND=nccl);
* ``mpi``       ``mpirun -np 2`` with vvgpu [[0], [1]], one GPU per rank, NCCL between the ranks.

The model is benchmarks/dlrm.py's (26 one-hot tables in one LocalizedSlotSparseEmbeddingOneHot, dim 128, bottom
MLP 13-512-256-128, dot Interaction, top MLP 1024-1024-512-256-1, SGD on the embedding, Adam on the dense
part) with ``--rows`` rows per table. The global batch is ``--batch`` x GPUs; the step timed is the Trainer's
executor's ``train_step`` on in-memory host batches (every process holds the whole global batch, as it would
read it), wall clock between device synchronisations; with MPI the slowest rank's time counts.

    python benchmarks/dlrm_multi.py [--batch 65536] [--rows 100000] [--iters 30] [--precision tf32]
                                    [--configs single,inprocess,nccl,mpi] [--json FILE]

Prints a table and a ``RATIO`` line per multi-GPU configuration; exits 0 without running when fewer than
two GPUs are visible.

With ``--logical`` on one GPU: ``single`` and ``inprocess`` with every GPU of the vvgpu mapped onto device 0
(``HGC_DIST_LOGICAL_DEVICES=1``, own streams and memory each). The two logical GPUs share one device, so their
step does twice the work: ``× one GPU`` is ideally 1.0 and its shortfall is the multi-GPU path's own cost
(exchanges, host planning, eager launches). ``--profile N`` prints the N host functions with the most time
(cProfile, cumulative) of each multi-GPU configuration; ``--stages`` times each stage of the step (the tables'
forward / backward / update, the per-GPU dense forward / backward / update, batch staging) with a device
synchronisation around it (extra steps after the timed ones): host ms (until the call returns) and total ms
(until the GPUs are done).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import common
import numpy as np

TABLES, DIM, DENSE = 26, 128, 13
CONFIGS = {"single": [[0]], "inprocess": [[0, 1]], "nccl": [[0, 1]], "mpi": [[0], [1]]}
TARGET = 1.85


def build(batch: int, rows: int, vvgpu: list[list[int]], solver_kw: dict[str, Any]) -> Any:
    """benchmarks/dlrm.py's model on ``vvgpu`` with the global batch ``batch``."""
    import hgc as hugectr

    slot_sizes = [rows] * TABLES
    solver = hugectr.CreateSolver(batchsize=batch, batchsize_eval=batch, lr=1e-3, vvgpu=vvgpu, repeat_dataset=True,
                                  seed=11, **solver_kw)
    reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Raw, source=["./dlrm_train.bin"],
                                      eval_source="./dlrm_eval.bin", check_type=hugectr.Check_t.Non,
                                      num_samples=batch * 64, eval_num_samples=batch, slot_size_array=slot_sizes)
    dense_opt = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, update_type=hugectr.Update_t.Local)
    sgd = hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.SGD, update_type=hugectr.Update_t.Local,
                                  atomic_update=True)
    model = hugectr.Model(solver, reader, dense_opt)
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=DENSE, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 1, True, TABLES)]))
    model.add(hugectr.SparseEmbedding(embedding_type=hugectr.Embedding_t.LocalizedSlotSparseEmbeddingOneHot,
                                      slot_size_array=slot_sizes, workspace_size_per_gpu_in_mb=0,
                                      embedding_vec_size=DIM, combiner="sum", sparse_embedding_name="sparse_embedding1",
                                      bottom_name="data1", optimizer=sgd))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name_list=["dense"], top_name_list=["fc1", "fc2", "fc3"],
                                      num_outputs=[512, 256, DIM], last_act_type=hugectr.Activation_t.Relu))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.Interaction, bottom_names=["fc3", "sparse_embedding1"],
                                 top_names=["interaction1"]))
    model.add(hugectr.GroupDenseLayer(group_layer_type=hugectr.GroupLayer_t.GroupFusedInnerProduct,
                                      bottom_name_list=["interaction1"],
                                      top_name_list=["fc4", "fc5", "fc6", "fc7", "fc8"],
                                      num_outputs=[1024, 1024, 512, 256, 1], last_act_type=hugectr.Activation_t.Non))
    model.add(hugectr.DenseLayer(layer_type=hugectr.Layer_t.BinaryCrossEntropyLoss, bottom_names=["fc8", "label"],
                                 top_names=["loss"]))
    return model


def host_batches(n: int, rows: int, count: int, seed: int = 0, pinned: bool = False) -> list[Any]:
    """``count`` host batches of ``n`` samples: 0/1 labels, uniform dense features, one uniform uint32 key per
    slot (flagged one-hot, as the readers flag it). ``pinned``: in page-locked memory, copied to the GPUs
    without the staging fill."""
    from hgc.runtime.cuda.staging import pinned_batch
    from hgc.runtime.data.batch import Batch, SparseBatch

    out = []
    for b in range(count):
        rng = np.random.default_rng([seed, b])
        label = (rng.random((n, 1)) < 0.5).astype(np.float32)
        dense = rng.random((n, DENSE), dtype=np.float32)
        keys = rng.integers(0, rows, n * TABLES, dtype=np.uint32)  # as the Raw reader gives them
        offsets = np.arange(n * TABLES + 1, dtype=np.int64)
        batch = Batch(n, label, dense, [SparseBatch(offsets, keys, TABLES, one_hot=True)])
        out.append(pinned_batch(batch) if pinned else batch)
    return out


def synchronize(ex: Any) -> None:
    """Wait for every GPU the executor drives (the current one for a single-GPU executor)."""
    from hgc.runtime.cuda.device import cupy

    cp = cupy()
    for d in sorted({p.device for p in getattr(ex, "places", ())}) or [cp.cuda.Device().id]:
        with cp.cuda.Device(d):
            cp.cuda.Device().synchronize()


class StageTimer:
    """Wraps methods so each call synchronises every GPU of ``ex`` before and after: per label, the host time
    until the call returns and the total until the GPUs are done."""

    def __init__(self, ex: Any) -> None:
        self.ex, self.times = ex, {}

    def wrap(self, obj: Any, attr: str, label: str) -> None:
        inner = getattr(obj, attr)

        def timed(*args: Any, **kw: Any) -> Any:
            synchronize(self.ex)
            t0 = time.perf_counter()
            out = inner(*args, **kw)
            t1 = time.perf_counter()
            synchronize(self.ex)
            t = self.times.setdefault(label, [0, 0.0, 0.0])
            t[0] += 1
            t[1] += t1 - t0
            t[2] += time.perf_counter() - t0
            return out

        setattr(obj, attr, timed)

    def install(self) -> None:
        ex = self.ex
        for name, table in getattr(ex, "tables", {}).items():
            for m in ("forward", "backward", "update"):
                self.wrap(table, m, f"table {name}.{m}")
        for i, r in enumerate(getattr(ex, "replicas", [ex])):
            for m in ("forward", "backward", "update"):
                self.wrap(r, m, f"dense[{i}].{m}")
        for i, p in enumerate(getattr(ex, "places", ())):
            self.wrap(p, "executor_batch", f"place[{i}].executor_batch")
        if hasattr(ex, "buckets"):
            self.wrap(ex.buckets, "finish", "buckets.finish")

    def table(self, steps: int) -> str:
        rows = [f"  {'stage':<34} {'calls/step':>10} {'host ms':>8} {'total ms':>9}"]
        for label, (c, h, t) in sorted(self.times.items(), key=lambda kv: -kv[1][2]):
            rows.append(f"  {label:<34} {c / steps:>10.1f} {h / steps * 1e3:>8.2f} {t / steps * 1e3:>9.2f}")
        return "\n".join(rows)


def kernel_table(ex: Any, batches: list[Any], name: str, a: argparse.Namespace) -> str:
    """The GPU kernels and copies of ``a.iters`` steps by total time (PyTorch's profiler: CUPTI sees CuPy's
    launches too), with the GPU-busy sum against the wall clock of those steps."""
    try:
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return f"-- kernels, {name}: skipped (PyTorch is not installed)"
    synchronize(ex)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for i in range(a.iters):
            ex.train_step(batches[i % a.nb], 1e-3)
        synchronize(ex)
        wall = time.perf_counter() - t0
    per: dict[str, list[float]] = {}
    for e in prof.events():
        if "CPU" in str(e.device_type):  # runtime calls: their kernels are listed on their own
            continue
        us = e.device_time_total
        if us > 0:
            t = per.setdefault(e.name[:60], [0, 0.0])
            t[0] += 1
            t[1] += us
    busy = sum(t for _, t in per.values()) / 1e3 / a.iters
    rows = [f"-- kernels, {name} ({a.iters} steps, ms per step): GPU busy {busy:.2f} of {wall / a.iters * 1e3:.2f} wall",
            f"  {'kernel':<60} {'calls/step':>10} {'ms':>7}"]
    for k, (c, us) in sorted(per.items(), key=lambda kv: -kv[1][1])[:a.kernels]:
        rows.append(f"  {k:<60} {c / a.iters:>10.1f} {us / 1e3 / a.iters:>7.3f}")
    return "\n".join(rows)


def run(name: str, a: argparse.Namespace) -> dict[str, Any] | None:
    """One configuration in this process (one rank of it under mpirun); the record on rank 0, else None."""
    from hgc.config import config

    vvgpu = CONFIGS[name]
    gpus = sum(len(r) for r in vvgpu)
    if name == "nccl":
        os.environ["HGC_DIST_BACKEND"] = "nccl"
    n = a.batch * gpus
    t0 = time.perf_counter()
    model = build(n, a.rows, vvgpu, common.solver_kwargs(a.precision))
    with config.patch(target="cuda"):
        model.compile()
        trainer = model._runtime("bench").trainer
    ex = trainer.executor
    setup = time.perf_counter() - t0
    batches = host_batches(n, a.rows, a.nb, pinned=a.pinned)
    comm = getattr(ex, "host_comm", None)
    losses: Any = {}
    for i in range(a.warmup):
        losses = ex.train_step(batches[i % a.nb], 1e-3)
    synchronize(ex)
    if comm is not None:
        comm.barrier()
    t0 = time.perf_counter()
    for i in range(a.iters):
        losses = ex.train_step(batches[(a.warmup + i) % a.nb], 1e-3)
    host = time.perf_counter() - t0  # the host's share: when it exceeds the GPU's, the step is host-bound
    synchronize(ex)
    dt = time.perf_counter() - t0
    if a.profile and gpus > 1:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for i in range(a.iters):
            ex.train_step(batches[i % a.nb], 1e-3)
        synchronize(ex)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(a.profile)
        print(f"-- host profile, {name}, {a.iters} steps\n" + text.getvalue(), flush=True)
    if a.kernels:
        print(kernel_table(ex, batches, name, a), flush=True)
    if a.stages:  # after the timed steps (and the profile): the stage timer's synchronisations slow a step
        stages = StageTimer(ex)
        stages.install()
        for i in range(a.iters):
            ex.train_step(batches[i % a.nb], 1e-3)
        print(f"-- stages, {name} (each synchronised; ms per step)\n{stages.table(a.iters)}", flush=True)
    if comm is not None:
        dt = max(comm.allgather_obj(dt))
        if not comm.is_root:
            return None
    loss = float(next(iter(losses.values()))) if losses else float("nan")
    return {"config": name, "gpus": gpus, "vvgpu": vvgpu, "per_gpu_batch": a.batch, "global_batch": n,
            "rows": a.rows, "precision": a.precision, "pinned": a.pinned, "sps": n * a.iters / dt, "ms": dt / a.iters * 1e3,
            "host_ms": host / a.iters * 1e3,
            "loss": loss, "setup_s": setup, "cuda_graph": bool(getattr(ex, "use_cuda_graph", False)
                                                          or all(getattr(r, "phase_graphs", False)
                                                                 for r in getattr(ex, "replicas", [None])))}


def launch(name: str, a: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration in a fresh process; its record (status "failed" with the log tail on error)."""
    args = ["--run", name, "--batch", str(a.batch), "--rows", str(a.rows), "--iters", str(a.iters),
            "--warmup", str(a.warmup), "--nb", str(a.nb), "--precision", a.precision, "--profile", str(a.profile),
            "--kernels", str(a.kernels), *(["--pinned"] if a.pinned else []),
            *(["--stages"] if a.stages else [])]
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    if name == "mpi":
        if shutil.which("mpirun") is None:
            return {"config": name, "status": "skipped", "reason": "mpirun is not installed"}
        cmd = ["mpirun", "--allow-run-as-root", "-np", "2", "-x", "NCCL_NVLS_ENABLE=0", "-x", "PYTHONPATH", *cmd]
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", PYTHONPATH=str(HERE.parent), PYTHONUNBUFFERED="1")
    if a.logical:
        env["HGC_DIST_LOGICAL_DEVICES"] = "1"
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.timeout, check=False)
    report_text = p.stdout.split("RESULT ")[0]
    if "\n-- " in report_text:  # --profile / --stages output of the run
        print(report_text[report_text.index("\n-- ") + 1:], flush=True)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (p.stdout + p.stderr).strip().splitlines()[-15:]
    return {"config": name, "status": "failed", "reason": f"exit {p.returncode}: " + " | ".join(tail)}


def report(records: list[dict[str, Any]], target: float = TARGET) -> str:
    base = next((r for r in records if r.get("config") == "single" and "sps" in r), None)
    lines = ["| config | GPUs | per-GPU batch | samples/s | ms/step | host ms/step | × one GPU | target |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "sps" not in r:
            lines.append(f"| {r['config']} | | | {r.get('status')}: {r.get('reason', '')[:200]} | | | | |")
            continue
        ratio = r["sps"] / base["sps"] if base else None
        r["ratio"] = ratio
        mark = "" if r["gpus"] == 1 or ratio is None else ("✔" if ratio >= target else "✘") + f" ≥ {target}"
        lines.append(f"| {r['config']} | {r['gpus']} | {r['per_gpu_batch']} | {r['sps'] / 1e6:.3f} M | "
                     f"{r['ms']:.2f} | {r['host_ms']:.2f} | {'' if ratio is None else f'{ratio:.3f}'} | {mark} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=65536, help="per-GPU batch")
    p.add_argument("--rows", type=int, default=100_000, help="rows per table (26 tables)")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--nb", type=int, default=4, help="in-memory batches cycled through")
    p.add_argument("--precision", default="tf32", choices=common.PRECISIONS)
    p.add_argument("--configs", default="single,inprocess,nccl,mpi")
    p.add_argument("--timeout", type=int, default=300, help="seconds per configuration")
    p.add_argument("--json", default=None, help="append one JSON line per configuration")
    p.add_argument("--logical", action="store_true",
                   help="one GPU: single and inprocess with logical GPUs on device 0 (ideal ratio 1.0)")
    p.add_argument("--profile", type=int, default=0, help="print the N costliest host functions per multi-GPU run")
    p.add_argument("--stages", action="store_true", help="time every stage of the step (synchronised)")
    p.add_argument("--kernels", type=int, default=0, help="print the N costliest GPU kernels per configuration")
    p.add_argument("--pinned", action="store_true",
                   help="the in-memory batches in page-locked memory (copied without the staging fill)")
    p.add_argument("--run", default=None, choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.run:
        rec = run(a.run, a)
        if rec is not None:
            print("RESULT " + json.dumps(rec), flush=True)
        return 0
    try:
        from hgc.runtime.cuda.device import cupy

        count = int(cupy().cuda.runtime.getDeviceCount())
    except Exception as e:  # noqa: BLE001  (no CuPy, no driver)
        print(f"dlrm_multi: skipped, no usable GPU ({type(e).__name__}: {e})")
        return 0
    if a.logical:
        a.configs = "single,inprocess"
    elif count < 2:
        print(f"dlrm_multi: skipped, needs 2 GPUs ({count} visible; --logical runs both on one)")
        return 0
    names = [c.strip() for c in a.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)}")
    print(f"== dlrm_multi: per-GPU batch {a.batch}, {a.rows} rows x {TABLES} tables, {a.iters} timed steps, "
          f"{a.precision}, {common.gpu_name()} x {count}{' (logical GPUs)' if a.logical else ''}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, "
          f"commit {common.commit()}", flush=True)
    records = []
    for name in names:
        rec = launch(name, a)
        print(json.dumps(rec), flush=True)
        records.append(rec)
    target = 0.95 if a.logical else TARGET  # logical GPUs share one device: ideally as fast as one GPU
    print(report(records, target))
    for r in records:
        if r.get("gpus", 1) > 1 and r.get("ratio") is not None:
            print(f"RATIO {r['config']} {r['ratio']:.3f} (target >= {target}: {'met' if r['ratio'] >= target else 'missed'})")
    if a.json:
        with open(a.json, "a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
