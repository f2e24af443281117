"""Helpers of the GPU tests: skip without CuPy or a GPU, compile one template, move typed arrays."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from hgc.codegen.plan import KernelSpec, Params

_COUNTER = itertools.count()
TOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}
DTYPES = ("float32", "float16", "bfloat16")


def gpu() -> Any:
    """CuPy, or skip the calling module when CuPy or a GPU is missing."""
    try:
        from hgc.codegen.nvrtc import import_cupy

        cp = import_cupy()
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (ImportError, or a CUDA driver/runtime error)
        pytest.skip(f"needs CuPy and a GPU: {type(e).__name__}: {e}", allow_module_level=True)
    if n < 1:
        pytest.skip("needs a GPU: CuPy sees none", allow_module_level=True)
    return cp


def rel_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    assert np.all(np.isfinite(a)), "result has NaN/inf"
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def quantize(x: np.ndarray, dtype: str) -> np.ndarray:
    """x rounded to ``dtype`` and back, as float64 (the values the kernel sees)."""
    x = np.asarray(x, np.float64)
    if dtype == "float32":
        return x.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    return bf16_to_f32(f32_to_bf16(x.astype(np.float32))).astype(np.float64)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_dev(cp: Any, x: np.ndarray, dtype: str) -> Any:
    if dtype == "float32":
        return cp.asarray(np.asarray(x, np.float32))
    if dtype == "float16":
        return cp.asarray(np.asarray(x, np.float16))
    return cp.asarray(f32_to_bf16(np.asarray(x, np.float32)))


def from_dev(cp: Any, a: Any, dtype: str) -> np.ndarray:
    h = cp.asnumpy(a)
    if dtype == "bfloat16":
        h = bf16_to_f32(h)
    return h.astype(np.float64)


def empty(cp: Any, shape: tuple[int, ...], dtype: str, poison: float = np.nan) -> Any:
    """A device array filled with ``poison`` (NaN by default) so unwritten elements show."""
    return to_dev(cp, np.full(shape, poison, np.float32), dtype)


def i64(v: int) -> np.int64:
    return np.int64(v)


def i32(v: int) -> np.int32:
    return np.int32(v)


def f32(v: float) -> np.float32:
    return np.float32(v)


class Module:
    """One template rendered with ``params`` and compiled; call its kernels by function name."""

    def __init__(self, template: str, **params: Any) -> None:
        from hgc.runtime.cuda.modules import module_for

        self.spec = KernelSpec(template, f"t_{template}_{next(_COUNTER)}", Params(params), ("test",))
        self.module = module_for(self.spec)
        self.cp = gpu()

    def __call__(self, fn: str, grid: Any, block: Any, *args: Any, smem: int = 0) -> None:
        grid = grid if isinstance(grid, tuple) else (int(grid), 1, 1)
        block = block if isinstance(block, tuple) else (int(block), 1, 1)
        self.module.get_function(f"{self.spec.name}_{fn}")(grid, block, args, shared_mem=smem)
        self.cp.cuda.runtime.deviceSynchronize()


def blocks(n: int, per: int = 256) -> int:
    return max(1, -(-n // per))
