"""Keyset files: the distinct keys of one pass (one dataset file list), raw keys in host byte order with no
header and no separators, uint32 or int64 as the dataset's keys (facts §4.2; any order)."""
from __future__ import annotations

import os

import numpy as np

from hgc.errors import DataError

KEY_DTYPES = {"uint32": np.dtype(np.uint32), "int64": np.dtype(np.int64)}


def read_keyset(path: str, key_dtype: str) -> np.ndarray:
    """The keys of ``path`` as int64 values, duplicates dropped (first occurrence kept, order kept).

    Raises DataError naming the file when it is missing, or when its size is not a whole number of keys
    (the offset is where the cut-short key starts)."""
    if key_dtype not in KEY_DTYPES:
        raise ValueError(f"keyset key_dtype={key_dtype!r} must be one of {list(KEY_DTYPES)}")
    dt = KEY_DTYPES[key_dtype]
    if not os.path.isfile(path):
        raise DataError(path, "keyset file not found")
    size = os.path.getsize(path)
    if size % dt.itemsize:
        raise DataError(path, f"keyset file holds {size} bytes, not a whole number of {dt.itemsize}-byte "
                              f"{key_dtype} keys (the dataset's key type); the last key is cut short",
                        offset=size - size % dt.itemsize)
    raw = np.fromfile(path, dtype=dt)
    keys = raw.astype(np.int64)
    _, first = np.unique(keys, return_index=True)
    if first.shape[0] == keys.shape[0]:
        return keys
    return keys[np.sort(first)]


def write_keyset(path: str, keys: np.ndarray, key_dtype: str) -> None:
    """Write ``keys`` as a keyset file of ``key_dtype`` keys (for tools and tests)."""
    if key_dtype not in KEY_DTYPES:
        raise ValueError(f"keyset key_dtype={key_dtype!r} must be one of {list(KEY_DTYPES)}")
    k = np.asarray(keys).reshape(-1)
    cast = k.astype(KEY_DTYPES[key_dtype])
    if not np.array_equal(cast.astype(np.int64), k.astype(np.int64)):
        raise ValueError(f"keyset '{path}': some keys do not fit the {key_dtype} key type")
    with open(path, "wb") as f:
        f.write(cast.tobytes())
