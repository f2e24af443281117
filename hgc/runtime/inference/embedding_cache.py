"""The embedding cache in front of the parameter server (HugeCTR's GPU embedding cache): at most ``capacity``
rows of one table, meant to hold its hottest keys.

A lookup serves the keys the cache holds and asks the parameter server for the others (which fills keys it
lacks with the table's default vector). The hit rate of the lookup is hits / distinct keys asked. When it
is below ``hit_rate_threshold`` the cache is refreshed: the missed keys the parameter server knows are
inserted, evicting the rows read least often (then the oldest) when the cache is full; keys the parameter
server lacks are never cached. At or above the threshold the cache is left as it is. The returned vectors
are the same either way: the cache changes where a vector comes from, never its value.

It starts (``init_ec``) with the first ``capacity`` keys of the sparse model file, i.e. the keys the training
run saw first. The same policy runs on both targets; on cpu the rows live in host memory.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgc.runtime.inference.row_store import RowStore, as_keys

#: fetch(keys) -> (vectors (n, vec) with defaults where missing, found per key)
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class EmbeddingCache:
    """A bounded cache of one table's rows with hit-rate driven refreshes."""

    def __init__(self, name: str, vec: int, capacity: int, hit_rate_threshold: float, fetch: Fetch) -> None:
        self.name, self.vec = name, int(vec)
        self.capacity = max(0, int(capacity))
        self.threshold = float(hit_rate_threshold)
        self.fetch = fetch
        self.store = RowStore(f"{name} (cache)", vec)
        self.rng = np.random.default_rng(0)
        self._clock = 0
        self.queries = 0
        self.hits = 0
        self.refreshes = 0
        self.last_hit_rate = 1.0

    def __len__(self) -> int:
        return self.store.size

    @property
    def hit_rate(self) -> float:
        """Hits / keys asked over every lookup so far (1.0 before the first)."""
        return self.hits / self.queries if self.queries else 1.0

    def warm(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Fill the free rows with the first of the given (distinct) keys."""
        room = self.capacity - self.store.size
        if room > 0:
            self._clock += 1
            self.store.upsert(as_keys(keys)[:room], np.asarray(vectors, np.float32)[:room], self._clock)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Vectors (n, vec) float32 of the distinct int64 ``keys``."""
        keys = as_keys(keys)
        n = keys.shape[0]
        self._clock += 1
        rows = self.store.find(keys)
        hit = rows >= 0
        out = np.empty((n, self.vec), np.float32)
        out[hit] = self.store.read(rows[hit], self._clock)
        miss = np.flatnonzero(~hit)
        if miss.size:
            vectors, found = self.fetch(keys[miss])
            out[miss] = vectors
        nhit = int(hit.sum())
        self.queries += n
        self.hits += nhit
        self.last_hit_rate = nhit / n if n else 1.0
        if miss.size and self.last_hit_rate < self.threshold:
            self._refresh(keys[miss][found], vectors[found])
        return out

    def _refresh(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert missed keys, evicting the least read rows when full."""
        if self.capacity == 0 or keys.shape[0] == 0:
            return
        keys, vectors = keys[:self.capacity], vectors[:self.capacity]
        over = self.store.size + keys.shape[0] - self.capacity
        if over > 0:
            self.store.drop(self.store.victims(over, "evict_least_used", self.rng))
        self.store.upsert(keys, vectors, self._clock)
        self.refreshes += 1
