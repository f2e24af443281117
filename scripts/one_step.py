"""One training step of a sample model on the cuda target, small enough to run under compute-sanitizer.

    python scripts/one_step.py wdl|dcn|deepfm|dlrm|ncf|mmoe|din [--batch 64] [--steps 1] [--data DIR]

The model is the example script's own (``examples/<model>.py`` run up to ``Model.compile()`` under
``hgc compile``'s compile-only mode, with small widths), put through the pass pipeline, lowered to an
ExecutablePlan and run by ``CudaExecutor.train_step`` on random batches of the Input's shape (keys inside each
table's ``slot_size_array``). CuPy's memory pool is off by default, so every buffer is its own allocation and
memcheck sees accesses past its end.

Prints one line ``one_step <model>: ok: loss ...`` and exits 0; ``one_step <model>: skipped: <reason>`` with
exit status 3 when the cuda target cannot build the model yet (a kernel the lowering lacks) or sees no GPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hgc.errors import NotBuiltError  # noqa: E402

SKIPPED = 3
#: The example scripts' arguments that keep one step small.
SMALL_ARGS = {"dlrm": ["--vec", "16"], "din": ["--vec", "8"], "wdl": ["--hidden", "64"], "dcn": ["--hidden", "64"],
              "deepfm": ["--hidden", "64"]}
MODELS = ("wdl", "dcn", "deepfm", "dlrm", "ncf", "mmoe", "din")


def build(model: str, data: str, batch: int) -> tuple[Any, Any]:
    """(optimized graph, ExecutablePlan) of ``examples/<model>.py`` at per-GPU batch ``batch``."""
    from hgc.cli.compile import script_models
    from hgc.codegen.lower import lower
    from hgc.passes.pipeline import run_pipeline

    script = ROOT / "examples" / f"{model}.py"
    (name, graph, ctx), *_ = script_models(script, [*SMALL_ARGS.get(model, []), "--data", data,
                                                    "--batch", str(batch)])
    ctx = replace(ctx, target="cuda", batchsize=batch, batchsize_eval=batch, vvgpu=[[0]])
    result = run_pipeline(graph, ctx)
    plan = lower(result.graph, result.plans, batch=batch, passes=[r.name for r in result.records])
    return result.graph, plan


def initial_weights(graph: Any, seed: int) -> dict[str, list[np.ndarray]]:
    """Every weighted node's weights from its op's initialiser, by node name."""
    from hgc.ir.registry import get_op

    out = {}
    for i, n in enumerate(graph.nodes()):
        op = get_op(n.op)
        types = [graph.tensor_type(t) for t in n.inputs]
        if op.kind in ("dense", "loss") and op.weights(n.attrs, types):
            out[n.name] = [np.asarray(w, np.float32)
                           for w in op.init(n.attrs, types, np.random.default_rng([seed, i]))]
    return out


def random_batch(graph: Any, n: int, seed: int) -> Any:
    """A batch of ``n`` samples for the graph's Input: 0/1 labels, U(-1, 1) dense, keys inside each slot's
    size (or below 1000 without a ``slot_size_array``), multi-hot slots with 0..nnz keys."""
    from hgc.ir.registry import get_op
    from hgc.runtime.data.batch import Batch, SparseBatch

    r = np.random.default_rng(seed)
    inp = next(x for x in graph.nodes() if x.op == "Input").attrs
    label = (r.random((n, sum(inp["label_dims"]))) < 0.5).astype(np.float32)
    dense = r.uniform(-1, 1, (n, inp["dense_dim"])).astype(np.float32)
    sparse = []
    for s in inp["sparse"]:
        slots, nnz = s["slot_num"], max(s["nnz_per_slot"])
        emb = next(x for x in graph.nodes() if get_op(x.op).kind == "embedding" and x.inputs[0] == s["name"])
        sizes = list(emb.attrs.get("slot_size_array") or ()) or [1000] * slots
        counts = np.ones(n * slots, np.int64) if nnz == 1 and s["is_fixed_length"] else \
            r.integers(0, nnz + 1, n * slots)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        slot_of = np.repeat(np.tile(np.arange(slots), n), counts)
        keys = (r.random(int(offsets[-1])) * np.asarray(sizes)[slot_of]).astype(np.int64)
        key_dtype = np.uint32 if inp["key_dtype"] == "uint32" else np.int64
        sparse.append(SparseBatch(offsets, keys.astype(key_dtype), slots))
    return Batch(n, label, dense, sparse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=MODELS)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--data", default=None, help="where the example writes its dataset (default: a temp dir)")
    p.add_argument("--pool", action="store_true", help="keep CuPy's memory pool (default: off)")
    args = p.parse_args(argv)
    tag = f"one_step {args.model}"
    from hgc.frontend.target import gpu_visible

    if not gpu_visible():
        print(f"{tag}: skipped: no GPU visible to CuPy")
        return SKIPPED
    from hgc.codegen.nvrtc import import_cupy

    cp: Any = import_cupy()
    if not args.pool:
        cp.cuda.set_allocator(None)
        cp.cuda.set_pinned_memory_allocator(None)
    with tempfile.TemporaryDirectory(prefix=f"hgc_{args.model}_") as tmp:
        try:
            graph, plan = build(args.model, args.data or tmp, args.batch)
        except NotBuiltError as e:
            print(f"{tag}: skipped: {e}")
            return SKIPPED
    from hgc.runtime.cuda.executor import CudaExecutor

    ex = CudaExecutor(plan, initial_weights(graph, seed=7), seed=7)
    losses = []
    for step in range(args.steps):
        out = ex.train_step(random_batch(graph, args.batch, seed=100 + step), args.lr)
        losses.append(out)
    cp.cuda.runtime.deviceSynchronize()
    bad = [k for s in losses for k, v in s.items() if not np.isfinite(v)]
    text = "; ".join(", ".join(f"{k}={v:.6f}" for k, v in s.items()) for s in losses)
    print(f"{tag}: {'ok' if not bad else 'non-finite loss'}: {len(plan.kernels)} kernel modules, "
          f"batch {args.batch}, {args.steps} step(s): {text}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
