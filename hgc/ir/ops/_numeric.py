"""Rules shared by the numeric op modules: float-tensor inputs, integer attributes, accumulation dtype."""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.ir.ops._common import require
from hgc.ir.types import TensorType

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def require_float(t: TensorType, what: str = "input") -> None:
    """ShapeError unless ``t`` is a dense floating-point tensor."""
    require(not t.sparse and t.dtype in FLOAT_DTYPES,
            f"{what} must be a dense floating-point tensor, got {t}")


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def positive_int(v: Any) -> str | None:
    return None if is_int(v) and v > 0 else "must be an integer > 0"


def non_negative_int(v: Any) -> str | None:
    return None if is_int(v) and v >= 0 else "must be an integer >= 0"


def acc_dtype(x: np.ndarray) -> np.dtype:
    """Accumulation dtype of the reference math: float32 for half inputs, else the input's own."""
    return np.result_type(x.dtype, np.float32)
