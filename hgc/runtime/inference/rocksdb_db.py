"""The ``rocks_db`` persistent database: one RocksDB database at ``path`` (through the rocksdict package),
one column family per table; key: the 8 little-endian bytes of the key, value: the vector's float32
little-endian bytes.

The database is created when ``path`` holds none. ``read_only`` opens it in RocksDB's read-only mode: the
tables must be there already (filled by an earlier run that was not read-only) and nothing is written.
``num_threads`` sizes RocksDB's background pools; reads and writes go in batches of
``max_get_batch_size`` / ``max_set_batch_size`` keys.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from hgc.errors import DataError
from hgc.runtime.inference.database import Database, chunks, key_bytes
from hgc.runtime.inference.row_store import as_keys

WHERE = "PersistentDatabaseParams"


def _rocksdict() -> Any:
    try:
        import rocksdict
    except ImportError as e:
        raise ImportError(f"the rocks_db persistent database needs the 'rocksdict' package ({e}); install it "
                          f"with pip install 'hgc[hps]'") from None
    return rocksdict


class RocksDatabase(Database):
    """Tables as column families of one RocksDB database."""

    kind = "rocks_db"

    def __init__(self, path: str = "/tmp/rocksdb", num_threads: int = 16, read_only: bool = False,
                 max_get_batch_size: int = 10000, max_set_batch_size: int = 10000) -> None:
        super().__init__()
        rd = _rocksdict()
        self.rd = rd
        self.path, self.read_only = os.path.abspath(path), bool(read_only)
        self.get_batch, self.set_batch = int(max_get_batch_size), int(max_set_batch_size)
        opts = rd.Options(raw_mode=True)
        opts.create_if_missing(not self.read_only)
        opts.increase_parallelism(max(1, int(num_threads)))
        self._opts = opts
        if self.read_only:
            if not os.path.isdir(self.path):
                raise ValueError(f"{WHERE}: argument 'path' = {path!r} is not allowed: read_only is set, so it "
                                 f"must be an existing RocksDB database (it does not exist)")
            families = self._families()
            self.db = rd.Rdict(self.path, opts, access_type=rd.AccessType.read_only(),
                               column_families={f: rd.Options(raw_mode=True) for f in families if f != "default"})
        else:
            parent = os.path.dirname(self.path)
            if parent and not os.path.isdir(parent):
                raise ValueError(f"{WHERE}: argument 'path' = {path!r} is not allowed: its folder {parent} does "
                                 f"not exist")
            try:
                self.db = rd.Rdict(self.path, opts, column_families={
                    f: rd.Options(raw_mode=True) for f in self._families() if f != "default"})
            except Exception as e:  # noqa: BLE001  (rocksdict raises plain Exceptions: lock held, corruption)
                raise ValueError(f"{WHERE}: argument 'path' = {path!r} is not allowed: RocksDB cannot open a "
                                 f"database there ({e})") from None
        self._cf: dict[str, Any] = {}

    def _families(self) -> list[str]:
        if not os.path.exists(os.path.join(self.path, "CURRENT")):
            if self.read_only:
                raise ValueError(f"{WHERE}: argument 'path' = {self.path!r} is not allowed: read_only is set, "
                                 f"but the folder holds no RocksDB database")
            return []
        return list(self.rd.Rdict.list_cf(self.path, self.rd.Options(raw_mode=True)))

    def _family(self, table: str) -> Any:
        if table not in self._cf:
            try:
                self._cf[table] = self.db.get_column_family(table)
            except Exception:  # noqa: BLE001  (rocksdict: "column family not found")
                if self.read_only:
                    raise ValueError(f"{WHERE}: argument 'read_only' = True is not allowed here: the RocksDB "
                                     f"database at {self.path} holds no table '{table}'; fill it with a run "
                                     f"that is not read-only first") from None
                self._cf[table] = self.db.create_column_family(table, self.rd.Options(raw_mode=True))
        return self._cf[table]

    def open_table(self, table: str, vec: int) -> None:
        super().open_table(table, vec)
        self._family(table)

    def clear(self, table: str) -> None:
        if self.read_only:
            raise ValueError(f"{WHERE}: argument 'read_only' = True is not allowed here: table '{table}' of "
                             f"{self.path} cannot be rewritten in read-only mode")
        self._cf.pop(table, None)
        if table in self._families():
            self.db.drop_column_family(table)
        self._family(table)

    def fetch(self, table: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = as_keys(keys)
        cf = self._family(table)
        vec = self.vec[table]
        found = np.zeros(keys.shape[0], bool)
        parts = []
        for ch in chunks(keys.shape[0], self.get_batch):
            values = cf[key_bytes(keys[ch])] if ch.stop > ch.start else []
            hit = [v is not None for v in values]
            got = [v for v in values if v is not None]
            for v in got:
                if len(v) != 4 * vec:
                    raise DataError(os.path.join(self.path, table), f"holds a vector of {len(v)} bytes; the "
                                    f"embedding's vectors of {vec} float32 values take {4 * vec} bytes")
            found[ch] = hit
            if got:
                parts.append(np.frombuffer(b"".join(got), "<f4").reshape(len(got), vec))
        return found, (np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, vec), np.float32))

    def insert(self, table: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        if self.read_only:
            raise ValueError(f"{WHERE}: argument 'read_only' = True is not allowed here: nothing can be written "
                             f"to {self.path} in read-only mode")
        keys = as_keys(keys)
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(keys.shape[0], self.vec[table]),
                                       "<f4")
        self._family(table)
        handle = self.db.get_column_family_handle(table)
        for ch in chunks(keys.shape[0], self.set_batch):
            batch = self.rd.WriteBatch(raw_mode=True)
            batch.set_default_column_family(handle)
            for k, row in zip(key_bytes(keys[ch]), vectors[ch]):
                batch.put(k, row.tobytes())
            self.db.write(batch)

    def size(self, table: str) -> int:
        cf = self._family(table)
        return sum(1 for _ in cf.keys())  # noqa: SIM118  (an Rdict, not a dict: keys() iterates the table)

    def close(self) -> None:
        self._cf.clear()
        db, self.db = getattr(self, "db", None), None
        if db is not None:
            db.close()

    def describe(self) -> str:
        return f"rocks_db at {self.path}{' (read-only)' if self.read_only else ''}"
