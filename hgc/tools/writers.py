"""Writers for the three dataset formats (vectorised numpy; used by the generator and the Criteo converter).

* Norm: :class:`NormWriter` streams samples into one file and patches ``number_of_records`` on close.
* Raw: :func:`raw_records` builds the fixed-stride samples; append them to an open file.
* Parquet: :func:`write_parquet` writes one file; :func:`write_parquet_metadata` the ``_metadata.json``.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def norm_header(records: int, label_dim: int, dense_dim: int, slot_num: int, checksum: bool) -> bytes:
    """The 64-byte header, framed as a record when ``checksum``."""
    raw = struct.pack("<8q", 1 if checksum else 0, records, label_dim, dense_dim, slot_num, 0, 0, 0)
    if checksum:
        return struct.pack("<i", len(raw)) + raw + bytes([sum(raw) & 255])
    return raw


def encode_norm(label_dense: np.ndarray, nnz: np.ndarray, keys: np.ndarray, checksum: bool) -> np.ndarray:
    """Encode n samples as Norm records (uint8 bytes).

    ``label_dense``: float32 (n, label_dim + dense_dim); ``nnz``: (n, slot_num) keys per slot;
    ``keys``: every key, sample-major then slot order (uint32 or int64, which sets the key width).
    """
    ld = np.ascontiguousarray(label_dense, dtype=np.float32)
    n, width = ld.shape
    nnz = np.ascontiguousarray(nnz, dtype=np.int32)
    S = nnz.shape[1]
    keys = np.ascontiguousarray(keys)
    kb = keys.dtype.itemsize
    if keys.dtype not in (np.dtype(np.uint32), np.dtype(np.int64)):
        raise ValueError(f"keys dtype {keys.dtype}: must be uint32 or int64")
    nnz64 = nnz.astype(np.int64)
    if int(nnz64.sum()) != keys.shape[0]:
        raise ValueError(f"keys has {keys.shape[0]} entries but nnz sums to {int(nnz64.sum())}")
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    payload = 4 * width + 4 * S + kb * nnz64.sum(axis=1)
    frame = 5 if checksum else 0
    total = payload + frame
    start = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(total[:-1], out=start[1:])
    out = np.zeros(int(total.sum()), dtype=np.uint8)
    body = start + (4 if checksum else 0)
    if checksum:
        out[start[:, None] + np.arange(4)] = payload.astype("<i4").view(np.uint8).reshape(n, 4)
    out[body[:, None] + np.arange(4 * width)] = ld.astype("<f4").view(np.uint8).reshape(n, 4 * width)
    slot_bytes = 4 + kb * nnz64  # (n, S)
    slot_pos = (
        body[:, None]
        + 4 * width
        + np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(slot_bytes, axis=1)[:, :-1]], axis=1)
    )
    out[slot_pos[..., None] + np.arange(4)] = nnz.astype("<i4").view(np.uint8).reshape(n, S, 4)
    K = keys.shape[0]
    if K:
        flat_nnz = nnz64.reshape(-1)
        first = np.repeat(slot_pos.reshape(-1) + 4, flat_nnz)
        row_start = np.repeat(np.concatenate([[0], np.cumsum(flat_nnz)[:-1]]), flat_nnz)
        pos = first + kb * (np.arange(K, dtype=np.int64) - row_start)
        out[pos[:, None] + np.arange(kb)] = (
            keys.astype(keys.dtype.newbyteorder("<")).view(np.uint8).reshape(K, kb)
        )
    if checksum:
        bounds = np.empty(2 * n, dtype=np.int64)
        bounds[0::2] = body
        bounds[1::2] = body + payload
        sums = np.add.reduceat(out, bounds, dtype=np.int64)[0::2]
        out[body + payload] = (sums & 255).astype(np.uint8)
    return out


class NormWriter:
    """Streams samples into one Norm file; the header's record count is patched on :meth:`close`."""

    def __init__(self, path: str, label_dim: int, dense_dim: int, slot_num: int, checksum: bool) -> None:
        self.path = path
        self.dims = (label_dim, dense_dim, slot_num)
        self.checksum = checksum
        self.records = 0
        self._f = open(path, "wb")
        self._f.write(norm_header(0, label_dim, dense_dim, slot_num, checksum))

    def write(self, label_dense: np.ndarray, nnz: np.ndarray, keys: np.ndarray) -> None:
        if label_dense.shape[1] != self.dims[0] + self.dims[1] or nnz.shape[1] != self.dims[2]:
            raise ValueError(
                f"{self.path}: samples of width {label_dense.shape[1]} / {nnz.shape[1]} slots do not "
                f"match the header dims {self.dims}"
            )
        self._f.write(encode_norm(label_dense, nnz, keys, self.checksum).tobytes())
        self.records += label_dense.shape[0]

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(norm_header(self.records, *self.dims, self.checksum))
        self._f.close()

    def __enter__(self) -> NormWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_records(
    label: np.ndarray, dense: np.ndarray, keys: np.ndarray, float_label_dense: bool
) -> np.ndarray:
    """Fixed-stride Raw samples: label and dense as int32 (or float32), then the int32 keys."""
    n = label.shape[0]
    out = np.empty((n, label.shape[1] + dense.shape[1] + keys.shape[1]), dtype="<i4")
    L, D = label.shape[1], dense.shape[1]
    if float_label_dense:
        out[:, : L + D].view("<f4")[:, :L] = label
        out[:, : L + D].view("<f4")[:, L:] = dense
    else:
        out[:, :L] = label
        out[:, L : L + D] = dense
    out[:, L + D :] = keys.astype(np.int64).astype(np.uint32).view(np.int32)
    return out


def write_parquet(path: str, names: Sequence[str], columns: Sequence[object]) -> None:
    """Write one Parquet file. Each column is a float32/int64 array, or ``(offsets, values)`` for a
    list<int64> column."""
    arrays = []
    for col in columns:
        if isinstance(col, tuple):
            offsets, values = col
            arrays.append(
                pa.ListArray.from_arrays(
                    pa.array(np.asarray(offsets, dtype=np.int32)),
                    pa.array(np.asarray(values, dtype=np.int64)),
                )
            )
        else:
            arrays.append(pa.array(np.asarray(col)))
    pq.write_table(pa.Table.from_arrays(arrays, names=list(names)), path)


def write_parquet_metadata(
    directory: str,
    files_rows: Sequence[tuple[str, int]],
    labels: Sequence[str],
    conts: Sequence[str],
    cats: Sequence[str],
) -> str:
    """Write ``_metadata.json`` (file_stats, labels, conts, cats; ``index`` = column position)."""
    idx = 0
    doc: dict[str, object] = {"file_stats": [{"file_name": f, "num_rows": int(r)} for f, r in files_rows]}
    for key, names in (("labels", labels), ("conts", conts), ("cats", cats)):
        ents = []
        for name in names:
            ents.append({"col_name": name, "index": idx})
            idx += 1
        doc[key] = ents
    path = os.path.join(directory, "_metadata.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    return path
