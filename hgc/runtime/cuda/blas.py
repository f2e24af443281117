"""cuBLAS GEMMs of the cuda target by raw device pointers: ``cublasGemmEx`` with the element types of the
operands and the compute type the plan asks for.

Row-major C (m × n) = alpha·op(A)·op(B) + beta·C is computed as the column-major product
Cᵀ = op(B)ᵀ·op(A)ᵀ, so no operand is copied or transposed. Supported combinations (cuBLAS's table):

* float32 operands, float32 accumulation, or TF32 tensor-core math (``compute="tf32"``);
* float16 or bfloat16 A and B with float32 accumulation, C in the same half type or in float32
  (weight gradients accumulate into the float32 buffer);
* float64 operands (reference checks).

``alpha``/``beta`` are host scalars of the accumulation type, read before the call returns (so a CUDA graph
capture records their values). The call runs on CuPy's current stream.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.runtime.cuda.device import cupy

#: cudaDataType_t
CUDA_R = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 14}
#: cublasComputeType_t
COMPUTE = {"float32": 68, "tf32": 77, "float64": 70}
CUBLAS_GEMM_DEFAULT = -1
OP_N, OP_T = 0, 1
LOW = ("float16", "bfloat16")


def compute_of(ab: str, c: str, compute: str) -> str:
    """The cuBLAS compute type for A/B of dtype ``ab`` and C of dtype ``c`` (raises when unsupported)."""
    if ab == "float64" and c == "float64":
        return "float64"
    if ab == "float32" and c == "float32":
        return "tf32" if compute == "tf32" else "float32"
    if ab in LOW and c in (ab, "float32"):
        return "float32"
    raise ValueError(f"no cuBLAS GEMM for A/B {ab} with C {c} (compute {compute}): A and B must share a "
                     f"type, C must be that type or float32 for half inputs")


def gemm_ex(a: int, b: int, c: int, m: int, n: int, k: int, lda: int, ldb: int, ldc: int, transa: bool,
            transb: bool, alpha: float, beta: float, ab_dtype: str, c_dtype: str, compute: str = "float32"
            ) -> None:
    """C = alpha·op(A)·op(B) + beta·C on row-major matrices at device addresses ``a``, ``b``, ``c``
    (leading dimensions = stored row lengths, as :class:`hgc.codegen.plan.GemmCall` gives them)."""
    cupy()  # imported through hgc (its kernel cache dir) before cupy.cuda
    from cupy.cuda import cublas, device

    kind = compute_of(ab_dtype, c_dtype, compute)
    scalar_t = np.float64 if kind == "float64" else np.float32
    al, be = np.asarray([alpha], scalar_t), np.asarray([beta], scalar_t)
    handle = device.get_cublas_handle()
    cublas.gemmEx(handle, OP_T if transb else OP_N, OP_T if transa else OP_N, n, m, k,
                  al.ctypes.data, b, CUDA_R[ab_dtype], ldb, a, CUDA_R[ab_dtype], lda,
                  be.ctypes.data, c, CUDA_R[c_dtype], ldc, COMPUTE[kind], CUBLAS_GEMM_DEFAULT)


def empty_product(c: Any, beta: float) -> None:
    """C = beta·C for a product over k = 0 (cuBLAS rejects k = 0 with some algorithms)."""
    if beta == 0.0:
        c.fill(0)
    elif beta != 1.0:
        c *= beta


def round_to_low(src: Any, dst: Any, dtype: str) -> None:
    """dst = src (a float32 CuPy array) rounded to ``dtype`` (float16, or bfloat16 bits in a uint16 array)."""
    cp = cupy()
    if dtype == "float16":
        dst[...] = src.astype(cp.float16)
        return
    u = src.view(cp.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    dst[...] = cp.where(nan, (u >> 16) | 0x40, r).astype(cp.uint16)


def low_copy(count: int, dtype: str) -> Any:
    """A device array for ``count`` weights in ``dtype`` (float16 / bfloat16), or None for float32 runs."""
    if dtype not in LOW:
        return None
    from hgc.runtime.cuda.device import device_dtype

    return cupy().zeros(count, device_dtype(dtype))
