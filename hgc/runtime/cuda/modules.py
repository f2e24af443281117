"""The generated kernels of a plan, rendered and compiled once per process (CuPy caches cubins on disk)."""
from __future__ import annotations

import hashlib
from typing import Any

from hgc.codegen.nvrtc import raw_module
from hgc.codegen.plan import EmbeddingCall, ExecutablePlan, GemmCall, KernelLaunch, KernelSpec
from hgc.codegen.render import render

#: Functions the embedding runtime calls in every ``embedding`` module.
EMBEDDING_FUNCTIONS = ("lookup", "insert", "onehot", "segments", "combine", "grad_reduce", "update_rows",
                       "update_span")

_MODULES: dict[str, Any] = {}


def module_for(spec: KernelSpec, functions: tuple[str, ...] = ()) -> Any:
    """The loaded RawModule of ``spec`` (compiled on first use; a compile error raises CompileError)."""
    source = render(spec)
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _MODULES:
        _MODULES[key] = raw_module(source, spec.name, tuple(spec.function(f) for f in functions))
    return _MODULES[key]


def used_functions(plan: ExecutablePlan) -> dict[str, set[str]]:
    """Spec name → the functions the plan launches from it."""
    out: dict[str, set[str]] = {k.name: set() for k in plan.kernels}
    for steps in (plan.forward, plan.backward, plan.optimizer):
        for step in steps:
            for op in step.ops:
                if isinstance(op, KernelLaunch):
                    out[op.spec].add(op.function)
                elif isinstance(op, GemmCall) and op.epilogue is not None:
                    out[op.epilogue.spec].add(op.epilogue.function)
                elif isinstance(op, EmbeddingCall):
                    out[op.spec].update(EMBEDDING_FUNCTIONS)
    return out


class Kernels:
    """Every kernel function of a plan: ``kernels(spec_name, function)``."""

    def __init__(self, plan: ExecutablePlan | None = None) -> None:
        self._modules: dict[str, Any] = {}
        self._functions: dict[tuple[str, str], Any] = {}
        if plan is not None:
            used = used_functions(plan)
            for spec in plan.kernels:
                self.add(spec, tuple(sorted(used.get(spec.name, ()))))

    def add(self, spec: KernelSpec, functions: tuple[str, ...] = ()) -> None:
        self._modules[spec.name] = module_for(spec, functions)

    def __call__(self, spec: str, function: str) -> Any:
        key = (spec, function)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._modules[spec].get_function(f"{spec}_{function}")
            self._functions[key] = fn
        return fn
