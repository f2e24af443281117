"""The summation order of the two-stage column reductions (templates/_prelude.cu.j2, col_partials and
col_finish), replayed in float32 with NumPy: plain sums formed this way equal the kernels' bit for bit,
on the GPU and on the CPU emulator alike (float additions in a fixed order leave nothing to chance)."""
from __future__ import annotations

import numpy as np


def lanes_sum(block: np.ndarray) -> np.ndarray:
    """Column sums of ``block`` as one (32, 8) tile forms them: lane y adds rows y, y + 8, ... in order
    (from 0, in float32), then the 8 lane totals are added in lane order."""
    block = np.asarray(block, np.float32)
    t = np.zeros(block.shape[1], np.float32)
    for y in range(8):
        rows = block[y::8]
        lane = np.add.accumulate(rows, axis=0, dtype=np.float32)[-1] if len(rows) else np.zeros_like(t)
        t = t + lane
    return t


def column_sums(values: np.ndarray, parts: int, start: np.ndarray | float = 0.0) -> np.ndarray:
    """``start`` + the column sums of ``values`` (rows x cols) in the kernels' order: chunk k of
    ceil(rows / parts) rows → one partial per column (lanes_sum), then the partials of a column by
    lanes_sum again (lane y takes chunks y, y + 8, ...), added to ``start`` in float32."""
    v = np.asarray(values, np.float32)
    rows = v.shape[0]
    per = -(-rows // parts)
    partials = np.stack([lanes_sum(v[min(rows, k * per):min(rows, (k + 1) * per)]) for k in range(parts)])
    return np.asarray(start, np.float32) + lanes_sum(partials)
