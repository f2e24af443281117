"""A growable key → slot map: slots are handed out 0, 1, 2, … in the order keys are first inserted.

It wraps the embedding tables' HashTable (fixed capacity) and moves to one twice as large when full, keeping
every key's slot.
"""
from __future__ import annotations

import numpy as np

from hgc.runtime.embedding.hash_table import HashTable

_MIN_CAPACITY = 1024


class KeyIndex:
    def __init__(self, name: str, capacity: int = _MIN_CAPACITY) -> None:
        self.name = name
        self._table = HashTable(name, max(int(capacity), _MIN_CAPACITY))

    def __len__(self) -> int:
        return self._table.size

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slots (int64) of the keys, -1 for keys never inserted."""
        return self._table.get_mark(np.asarray(keys, np.int64).reshape(-1))

    def insert(self, keys: np.ndarray) -> np.ndarray:
        """Slots of the keys; keys not yet present take the next slots in order of first sight."""
        k = np.asarray(keys, np.int64).reshape(-1)
        need = self._table.size + k.shape[0]
        if need > self._table.capacity:
            need = self._table.size + int(np.unique(k[self.lookup(k) < 0]).shape[0])
            if need > self._table.capacity:
                self._grow(need)
        return self._table.get_insert(k)

    def _grow(self, need: int) -> None:
        cap = self._table.capacity
        while cap < need:
            cap *= 2
        bigger = HashTable(self.name, cap)
        if self._table.size:
            bigger.load(self.keys())
        self._table = bigger

    def keys(self) -> np.ndarray:
        """Every key (int64) in slot order."""
        return self._table.dump()[0]
