"""The hierarchical parameter server of one deployed model: a volatile tier (CPU memory: ``hash_map``,
``parallel_hash_map``; or a ``redis_cluster``), a persistent tier (``rocks_db``), and the rule for keys that
neither holds.

Loading. Each embedding table's sparse model (keys and vectors) goes into the persistent tier whole (unless
it is opened read-only: then the tier must hold the table already) and its first ``initial_cache_rate``
share of keys (in file order) into the volatile tier. A tier's table is emptied before it is filled, so
what the server answers is a function of the files given.

Lookup of distinct keys: the volatile tier first, the persistent tier for what it lacks (with
``cache_missed_embeddings`` such keys are then written to the volatile tier), and the table's default
vector (``default_value_for_each_table``, every element equal) for keys neither holds.

Settings arrive as plain dicts whose enum values are given by name (see :func:`settings`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgc.errors import NotBuiltError
from hgc.runtime import logging as log
from hgc.runtime.inference.database import Database, table_name
from hgc.runtime.inference.row_store import as_keys


def settings(obj: Any) -> dict[str, Any]:
    """The fields of a database / update-source settings object (``as_dict()``), enums by name."""
    return {k: getattr(v, "name", v) for k, v in obj.as_dict().items()}


def _check_filters(where: str, filters: Sequence[str]) -> None:
    for f in filters:
        try:
            re.compile(f)
        except re.error as e:
            raise ValueError(f"{where}: argument 'update_filters' = {list(filters)!r} is not allowed: {f!r} is "
                             f"not a regular expression ({e})") from None


def make_volatile(s: Mapping[str, Any], threads: int, seed: int) -> Database | None:
    """The volatile tier of the settings ``s`` (VolatileDatabaseParams), or None when disabled."""
    _check_filters("VolatileDatabaseParams", s["update_filters"])
    kind = s["type"]
    common = dict(overflow_margin=s["overflow_margin"], overflow_policy=s["overflow_policy"],
                  overflow_resolution_target=s["overflow_resolution_target"],
                  refresh_time_after_fetch=s["refresh_time_after_fetch"],
                  max_get_batch_size=s["max_get_batch_size"], max_set_batch_size=s["max_set_batch_size"])
    if kind == "disabled":
        return None
    if kind in ("hash_map", "parallel_hash_map"):
        from hgc.runtime.inference.hash_map_db import HashMapDatabase

        return HashMapDatabase(kind, s["num_partitions"], threads=threads, seed=seed, **common)
    if kind == "redis_cluster":
        from hgc.runtime.inference.redis_db import RedisDatabase

        return RedisDatabase(s["address"], s["user_name"], s["password"], s["num_partitions"], **common)
    if kind == "multi_process_hash_map":
        raise NotBuiltError("the multi_process_hash_map volatile database (a hash map in shared memory)",
                            "VolatileDatabaseParams.type")
    raise ValueError(f"VolatileDatabaseParams: argument 'type' = {kind!r} is not allowed: must be disabled, "
                     f"hash_map, parallel_hash_map or redis_cluster")


def make_persistent(s: Mapping[str, Any]) -> Database | None:
    """The persistent tier of the settings ``s`` (PersistentDatabaseParams), or None when disabled."""
    _check_filters("PersistentDatabaseParams", s["update_filters"])
    if s["type"] == "disabled":
        return None
    if s["type"] == "rocks_db":
        from hgc.runtime.inference.rocksdb_db import RocksDatabase

        return RocksDatabase(s["path"], s["num_threads"], s["read_only"], s["max_get_batch_size"],
                             s["max_set_batch_size"])
    raise ValueError(f"PersistentDatabaseParams: argument 'type' = {s['type']!r} is not allowed: must be "
                     f"disabled or rocks_db")


def check_update_source(s: Mapping[str, Any]) -> None:
    """Online updates: none is the only source this build can follow."""
    if s["type"] == "kafka_message_queue":
        raise NotBuiltError(f"model updates from an Apache Kafka message queue (brokers {s['brokers']})",
                            "UpdateSourceParams.type = kafka_message_queue")


@dataclass(frozen=True)
class TableData:
    """One embedding table's sparse model: its name, vector size, keys (int64) and vectors (float32)."""

    name: str
    vec: int
    keys: np.ndarray
    vectors: np.ndarray
    default: float = 0.0


class ParameterServer:
    """The tiers of one model and the tables loaded into them."""

    def __init__(self, model: str, volatile: Database | None, persistent: Database | None,
                 initial_cache_rate: float = 1.0, cache_missed_embeddings: bool = False) -> None:
        if volatile is None and persistent is None:
            raise ValueError("InferenceParams(): argument 'volatile_db'/'persistent_db' = disabled/disabled is "
                             "not allowed: the parameter server needs at least one database to hold the "
                             "embeddings (the volatile one is parallel_hash_map by default)")
        self.model = model
        self.volatile, self.persistent = volatile, persistent
        self.initial_cache_rate = float(initial_cache_rate)
        self.cache_missed = bool(cache_missed_embeddings)
        self.vec: dict[str, int] = {}
        self.default: dict[str, float] = {}

    def table(self, embedding: str) -> str:
        return table_name(self.model, embedding)

    def load(self, data: TableData) -> None:
        """Put one table's sparse model into the tiers (see the module docstring)."""
        t = self.table(data.name)
        self.vec[data.name], self.default[data.name] = data.vec, float(data.default)
        keys = as_keys(data.keys)
        vectors = np.asarray(data.vectors, np.float32).reshape(keys.shape[0], data.vec)
        if self.persistent is not None:
            self.persistent.open_table(t, data.vec)
            if not getattr(self.persistent, "read_only", False):
                self.persistent.clear(t)
                self.persistent.insert(t, keys, vectors)
        if self.volatile is not None:
            self.volatile.open_table(t, data.vec)
            self.volatile.clear(t)
            n = int(np.floor(self.initial_cache_rate * keys.shape[0]))
            self.volatile.insert(t, keys[:n], vectors[:n])
            if n < keys.shape[0] and self.persistent is None:
                log.info(f"Parameter server: {keys.shape[0] - n} of the {keys.shape[0]} keys of '{data.name}' are "
                         f"beyond initial_cache_rate={self.initial_cache_rate} and no persistent database is "
                         f"set; they will be looked up as missing (default vector)")

    def fetch(self, embedding: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (n, vec) float32, found per key) of the distinct ``keys``; the default vector where no
        tier holds a key."""
        t = self.table(embedding)
        keys = as_keys(keys)
        out = np.full((keys.shape[0], self.vec[embedding]), self.default[embedding], np.float32)
        found = np.zeros(keys.shape[0], bool)
        if self.volatile is not None and keys.shape[0]:
            hit, vectors = self.volatile.fetch(t, keys)
            out[hit] = vectors
            found |= hit
        miss = np.flatnonzero(~found)
        if self.persistent is not None and miss.size:
            hit, vectors = self.persistent.fetch(t, keys[miss])
            rows = miss[hit]
            out[rows] = vectors
            found[rows] = True
            if self.cache_missed and self.volatile is not None and rows.size:
                self.volatile.insert(t, keys[rows], vectors)
        return out, found

    def describe(self) -> str:
        tiers = [f"volatile: {self.volatile.describe()}" if self.volatile else "volatile: disabled",
                 f"persistent: {self.persistent.describe()}" if self.persistent else "persistent: disabled"]
        return ", ".join(tiers)

    def close(self) -> None:
        for db in (self.volatile, self.persistent):
            if db is not None:
                db.close()


def default_values(values: Sequence[float], tables: int) -> list[float]:
    """``default_value_for_each_table``: one value per table, or a single value for all of them."""
    vals = [float(v) for v in values]
    if len(vals) == 1:
        return vals * tables
    if len(vals) != tables:
        raise ValueError(f"InferenceParams(): argument 'default_value_for_each_table' = {vals!r} is not allowed: "
                         f"needs one value per embedding table ({tables}) or a single value for all")
    return vals
