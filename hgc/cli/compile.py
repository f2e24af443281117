"""``hgc compile``: run a model through the pass pipeline and show what each pass did.

The model comes from a HugeCTR training script (run up to ``Model.compile()`` with
``hgc.config.config.compile_only`` set, so nothing trains) or from a graph JSON file (``graph_to_json``
output, or a 2.x JSON model configuration whose ``solver`` section then gives GPUs, batch size and
mixed precision). ``--dump-dir`` writes the IR and DOT after every pass and ``placement.txt``.
"""
from __future__ import annotations

import argparse
import json
import runpy
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from hgc.errors import HgcError, NotBuiltError
from hgc.ir.graph import Graph
from hgc.passes.context import PassContext
from hgc.passes.pipeline import format_pass_table, pass_names, resolve_pass, run_pipeline

TARGETS = ("cuda", "cpu")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compile", help="run a model script or graph JSON through the passes; print the pass table",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="SCRIPT.py|GRAPH.json", help="a HugeCTR training script or a graph JSON file")
    p.add_argument("--dump-dir", type=Path, default=None,
                   help="write NNN_<Pass>.ir.txt / .dot after every pass and placement.txt here")
    p.add_argument("--target", choices=TARGETS, default=None,
                   help="code generation target (default: HGC_TARGET, else cuda when a GPU is visible, else cpu)")
    p.add_argument("--disable-pass", action="append", default=[], metavar="PASS",
                   help=f"skip a pass (repeatable); passes: {', '.join(pass_names())}")
    p.add_argument("--stop-after", default=None, metavar="PASS", help="stop the pipeline after this pass")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print the placement plan and the final IR; show tracebacks on errors")
    p.set_defaults(func=main)


def default_target() -> str:
    from hgc.config import config

    if config.target in TARGETS:
        return config.target
    try:
        import cupy  # the cuda target needs CuPy and a visible GPU

        return "cuda" if cupy.cuda.runtime.getDeviceCount() > 0 else "cpu"
    except (ImportError, RuntimeError, OSError):  # no CuPy, no driver, no device: no GPU here
        return "cpu"


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


def _script_models(path: Path) -> list[tuple[str, Graph, PassContext]]:
    from hgc.config import config
    from hgc.frontend import model as frontend_model

    before = len(frontend_model.COMPILED_MODELS)
    argv, syspath = sys.argv, list(sys.path)
    sys.argv = [str(path)]
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
        models = _script_models(path)
    else:
        raise ValueError(f"model = '{path}' is not allowed: give a training script (.py) or a graph JSON (.json)")
    args.target = args.target or default_target()
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
            print(NotBuiltError("CUDA kernel generation (kernels/*.cu)", "hgc compile --target cuda"))
        if dump is not None:
            print(f"artifacts written to {dump}")
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        return compile_models(args)
    except (HgcError, ValueError, TypeError, OSError) as e:
        if args.verbose:
            raise
        print(f"hgc compile: error: {e}", file=sys.stderr)
        return 1

