"""Write a plan's generated CUDA to disk (``hgc compile --target cuda``): one ``<module>.cu`` per kernel spec,
``plan.txt`` with the plan listing, and optionally the PTX and each kernel's registers / shared memory /
spills from an ahead-of-time compile for sm_90 (no GPU needed)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hgc.codegen.nvrtc import DEFAULT_ARCH, KernelResources, available, compile_source
from hgc.codegen.plan import ExecutablePlan
from hgc.codegen.render import render


@dataclass(frozen=True)
class EmittedModule:
    name: str
    path: Path
    resources: dict[str, KernelResources]


def _write(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


def write_kernels(plan: ExecutablePlan, out_dir: str | os.PathLike[str], compile_for: str | None = DEFAULT_ARCH,
                  ptx: bool = False) -> list[EmittedModule]:
    """Write ``kernels/<module>.cu`` (and ``.ptx`` with ``ptx``) under ``out_dir`` plus ``plan.txt``.

    With ``compile_for`` set and a compiler available, every module is compiled for that architecture and
    its kernels' resource use is returned (a compile error raises CompileError).
    """
    root = Path(out_dir)
    kdir = root / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)
    _write(root / "plan.txt", plan.summary() + "\n")
    use = available() if compile_for else None
    out = []
    for spec in plan.kernels:
        src = render(spec)
        path = kdir / f"{spec.name}.cu"
        _write(path, src)
        resources: dict[str, KernelResources] = {}
        if use is not None and compile_for is not None:
            res = compile_source(src, spec.name, compile_for)
            resources = res.resources
            if ptx:
                _write(kdir / f"{spec.name}.ptx", res.ptx)
        out.append(EmittedModule(spec.name, path, resources))
    return out


def resource_table(modules: list[EmittedModule]) -> str:
    """One line per kernel: registers, shared memory, stack and spills (for ``hgc compile -v``)."""
    rows = [("kernel", "regs", "smem", "stack", "spills")]
    for m in modules:
        for fn, r in sorted(m.resources.items()):
            rows.append((fn, str(r.registers), str(r.smem), str(r.stack), str(r.spill_stores + r.spill_loads)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
