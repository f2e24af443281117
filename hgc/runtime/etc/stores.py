"""Record stores of the parameter servers: key → record (see ``records.py``), in host memory or in a file.

Both keep the key index in memory and the records in one growable float32 matrix, row = the key's slot
(slots in order of first insertion, so iteration is deterministic):

* :class:`MemoryStore` — a NumPy array (the Staged-PS, and the blocks of the Cached-PS).
* :class:`FileStore` — a memory-mapped file under a local folder (the SSD tier of the Cached-PS); the file
  and its folder are removed when the store is closed or garbage-collected.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from hgc.runtime.etc.key_index import KeyIndex

CHUNK_ROWS = 1 << 16


class RecordStore(ABC):
    """The shared part: the key index and the slot bookkeeping; subclasses hold the matrix."""

    def __init__(self, name: str, width: int) -> None:
        self.name, self.width = name, int(width)
        self.index = KeyIndex(name)
        self._rows = 0  # allocated rows of the matrix

    def __len__(self) -> int:
        return len(self.index)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self.index.lookup(keys) >= 0

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, records (n, width)); rows of missing keys are zero."""
        slots = self.index.lookup(keys)
        found = slots >= 0
        out = np.zeros((slots.shape[0], self.width), np.float32)
        if found.any():
            out[found] = self._read(slots[found])
        return found, out

    def put(self, keys: np.ndarray, records: np.ndarray) -> None:
        """Store the records of distinct keys (new keys are added, present ones overwritten)."""
        keys = np.asarray(keys, np.int64).reshape(-1)
        if not keys.shape[0]:
            return
        records = np.asarray(records, np.float32).reshape(keys.shape[0], self.width)
        slots = self.index.insert(keys)
        if len(self.index) > self._rows:
            self._reserve(max(len(self.index), 2 * self._rows, 1024))
        self._write(slots, records)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(keys, records) of every stored key, in slot order, ``rows`` at a time."""
        keys = self.index.keys()
        for a in range(0, keys.shape[0], rows):
            b = min(a + rows, keys.shape[0])
            yield keys[a:b], self._read(np.arange(a, b, dtype=np.int64))

    # -- the matrix ------------------------------------------------------------------------------------
    @abstractmethod
    def _read(self, slots: np.ndarray) -> np.ndarray:
        """Copies of the records at ``slots``."""

    @abstractmethod
    def _write(self, slots: np.ndarray, records: np.ndarray) -> None:
        """Overwrite the records at ``slots``."""

    @abstractmethod
    def _reserve(self, rows: int) -> None:
        """Grow the matrix to ``rows`` rows, keeping the stored ones."""

    def close(self) -> None:
        return None


class MemoryStore(RecordStore):
    def __init__(self, name: str, width: int) -> None:
        super().__init__(name, width)
        self._data = np.zeros((0, self.width), np.float32)

    def _read(self, slots: np.ndarray) -> np.ndarray:
        return self._data[slots]

    def _write(self, slots: np.ndarray, records: np.ndarray) -> None:
        self._data[slots] = records

    def _reserve(self, rows: int) -> None:
        grown = np.zeros((rows, self.width), np.float32)
        grown[:self._rows] = self._data[:self._rows]
        self._data, self._rows = grown, rows


def _remove(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class FileStore(RecordStore):
    """Records in ``<local_path>/hgc_etc_<name>_*/records.bin`` (float32, row-major, ``width`` per row)."""

    def __init__(self, name: str, width: int, local_path: str) -> None:
        super().__init__(name, width)
        if not os.path.isdir(local_path):
            raise ValueError(f"embedding '{name}': local_paths entry '{local_path}' is not an existing folder "
                             f"(the Cached-PS keeps its table files there)")
        safe = "".join(c if c.isalnum() else "_" for c in name)
        self.folder = tempfile.mkdtemp(prefix=f"hgc_etc_{safe}_", dir=local_path)
        self.path = os.path.join(self.folder, "records.bin")
        open(self.path, "wb").close()
        self._map: np.memmap | None = None
        self._finalizer = weakref.finalize(self, _remove, self.folder)

    def _read(self, slots: np.ndarray) -> np.ndarray:
        assert self._map is not None
        return np.array(self._map[slots])

    def _write(self, slots: np.ndarray, records: np.ndarray) -> None:
        assert self._map is not None
        self._map[slots] = records

    def _reserve(self, rows: int) -> None:
        if self._map is not None:
            self._map.flush()
            self._map = None
        with open(self.path, "r+b") as f:
            f.truncate(rows * self.width * 4)
        self._map = np.memmap(self.path, np.float32, "r+", shape=(rows, self.width))
        self._rows = rows

    def close(self) -> None:
        self._map = None
        self._finalizer()
