"""Compile generated CUDA: ahead of time without a GPU (NVRTC through ctypes, else nvcc), and at run time
through CuPy's ``RawModule`` (whose cubin cache lives under hgc's cache dir).

:func:`compile_source` returns PTX, cubin and the per-kernel resource use (registers, shared memory,
stack, spills) that ptxas reports. NVRTC is found in, in order: ``HGC_NVRTC`` (a library path), the pip
wheel ``nvidia-cuda-nvrtc-cu12`` / ``-cu13``, ``$CUDA_PATH``/``$CUDA_HOME``, ``/usr/local/cuda``, the
system loader. ``cuda_fp16.h``/``cuda_bf16.h`` come from the CUDA include folder found beside it or
beside ``nvcc``. A compile error raises :class:`CompileError` carrying the compiler log and the numbered
source.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hgc.codegen.render import numbered
from hgc.config import config
from hgc.errors import HgcError

DEFAULT_ARCH = "sm_90"
BASE_OPTIONS = ("-std=c++17",)


class CompileError(HgcError, RuntimeError):
    """CUDA source did not compile. The message holds the compiler log and the numbered source."""

    def __init__(self, name: str, log: str, source: str, compiler: str) -> None:
        self.name, self.log, self.source, self.compiler = name, log, source, compiler
        hint = ""
        if "mma.h" in log:  # the tensor-core kernels' header lives in the toolkit or the nvcc wheel only
            hint = ("hint: crt/mma.h was not found: pip install nvidia-cuda-nvcc-cu12 (part of hgc's 'cuda' extra) or "
                    "install a CUDA toolkit (CUDA_PATH)\n")
        super().__init__(f"{compiler} failed to compile module '{name}':\n{log.strip()}\n{hint}"
                         f"--- source ---\n{numbered(source)}")


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reports for one kernel."""

    registers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0


@dataclass(frozen=True)
class CompileResult:
    ptx: str
    cubin: bytes
    log: str
    compiler: str  # "nvrtc <version>" | "nvcc"
    resources: dict[str, KernelResources] = field(default_factory=dict)


# -- locating the toolchain -----------------------------------------------------------------------
def _site_dirs() -> list[str]:
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]


def _cuda_roots() -> list[Path]:
    roots = []
    for var in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]))
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = Path(os.path.realpath(nvcc))
        roots.append(real.parent.parent)
        # a wrapper script (e.g. /usr/local/bin/nvcc) may point at the real toolkit
        try:
            text = real.read_text(errors="ignore") if real.stat().st_size < 4096 else ""
        except OSError:
            text = ""
        for m in re.finditer(r"(/[\w./-]*cuda[\w.-]*)/bin/nvcc", text):
            roots.append(Path(m.group(1)))
    roots.append(Path("/usr/local/cuda"))
    roots += [Path(p) for p in sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    out: list[Path] = []
    for r in roots:
        if r.is_dir() and r not in out:
            out.append(r)
    return out


@functools.lru_cache(maxsize=1)
def include_dirs() -> tuple[str, ...]:
    """Folders holding cuda_fp16.h (CUDA toolkit, or the pip runtime wheel), then the pip nvcc wheel's folder
    with crt/mma.h (the tensor-core kernels' <mma.h> needs it; a toolkit's include folder has both)."""
    found = []
    for root in _cuda_roots():
        for sub in ("include", "targets/x86_64-linux/include", "targets/sbsa-linux/include"):
            d = root / sub
            if (d / "cuda_fp16.h").is_file() and str(d) not in found:
                found.append(str(d))
    for site in _site_dirs():
        for d in sorted(glob.glob(os.path.join(site, "nvidia", "cuda_runtime", "include"))) + \
                sorted(glob.glob(os.path.join(site, "nvidia", "cu1*", "include"))):
            if os.path.isfile(os.path.join(d, "cuda_fp16.h")) and d not in found:
                found.append(d)
    if found:
        for site in _site_dirs():
            for d in sorted(glob.glob(os.path.join(site, "nvidia", "cuda_nvcc", "include"))):
                if os.path.isfile(os.path.join(d, "crt", "mma.h")) and d not in found:
                    found.append(d)
    return tuple(found)


def _nvrtc_candidates() -> list[str]:
    out = []
    if os.environ.get("HGC_NVRTC"):
        out.append(os.environ["HGC_NVRTC"])
    for site in _site_dirs():
        wheel = os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")
        out += sorted(glob.glob(wheel), reverse=True)
        out += sorted(glob.glob(os.path.join(site, "nvidia", "cu1*", "lib", "libnvrtc.so*")), reverse=True)
    for root in _cuda_roots():
        out += sorted(glob.glob(str(root / "lib64" / "libnvrtc.so*")), reverse=True)
        out += sorted(glob.glob(str(root / "lib" / "libnvrtc.so*")), reverse=True)
    name = ctypes.util.find_library("nvrtc")
    if name:
        out.append(name)
    return [p for p in out if "builtins" not in p and ".alt." not in p]


@functools.lru_cache(maxsize=1)
def nvrtc_library() -> ctypes.CDLL | None:
    """The NVRTC shared library, or None when none can be loaded."""
    for path in _nvrtc_candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcVersion  # noqa: B018  (make sure it is NVRTC)
            return lib
        except (OSError, AttributeError):
            continue
    return None


def nvrtc_version() -> tuple[int, int] | None:
    lib = nvrtc_library()
    if lib is None:
        return None
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def available() -> str | None:
    """"nvrtc" or "nvcc" when ahead-of-time compilation works here, else None."""
    if nvrtc_library() is not None and include_dirs():
        return "nvrtc"
    if nvcc_path():
        return "nvcc"
    return None


# -- ptxas report ---------------------------------------------------------------------------------
_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def parse_ptxas(log: str) -> dict[str, KernelResources]:
    """Per-kernel resources from ``ptxas -v`` output (entry functions only; device functions are skipped)."""
    out: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            out.setdefault(current, {})
            continue
        m = _PROPS.search(line)
        if m:
            current = m.group(1) if m.group(1) in out else None
            continue
        if current is None:
            continue
        m = _FRAME.search(line)
        if m:
            out[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                                spill_loads=int(m.group(3)))
            continue
        m = _USED.search(line)
        if m:
            out[current].update(registers=int(m.group(1)), smem=int(m.group(2) or 0))
    return {k: KernelResources(**v) for k, v in out.items()}


# -- ahead-of-time compilation --------------------------------------------------------------------
def _check(lib: ctypes.CDLL, rc: int, what: str) -> None:
    if rc != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise HgcError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(rc).decode()}")


def _compile_nvrtc(source: str, name: str, arch: str, options: tuple[str, ...]) -> CompileResult:
    lib = nvrtc_library()
    assert lib is not None
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), f"{name}.cu".encode(), 0, None, None)
    _check(lib, rc, "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", "-Xptxas=-v", *BASE_OPTIONS, *options,
                *(f"-I{d}" for d in include_dirs())]
        arr = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        ver = nvrtc_version()
        compiler = f"NVRTC {ver[0]}.{ver[1]}" if ver else "NVRTC"
        if rc != 0:
            raise CompileError(name, log, source, compiler)
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        cubin = b""
        if arch.startswith("sm_"):
            lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            cbuf = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetCUBIN(prog, cbuf), "nvrtcGetCUBIN")
            cubin = cbuf.raw
        return CompileResult(ptx.value.decode(), cubin, log, compiler, parse_ptxas(log))
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _compile_nvcc(source: str, name: str, arch: str, options: tuple[str, ...]) -> CompileResult:
    nvcc = nvcc_path()
    assert nvcc is not None
    with tempfile.TemporaryDirectory(prefix="hgc_nvcc_") as tmp:
        src = Path(tmp) / f"{name}.cu"
        src.write_text(source)
        logs = []
        outs = {}
        for kind in ("ptx", "cubin"):
            if kind == "cubin" and not arch.startswith("sm_"):
                continue
            out = Path(tmp) / f"{name}.{kind}"
            cmd = [nvcc, f"-arch={arch}", f"--{kind}", "-Xptxas=-v", *BASE_OPTIONS, *options, "-o", str(out),
                   str(src)]
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            logs.append(p.stdout + p.stderr)
            if p.returncode != 0:
                raise CompileError(name, logs[-1], source, "nvcc")
            outs[kind] = out.read_bytes()
        log = "".join(logs)
        return CompileResult(outs["ptx"].decode(), outs.get("cubin", b""), log, "nvcc", parse_ptxas(log))


def compile_source(source: str, name: str = "hgc_module", arch: str = DEFAULT_ARCH,
                   options: tuple[str, ...] = (), compiler: str | None = None) -> CompileResult:
    """Compile ``source`` for ``arch`` (no GPU needed). ``compiler``: "nvrtc", "nvcc", or None (the first
    available). Raises CompileError on a compile error, HgcError when no compiler is available."""
    use = compiler or available()
    if use == "nvrtc" and nvrtc_library() is not None:
        return _compile_nvrtc(source, name, arch, options)
    if use == "nvcc" and nvcc_path():
        return _compile_nvcc(source, name, arch, options)
    raise HgcError("no CUDA compiler available: install the NVRTC wheel (pip install nvidia-cuda-nvrtc-cu12) "
                   "or put nvcc on PATH")


# -- run-time compilation through CuPy ------------------------------------------------------------
def cupy_cache_dir() -> str:
    return os.path.join(os.path.expanduser(config.cache_dir), "cupy")


def import_cupy() -> object:
    """Import CuPy with its kernel cache under hgc's cache dir (``<cache_dir>/cupy``) unless the user set
    ``CUPY_CACHE_DIR``. (CuPy reads the variable when it compiles, so this works even after an import.)"""
    if "CUPY_CACHE_DIR" not in os.environ:  # called on every step's hot path: no path work once it is set
        os.environ["CUPY_CACHE_DIR"] = cupy_cache_dir()
    import cupy

    return cupy


def runtime_options(debug: int | None = None) -> tuple[str, ...]:
    """NVRTC options for CuPy: the include folders, and line info from HGC_DEBUG >= 4."""
    level = config.debug if debug is None else debug
    opts = list(BASE_OPTIONS) + [f"-I{d}" for d in include_dirs()]
    if level >= 4:
        opts.append("--generate-line-info")
    return tuple(opts)


def raw_module(source: str, name: str, functions: tuple[str, ...],
               options: tuple[str, ...] | None = None) -> object:
    """A loaded ``cupy.RawModule`` of ``source`` with every kernel in ``functions`` fetched once (so a
    compile error surfaces here, as CompileError with the numbered source)."""
    cupy = import_cupy()
    opts = runtime_options() if options is None else options
    module = cupy.RawModule(code=source, options=opts)  # type: ignore[attr-defined]
    try:
        for fn in functions:
            module.get_function(fn)
    except Exception as e:  # noqa: BLE001  (CuPy's CompileException, or a missing symbol)
        log = e.get_message() if hasattr(e, "get_message") else str(e)
        raise CompileError(name, str(log), source, "NVRTC (CuPy)") from None
    return module
