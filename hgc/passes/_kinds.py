"""What the passes need to know about an op beyond its name: its kind and traits.

The registry is the source of truth; the name sets below only cover ops that a graph may hold before
their op module is registered (graphs built by hand in tests, or loaded while ops are still missing).
"""
from __future__ import annotations

from hgc.ir.node import Node
from hgc.ir.registry import all_ops

EMBEDDING_OPS = frozenset({"DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash",
                           "LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding"})
LOSS_OPS = frozenset({"BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss"})
INPUT_OPS = frozenset({"Input"})

FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})


def op_kind(op: str) -> str:
    """"input" | "embedding" | "dense" | "loss" for ``op``."""
    opdef = all_ops().get(op)
    if opdef is not None:
        return opdef.kind
    if op in INPUT_OPS:
        return "input"
    if op in EMBEDDING_OPS:
        return "embedding"
    if op in LOSS_OPS:
        return "loss"
    return "dense"


def op_traits(op: str) -> frozenset[str]:
    opdef = all_ops().get(op)
    return opdef.traits if opdef is not None else frozenset()


def is_input(node: Node) -> bool:
    return op_kind(node.op) == "input"


def is_embedding(node: Node) -> bool:
    return op_kind(node.op) == "embedding"


def is_loss(node: Node) -> bool:
    return op_kind(node.op) == "loss"


def is_registered(op: str) -> bool:
    return op in all_ops()
