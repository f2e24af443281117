"""The in-process volatile databases: ``hash_map`` (one partition, one thread) and ``parallel_hash_map``
(``num_partitions`` partitions served by a thread pool; the hash-table loops release the GIL).

Each partition is a :class:`~hgc.runtime.inference.row_store.RowStore`. Time is a logical clock that ticks
once per request: an insert stamps the rows it writes, a fetch stamps the rows it reads when
``refresh_time_after_fetch`` is on. A partition holding more than ``overflow_margin`` keys after an insert
is shrunk to ``overflow_margin * overflow_resolution_target`` keys by the overflow policy (oldest stamps,
fewest reads, or random rows). ``algorithm`` (STL / PHM) names HugeCTR's hash-map implementations; both
map to the same structure here.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hgc.runtime.inference.database import Database, chunks, partition_of
from hgc.runtime.inference.row_store import RowStore, as_keys


class HashMapDatabase(Database):
    """Tables of partitioned row stores in this process."""

    def __init__(self, kind: str = "hash_map", num_partitions: int = 1, overflow_margin: int = 2 ** 64 - 1,
                 overflow_policy: str = "evict_oldest", overflow_resolution_target: float = 0.8,
                 refresh_time_after_fetch: bool = False, max_get_batch_size: int = 10000,
                 max_set_batch_size: int = 10000, threads: int = 1, seed: int = 0) -> None:
        super().__init__()
        if kind not in ("hash_map", "parallel_hash_map"):
            raise ValueError(f"kind={kind!r} is not allowed: must be 'hash_map' or 'parallel_hash_map'")
        self.kind = kind
        self.partitions = 1 if kind == "hash_map" else max(1, int(num_partitions))
        self.overflow_margin = int(overflow_margin)
        self.overflow_policy = overflow_policy
        self.target = float(overflow_resolution_target)
        self.refresh = bool(refresh_time_after_fetch)
        self.get_batch, self.set_batch = int(max_get_batch_size), int(max_set_batch_size)
        self.rng = np.random.default_rng([int(seed), 524287])
        workers = min(self.partitions, max(1, int(threads)))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hgc-hps") if workers > 1 else None
        self._lock = threading.Lock()
        self._clock = 0
        self.parts: dict[str, list[RowStore]] = {}
        self.evicted = 0

    def open_table(self, table: str, vec: int) -> None:
        super().open_table(table, vec)
        if table not in self.parts or self.parts[table][0].vec != int(vec):
            self.clear(table)

    def clear(self, table: str) -> None:
        self.parts[table] = [RowStore(f"{table}/p{i}", self.vec[table]) for i in range(self.partitions)]

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _each(self, work: Callable[[int], None], parts: Iterable[int]) -> None:
        if self._pool is None:
            for p in parts:
                work(p)
        else:
            list(self._pool.map(work, parts))

    def fetch(self, table: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = as_keys(keys)
        stores = self.parts[table]
        found = np.zeros(keys.shape[0], bool)
        out = np.empty((keys.shape[0], self.vec[table]), np.float32)
        with self._lock:
            stamp = self._tick() if self.refresh else None
            part = partition_of(keys, self.partitions)

            def work(p: int) -> None:
                idx = np.flatnonzero(part == p)
                for ch in chunks(idx.shape[0], self.get_batch):
                    sub = idx[ch]
                    rows = stores[p].find(keys[sub])
                    hit = rows >= 0
                    out[sub[hit]] = stores[p].read(rows[hit], stamp)
                    found[sub[hit]] = True

            self._each(work, range(self.partitions))
        return found, out[found]

    def insert(self, table: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = as_keys(keys)
        vectors = np.asarray(vectors, np.float32).reshape(keys.shape[0], self.vec[table])
        stores = self.parts[table]
        with self._lock:
            stamp = self._tick()
            part = partition_of(keys, self.partitions)
            evicted = [0] * self.partitions

            def work(p: int) -> None:
                idx = np.flatnonzero(part == p)
                for ch in chunks(idx.shape[0], self.set_batch):
                    sub = idx[ch]
                    stores[p].upsert(keys[sub], vectors[sub], stamp)
                    if stores[p].size > self.overflow_margin:
                        evicted[p] += stores[p].shrink_to(int(self.overflow_margin * self.target),
                                                          self.overflow_policy, self.rng)

            if self.overflow_policy == "evict_random" and self._pool is not None:
                for p in range(self.partitions):  # one generator: keep the random choices in a fixed order
                    work(p)
            else:
                self._each(work, range(self.partitions))
            self.evicted += sum(evicted)

    def size(self, table: str) -> int:
        return sum(s.size for s in self.parts.get(table, []))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def describe(self) -> str:
        return f"{self.kind} ({self.partitions} partition{'s' if self.partitions > 1 else ''})"
