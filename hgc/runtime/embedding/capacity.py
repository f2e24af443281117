"""How many embedding rows fit in ``workspace_size_per_gpu_in_mb`` (facts §2.3).

The workspace budgets the fp32 rows plus one fp32 copy per optimizer state. The count of state copies is the
IR's (``hgc.ir.ops.embeddings.state_copies``); this module adds case-insensitive names and argument checks.
"""
from __future__ import annotations

import math

from hgc.ir.ops import embeddings
from hgc.runtime.optim.names import optimizer_name, update_name


def state_copies(optimizer_type: str, update_type: str = "Global") -> int:
    """S in the workspace formula: state copies per weight (Adam with LazyGlobal keeps a third, prev-time)."""
    return embeddings.state_copies(optimizer_name(optimizer_type), update_name(update_type))


def rows_for_workspace(mb: float, vec_size: int, optimizer_type: str, update_type: str = "Global") -> int:
    """floor(MB·2^20 / ((1 + S)·4·vec_size)): the per-GPU row capacity (max_vocabulary_size_per_gpu)."""
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or mb < 0:
        raise ValueError(f"workspace_size_per_gpu_in_mb={mb!r} must be a number >= 0")
    if isinstance(vec_size, bool) or not isinstance(vec_size, int) or vec_size <= 0:
        raise ValueError(f"embedding_vec_size={vec_size!r} must be an integer > 0")
    per_row = (1 + state_copies(optimizer_type, update_type)) * 4 * vec_size
    if isinstance(mb, int):
        return (mb << 20) // per_row
    return math.floor(mb * (1 << 20) / per_row)
