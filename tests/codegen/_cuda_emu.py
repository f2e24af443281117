"""Run generated CUDA kernels on the CPU (no GPU): the rendered source is compiled as C++ with g++ against a
small shim of the CUDA built-ins, and every launch runs its blocks one after another, each on one host
thread per CUDA thread (``__syncthreads`` is a std::barrier over them). Shared memory declared in a
function is one static array, dynamic shared memory one buffer per launch: correct because the blocks
of a launch never overlap in time. ``__half`` is GCC's ``_Float16`` and ``__nv_bfloat16`` rounds to
nearest even, so conversions match the GPU's bit for bit; the arithmetic is float32 as on the GPU
(contractions into FMAs may differ: compare with tolerances, not bits). ``__syncwarp`` is a barrier over the
threads of one warp (32 consecutive threads). A kernel that includes ``<mma.h>`` gets a WMMA shim instead
(16x16x16 tiles, float accumulators): every thread holds and computes the whole tile (what the
warp-collective operations give the warp together), loads convert to float, products accumulate in
float32 in k order; ``store_matrix_sync`` writes from lane 0 only (the others would store the same values,
a data race on the host), so a kernel that reads the stored tile from other lanes without ``__syncwarp``
reads stale or poisoned memory, as it could on the GPU. Dynamic shared memory starts poisoned (0xff bytes)
and is followed by a poisoned guard; a launch that wrote past its dynamic shared memory raises.

Limits: kernels must reach every ``__syncthreads`` (and ``__shfl_xor_sync``, emulated through the block)
from all their threads, as CUDA itself requires of barriers; at most 1024 threads per block. Atomics are
std::atomic_ref operations (the threads of a block run at once; blocks one after another); the sm_90-only
paths (float4 atomics) are left out as on older GPUs.
This is for checking indexing, chunking and synchronisation of small launches, not speed.

    emu = EmulatedModule(spec)               # render + compile (cached per source)
    emu("bias_part", (gx, gy), (32, 8), g, part, np.int64(rows), np.int32(cols))
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hgc.codegen.plan import KernelSpec
from hgc.codegen.render import render

SHIM = r"""
#pragma once
#include <math.h>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct dim3 { unsigned x, y, z; };
inline thread_local dim3 threadIdx{0, 0, 0};
inline thread_local dim3 blockIdx{0, 0, 0};
inline dim3 gridDim{1, 1, 1};
inline dim3 blockDim{1, 1, 1};
inline std::barrier<>* hgc_emu_barrier = nullptr;
inline unsigned char* hgc_emu_dynamic_smem = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>>* hgc_emu_warp_barriers = nullptr;
inline float hgc_emu_exchange[1024];
inline long long hgc_emu_exchange_i[1024];

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) alignas(n)

inline void __syncthreads() { hgc_emu_barrier->arrive_and_wait(); }
inline unsigned hgc_emu_thread() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
// Every thread of the warp must call it (the full mask).
inline void __syncwarp(unsigned = 0xffffffffu) {
  (*hgc_emu_warp_barriers)[hgc_emu_thread() / 32]->arrive_and_wait();
}

template <typename T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <typename T> inline T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
template <typename T> inline T atomicCAS(T* p, T expected, T v) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, v);
  return expected;  // the old value, whether or not it was replaced
}
template <typename T> inline T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <typename T> inline T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {}
  return old;
}

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };

struct __half { _Float16 v; };
inline float __half2float(__half h) { return (float)h.v; }
inline __half __float2half_rn(float f) { return __half{(_Float16)f}; }

struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return __nv_bfloat16{(uint16_t)(u >> 16)};
}

// Through the block: every thread of the block must call it (lanes exchange within their warp).
inline float __shfl_xor_sync(unsigned, float v, int o) {
  const unsigned t = hgc_emu_thread();
  hgc_emu_exchange[t] = v;
  __syncthreads();
  const float r = hgc_emu_exchange[t ^ (unsigned)o];
  __syncthreads();
  return r;
}

// Through the block as well: lane l reads lane l - o of its warp (its own value when l < o).
inline int __shfl_up_sync(unsigned, int v, int o) {
  const unsigned t = hgc_emu_thread();
  hgc_emu_exchange_i[t] = v;
  __syncthreads();
  const int r = (t % 32) >= (unsigned)o ? (int)hgc_emu_exchange_i[t - (unsigned)o] : v;
  __syncthreads();
  return r;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

constexpr unsigned long long HGC_EMU_GUARD = 4096;

// Runs the grid; returns 1 when the kernel wrote into the guard after its dynamic shared memory, else 0.
inline int hgc_emu_run(unsigned gx, unsigned gy, unsigned bx, unsigned by, unsigned long long smem,
                       const std::function<void()>& body) {
  gridDim = dim3{gx, gy, 1};
  blockDim = dim3{bx, by, 1};
  std::vector<unsigned char> dyn(smem + HGC_EMU_GUARD + 64);
  hgc_emu_dynamic_smem = dyn.data() + (64 - (reinterpret_cast<uintptr_t>(dyn.data()) & 63)) % 64;
  // NaN-like garbage: reads before writes show
  std::memset(hgc_emu_dynamic_smem, 0xff, smem + HGC_EMU_GUARD);
  const unsigned n = bx * by;
  std::barrier<> bar((std::ptrdiff_t)n);
  hgc_emu_barrier = &bar;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  for (unsigned w = 0; w * 32 < n; ++w)
    warps.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - w * 32)));
  hgc_emu_warp_barriers = &warps;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      threadIdx = dim3{t % bx, t / bx, 0};
      for (unsigned y = 0; y < gy; ++y) {
        for (unsigned x = 0; x < gx; ++x) {
          blockIdx = dim3{x, y, 0};
          body();
          bar.arrive_and_wait();  // the block is done before the next one reuses shared memory
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (unsigned long long i = smem; i < smem + HGC_EMU_GUARD; ++i) {
    if (hgc_emu_dynamic_smem[i] != 0xff) return 1;
  }
  return 0;
}
"""

WMMA_SHIM = r"""
#pragma once
#include "cuda_fp16.h"
#include <type_traits>

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// The whole tile in float, [row][column] of the matrix it stands for (A: m x k, B: k x n, C: m x n).
template <typename Use, int Rows, int Cols, int Depth, typename T, typename Layout = void>
struct fragment {
  static_assert(Rows == 16 && Cols == 16 && Depth == 16, "the shim has 16x16x16 tiles only");
  float v[16][16];
};

inline float hgc_emu_to_float(float x) { return x; }
inline float hgc_emu_to_float(__half x) { return __half2float(x); }
inline float hgc_emu_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename Use, typename T, typename L, typename P>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& a, const P* p, unsigned ldm) {
  static_assert(std::is_same_v<L, row_major> || std::is_same_v<L, col_major>, "a/b fragments have a layout");
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c)
      a.v[r][c] = hgc_emu_to_float(std::is_same_v<L, row_major> ? p[r * ldm + c] : p[c * ldm + r]);
}

template <typename T>
inline void fill_fragment(fragment<accumulator, 16, 16, 16, T>& a, float x) {
  for (auto& row : a.v)
    for (float& e : row) e = x;
}

template <typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16][16];
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float s = c.v[r][n];
      for (int k = 0; k < 16; ++k) s += a.v[r][k] * b.v[k][n];
      out[r][n] = s;
    }
  std::memcpy(d.v, out, sizeof out);
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& a, unsigned ldm,
                              layout_t l) {
  if (hgc_emu_thread() % 32 != 0) return;  // lane 0 stores for the warp
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = a.v[r][c];
}
}  // namespace wmma
}  // namespace nvcuda
"""

_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
_DYNAMIC = re.compile(r"extern __shared__ (\w+) (\w+)\[\];")
_CTYPES = {"long long": ctypes.c_longlong, "int": ctypes.c_int, "float": ctypes.c_float,
           "unsigned long long": ctypes.c_ulonglong}
_CACHE: dict[str, tuple[ctypes.CDLL, dict[str, list[str]]]] = {}
_DIR: list[Path] = []


def available() -> bool:
    return shutil.which("g++") is not None


def _workdir() -> Path:
    """A per-user folder of compiled modules (named by the hash of shim + source: reused across runs)."""
    if not _DIR:
        tag = hashlib.sha256((SHIM + WMMA_SHIM).encode()).hexdigest()[:12]
        d = Path(tempfile.gettempdir()) / f"hgc_emu_{os.getuid()}_{tag}"
        d.mkdir(parents=True, exist_ok=True)
        files = (("cuda_fp16.h", SHIM), ("cuda_bf16.h", '#include "cuda_fp16.h"\n'), ("mma.h", WMMA_SHIM))
        for name, text in files:
            if not (d / name).exists():
                tmp = d / f"{name}.{os.getpid()}"
                tmp.write_text(text)
                tmp.replace(d / name)
        _DIR.append(d)
    return _DIR[0]


def _params(decl: str) -> list[str]:
    return [p.strip() for p in decl.replace("\n", " ").split(",") if p.strip()]


def host_source(source: str) -> tuple[str, dict[str, list[str]]]:
    """The CUDA source as C++ for the shim, with one ``hgc_emu_launch_<kernel>`` entry per kernel."""
    kernels = {m.group(1): _params(m.group(2)) for m in _KERNEL.finditer(source)}
    body = _DYNAMIC.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>"
                              f"(hgc_emu_dynamic_smem);", source)
    out = [body, ""]
    for name, params in kernels.items():
        names = [re.split(r"[\s*]+", p)[-1] for p in params]
        decl = ", ".join(["unsigned hgc_gx_", "unsigned hgc_gy_", "unsigned hgc_bx_", "unsigned hgc_by_",
                          "unsigned long long hgc_smem_", *params])
        out.append(f'extern "C" int hgc_emu_launch_{name}({decl}) {{\n'
                   f"  return hgc_emu_run(hgc_gx_, hgc_gy_, hgc_bx_, hgc_by_, hgc_smem_, "
                   f"[=]() {{ {name}({', '.join(names)}); }});\n}}")
    return "\n".join(out), kernels


def _compile(source: str) -> tuple[ctypes.CDLL, dict[str, list[str]]]:
    key = hashlib.sha256(source.encode()).hexdigest()[:24]
    if key in _CACHE:
        return _CACHE[key]
    d = _workdir()
    text, kernels = host_source(source)
    lib = d / f"{key}.so"
    if not lib.exists():  # compiled under a private name, then renamed: safe with parallel test workers
        src, tmp = d / f"{key}.{os.getpid()}.cpp", d / f"{key}.{os.getpid()}.so"
        src.write_text(text)
        cmd = ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", f"-I{d}", str(src),
               "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        src.unlink()
        if res.returncode != 0:
            raise RuntimeError(f"g++ could not compile the emulated module:\n{res.stderr[-4000:]}")
        tmp.replace(lib)
    _CACHE[key] = (ctypes.CDLL(str(lib)), kernels)
    return _CACHE[key]


class EmulatedModule:
    """One template rendered with its params and compiled for the host; call kernels by function name."""

    def __init__(self, spec: KernelSpec) -> None:
        self.spec = spec
        self.lib, self.kernels = _compile(render(spec))

    def __call__(self, fn: str, grid: tuple[int, ...] | int, block: tuple[int, ...] | int, *args: Any,
                 smem: int = 0) -> None:
        name = self.spec.function(fn)
        params = self.kernels[name]
        if len(args) != len(params):
            raise TypeError(f"{name} takes {len(params)} arguments ({params}), {len(args)} given")
        g = grid if isinstance(grid, tuple) else (grid,)
        b = block if isinstance(block, tuple) else (block,)
        gx, gy = int(g[0]), int(g[1]) if len(g) > 1 else 1
        bx, by = int(b[0]), int(b[1]) if len(b) > 1 else 1
        assert bx * by <= 1024 and all(len(t) < 3 or t[2] == 1 for t in (g, b))
        cargs: list[Any] = []
        for p, a in zip(params, args):
            if "*" in p:
                if isinstance(a, np.ndarray):
                    assert a.flags.c_contiguous
                    cargs.append(ctypes.c_void_p(a.ctypes.data))
                else:  # a null pointer
                    assert a is None or int(a) == 0, f"{name}: pointer parameter '{p}' given {a!r}"
                    cargs.append(ctypes.c_void_p(0))
            else:
                ctype = " ".join(p.split()[:-1]).replace("const ", "")
                cargs.append(_CTYPES[ctype](a.item() if hasattr(a, "item") else a))
        launch = getattr(self.lib, f"hgc_emu_launch_{name}")
        launch.restype = ctypes.c_int
        if launch(ctypes.c_uint(gx), ctypes.c_uint(gy), ctypes.c_uint(bx), ctypes.c_uint(by),
                  ctypes.c_ulonglong(smem), *cargs):
            raise RuntimeError(f"{name} wrote past its {smem} bytes of dynamic shared memory")


def host_array(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` in the layout a kernel of ``dtype`` reads (bfloat16 as its 16-bit patterns)."""
    x = np.ascontiguousarray(x)
    if dtype == "float32":
        return x.astype(np.float32)
    if dtype == "float16":
        return x.astype(np.float16)
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def as_float64(a: np.ndarray, dtype: str) -> np.ndarray:
    """A kernel array of ``dtype`` read back as float64."""
    if dtype == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)
