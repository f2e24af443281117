"""CuPy access for the cuda runtime: import (with hgc's kernel cache dir), typed kernel arguments, views,
GEMMs, and launch checking (HGC_DEBUG >= 1 synchronizes after every operation to pin faults down)."""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.codegen.nvrtc import import_cupy
from hgc.config import config
from hgc.errors import HgcError

SCALAR_TYPES = {"long long": np.int64, "int": np.int32, "float": np.float32, "double": np.float64,
                "unsigned long long": np.uint64}
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
                "int32": np.int32, "uint32": np.uint32, "uint64": np.uint64, "uint8": np.uint8}


class DeviceError(HgcError, RuntimeError):
    """A CUDA operation failed; the message names the operation."""


def cupy() -> Any:
    return import_cupy()


def np_dtype(dtype: str) -> Any:
    if dtype == "bfloat16":
        try:
            import ml_dtypes

            return ml_dtypes.bfloat16
        except ImportError:
            raise HgcError("bfloat16 tensors need the ml_dtypes package on the host") from None
    return NUMPY_DTYPES[dtype]


def device_dtype(dtype: str) -> Any:
    """The CuPy element type of an IR dtype (bfloat16 is stored as uint16 bits: CuPy has no bfloat16)."""
    if dtype == "bfloat16":
        return np.uint16
    return NUMPY_DTYPES[dtype]


def scalar(value: Any, ctype: str) -> Any:
    try:
        return SCALAR_TYPES[ctype](value)
    except KeyError:
        raise HgcError(f"kernel argument C type '{ctype}' is not one of {sorted(SCALAR_TYPES)}") from None


def view(base: Any, offset_bytes: int, shape: tuple[int, ...], dtype: str) -> Any:
    """A CuPy array of ``shape``/``dtype`` over ``base``'s memory from ``offset_bytes``."""
    cp = cupy()
    return cp.ndarray(shape, device_dtype(dtype), memptr=base.data + int(offset_bytes))


def sync_check(what: str) -> None:
    """Synchronize and turn an asynchronous CUDA fault into a DeviceError naming ``what``."""
    cp = cupy()
    try:
        cp.cuda.runtime.deviceSynchronize()
    except cp.cuda.runtime.CUDARuntimeError as e:
        raise DeviceError(f"CUDA error after {what}: {e}") from None


def debug_level() -> int:
    return int(config.debug)


def gemm(a: Any, b: Any, c: Any, transa: bool, transb: bool, alpha: float, beta: float) -> None:
    """c = alpha·op(a)·op(b) + beta·c on row-major CuPy matrices (cuBLAS; fp32/fp64 with alpha/beta)."""
    cp = cupy()
    m, n = c.shape
    k = a.shape[0] if transa else a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0.0:
            c.fill(0)
        elif beta != 1.0:
            c *= beta
        return
    if c.dtype in (np.float32, np.float64):
        from cupy import cublas

        cublas.gemm("T" if transa else "N", "T" if transb else "N", a, b, out=c, alpha=alpha, beta=beta)
        return
    prod = cp.matmul(a.T if transa else a, b.T if transb else b)
    if alpha != 1.0:
        prod *= alpha
    if beta == 0.0:
        c[...] = prod
    else:
        if beta != 1.0:
            c *= beta
        c += prod
