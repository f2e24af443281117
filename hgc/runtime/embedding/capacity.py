"""How many embedding rows fit in ``workspace_size_per_gpu_in_mb`` (facts §2.3).

The workspace budgets the fp32 rows plus one fp32 copy per optimizer state. Kept free of other hgc imports so
the placement pass can import it (or copy it) without pulling in the runtime.
"""
from __future__ import annotations

import math

# Optimizer state copies per embedding weight; keys are lower-case Optimizer_t names.
STATE_COPIES = {"adam": 2, "adagrad": 1, "momentumsgd": 1, "nesterov": 1, "rmsprop": 1, "ftrl": 2, "sgd": 0}


def state_copies(optimizer_type: str, update_type: str = "Global") -> int:
    """S in the workspace formula: state copies per weight (Adam with LazyGlobal keeps a third, prev-time)."""
    key = str(optimizer_type).lower()
    if key not in STATE_COPIES:
        raise ValueError(f"optimizer_type={optimizer_type!r} is not an Optimizer_t name; "
                         f"known: Adam, AdaGrad, MomentumSGD, Nesterov, RMSProp, Ftrl, SGD")
    return STATE_COPIES[key] + (1 if key == "adam" and str(update_type).lower() == "lazyglobal" else 0)


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
