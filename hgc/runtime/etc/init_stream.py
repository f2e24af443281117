"""The initial vectors a hash table hands to new keys, regenerated at any position.

An embedding table fills its preallocated rows from one float32 uniform stream (``EmbeddingTable``: the
generator ``default_rng([seed, 104729, table index])``, U(−0.05, 0.05), or per slot block
U(±√(1/slot size)) when the table has a ``slot_size_array``), and a new key takes the next free row. Row r
thus starts as chunk r of that stream. The training cache keeps the same rule when it rearranges a table:
free rows are refilled so that the n-th key ever created still starts as chunk n, as it would in a table
big enough to hold every key. Chunk c of a slot-sized table uses the bound of the block holding row
c mod capacity.

Float i of the stream is one half of the (i // 2)-th 64-bit PCG64 output, so a chunk is reached with
``PCG64.advance`` in constant time.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hgc.runtime.embedding.table import HASH_INIT_RANGE

TABLE_SEED_SALT = 104729  # the Trainer seeds table i with [seed, 104729, i]


class InitStream:
    def __init__(self, seed: Sequence[int], vec_size: int, capacity: int, slot_sizes: Sequence[int] = ()) -> None:
        self.seed = [int(s) for s in seed]
        self.vec, self.capacity = int(vec_size), int(capacity)
        sizes = np.asarray([int(s) for s in slot_sizes], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        bounds = [float(np.sqrt(1.0 / s)) if s else 0.0 for s in sizes]
        self.two_b = np.asarray([2.0 * b for b in bounds], np.float32)  # float32(2·bound), as the table
        self.b = np.asarray(bounds, np.float32)

    @classmethod
    def of_table(cls, seed: int, index: int, vec_size: int, capacity: int,
                 slot_sizes: Sequence[int] = ()) -> InitStream:
        """The stream of the Trainer's table number ``index`` (in the order the embeddings were added)."""
        return cls([seed, TABLE_SEED_SALT, index], vec_size, capacity, slot_sizes)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Chunks [start, stop) as float32 rows (stop − start, vec)."""
        n = max(0, int(stop) - int(start))
        if n == 0:
            return np.zeros((0, self.vec), np.float32)
        first = int(start) * self.vec
        bits = np.random.PCG64(self.seed)
        bits.advance(first // 2)
        skip = first % 2
        u = np.random.Generator(bits).random(n * self.vec + skip, dtype=np.float32)[skip:].reshape(n, self.vec)
        if self.b.shape[0] == 0:
            u *= np.float32(2.0 * HASH_INIT_RANGE)
            u -= np.float32(HASH_INIT_RANGE)
            return u
        chunk = np.arange(int(start), int(stop), dtype=np.int64) % max(self.capacity, 1)
        block = np.searchsorted(self.offsets, chunk, side="right") - 1
        block = np.clip(block, 0, self.b.shape[0] - 1)
        u *= self.two_b[block][:, None]
        u -= self.b[block][:, None]
        return u
