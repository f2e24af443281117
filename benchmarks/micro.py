"""Micro-benchmarks of the pieces a training step is made of, and CUDA-graph capture checks.

Times (CUDA events, median of several runs) of: sorting and scanning DLRM's 1.7 M row ids (int64 and int32),
``unique``, a row gather from a 26 M × 128 table, host-to-device copies from pageable and pinned memory,
the host cost of one small kernel launch from Python against one graph replay of many. Then checks that
CuPy's stream capture records sort + scan + cuBLAS (through hgc's ctypes path) + a raw kernel into a graph
whose replay, on new inputs, gives what eager execution gives (with a private memory pool for the graph's
temporaries). (The interaction and bias-gradient prototypes once timed here now live in the templates;
benchmarks/NOTES.md §3 has their numbers.)

    python benchmarks/micro.py [--keys 1703936] [--rows 26000000] [--dim 128]
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from hgc.runtime.cuda.device import cupy


def timed(cp: Any, fn: Callable[[], Any], reps: int = 7) -> float:
    fn()
    cp.cuda.Device().synchronize()
    ts = []
    for _ in range(reps):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(cp.cuda.get_elapsed_time(s, e))
    return sorted(ts)[len(ts) // 2]


def pieces(cp: Any, nkeys: int, rows: int, dim: int) -> None:
    r64 = cp.random.randint(0, rows, nkeys, dtype=cp.int64)
    r32 = r64.astype(cp.int32)
    out = []
    out.append(("argsort int64", timed(cp, lambda: cp.argsort(r64))))
    out.append(("argsort int32", timed(cp, lambda: cp.argsort(r32))))
    out.append(("sort int64", timed(cp, lambda: cp.sort(r64))))
    out.append(("cumsum int64", timed(cp, lambda: cp.cumsum(r64))))
    out.append(("cumsum int32", timed(cp, lambda: cp.cumsum(r32))))
    out.append(("unique+counts int64", timed(cp, lambda: cp.unique(r64, return_counts=True))))
    out.append(("nonzero", timed(cp, lambda: cp.nonzero(r64 >= 0))))
    table = cp.empty((rows, dim), cp.float32)
    dst = cp.empty((nkeys, dim), cp.float32)
    ms = timed(cp, lambda table=table, dst=dst: cp.take(table, r64, axis=0, out=dst))
    out.append((f"gather {nkeys}x{dim} fp32 ({2 * nkeys * dim * 4 / ms / 1e6:.0f} GB/s)", ms))
    del table, dst
    nbytes = nkeys * 8 * 2
    host = np.ones(nbytes // 8, np.int64)
    dev = cp.empty(nbytes // 8, cp.int64)
    ms = timed(cp, lambda: dev.set(host))
    out.append((f"H2D pageable {nbytes / 2**20:.0f} MiB ({nbytes / ms / 1e6:.1f} GB/s)", ms))
    mem = cp.cuda.alloc_pinned_memory(nbytes)
    pinned = np.frombuffer(mem, np.int64, nbytes // 8)
    pinned[:] = 1
    stream = cp.cuda.get_current_stream()
    ms = timed(cp, lambda: cp.cuda.runtime.memcpyAsync(dev.data.ptr, pinned.ctypes.data, nbytes, 1, stream.ptr))
    out.append((f"H2D pinned {nbytes / 2**20:.0f} MiB ({nbytes / ms / 1e6:.1f} GB/s)", ms))
    for name, ms in out:
        print(f"  {name:48s} {ms:8.3f} ms", flush=True)


KERNEL = r"""
extern "C" __global__ void axpy(const float* x, float* y, float a, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)
    y[i] += a * x[i];
}
"""


def launch_overhead(cp: Any) -> None:
    k = cp.RawKernel(KERNEL, "axpy")
    x = cp.ones(1024, cp.float32)
    y = cp.zeros(1024, cp.float32)
    n = 200
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        for _ in range(10):
            k((4,), (256,), (x, y, np.float32(1), np.int64(1024)))
        s.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            k((4,), (256,), (x, y, np.float32(1), np.int64(1024)))
        host_us = (time.perf_counter() - t0) / n * 1e6
        s.synchronize()
        gpu_ms = (time.perf_counter() - t0) * 1e3
        s.begin_capture()
        for _ in range(n):
            k((4,), (256,), (x, y, np.float32(1), np.int64(1024)))
        g = s.end_capture()
        g.upload(s)
        g.launch(s)
        s.synchronize()
        t0 = time.perf_counter()
        g.launch(s)
        s.synchronize()
        graph_ms = (time.perf_counter() - t0) * 1e3
    print(f"  {n} small launches: {host_us:.1f} us host time per launch, {gpu_ms:.2f} ms in all; "
          f"as one graph replay: {graph_ms:.3f} ms", flush=True)


def capture_check(cp: Any) -> None:
    from hgc.runtime.cuda import graph as blas  # the capturable (ctypes) cuBLAS path

    k = cp.RawKernel(KERNEL, "axpy")
    n = 100_003
    x = cp.random.randint(0, 1 << 40, n, dtype=cp.int64)
    a = cp.random.random((257, 129), dtype=cp.float32)
    b = cp.random.random((129, 65), dtype=cp.float32)
    c = cp.empty((257, 65), cp.float32)
    srt = cp.empty(n, cp.int64)
    scn = cp.empty(n, cp.int64)
    f = cp.random.random(n, dtype=cp.float32)
    acc = cp.zeros(n, cp.float32)

    def work() -> None:
        order = cp.argsort(x)
        srt[...] = x[order]
        scn[...] = cp.cumsum(srt & 255)
        blas.gemm_ex(a.data.ptr, b.data.ptr, c.data.ptr, 257, 65, 129, 129, 65, 65, False, False, 1.0, 0.0,
                     "float32", "float32")
        k((64,), (256,), (f, acc, np.float32(2), np.int64(n)))

    stream = cp.cuda.Stream()
    pool = cp.cuda.MemoryPool()
    with stream:
        blas.cublas().bind(stream.ptr)
        work()  # warm: kernels compiled and loaded before the capture
        acc.fill(0)
        stream.synchronize()
        with cp.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            work()
            graph = stream.end_capture()
        for rep in range(3):
            x[...] = cp.random.randint(0, 1 << 40, n, dtype=cp.int64)
            a[...] = cp.random.random((257, 129), dtype=cp.float32)
            graph.launch(stream)
            stream.synchronize()
            want_s = cp.sort(x)
            want_scan = cp.cumsum(want_s & 255)
            want_c = a @ b
            ok = (bool(cp.all(srt == want_s)) and bool(cp.all(scn == want_scan))
                  and float(cp.abs(c - want_c).max()) < 1e-3 and bool(cp.allclose(acc, 2 * (rep + 1) * f)))
            print(f"  graph replay {rep}: {'OK' if ok else 'MISMATCH'}", flush=True)
    print(f"  private pool holds {pool.total_bytes() / 2**20:.1f} MiB after the capture", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=65536 * 26)
    ap.add_argument("--rows", type=int, default=26_000_000)
    ap.add_argument("--dim", type=int, default=128)
    a = ap.parse_args(argv)
    cp = cupy()
    print(f"micro-benchmarks, {a.keys} keys over {a.rows} rows of {a.dim}:", flush=True)
    for what, fn in (("pieces", lambda: pieces(cp, a.keys, a.rows, a.dim)), ("launch", lambda: launch_overhead(cp)),
                     ("capture", lambda: capture_check(cp))):
        try:
            fn()
        except Exception:  # noqa: BLE001  (report and go on)
            print(f"  {what}: FAILED")
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
