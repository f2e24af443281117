"""``hgc compile``: run a model through the pass pipeline and show what each pass did.

The model comes from a HugeCTR training script (run up to ``Model.compile()`` with
``hgc.config.config.compile_only`` set, so nothing trains) or from a graph JSON file (``graph_to_json``
output, or a 2.x JSON model configuration whose ``solver`` section then gives GPUs, batch size and
mixed precision). ``--dump-dir`` writes the IR and DOT after every pass and ``placement.txt``.

With ``--target cuda`` the optimized graph is lowered to an ExecutablePlan and every kernel module is
rendered: ``--dump-dir`` then also holds ``plan.txt`` and ``kernels/<module>.cu`` (each with its provenance
header). ``-v`` compiles the modules for sm_90 (nvcc when on PATH, else NVRTC; no GPU needed) and prints each
kernel's registers, shared memory, stack and spills, writing ``kernels/<module>.ptx`` beside the sources;
with neither compiler it reads what CuPy reports on a visible GPU. Arguments after ``--`` go to the script
(its ``sys.argv[1:]``).
"""
from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from hgc.errors import HgcError, NotBuiltError
from hgc.ir.graph import Graph
from hgc.passes.context import PassContext, PipelineResult
from hgc.passes.pipeline import format_pass_table, pass_names, resolve_pass, run_pipeline

TARGETS = ("cuda", "cpu")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compile", help="run a model script or graph JSON through the passes; print the pass table",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="SCRIPT.py|GRAPH.json", help="a HugeCTR training script or a graph JSON file")
    p.add_argument("--dump-dir", type=Path, default=None,
                   help="write NNN_<Pass>.ir.txt / .dot after every pass and placement.txt here (and, "
                        "for the cuda target, plan.txt and kernels/*.cu)")
    p.add_argument("--target", choices=TARGETS, default=None,
                   help="code generation target (default: HGC_TARGET, else cuda when a GPU is visible, else cpu)")
    p.add_argument("--disable-pass", action="append", default=[], metavar="PASS",
                   help=f"skip a pass (repeatable); passes: {', '.join(pass_names())}")
    p.add_argument("--stop-after", default=None, metavar="PASS", help="stop the pipeline after this pass")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print the placement plan and the final IR, and (cuda) each kernel's registers / "
                        "shared memory / spills; show tracebacks on errors")
    p.set_defaults(func=main, script_args=[])  # hgc.cli.main fills script_args from what follows '--'


def default_target() -> str:
    """HGC_TARGET when it names a target, else cuda when CuPy sees a GPU, else cpu."""
    from hgc.frontend.target import active_target

    return active_target()


def _options(args: argparse.Namespace, ctx: PassContext, dump_dir: Path | None) -> PassContext:
    for name in [*args.disable_pass, *([args.stop_after] if args.stop_after else [])]:
        resolve_pass(name)  # unknown names fail before any work, listing the known passes
    return replace(ctx, target=args.target, disabled_passes=frozenset(args.disable_pass),
                   stop_after=args.stop_after, dump_dir=dump_dir, instruments=list(ctx.instruments), plans={})


def _json_models(path: Path) -> list[tuple[str, Graph, PassContext]]:
    from hgc.ir.json_io import load_graph_json, load_legacy_config

    data = json.loads(path.read_text())
    if isinstance(data, dict) and "solver" in data:
        cfg = load_legacy_config(path)
        s = cfg.solver
        gpus = s.get("gpu", [0])
        vvgpu = [list(g) for g in gpus] if gpus and isinstance(gpus[0], list) else [list(gpus)]
        ctx = PassContext(vvgpu=vvgpu, batchsize=int(s.get("batchsize", 2048)),
                          batchsize_eval=int(s.get("batchsize_eval", s.get("batchsize", 2048))),
                          use_mixed_precision="mixed_precision" in s)
        return [(str(cfg.graph.meta.get("model_name") or path.stem), cfg.graph, ctx)]
    graph = load_graph_json(data)
    return [(str(graph.meta.get("model_name") or path.stem), graph, PassContext())]


def script_models(path: Path, script_args: list[str] | None = None) -> list[tuple[str, Graph, PassContext]]:
    from hgc.config import config
    from hgc.frontend import model as frontend_model

    before = len(frontend_model.COMPILED_MODELS)
    argv, syspath = sys.argv, list(sys.path)
    sys.argv = [str(path), *(script_args or [])]
    sys.path.insert(0, str(path.resolve().parent))  # as `python SCRIPT.py` does: the script's own imports
    try:
        with config.patch(compile_only=True):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:  # a script may end with sys.exit(); only a failing exit is an error
        if e.code not in (None, 0):
            raise ValueError(f"{path}: the script exited with status {e.code}") from None
    finally:
        sys.argv = argv
        sys.path[:] = syspath
    models = frontend_model.COMPILED_MODELS[before:]
    if not models:
        raise ValueError(f"{path}: the script compiled no model (it never reached Model.compile())")
    out = []
    for i, m in enumerate(models):
        name = str(m.graph.meta.get("model_name") or "") or (path.stem if len(models) == 1 else f"model{i}")
        out.append((name, m.graph, m.pass_context()))
    return out


def compile_models(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if not path.is_file():
        raise ValueError(f"model = '{path}' is not allowed: no such file")
    if path.suffix == ".json":
        models = _json_models(path)
    elif path.suffix == ".py":
        models = script_models(path, args.script_args)
    else:
        raise ValueError(f"model = '{path}' is not allowed: give a training script (.py) or a graph JSON (.json)")
    if args.script_args and path.suffix != ".py":
        raise ValueError(f"script arguments {args.script_args} given, but '{path}' is not a script")
    args.target = args.target or default_target()
    status = 0
    for name, graph, base in models:
        dump = None
        if args.dump_dir is not None:
            dump = args.dump_dir if len(models) == 1 else args.dump_dir / name
        ctx = _options(args, base, dump)
        result = run_pipeline(graph, ctx)
        print(f"model {name}: {len(graph)} nodes in, {len(result.graph)} out; target {ctx.target}, "
              f"{ctx.world_size} GPU(s) {ctx.vvgpu}")
        print(format_pass_table(result.records))
        if args.verbose:
            from hgc.ir.printer import print_graph
            from hgc.passes.plan_placement import format_placement

            if "placement" in result.plans:
                print(format_placement(result.plans["placement"]), end="")
            print(print_graph(result.graph), end="")
        if ctx.target == "cuda":
            status = max(status, emit_kernels(result, dump, args.verbose))
        if dump is not None:
            print(f"artifacts written to {dump}")
    return status


def emit_kernels(result: PipelineResult, dump: Path | None, verbose: bool) -> int:
    """Lower ``result`` and render its kernel modules (written under ``dump/kernels`` when dumping); with
    ``verbose`` compile them and print the resource table. Returns 1 when the plan cannot be built."""
    from hgc.codegen.emit import write_kernels
    from hgc.codegen.lower import kernel_sources, lower

    try:
        plan = lower(result.graph, result.plans, passes=[r.name for r in result.records])
    except NotBuiltError as e:
        print(f"kernels: not generated: {e}")
        return 1
    if dump is not None:
        modules = write_kernels(plan, dump, compile_for=None)
        sources = {m.name: m.path.read_text() for m in modules}
        print(f"kernels: {len(modules)} module(s) written to {dump / 'kernels'}: "
              f"{', '.join(m.name for m in modules)}")
    else:
        sources = kernel_sources(plan)
        print(f"kernels: {len(sources)} module(s): {', '.join(sources)} (--dump-dir writes them)")
    if verbose:
        print(kernel_resources(sources, dump / "kernels" if dump is not None else None))
    return 0


def kernel_resources(sources: dict[str, str], ptx_dir: Path | None = None) -> str:
    """The resource table of the kernel modules ``sources`` (module name → CUDA source), compiled for sm_90
    by nvcc (on PATH) or NVRTC, else read from CuPy on a visible GPU; a one-line note when neither works.
    With ``ptx_dir`` an ahead-of-time compile writes ``<module>.ptx`` there."""
    from hgc.codegen import nvrtc
    from hgc.codegen.emit import EmittedModule, resource_table

    compiler = "nvcc" if nvrtc.nvcc_path() else nvrtc.available()
    modules: list[EmittedModule] = []
    if compiler is not None:
        version = ".".join(map(str, nvrtc.nvrtc_version() or ()))
        label = "ptxas via nvcc" if compiler == "nvcc" else f"ptxas via NVRTC {version}".strip()
        for name, src in sources.items():
            res = nvrtc.compile_source(src, name, nvrtc.DEFAULT_ARCH, compiler=compiler)
            if ptx_dir is not None:
                tmp = ptx_dir / f"{name}.ptx.tmp"
                tmp.write_text(res.ptx)
                tmp.replace(ptx_dir / f"{name}.ptx")
            modules.append(EmittedModule(name, ptx_dir / f"{name}.cu" if ptx_dir else Path(f"{name}.cu"),
                                         res.resources))
        return f"kernel resources ({label}, {nvrtc.DEFAULT_ARCH}):\n{resource_table(modules)}"
    gpu = _cupy_resources(sources)
    if gpu is None:
        return "kernel resources: not available (no nvcc/ptxas, no NVRTC and no GPU here)"
    device, modules = gpu
    return (f"kernel resources (CuPy function attributes on {device}; spills not reported):\n"
            f"{resource_table(modules)}")


_GLOBAL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(')


def _cupy_resources(sources: dict[str, str]) -> tuple[str, list[Any]] | None:
    """(device name, modules with resources) from CuPy's function attributes, or None without a GPU."""
    from hgc.codegen.emit import EmittedModule
    from hgc.codegen.nvrtc import KernelResources, raw_module
    from hgc.frontend.target import gpu_visible

    if not gpu_visible():
        return None
    from hgc.codegen.nvrtc import import_cupy

    cp: Any = import_cupy()
    device = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else str(device)
    modules = []
    for name, src in sources.items():
        functions = tuple(_GLOBAL.findall(src))
        module: Any = raw_module(src, name, functions)
        res = {}
        for fn in functions:
            k = module.get_function(fn)
            res[fn] = KernelResources(registers=int(k.num_regs), smem=int(k.shared_size_bytes),
                                      stack=int(k.local_size_bytes))
        modules.append(EmittedModule(name, Path(f"{name}.cu"), res))
    return device, modules


def main(args: argparse.Namespace) -> int:
    try:
        return compile_models(args)
    except (HgcError, ValueError, TypeError, OSError) as e:
        if args.verbose:
            raise
        print(f"hgc compile: error: {e}", file=sys.stderr)
        return 1

