"""Cutting decoded blocks into fixed-size batches (with HugeCTR's padding of a short last batch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hgc.runtime.data.batch import Batch, SparseBatch
from hgc.runtime.data.layout import Block, Layout, SparseSpec


def _concat_rows(parts: Sequence[np.ndarray], rows: int, width: int) -> np.ndarray:
    out = np.empty((rows, width), dtype=np.float32)
    at = 0
    for p in parts:
        out[at : at + p.shape[0]] = p
        at += p.shape[0]
    out[at:] = 0
    return out


def one_hot(spec: SparseSpec, row_offsets: np.ndarray) -> bool:
    """Whether every (sample, slot) row holds exactly one key: at most one per slot (the layout) and as many
    keys as rows."""
    return all(k == 1 for k in spec.nnz_per_slot) and int(row_offsets[-1]) == row_offsets.shape[0] - 1


def build_batch(
    layout: Layout, pieces: Sequence[tuple[Block, int, int]], n: int, copy: bool = False
) -> Batch:
    """One batch of ``n`` rows from row ranges ``[a, b)`` of blocks; rows past the pieces are padding.
    The batch may share key memory with a single block unless ``copy``."""
    size = sum(b - a for _, a, b in pieces)
    if not copy and len(pieces) == 1 and pieces[0][1] == 0 and pieces[0][2] == pieces[0][0].m == n:
        blk = pieces[0][0]  # a whole block is exactly one batch (Raw): hand its arrays over
        return Batch(
            size=n,
            label=np.ascontiguousarray(blk.label, dtype=np.float32),
            dense=np.ascontiguousarray(blk.dense, dtype=np.float32),
            sparse=[
                SparseBatch(
                    row_offsets=ro if ro.flags.writeable else ro.copy(),
                    keys=np.ascontiguousarray(k, dtype=layout.key_dtype),
                    slot_num=sp.slot_num,
                    one_hot=one_hot(sp, ro),
                )
                for ro, k, sp in zip(blk.row_offsets, blk.keys, layout.sparse)
            ],
        )
    label = _concat_rows([blk.label[a:b] for blk, a, b in pieces], n, layout.label_dim)
    dense = _concat_rows([blk.dense[a:b] for blk, a, b in pieces], n, layout.dense_dim)
    sparse = []
    for j, spec in enumerate(layout.sparse):
        S = spec.slot_num
        ro = np.empty(n * S + 1, dtype=np.int64)
        ro[0] = 0
        keys_parts = []
        at, base = 0, 0
        for blk, a, b in pieces:
            src = blk.row_offsets[j][a * S : b * S + 1]
            k0, k1 = int(src[0]), int(src[-1])
            m = (b - a) * S
            np.subtract(src[1:], k0 - base, out=ro[at + 1 : at + m + 1])
            keys_parts.append(blk.keys[j][k0:k1])
            at += m
            base += k1 - k0
        ro[at + 1 :] = base
        if len(keys_parts) == 1:
            keys = np.array(keys_parts[0]) if copy else np.ascontiguousarray(keys_parts[0])
        elif keys_parts:
            keys = np.concatenate(keys_parts)
        else:
            keys = np.zeros(0, dtype=layout.key_dtype)
        sparse.append(SparseBatch(row_offsets=ro, keys=keys.astype(layout.key_dtype, copy=False), slot_num=S,
                                  one_hot=one_hot(spec, ro)))
    return Batch(size=size, label=label, dense=dense, sparse=sparse)


def concat_blocks(layout: Layout, blocks: Sequence[Block], copy: bool = False) -> Block:
    """All rows of ``blocks`` as one block (no padding)."""
    n = sum(b.m for b in blocks)
    batch = build_batch(layout, [(b, 0, b.m) for b in blocks], n, copy)
    return Block(
        batch.label, batch.dense, [sb.row_offsets for sb in batch.sparse], [sb.keys for sb in batch.sparse]
    )


class BatchAssembler:
    """Accumulates blocks and hands out full batches of ``batch_size`` rows, in order.

    With ``transient=True`` the blocks are only valid during :meth:`add` (their buffers are reused): the
    batches never share memory with them and the rows left over are copied."""

    def __init__(self, layout: Layout, batch_size: int, transient: bool = False) -> None:
        self.layout = layout
        self.batch_size = int(batch_size)
        self.transient = transient
        self._pending: list[tuple[Block, int, int]] = []
        self._count = 0

    @property
    def pending_rows(self) -> int:
        return self._count

    def add(self, block: Block) -> list[Batch]:
        """Queue a block; return every batch that is now complete."""
        out: list[Batch] = []
        B = self.batch_size
        start = 0
        m = block.m
        while start < m:
            take = min(B - self._count, m - start)
            self._pending.append((block, start, start + take))
            self._count += take
            start += take
            if self._count == B:
                out.append(build_batch(self.layout, self._pending, B, self.transient))
                self._pending, self._count = [], 0
        if self.transient and self._pending and self._pending[-1][0] is block:
            _, a, b = self._pending[-1]
            own = build_batch(self.layout, [(block, a, b)], b - a, copy=True)
            self._pending[-1] = (
                Block(
                    own.label,
                    own.dense,
                    [sb.row_offsets for sb in own.sparse],
                    [sb.keys for sb in own.sparse],
                ),
                0,
                b - a,
            )
        return out

    def flush(self) -> Batch | None:
        """The queued rows as a short batch padded to ``batch_size`` rows, or None if nothing is queued."""
        if not self._count:
            return None
        batch = build_batch(self.layout, self._pending, self.batch_size)
        self._pending, self._count = [], 0
        return batch
