"""Every rendered template compiles for sm_90 without a GPU (NVRTC from the pip wheel or the toolkit, else
nvcc); compile errors carry the log and the numbered source; ptxas resource reports are parsed."""
from __future__ import annotations

import pytest

from hgc.codegen import nvrtc
from hgc.codegen.nvrtc import CompileError, compile_source, parse_ptxas
from hgc.codegen.plan import KernelSpec
from hgc.codegen.render import render
from tests.codegen.specs import representative_specs

COMPILER = nvrtc.available()
needs_compiler = pytest.mark.skipif(COMPILER is None, reason="no NVRTC library (pip install nvidia-cuda-nvrtc-cu12) "
                                                             "and no nvcc on PATH")
SPECS = representative_specs()


@needs_compiler
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_compiles_for_sm90(spec: KernelSpec) -> None:
    src = render(spec)
    res = compile_source(src, spec.name, arch="sm_90")
    assert ".target sm_90" in res.ptx
    assert len(res.cubin) > 0
    assert res.resources, f"no ptxas report in:\n{res.log}"
    for fn, r in res.resources.items():
        assert fn.startswith(spec.name + "_")
        assert r.registers > 0
        assert r.spill_stores == 0 and r.spill_loads == 0, f"{fn} spills: {r}"


@needs_compiler
def test_error_names_module_and_numbers_the_source() -> None:
    src = 'extern "C" __global__ void k(float* x) {\n  x[0] = undefined_thing;\n}\n'
    with pytest.raises(CompileError) as info:
        compile_source(src, "broken")
    msg = str(info.value)
    assert "broken" in msg and "undefined_thing" in msg
    assert "2 |   x[0] = undefined_thing;" in msg


def test_missing_mma_header_names_the_fix() -> None:
    log = 'mma.h(52): catastrophic error: cannot open source file "crt/mma.h"'
    msg = str(CompileError("hgc_interaction_0", log, "#include <mma.h>\n", "NVRTC"))
    assert "crt/mma.h" in msg and "nvidia-cuda-nvcc-cu12" in msg
    assert "hint" not in str(CompileError("m", "error: undefined", "x", "NVRTC"))


@pytest.mark.skipif(nvrtc.nvcc_path() is None, reason="nvcc is not on PATH")
def test_nvcc_fallback_agrees() -> None:
    spec = SPECS[0]
    res = compile_source(render(spec), spec.name, compiler="nvcc")
    assert res.compiler == "nvcc"
    assert set(res.resources) == {f"{spec.name}_fwd", f"{spec.name}_bwd"}


def test_parse_ptxas_report() -> None:
    log = ("ptxas info    : 0 bytes gmem\n"
           "ptxas info    : Compiling entry function 'k_fwd' for 'sm_90'\n"
           "ptxas info    : Function properties for k_fwd\n"
           "ptxas         .     16 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 1152 bytes smem, 380 bytes cmem[0]\n"
           "ptxas info    : Compiling entry function 'k_bwd' for 'sm_90'\n"
           "ptxas info    : Function properties for k_bwd\n"
           "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 12 registers, used 0 barriers\n")
    r = parse_ptxas(log)
    assert r["k_fwd"] == nvrtc.KernelResources(40, 1152, 16, 4, 8)
    assert r["k_bwd"] == nvrtc.KernelResources(12, 0, 0, 0, 0)


def test_runtime_options_carry_include_dirs() -> None:
    opts = nvrtc.runtime_options(debug=4)
    assert "-std=c++17" in opts and "--generate-line-info" in opts
    assert all(o.startswith("-I") for o in opts if o not in ("-std=c++17", "--generate-line-info"))
    assert "--generate-line-info" not in nvrtc.runtime_options(debug=0)
