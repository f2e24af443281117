"""The parameter servers of the embedding training cache: every row of one table with its optimizer states.

* :class:`StagedPS` keeps the whole table in host memory (loaded once, written back to disk on dump).
* :class:`CachedPS` keeps the whole table in a file on the local SSD (:class:`~hgc.runtime.etc.stores.FileStore`)
  and a host-memory cache of whole passes over it (the HMEM cache). The cache holds up to ``num_blocks``
  blocks, each the rows one pass's query brought in (at most ``block_capacity`` of them). A query that
  misses keys while a block is free fills that block (phase 1). Once all blocks are taken, a query whose
  hit rate is below ``target_hit_rate`` evicts the oldest block (its rows go back to the file) and fills the
  freed one, at most ``max_num_evict`` times (phase 2); after that the cache is frozen (phase 3). A key is
  cached in at most one block: a query moves the keys it hits into its new block. Writes go to the block
  holding the key, else to the file. A block left with no keys is dropped without counting as an eviction.

Both answer the same calls: ``contains``, ``get`` (plain read), ``fetch`` (a pass's read, which is what the
cache policy watches), ``put`` and ``chunks`` (everything, in the order keys were first stored).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hgc.runtime.etc.config import CacheSettings
from hgc.runtime.etc.key_index import KeyIndex
from hgc.runtime.etc.stores import CHUNK_ROWS, FileStore, MemoryStore


class StagedPS:
    """The whole table in host memory."""

    kind = "Staged"

    def __init__(self, name: str, width: int) -> None:
        self.name, self.width = name, int(width)
        self.store = MemoryStore(name, width)

    def __len__(self) -> int:
        return len(self.store)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.store.contains(keys)

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.get(keys)

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        return self.store.get(keys)[1]

    def put(self, keys: np.ndarray, records: np.ndarray) -> None:
        self.store.put(keys, records)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.store.chunks(rows)

    def close(self) -> None:
        self.store.close()


@dataclass
class _Block:
    """The rows one pass's query cached: keys → position, their records, and which are still held here."""

    index: KeyIndex
    records: np.ndarray
    alive: np.ndarray

    @property
    def held(self) -> int:
        return int(self.alive.sum())


class CachedPS:
    """The whole table in a local file, with an HMEM cache of passes (see the module docstring)."""

    kind = "Cached"

    def __init__(self, name: str, width: int, local_path: str, settings: CacheSettings,
                 block_capacity: int) -> None:
        if block_capacity < 1:
            raise ValueError(f"embedding '{name}': the Cached-PS block capacity must be >= 1, got {block_capacity}")
        self.name, self.width = name, int(width)
        self.settings, self.block_capacity = settings, int(block_capacity)
        self.file = FileStore(name, width, local_path)
        self.blocks: list[_Block] = []  # oldest first
        self.num_evict = 0
        self.hit_rates: list[float] = []  # of every fetch, for logs and tests

    def __len__(self) -> int:
        return len(self.file)

    @property
    def frozen(self) -> bool:
        return len(self.blocks) == self.settings.num_blocks and self.num_evict >= self.settings.max_num_evict

    @property
    def cached_keys(self) -> int:
        return sum(b.held for b in self.blocks)

    # -- where a key's current record is ----------------------------------------------------------------
    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block number or -1, position in that block) of every key."""
        blk = np.full(keys.shape[0], -1, np.int64)
        pos = np.full(keys.shape[0], -1, np.int64)
        for b, block in enumerate(self.blocks):
            p = block.index.lookup(keys)
            hit = p >= 0
            hit[hit] = block.alive[p[hit]]
            blk[hit], pos[hit] = b, p[hit]
        return blk, pos

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.file.contains(keys)  # every key has a file record; the cache holds newer ones

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(keys, np.int64).reshape(-1)
        found, out = self.file.get(keys)
        blk, pos = self._locate(keys)
        for b, block in enumerate(self.blocks):
            at = blk == b
            if at.any():
                out[at] = block.records[pos[at]]
        return found, out

    def put(self, keys: np.ndarray, records: np.ndarray) -> None:
        keys = np.asarray(keys, np.int64).reshape(-1)
        records = np.asarray(records, np.float32).reshape(keys.shape[0], self.width)
        blk, pos = self._locate(keys)
        for b, block in enumerate(self.blocks):
            at = blk == b
            if at.any():
                block.records[pos[at]] = records[at]
        rest = blk < 0
        if rest.any():
            self.file.put(keys[rest], records[rest])

    # -- a pass's query ------------------------------------------------------------------------------------
    def fetch(self, keys: np.ndarray) -> np.ndarray:
        """The records of ``keys`` (all stored), applying the cache policy to this query."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        blk, _ = self._locate(keys)
        rate = float((blk >= 0).mean()) if keys.shape[0] else 1.0
        self.hit_rates.append(rate)
        _, records = self.get(keys)
        if not keys.shape[0] or rate >= 1.0:
            return records
        s = self.settings
        if len(self.blocks) < s.num_blocks:
            self._fill_block(keys, records)
        elif rate < s.target_hit_rate and self.num_evict < s.max_num_evict:
            self._evict_oldest()
            self.num_evict += 1
            self._fill_block(keys, records)
        return records

    def _fill_block(self, keys: np.ndarray, records: np.ndarray) -> None:
        keys, records = keys[:self.block_capacity], records[:self.block_capacity]
        blk, pos = self._locate(keys)
        for b, block in enumerate(self.blocks):
            at = blk == b
            if at.any():
                block.alive[pos[at]] = False  # moved into the new block
        self.blocks = [b for b in self.blocks if b.held]
        index = KeyIndex(f"{self.name} cache block", keys.shape[0])
        if not np.array_equal(index.insert(keys), np.arange(keys.shape[0])):
            raise ValueError(f"embedding '{self.name}': the keys of a parameter-server query must be distinct")
        self.blocks.append(_Block(index, records.copy(), np.ones(keys.shape[0], bool)))

    def _evict_oldest(self) -> None:
        block = self.blocks.pop(0)
        live = np.flatnonzero(block.alive)
        if live.size:
            self.file.put(block.index.keys()[live], block.records[live])

    # -- everything ------------------------------------------------------------------------------------------
    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for keys, records in self.file.chunks(rows):
            blk, pos = self._locate(keys)
            for b, block in enumerate(self.blocks):
                at = blk == b
                if at.any():
                    records[at] = block.records[pos[at]]
            yield keys, records

    def close(self) -> None:
        self.blocks = []
        self.file.close()
