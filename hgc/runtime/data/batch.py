"""The batch a data reader hands to the runtime (host memory, ready to copy to a device)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SparseBatch:
    """Keys of one sparse input as CSR over (sample, slot) rows, sample-major.

    ``row_offsets`` has n·slot_num + 1 int64 entries; the keys of sample i, slot s are
    ``keys[row_offsets[i*slot_num+s] : row_offsets[i*slot_num+s+1]]``. ``one_hot``: every row holds exactly
    one key (row_offsets is 0, 1, ..., n·slot_num), which lets the GPU staging skip copying the offsets.
    """

    row_offsets: np.ndarray
    keys: np.ndarray
    slot_num: int
    one_hot: bool = False

    def nnz(self) -> np.ndarray:
        """Keys per (sample, slot), shape (n, slot_num)."""
        return np.diff(self.row_offsets).reshape(-1, self.slot_num)


@dataclass
class Batch:
    """One batch of n rows; rows ``size..n`` are padding (zero label/dense, no keys)."""

    size: int
    label: np.ndarray  # float32 (n, total label dim)
    dense: np.ndarray  # float32 (n, dense_dim)
    sparse: list[SparseBatch]

    @property
    def n(self) -> int:
        return int(self.label.shape[0])
