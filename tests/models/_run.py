"""Helpers of the model-quality tests: run an example script in this process and evaluate the model it trained
through the low-level API (``Model.eval`` / ``get_eval_metrics``)."""
from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

from hgc.config import config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(script: str, argv: list[str]) -> tuple[Any, float]:
    """Run ``examples/<script>`` as ``__main__`` with ``argv`` on the cpu target; returns (its trained Model,
    seconds taken)."""
    old_argv, old_path = sys.argv[:], sys.path[:]
    sys.argv = [str(EXAMPLES / script), *argv]
    sys.path.insert(0, str(EXAMPLES))
    t0 = time.perf_counter()
    try:
        with config.patch(target="cpu"):
            env = runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return env["model"], time.perf_counter() - t0


def evaluate(model: Any, batches: int | None, watch: tuple[str, ...] = ()) -> tuple[dict[str, float], dict]:
    """Evaluate ``batches`` batches (None: until an epoch-mode source ends) and return (metrics by name,
    {tensor: list of per-batch arrays}) for the tensors named in ``watch`` (via ``check_out_tensor``)."""
    import hgc

    seen: dict[str, list] = {t: [] for t in watch}
    for _ in range(2):  # an epoch-mode source that fit() left at its end yields nothing the first time
        n = 0
        while (batches is None or n < batches) and model.eval():
            n += 1
            for t in watch:
                seen[t].append(model.check_out_tensor(t, hgc.Tensor_t.Evaluate))
        if n:
            break
    return dict(model.get_eval_metrics()), seen
