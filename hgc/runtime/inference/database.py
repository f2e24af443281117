"""What every parameter-server database offers, and the helpers the backends share.

A database holds named tables (one per embedding table of a model: ``table_name(model, embedding)``) of
float32 vectors under int64 keys. ``fetch`` answers which of the asked keys it holds and their vectors;
``insert`` writes (overwriting present keys); ``clear`` empties a table. Keys are spread over partitions by
``partition_of`` (a mix of the key's bits modulo the partition count); requests are cut into chunks of the
configured ``max_get_batch_size`` / ``max_set_batch_size``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

TABLE_PREFIX = "hgc_et"


def table_name(model: str, embedding: str) -> str:
    """The database table of one embedding table of a model."""
    return f"{TABLE_PREFIX}.{model}.{embedding}"


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition (0..partitions-1) of every int64 key: a 64-bit mix of its bits (so keys with a common
    stride still spread) modulo the partition count."""
    z = np.ascontiguousarray(keys, np.int64).reshape(-1).view(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(partitions)).astype(np.int64)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` out of ``n`` items."""
    for a in range(0, n, max(1, int(size))):
        yield slice(a, min(n, a + size))


def key_bytes(keys: np.ndarray) -> list[bytes]:
    """Each int64 key as 8 little-endian bytes (the key form of the Redis and RocksDB backends)."""
    raw = np.ascontiguousarray(keys, "<i8").tobytes()
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


class Database(ABC):
    """One tier of the parameter server."""

    #: The DatabaseType_t name of the backend.
    kind = ""

    def __init__(self) -> None:
        self.vec: dict[str, int] = {}

    def open_table(self, table: str, vec: int) -> None:
        """Make ``table`` (vectors of ``vec`` values) known; its contents are left as they are."""
        self.vec[table] = int(vec)

    @abstractmethod
    def clear(self, table: str) -> None:
        """Remove every key of ``table``."""

    @abstractmethod
    def fetch(self, table: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found: bool per key, vectors float32 (found.sum(), vec) of the found keys in key order) for the
        distinct int64 ``keys``."""

    @abstractmethod
    def insert(self, table: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write the vectors of the distinct int64 ``keys``."""

    @abstractmethod
    def size(self, table: str) -> int:
        """How many keys ``table`` holds."""

    def close(self) -> None:
        """Release connections and files."""

    def describe(self) -> str:
        return self.kind
