"""CUDA-graph capture and replay of the executor's steady-state training step (``use_cuda_graph``).

The step (forward, backward, updates; the fused embedding path) is cut into segments: maximal runs of
operations whose launch arguments do not change from step to step are captured with CuPy's stream capture
into one CUDA graph each; operations with per-step scalars (Dropout's seed, the dense optimizer's learning
rate and Adam's bias correction) and operations that cannot be captured (CuPy's batched matmul) run
eagerly between the graphs, in order, on the same stream. Replaying a step is then a handful of graph
launches and eager launches instead of one Python call per kernel.

What a graph bakes in is part of its key (batch rows, buffer addresses, the constant scalars such as the
loss weights): the executor captures anew when the key changes. Temporaries allocated while capturing come
from a memory pool private to the graph, which lives as long as the graph: no later allocation can be
handed memory a replay still writes.

CuPy refuses cuBLAS calls while a stream captures, so during a capture the executor's GEMMs go through
:func:`gemm_ex` here: ``cublasGemmEx`` called through ctypes on a cuBLAS handle of our own, bound to the
capture stream with its own workspace (the same arguments as :func:`hgc.runtime.cuda.blas.gemm_ex`).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgc.codegen.plan import Collective, EmbeddingCall, GemmCall, KernelLaunch, Op, StridedGemm
from hgc.runtime.cuda import blas
from hgc.runtime.cuda.device import cupy


@dataclass(frozen=True)
class LossSnapshot:
    """Marker unit between the forward and the backward: copy the loss values aside (the backward may reuse
    the loss buffers)."""


#: Runtime scalars that may change every step: operations reading them run eagerly.
VOLATILE = ("lr", "alpha", "inv_scaler", "reg_scale", "scaler")
WORKSPACE_BYTES = 32 << 20


def volatile(op: Op) -> bool:
    """Whether ``op`` must run eagerly in a graphed step (per-step scalars, or not capturable)."""
    if isinstance(op, (StridedGemm, Collective)):
        return True
    if isinstance(op, GemmCall):
        return op.epilogue is not None and volatile(op.epilogue)
    if isinstance(op, KernelLaunch):
        return any(a.kind == "runtime" and (a.name.startswith("seed:") or a.name in VOLATILE) for a in op.args)
    return False


def baked(ops: Sequence[Op]) -> tuple[str, ...]:
    """Names of the runtime scalars the captured (non-volatile) operations read."""
    names: set[str] = set()
    for op in ops:
        launches = [op] if isinstance(op, KernelLaunch) else [op.epilogue] if isinstance(op, GemmCall) and \
            op.epilogue is not None else []
        for k in launches:
            if not volatile(k):
                names.update(a.name for a in k.args if a.kind == "runtime")
    return tuple(sorted(names))


def segments(units: Sequence[tuple[str, Op]], eager: Callable[[Op], bool] | None = None
             ) -> list[tuple[bool, list[tuple[str, Op]]]]:
    """Consecutive units grouped into (captured?, units) runs; volatile units (and those ``eager`` names) are
    never captured."""
    out: list[tuple[bool, list[tuple[str, Op]]]] = []
    for unit in units:
        cap = not volatile(unit[1]) and not (eager is not None and eager(unit[1]))
        if out and out[-1][0] == cap:
            out[-1][1].append(unit)
        else:
            out.append((cap, [unit]))
    return out


# -- cuBLAS through ctypes (capturable) -------------------------------------------------------------------
class _Cublas:
    """libcublas loaded through ctypes, with one handle of ours (its stream and workspace set by us)."""

    def __init__(self) -> None:
        cp = cupy()
        cp.cuda.device.get_cublas_handle()  # makes CuPy load libcublas, so /proc/self/maps names it
        self.lib = _load_cublas()
        v = ctypes.c_void_p
        i = ctypes.c_int
        self.lib.cublasGemmEx.argtypes = [v, i, i, i, i, i, v, v, i, i, v, i, i, v, v, i, i, i, i]
        self.lib.cublasGemmEx.restype = i
        self.lib.cublasCreate_v2.argtypes = [ctypes.POINTER(v)]
        self.lib.cublasSetStream_v2.argtypes = [v, v]
        self.lib.cublasSetWorkspace_v2.argtypes = [v, v, ctypes.c_size_t]
        handle = v()
        _ok(self.lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate")
        self.handle = handle
        self.workspace = cp.empty(WORKSPACE_BYTES, cp.uint8)
        _ok(self.lib.cublasSetWorkspace_v2(self.handle, self.workspace.data.ptr, WORKSPACE_BYTES),
            "cublasSetWorkspace")
        self.stream = 0

    def bind(self, stream_ptr: int) -> None:
        if stream_ptr != self.stream:
            _ok(self.lib.cublasSetStream_v2(self.handle, stream_ptr), "cublasSetStream")
            self.stream = stream_ptr


def _ok(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def _load_cublas() -> ctypes.CDLL:
    """The libcublas CuPy uses (found in this process's mappings), else the first one the loader finds."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1] if "/" in line else ""
                base = os.path.basename(p)
                if base.startswith("libcublas.so") and p not in paths:
                    paths.append(p)
    except OSError:
        pass
    for name in (*paths, ctypes.util.find_library("cublas"), "libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.cublasGemmEx  # noqa: B018
            return lib
        except (OSError, AttributeError):
            continue
    raise RuntimeError("libcublas could not be loaded through ctypes (needed to capture GEMMs in CUDA graphs)")


_CUBLAS: list[_Cublas] = []


def cublas() -> _Cublas:
    if not _CUBLAS:
        _CUBLAS.append(_Cublas())
    return _CUBLAS[0]


def gemm_ex(a: int, b: int, c: int, m: int, n: int, k: int, lda: int, ldb: int, ldc: int, transa: bool,
            transb: bool, alpha: float, beta: float, ab_dtype: str, c_dtype: str, compute: str = "float32") -> None:
    """:func:`hgc.runtime.cuda.blas.gemm_ex` on our own cuBLAS handle bound to CuPy's current stream
    (callable while that stream captures)."""
    cp = cupy()
    lib = cublas()
    lib.bind(cp.cuda.get_current_stream().ptr)
    kind = blas.compute_of(ab_dtype, c_dtype, compute)
    scalar_t = np.float64 if kind == "float64" else np.float32
    al, be = np.asarray([alpha], scalar_t), np.asarray([beta], scalar_t)
    _ok(lib.lib.cublasGemmEx(lib.handle, blas.OP_T if transb else blas.OP_N, blas.OP_T if transa else blas.OP_N,
                             n, m, k, al.ctypes.data, b, blas.CUDA_R[ab_dtype], ldb, a, blas.CUDA_R[ab_dtype], lda,
                             be.ctypes.data, c, blas.CUDA_R[c_dtype], ldc, blas.COMPUTE[kind],
                             blas.CUBLAS_GEMM_DEFAULT), "cublasGemmEx")


@contextlib.contextmanager
def capturable_gemms() -> Iterator[None]:
    """Route :func:`hgc.runtime.cuda.blas.gemm_ex` through :func:`gemm_ex` for the duration of the block."""
    original = blas.gemm_ex
    blas.gemm_ex = gemm_ex
    try:
        yield
    finally:
        blas.gemm_ex = original


# -- the captured step ------------------------------------------------------------------------------------
class StepGraph:
    """One executor's training step (or one phase of it) as graph segments and eager units, captured for one
    ``key``; ``eager`` names further operations that must run eagerly."""

    def __init__(self, executor: Any, units: Sequence[tuple[str, Op]], key: Any,
                 eager: Callable[[Op], bool] | None = None) -> None:
        self.ex = executor
        self.key = key
        self.eager_ops = eager
        self.pool = cupy().cuda.MemoryPool()
        self.parts: list[tuple[Any, list[tuple[str, Op]]]] = []
        self.units = list(units)

    def capture(self, stream: Any) -> None:
        """Record every capturable run into a graph (nothing runs: call :meth:`replay` for the step)."""
        cp = cupy()
        cublas().bind(stream.ptr)  # create and bind our handle before any capture starts
        for cap, run in segments(self.units, self.eager_ops):
            if not cap:
                self.parts.append((None, run))
                continue
            with cp.cuda.using_allocator(self.pool.malloc), capturable_gemms():
                stream.begin_capture()
                try:
                    self._run(run)
                except BaseException:
                    with contextlib.suppress(Exception):
                        stream.end_capture()
                    raise
                graph = stream.end_capture()
            graph.upload(stream)
            self.parts.append((graph, run))

    def replay(self, stream: Any) -> None:
        """One training step: the graphs and the eager units, in order, on ``stream``."""
        for graph, run in self.parts:
            if graph is not None:
                graph.launch(stream)
            else:
                self._run(run)

    def _run(self, run: Sequence[tuple[str, Op]]) -> None:
        for node, op in run:
            self.ex._node = node
            self.ex._run(op)

    @property
    def graphs(self) -> int:
        return sum(1 for g, _ in self.parts if g is not None)

    @property
    def eager(self) -> int:
        return sum(len(run) for g, run in self.parts if g is None)


def step_units(plan: Any, fused: bool = True) -> list[tuple[str, Any]]:
    """The training step's operations in order as (node, op): forward, the loss snapshot, backward,
    optimizer; training-only and any-mode launches; with ``fused`` the embedding updates (done inside their
    backward) are left out."""
    out: list[tuple[str, Any]] = []
    for phase, steps in enumerate((plan.forward, plan.backward, plan.optimizer)):
        if phase == 1:
            out.append(("", LossSnapshot()))
        for step in steps:
            for op in step.ops:
                if isinstance(op, KernelLaunch) and op.mode == "eval":
                    continue
                if fused and isinstance(op, EmbeddingCall) and op.phase == "update":
                    continue
                out.append((step.node, op))
    return out
