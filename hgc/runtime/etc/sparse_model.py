"""The sparse model folder of a training-cache table, read at start and written by ``dump()``.

The folder is HugeCTR's sparse model (``key`` int64, ``emb_vector`` float32 per key, and ``slot_id`` uint64 for
localized embeddings; the layout ``save_params_to_files`` writes) plus, as HugeCTR's training cache keeps
them, one float32 file per optimizer state aligned with ``key``: ``Adam.m`` and ``Adam.v``,
``AdaGrad.accm``, ``MomentumSGD.momtentum`` (HugeCTR's spelling), ``Nesterov.accm``. A folder without the
state files loads with initial states. Files are read and written in chunks, so a table larger than host
memory passes through.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import numpy as np

from hgc.errors import DataError
from hgc.runtime.checkpoint import KEY_FILE, SLOT_FILE, VECTOR_FILE, atomic_write_dir
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.etc.records import RowCodec
from hgc.runtime.etc.stores import CHUNK_ROWS

STATE_FILES = {"Adam": ("Adam.m", "Adam.v"), "AdaGrad": ("AdaGrad.accm",),
               "MomentumSGD": ("MomentumSGD.momtentum",), "Nesterov": ("Nesterov.accm",), "SGD": ()}


def _size(path: str) -> int:
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    return os.path.getsize(path)


def read_chunks(path: str, codec: RowCodec, optimizer: str, state_fill: float,
                rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, records) of the folder ``path``, ``rows`` keys at a time. Sizes are checked first: a file that
    does not hold one entry per key raises DataError naming it."""
    if not os.path.isdir(path):
        raise DataError(path, "sparse model folder not found")
    v = codec.vec
    key_path = os.path.join(path, KEY_FILE)
    key_bytes = _size(key_path)
    if key_bytes % 8:
        raise DataError(key_path, f"holds {key_bytes} bytes, not a whole number of int64 keys",
                        offset=key_bytes - key_bytes % 8)
    n = key_bytes // 8
    per_key = {VECTOR_FILE: 4 * v}
    slot_path = os.path.join(path, SLOT_FILE)
    if os.path.exists(slot_path):
        per_key[SLOT_FILE] = 8
    names = STATE_FILES[optimizer]
    present = [os.path.exists(os.path.join(path, s)) for s in names]
    if any(present) and not all(present):
        missing = [s for s, p in zip(names, present) if not p]
        raise DataError(path, f"has some {optimizer} state files but not {missing}; give all or none")
    if all(present):
        per_key.update({s: 4 * v for s in names})
    for name, width in per_key.items():
        p = os.path.join(path, name)
        got = _size(p)
        if got != width * n:
            raise DataError(p, f"the rows of keys and this file are not consistent: {n} keys need {width * n} "
                               f"bytes, the file holds {got}", offset=min(got, width * n))
    for a in range(0, n, rows):
        m = min(rows, n - a)
        keys = np.fromfile(key_path, "<i8", m, offset=8 * a).astype(np.int64)
        vectors = np.fromfile(os.path.join(path, VECTOR_FILE), "<f4", m * v, offset=4 * v * a).reshape(m, v)
        slots = (np.fromfile(slot_path, "<u8", m, offset=8 * a).astype(np.uint64) if SLOT_FILE in per_key
                 else np.zeros(m, np.uint64))
        if all(present) and names:
            states = [np.fromfile(os.path.join(path, s), "<f4", m * v, offset=4 * v * a).reshape(m, v)
                      for s in names]
        else:
            states = [np.full((m, v), state_fill, np.float32) for _ in names]
        prev = np.ones(m, np.uint64) if codec.lazy else None
        yield keys, codec.pack(RowsState(keys, vectors.astype(np.float32), slots,
                                         [s.astype(np.float32) for s in states], prev))


def write_folder(path: str, chunks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], codec: RowCodec,
                 state_files: Sequence[str], localized: bool) -> None:
    """Write the folder from ``chunks()`` (called once per file), with the optimizer states as
    ``state_files`` (``STATE_FILES[optimizer]``, or none); it replaces an old folder only once every file
    is complete."""
    v = codec.vec

    def column(pick: Callable[[np.ndarray, np.ndarray], np.ndarray], dtype: str) -> Callable[[BinaryIO], None]:
        def write(f: BinaryIO) -> None:
            f.writelines(np.ascontiguousarray(pick(keys, records), np.dtype(dtype)).tobytes()
                         for keys, records in chunks())
        return write

    files: dict[str, Callable[[BinaryIO], None]] = {
        KEY_FILE: column(lambda k, r: k, "<i8"),
        VECTOR_FILE: column(lambda k, r: r[:, :v], "<f4"),
    }
    if localized:
        files[SLOT_FILE] = column(lambda k, r: codec.slot_ids(r), "<u8")
    for j, name in enumerate(state_files):
        files[name] = column(lambda k, r, j=j: r[:, v * (1 + j):v * (2 + j)], "<f4")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"sparse model '{path}' exists and is not a folder")
    atomic_write_dir(path, files)
