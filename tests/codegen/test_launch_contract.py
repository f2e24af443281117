"""The contract between the plans, the runtime's hand-written launches and the rendered kernels, checked
without a GPU.

* Every KernelLaunch (and GEMM epilogue) of the ExecutablePlan of each sample model (examples/*.py, run up to
  ``Model.compile()`` in compile-only mode, then lowered for the cuda target in fp32, fp16 and bf16) names a
  kernel of its module's rendered source, with one argument per parameter: a pointer argument for each
  pointer parameter and, for each scalar parameter, a scalar of exactly its C type.
* Every function the cuda runtime calls in an ``embedding`` module (hgc/runtime/cuda/embedding.py and the
  inference table in hgc/runtime/inference/device_lookup.py, read from their source) exists in the rendered
  embedding template for each optimizer / update / dtype, and its call passes the right number of
  arguments, pointers for pointers and ``scalar(v, "<C type>")`` of the parameter's C type for scalars;
  modules.EMBEDDING_FUNCTIONS names only existing kernels.
* The NaN watch kernel of hgc/runtime/cuda/metrics.py is called with its parameter list.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hgc.codegen.plan import EmbeddingCall, ExecutablePlan, GemmCall, KernelLaunch, KernelSpec, Params
from hgc.codegen.render import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
POINTER_KINDS = {"act", "grad", "scratch", "weight", "wgrad", "weights", "wgrads", "state", "const", "null"}
SCALAR_KINDS = {"int", "float", "runtime"}
PRECISIONS = {"fp32": (False, "float32"), "fp16": (True, "float32"), "bf16": (True, "bfloat16")}

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_TYPEDEF = re.compile(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;")
_QUALIFIERS = {"const", "volatile", "__restrict__"}


def kernel_params(source: str) -> dict[str, list[tuple[str, bool]]]:
    """Kernel name → [(C type with typedefs resolved and qualifiers dropped, is pointer)] of a source."""
    typedefs = {m.group(2): " ".join(m.group(1).split()) for m in _TYPEDEF.finditer(source)}
    out: dict[str, list[tuple[str, bool]]] = {}
    for m in _KERNEL.finditer(source):
        params = []
        for p in m.group(2).replace("\n", " ").split(","):
            p = " ".join(p.split())
            if not p:
                continue
            pointer = "*" in p
            words = (p.split("*")[0] if pointer else " ".join(p.split()[:-1])).split()
            ctype = " ".join(w for w in words if w not in _QUALIFIERS)
            while ctype in typedefs and typedefs[ctype] != ctype:
                ctype = typedefs[ctype]
            params.append((ctype, pointer))
        out[m.group(1)] = params
    return out


def test_kernel_params_resolve_typedefs_and_qualifiers() -> None:
    src = ('typedef unsigned long long ull;\ntypedef float T;\n'
           'extern "C" __global__ void k_a(const ull* __restrict__ keys, long long n,\n'
           '    T* out, ull mask, const int slot) {}\n')
    assert kernel_params(src) == {"k_a": [("unsigned long long", True), ("long long", False), ("float", True),
                                          ("unsigned long long", False), ("int", False)]}


# -- plans of the sample models ---------------------------------------------------------------------------
def _launches(plan: ExecutablePlan) -> list[KernelLaunch]:
    out = []
    for steps in (plan.forward, plan.backward, plan.optimizer):
        for step in steps:
            for op in step.ops:
                if isinstance(op, KernelLaunch):
                    out.append(op)
                elif isinstance(op, GemmCall) and op.epilogue is not None:
                    out.append(op.epilogue)
    return out


def launch_problems(plan: ExecutablePlan) -> tuple[int, list[str]]:
    """(launches checked, what is wrong with them)."""
    params: dict[str, list[tuple[str, bool]]] = {}
    modules = {k.name for k in plan.kernels}
    for spec in plan.kernels:
        params.update(kernel_params(render(spec)))
    problems = []
    launches = _launches(plan)
    for op in launches:
        name = f"{op.spec}_{op.function}"
        if op.spec not in modules:
            problems.append(f"{name}: module '{op.spec}' is not among the plan's kernels")
            continue
        if name not in params:
            problems.append(f"{name}: no such kernel in the rendered module")
            continue
        want = params[name]
        if len(want) != len(op.args):
            problems.append(f"{name}: {len(op.args)} arguments for {len(want)} parameters {want}")
            continue
        for i, (arg, (ctype, pointer)) in enumerate(zip(op.args, want)):
            if pointer and arg.kind not in POINTER_KINDS:
                problems.append(f"{name} argument {i}: {arg.kind} '{arg.name}' for pointer parameter {ctype}*")
            elif not pointer and arg.kind not in SCALAR_KINDS:
                problems.append(f"{name} argument {i}: {arg.kind} '{arg.name}' for scalar parameter {ctype}")
            elif not pointer and arg.ctype != ctype:
                problems.append(f"{name} argument {i}: ctype '{arg.ctype}' for parameter of type '{ctype}'")
    for step in (*plan.forward, *plan.backward, *plan.optimizer):
        for op in step.ops:
            if isinstance(op, EmbeddingCall) and op.spec not in modules:
                problems.append(f"embedding '{op.table}': module '{op.spec}' is not among the plan's kernels")
    return len(launches), problems


@pytest.fixture(scope="module")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Any, Any]]:
    from hgc.cli.compile import script_models

    out = []
    for script in EXAMPLES:
        data = tmp_path_factory.mktemp(script.stem)
        for name, graph, ctx in script_models(script, ["--data", str(data), "--batch", "64"]):
            out.append((f"{script.stem}:{name}", graph, ctx))
    return out


def test_every_sample_model_was_compiled(sample_models: list) -> None:
    names = {n.split(":")[0] for n, _, _ in sample_models}
    assert names == {p.stem for p in EXAMPLES}
    assert {"dlrm", "dcn", "deepfm", "wdl", "din"} <= names


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
def test_plan_launches_match_the_rendered_kernels(sample_models: list, precision: str) -> None:
    from hgc.codegen.lower import lower
    from hgc.passes.pipeline import run_pipeline

    mixed, compute = PRECISIONS[precision]
    total = 0
    for name, graph, ctx in sample_models:
        c = replace(ctx, target="cuda", use_mixed_precision=mixed, compute_dtype=compute, plans={},
                    instruments=[])
        res = run_pipeline(graph, c)
        plan = lower(res.graph, res.plans, passes=[r.name for r in res.records])
        n, problems = launch_problems(plan)
        assert not problems, f"{name} ({precision}):\n" + "\n".join(problems)
        assert n > 0, f"{name}: no kernel launches"
        total += n
    assert total > 100


def test_a_wrong_launch_is_reported() -> None:
    """The checker itself: a missing kernel, a wrong count, a wrong scalar type, a view for a scalar and a
    number for a pointer are each found."""
    from hgc.codegen.plan import Arg, Extent, LaunchConfig, Step

    spec = KernelSpec("elementwise", "m0", Params(op="relu", dtype="float32"))
    ok = KernelLaunch("m0", "fwd", (Arg("act", "x"), Arg("act", "y"), Arg("int", value=Extent.const(5),
                                                                          ctype="long long")), LaunchConfig())
    missing = replace(ok, function="nope")
    short = replace(ok, args=ok.args[:2])
    badtype = replace(ok, args=(*ok.args[:2], replace(ok.args[2], ctype="int")))
    view = replace(ok, args=(*ok.args[:2], Arg("act", "z")))
    number = replace(ok, args=(ok.args[2], *ok.args[1:]))
    plan = ExecutablePlan((), (spec,), (), (Step("n", (ok, missing, short, badtype, view, number)),), (), (), (),
                          (), None, (), 1)
    n, problems = launch_problems(plan)
    assert n == 6 and len(problems) == 5, problems
    assert "no such kernel" in problems[0] and "2 arguments" in problems[1]
    assert "ctype 'int'" in problems[2] and "for scalar parameter" in problems[3]
    assert "for pointer parameter" in problems[4]


# -- the runtime's hand-written embedding launches ------------------------------------------------------------
#: Embedding kernels rendered only for some tables (the runtime's call is guarded by the same condition).
CONDITIONAL = {"touch": lambda p: p["optimizer"] == "Adam" and p["update"] == "LazyGlobal"}


def embedding_specs() -> list[KernelSpec]:
    specs = []
    for i, (opt, upd, dtype, vec) in enumerate([("SGD", "Local", "float32", 16), ("Adam", "Global", "float16", 6),
                                                ("AdaGrad", "Local", "bfloat16", 7),
                                                ("MomentumSGD", "Global", "float32", 8),
                                                ("Nesterov", "Local", "float32", 4),
                                                ("Adam", "LazyGlobal", "float32", 12)]):
        specs.append(KernelSpec("embedding", f"emb{i}", Params(
            dtype=dtype, vec=vec, combiner="mean" if i % 2 else "sum", optimizer=opt,
            update=upd if opt in ("MomentumSGD", "Nesterov", "Adam") else "Local", beta1=0.9, beta2=0.999,
            epsilon=1e-7, momentum_factor=0.9)))
    return specs


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _scalar_ctype(node: ast.AST) -> str | None:
    """The C type of ``scalar(v, "<ctype>")`` or ``np.int64(v)``-style expressions, else None."""
    if isinstance(node, ast.Call):
        name = _call_name(node.func)
        if name == "scalar" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            return str(node.args[1].value)
        numpy = {"int64": "long long", "int32": "int", "float32": "float", "float64": "double",
                 "uint64": "unsigned long long"}
        if name in numpy and isinstance(node.func, ast.Attribute) and _call_name(node.func.value) == "np":
            return numpy[name]
    return None


class _Calls(ast.NodeVisitor):
    """Launch calls (function name literal, argument expressions) per enclosing function, with the local
    names bound to tuples or scalar expressions resolved."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[ast.expr], int]] = []

    def visit_FunctionDef(self, fn: ast.FunctionDef) -> None:
        env: dict[str, ast.expr] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                t, v = node.targets[0], node.value
                if isinstance(t, ast.Name):
                    env[t.id] = v
                elif isinstance(t, ast.Tuple) and isinstance(v, ast.Tuple) and len(t.elts) == len(v.elts):
                    for a, b in zip(t.elts, v.elts):
                        if isinstance(a, ast.Name):
                            env[a.id] = b
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call) or _call_name(node.func) not in ("_launch", "_one"):
                continue
            if not (isinstance(node.func, ast.Attribute) and _call_name(node.func.value) == "self"):
                continue
            fname = node.args[0]
            if isinstance(fname, ast.Name) and fname.id in {a.arg for a in fn.args.args}:
                continue  # a forwarding helper (_one → _launch)
            assert isinstance(fname, ast.Constant), f"line {node.lineno}: kernel name is not a literal"
            tup = node.args[-1]
            assert isinstance(tup, ast.Tuple), f"line {node.lineno}: arguments are not a tuple literal"
            args: list[ast.expr] = []
            for e in tup.elts:
                if isinstance(e, ast.Starred):
                    inner = env.get(_call_name(e.value))
                    assert isinstance(inner, ast.Tuple), f"line {node.lineno}: cannot resolve *{ast.unparse(e)}"
                    args.extend(inner.elts)
                else:
                    args.append(env.get(e.id, e) if isinstance(e, ast.Name) and _scalar_ctype(env.get(e.id, e))
                                else e)
            self.calls.append((fn.name, str(fname.value), args, node.lineno))
        self.generic_visit(fn)


def runtime_embedding_calls() -> list[tuple[str, str, str, list[ast.expr], int]]:
    from hgc.runtime.cuda import embedding
    from hgc.runtime.inference import device_lookup

    out = []
    for mod in (embedding, device_lookup):
        v = _Calls()
        v.visit(ast.parse(inspect.getsource(mod)))
        out += [(Path(mod.__file__).name, *c) for c in v.calls]
    return out


def test_runtime_embedding_calls_were_found() -> None:
    found = {fn for _, _, fn, _, _ in runtime_embedding_calls()}
    assert {"lookup", "insert", "claim", "mark", "assign", "bump", "onehot", "bad_info", "segments", "combine",
            "set_hyper", "scan1", "scan2", "scan3", "sort_keys", "run_heads", "run_starts", "run_reduce",
            "scatter_sgd", "update_rows", "update_span", "touch", "grad_reduce"} <= found


@pytest.mark.parametrize("spec", embedding_specs(), ids=lambda s: f"{s.params['optimizer']}-{s.params['dtype']}")
def test_runtime_embedding_calls_match_the_template(spec: KernelSpec) -> None:
    from hgc.runtime.cuda.modules import EMBEDDING_FUNCTIONS

    params = kernel_params(render(spec))
    prefix = spec.name + "_"
    for fn in EMBEDDING_FUNCTIONS:
        assert prefix + fn in params, f"modules.EMBEDDING_FUNCTIONS names '{fn}', which the template lacks"
    problems = []
    for file, caller, fn, args, line in runtime_embedding_calls():
        where = f"{file}:{line} ({caller}) {fn}"
        if fn in CONDITIONAL and not CONDITIONAL[fn](spec.params):
            assert prefix + fn not in params, f"'{fn}' is rendered for {dict(spec.params)}; update CONDITIONAL"
            continue  # the runtime calls it only for these tables (the same condition guards the call)
        want = params.get(prefix + fn)
        if want is None:
            problems.append(f"{where}: no kernel '{fn}' in the embedding template")
            continue
        if len(args) != len(want):
            problems.append(f"{where}: {len(args)} arguments for {len(want)} parameters {want}")
            continue
        for i, (a, (ctype, pointer)) in enumerate(zip(args, want)):
            given = _scalar_ctype(a)
            if pointer and given is not None:
                problems.append(f"{where} argument {i}: scalar {ast.unparse(a)} for pointer parameter {ctype}*")
            elif not pointer and given is None:
                problems.append(f"{where} argument {i}: {ast.unparse(a)} is not a typed scalar for parameter "
                                f"{ctype}")
            elif not pointer and given != ctype:
                problems.append(f"{where} argument {i}: {given} scalar for parameter of type {ctype}")
    assert not problems, "\n".join(problems)


def test_loss_watch_call_matches_its_kernel() -> None:
    from hgc.runtime.cuda import metrics

    params = kernel_params(metrics.WATCH_SOURCE)
    assert list(params) == ["hgc_loss_watch"]
    tree = ast.parse(textwrap.dedent(inspect.getsource(metrics.LossWatch.record)))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n.func) == "_kernel")
    args = call.args[2]
    assert isinstance(args, ast.Tuple) and len(args.elts) == len(params["hgc_loss_watch"])
    for a, (ctype, pointer) in zip(args.elts, params["hgc_loss_watch"]):
        assert (_scalar_ctype(a) is None) == pointer and (pointer or _scalar_ctype(a) == ctype), ast.unparse(a)
