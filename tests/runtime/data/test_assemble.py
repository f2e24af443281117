"""build_batch: batches cut from decoded blocks, and the one-hot flag the GPU staging relies on (a one-hot
input's offsets 0, 1, 2, ... are not copied to the device)."""
from __future__ import annotations

import numpy as np

from hgc.runtime.data.assemble import build_batch
from hgc.runtime.data.layout import Block, Layout, SparseSpec


def block(m: int, nnz: np.ndarray, seed: int) -> Block:
    """m samples with 1 label, 2 dense and one sparse input of 3 slots holding ``nnz`` (m x 3) keys."""
    r = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(nnz.reshape(-1))]).astype(np.int64)
    return Block(r.random((m, 1)).astype(np.float32), r.random((m, 2)).astype(np.float32), [offsets],
                 [r.integers(0, 100, int(offsets[-1])).astype(np.uint32)])


def layout(nnz_per_slot: tuple[int, ...]) -> Layout:
    return Layout((1,), 2, (SparseSpec(3, nnz_per_slot),))


def test_one_hot_flag() -> None:
    one = layout((1, 1, 1))
    b7 = block(7, np.ones((7, 3), np.int64), 1)
    whole = build_batch(one, [(b7, 0, 7)], 7)  # a whole block: its arrays are handed over
    cut = build_batch(one, [(b7, 2, 7), (block(4, np.ones((4, 3), np.int64), 2), 0, 2)], 7)
    for b in (whole, cut):
        sb = b.sparse[0]
        assert sb.one_hot and np.array_equal(sb.row_offsets, np.arange(22))
    padded = build_batch(one, [(b7, 0, 5)], 7)  # rows 5, 6 are padding without keys
    assert not padded.sparse[0].one_hot and padded.sparse[0].row_offsets[-1] == 15
    missing = np.ones((7, 3), np.int64)
    missing[3, 1] = 0  # a slot without its key
    assert not build_batch(one, [(block(7, missing, 3), 0, 7)], 7).sparse[0].one_hot
    # up to 2 keys per slot: one key in every row still is a multi-hot input (the flag follows the layout)
    assert not build_batch(layout((1, 2, 1)), [(b7, 0, 7)], 7).sparse[0].one_hot
