"""Per-operation GPU timings of the cuda runtime (the ``HGC_DEBUG=2`` kernel table).

A :class:`Profiler` is installed with :func:`profiling`; while it is active the executor and the embedding
tables wrap every operation in :meth:`Profiler.region`, which records a pair of CUDA events around it on the
current stream (no synchronisation: the GPU runs ahead as usual, so a region's time is what the GPU spent
between its two events). Each region carries an estimate of the floating-point operations and the bytes it
must move at least, so the table can put achieved TFLOP/s and GB/s next to the GPU's measured peaks
(:func:`measure_peaks`: a large device-to-device copy and large matrix products).

Times are summed per region name over the profiled steps and reported per step. Without CUDA graphs the
host is often slower than the GPU (small kernels), and a region would also hold the time the GPU waited
for its launch; so each profiled step starts behind a kernel that holds the GPU for ``hold_ms`` (default
50 ms), long enough for the host to queue the whole step: the GPU then runs it back to back and the events
time the kernels alone.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_ACTIVE: list[Profiler] = []

#: One thread that returns after ``ns`` nanoseconds of the GPU's global timer.
HOLD_SOURCE = r"""
extern "C" __global__ void hgc_hold(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(10000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}
"""


@dataclass(frozen=True)
class Peaks:
    """Measured ceilings of one GPU: copy bandwidth (GB/s, read + write) and GEMM rates (TFLOP/s) by kind."""

    name: str
    copy_gbs: float
    gemm_tflops: dict[str, float] = field(default_factory=dict)

    def gemm(self, kind: str) -> float:
        return self.gemm_tflops.get(kind) or max(self.gemm_tflops.values(), default=0.0)


@dataclass
class Region:
    """The accumulated record of one named region."""

    name: str
    kind: str
    flops: float = 0.0
    nbytes: float = 0.0
    calls: int = 0
    ms: float = 0.0
    pending: list[tuple[Any, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """One line of the table, per step: time, share, work, rates and rates over the peak."""

    name: str
    kind: str
    calls: float
    ms: float
    share: float
    gflop: float
    gbytes: float
    tflops: float
    gbs: float
    pct_flops: float
    pct_bw: float


class Profiler:
    """Collects CUDA-event timings per named region; ``gemm_kind`` picks the GEMM peak (fp32/tf32/fp16)."""

    def __init__(self, gemm_kind: str = "fp32", hold_ms: float = 50.0) -> None:
        from hgc.runtime.cuda.device import cupy

        self.cp = cupy()
        self.gemm_kind = gemm_kind
        self.hold_ms = hold_ms
        self._hold: Any = None
        self.regions: dict[str, Region] = {}
        self.steps = 0
        self.step_ms = 0.0
        self._step: tuple[Any, Any] | None = None
        self._spare: list[Any] = []
        self._depth = 0

    def _event(self) -> Any:
        return self._spare.pop() if self._spare else self.cp.cuda.Event()

    @contextlib.contextmanager
    def region(self, name: str, kind: str = "kernel", flops: float = 0.0, nbytes: float = 0.0) -> Iterator[None]:
        """Time the operations issued inside the block (nested regions are not timed twice)."""
        if self._depth:
            yield
            return
        r = self.regions.get(name)
        if r is None:
            r = self.regions[name] = Region(name, kind)
        start = self._event()
        start.record()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            end = self._event()
            end.record()
            r.pending.append((start, end))
            r.calls += 1
            r.flops += flops
            r.nbytes += nbytes

    def hold(self) -> None:
        """Keep the GPU busy for ``hold_ms`` (on the current stream) while the host queues what follows."""
        if self.hold_ms <= 0:
            return
        if self._hold is None:
            self._hold = self.cp.RawKernel(HOLD_SOURCE, "hgc_hold")
        self._hold((1,), (1,), (np.uint64(self.hold_ms * 1e6),))

    def step_begin(self) -> None:
        self.hold()
        s = self._event()
        s.record()
        self._step = (s, None)

    def step_end(self) -> None:
        if self._step is None:
            return
        e = self._event()
        e.record()
        e.synchronize()
        self.step_ms += self.cp.cuda.get_elapsed_time(self._step[0], e)
        self._spare += [self._step[0], e]
        self._step = None
        self.steps += 1
        self.collect()

    def collect(self) -> None:
        """Synchronise on the recorded events and fold them into the totals."""
        for r in self.regions.values():
            for s, e in r.pending:
                e.synchronize()
                r.ms += self.cp.cuda.get_elapsed_time(s, e)
                self._spare += [s, e]
            r.pending.clear()

    def rows(self, peaks: Peaks | None = None) -> list[Row]:
        """Per-step rows, slowest first."""
        self.collect()
        steps = max(1, self.steps)
        total = self.step_ms / steps if self.steps else sum(r.ms for r in self.regions.values()) / steps
        out = []
        for r in self.regions.values():
            ms = r.ms / steps
            sec = ms / 1e3
            gflop, gbytes = r.flops / steps / 1e9, r.nbytes / steps / 1e9
            tflops = gflop / 1e3 / sec if sec > 0 else 0.0
            gbs = gbytes / sec if sec > 0 else 0.0
            pf = pb = 0.0
            if peaks is not None:
                peak = peaks.gemm(self.gemm_kind) if r.kind == "gemm" else peaks.gemm("fp32")
                pf = 100.0 * tflops / peak if peak else 0.0
                pb = 100.0 * gbs / peaks.copy_gbs if peaks.copy_gbs else 0.0
            out.append(Row(r.name, r.kind, r.calls / steps, ms, 100.0 * ms / total if total else 0.0, gflop, gbytes,
                           tflops, gbs, pf, pb))
        return sorted(out, key=lambda x: -x.ms)

    def table(self, peaks: Peaks | None = None, top: int | None = None) -> str:
        """The kernel table (slowest first), with totals: GPU step time and the sum over regions."""
        rows = self.rows(peaks)
        steps = max(1, self.steps)
        head = (f"{'op':58s} {'kind':9s} {'n':>4s} {'ms/step':>8s} {'%':>5s} {'GFLOP':>8s} {'TFLOP/s':>8s} "
                f"{'%pk':>5s} {'GB':>7s} {'GB/s':>7s} {'%bw':>5s}")
        lines = [head, "-" * len(head)]
        for r in rows[:top] if top else rows:
            name = r.name if len(r.name) <= 58 else r.name[:55] + "..."
            lines.append(f"{name:58s} {r.kind:9s} {r.calls:4.0f} {r.ms:8.3f} {r.share:5.1f} {r.gflop:8.2f} "
                         f"{r.tflops:8.1f} {r.pct_flops:5.1f} {r.gbytes:7.3f} {r.gbs:7.0f} {r.pct_bw:5.1f}")
        summed = sum(r.ms for r in rows)
        step = self.step_ms / steps if self.steps else summed
        lines.append(f"{len(rows)} regions; sum {summed:.3f} ms/step; GPU step {step:.3f} ms "
                     f"({steps} step(s) profiled)")
        if peaks is not None:
            rates = ", ".join(f"{k} {v:.0f}" for k, v in peaks.gemm_tflops.items())
            lines.append(f"peaks on {peaks.name}: copy {peaks.copy_gbs:.0f} GB/s; GEMM TFLOP/s {rates}; "
                         f"%pk of gemm rows against '{self.gemm_kind}', other rows against fp32")
        return "\n".join(lines)


def active() -> Profiler | None:
    """The installed profiler, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def profiling(profiler: Profiler) -> Iterator[Profiler]:
    """Install ``profiler`` for the duration of the block."""
    _ACTIVE.append(profiler)
    try:
        yield profiler
    finally:
        _ACTIVE.remove(profiler)


@contextlib.contextmanager
def region(name: str, kind: str = "kernel", flops: float = 0.0, nbytes: float = 0.0) -> Iterator[None]:
    """A region of the active profiler, or nothing when none is installed."""
    p = active()
    if p is None:
        yield
        return
    with p.region(name, kind, flops, nbytes):
        yield


def _timed(cp: Any, fn: Any, warmup: int, reps: int) -> float:
    """Median milliseconds of ``fn`` over ``reps`` runs after ``warmup`` runs (CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        s, e = cp.cuda.Event(), cp.cuda.Event()
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(cp.cuda.get_elapsed_time(s, e))
    times.sort()
    return times[len(times) // 2]


def measure_peaks(copy_mib: int = 2048, gemm_n: int = 8192, kinds: tuple[str, ...] = ("fp32", "tf32", "fp16")
                  ) -> Peaks:
    """Ceilings of the current GPU: a device-to-device copy of ``copy_mib`` MiB (bytes read + written) and
    ``gemm_n``³ matrix products on random data per kind (fp32 plain, fp32 with TF32 tensor cores, fp16)."""
    from hgc.runtime.cuda.device import cupy

    cp = cupy()
    n = copy_mib * (1 << 20)
    src = cp.random.random(n // 4, dtype=cp.float32)
    dst = cp.empty_like(src)
    ms = _timed(cp, lambda src=src, dst=dst: cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, n, 3,
                                                                          cp.cuda.get_current_stream().ptr), 2, 5)
    copy_gbs = 2 * n / (ms / 1e3) / 1e9
    del src, dst
    rates: dict[str, float] = {}
    handle = cp.cuda.device.get_cublas_handle()
    from cupy.cublas import gemm as cublas_gemm
    from cupy.cuda import cublas

    mode = cublas.getMathMode(handle)
    for kind in kinds:
        dt = cp.float16 if kind == "fp16" else cp.float32
        a = cp.random.random((gemm_n, gemm_n), dtype=cp.float32).astype(dt) - dt(0.5)
        b = cp.random.random((gemm_n, gemm_n), dtype=cp.float32).astype(dt) - dt(0.5)
        c = cp.empty((gemm_n, gemm_n), dt)
        try:
            cublas.setMathMode(handle, TF32_MATH if kind == "tf32" else mode)
            if kind == "fp16":
                ms = _timed(cp, lambda a=a, b=b, c=c: cp.matmul(a, b, out=c), 2, 5)
            else:  # the routine the executor's fp32 GEMMs use
                ms = _timed(cp, lambda a=a, b=b, c=c: cublas_gemm("N", "N", a, b, out=c), 2, 5)
        finally:
            cublas.setMathMode(handle, mode)
        rates[kind] = 2.0 * gemm_n ** 3 / (ms / 1e3) / 1e12
        del a, b, c
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    cp.get_default_memory_pool().free_all_blocks()
    return Peaks(name, copy_gbs, rates)


#: cuBLAS math mode that lets fp32 GEMMs use TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH).
TF32_MATH = 3


def _arg_bytes(ex: Any, arg: Any) -> int:
    """Bytes of the array an argument points to (0 for scalars)."""
    from hgc.runtime.cuda.executor import VIEW_KIND

    k = arg.kind
    if k in VIEW_KIND:
        b = ex.bindings.get((arg.name, VIEW_KIND[k]))
        return b.nbytes(ex.batch) if b is not None else 0
    if k in ("weight", "wgrad"):
        return ex.slots[(arg.name, arg.index)].size * 4
    if k in ("weights", "wgrads"):
        return ex.count * 4
    if k == "state":
        return int(ex.states[arg.name].nbytes)
    return 0


def op_cost(ex: Any, op: Any, node: str) -> tuple[str, str, float, float]:
    """(region name, kind, FLOPs, bytes) of one plan operation on executor ``ex`` at its current batch.

    GEMMs: 2mnk FLOPs; A and B read once, C written once (read too when beta != 0). Kernels: every array
    argument counted once (a lower bound for kernels that read and write the same array)."""
    from hgc.codegen.plan import ITEMSIZE, GemmCall, KernelLaunch, Memset, StridedGemm

    at = ex.batch
    if isinstance(op, (GemmCall, StridedGemm)):
        m, n, k = op.m.at(at), op.n.at(at), op.k.at(at)
        count = op.batch.at(at) if isinstance(op, StridedGemm) else 1
        size = ITEMSIZE[getattr(op, "dtype", "float32")]
        csize = 4 if op.c.kind == "wgrad" else size
        nbytes = count * ((m * k + k * n) * size + m * n * csize * (2 if op.beta else 1))
        ta, tb = ("ᵀ" if op.transa else ""), ("ᵀ" if op.transb else "")
        target = f"{op.c.kind}:{op.c.name}" + (f"[{op.c.index}]" if op.c.kind in ("weight", "wgrad") else "")
        mult = f"{count}x" if count > 1 else ""
        return (f"{node}: gemm {target} = {op.a.name}{ta}·{op.b.name}{tb} {mult}[{m}x{n}x{k}]", "gemm",
                2.0 * m * n * k * count, float(nbytes))
    if isinstance(op, KernelLaunch):
        try:
            template = ex.plan.kernel(op.spec).template
        except KeyError:
            template = op.spec
        named = [a for a in op.args if a.kind in ("act", "grad", "scratch")]
        what = f"({named[-1].kind}:{named[-1].name})" if named else ""
        seen: set[tuple[str, str, int]] = set()
        nbytes = 0
        for a in op.args:
            key = (a.kind, a.name, a.index)
            if key not in seen:
                seen.add(key)
                nbytes += _arg_bytes(ex, a)
        return f"{node}: {template}.{op.function}{what}", "kernel", 0.0, float(nbytes)
    if isinstance(op, Memset):
        return f"{node}: memset {op.target.kind}:{op.target.name}", "memset", 0.0, float(_arg_bytes(ex, op.target))
    return f"{node}: {type(op).__name__}", "other", 0.0, 0.0
