"""Shared pieces of the multi-GPU tests: placement plans for one table, random batches, references."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs
from hgc.passes.plan_placement import TablePlan, gpus_of, plan_table
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.optim.sparse import SparseOptimizer, make_sparse_optimizer

DIST = "DistributedSlotSparseEmbeddingHash"
LOCAL = "LocalizedSlotSparseEmbeddingHash"
ONE_HOT = "LocalizedSlotSparseEmbeddingOneHot"
HYBRID = "HybridSparseEmbedding"
TYPES = (DIST, LOCAL, ONE_HOT, HYBRID)


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def table_plan(op: str, vvgpu: Sequence[Sequence[int]], *, slots: int, nnz: int, vec: int, sizes: Sequence[int] = (),
               workspace: float = 1.0, optimizer: dict | None = None, batchsize: int = 60,
               hybrid: dict | None = None) -> TablePlan:
    """The placement of one embedding table (input 'keys' of ``slots`` slots) on ``vvgpu``."""
    g = Graph()
    add_node(g, "Input", [], ["label", "dense", "keys"], {
        "label_dims": (1,), "label_names": ("label",), "dense_dim": 1, "dense_name": "dense",
        "sparse": (Attrs(name="keys", slot_num=slots, nnz_per_slot=(nnz,) * slots, is_fixed_length=False),),
        "key_dtype": "int64"}, name="data")
    attrs: dict[str, Any] = {"workspace_size_per_gpu_in_mb": workspace, "embedding_vec_size": vec,
                             "combiner": "sum", "slot_size_array": tuple(sizes),
                             "optimizer": None if optimizer is None else Attrs(optimizer)}
    if hybrid is not None:
        attrs["hybrid_embedding_param"] = Attrs(hybrid)
    add_node(g, op, ["keys"], ["emb"], attrs)
    return plan_table(g.node("emb"), g, gpus_of([list(r) for r in vvgpu]), batchsize)


def random_sparse(rng: np.random.Generator, n: int, slots: int, nnz: int, sizes: Sequence[int] = (),
                  vocab: int = 400, one_hot: bool = False) -> SparseBatch:
    """n samples × slots segments of 0..nnz keys (exactly 1 when one_hot). With sizes, slot s draws from
    [0, sizes[s]) (one-hot keys) or from its own block of that size (hash keys); without, from a vocabulary of
    ``vocab`` keys per slot. Keys are skewed, so some are frequent."""
    counts = np.ones(n * slots, np.int64) if one_hot else rng.integers(0, nnz + 1, n * slots)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    slot_of = np.repeat(np.arange(n * slots) % slots, counts)
    if sizes:
        hi = np.asarray(sizes)[slot_of]
        keys = (rng.random(slot_of.shape[0]) ** 2 * hi).astype(np.int64)  # skewed: some keys are frequent
        if not one_hot:  # hash keys are unique over all slots (facts §2.1)
            keys += np.concatenate([[0], np.cumsum(sizes)])[slot_of]
    else:
        keys = rng.integers(0, vocab, slot_of.shape[0]) * slots + slot_of  # a key belongs to one slot
    return SparseBatch(offsets, keys.astype(np.int64), slots)


def reference(op: str, vec: int, capacity: int | None, combiner: str, sizes: Sequence[int], opt: dict,
              seed: int = 5) -> tuple[EmbeddingTable, SparseOptimizer]:
    """A single-GPU table and its optimizer as the Trainer builds them."""
    one_hot = op in (ONE_HOT, HYBRID)
    table = EmbeddingTable("emb", vec, None if sizes and op != DIST else capacity, combiner,
                           () if op == DIST else sizes, one_hot, rng=np.random.default_rng([seed, 104729, 0]))
    kw = {k: v for k, v in opt.items() if k not in ("optimizer_type", "update_type")}
    return table, make_sparse_optimizer(opt["optimizer_type"], table.capacity, vec,
                                        update_type=opt.get("update_type", "Global"), **kw)


def by_key(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], rows[order]
