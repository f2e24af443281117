"""Parquet data (pyarrow): a Norm-style file list plus ``_metadata.json`` beside the first listed file.

``_metadata.json`` names the label (``labels``), dense (``conts``) and categorical (``cats``) columns; the
order of those lists is the order of the label, dense and slot values, and a column not listed is not read.
Labels and dense values must be numeric (read as float32); categoricals must be integers (one key per
row) or lists of integers (multi-hot). No nulls. Each categorical key gets ``offset[s] =
sum(slot_size_array[:s])`` added, where ``len(slot_size_array) == len(cats)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hgc.errors import DataError
from hgc.runtime.data.layout import Block, Layout

METADATA_NAME = "_metadata.json"
CHUNK_ROWS = 65536


@dataclass(frozen=True)
class Column:
    name: str
    index: int


@dataclass(frozen=True)
class ParquetMetadata:
    path: str
    file_stats: dict[str, int]  # base name -> num_rows
    labels: tuple[Column, ...]
    conts: tuple[Column, ...]
    cats: tuple[Column, ...]

    @property
    def all_names(self) -> set[str]:
        return {c.name for c in self.labels + self.conts + self.cats}


def metadata_path_for(first_file: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(first_file)), METADATA_NAME)


def load_metadata(path: str) -> ParquetMetadata:
    """Parse and validate ``_metadata.json``; every defect is a DataError naming the file and the key."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(path, f"cannot read _metadata.json: {e.strerror or e}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(path, f"_metadata.json is not UTF-8 ({e.reason})", offset=e.start) from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"_metadata.json is not valid JSON: {e.msg}", offset=e.pos) from None
    if not isinstance(doc, dict):
        raise DataError(path, f"_metadata.json must hold a JSON object; found {type(doc).__name__}")
    for key in ("file_stats", "labels", "conts", "cats"):
        if key not in doc:
            raise DataError(path, f"_metadata.json has no '{key}' entry")
        if not isinstance(doc[key], list):
            raise DataError(path, f"_metadata.json '{key}' must be a list; found {type(doc[key]).__name__}")
    stats: dict[str, int] = {}
    for i, ent in enumerate(doc["file_stats"]):
        if not isinstance(ent, dict) or not isinstance(ent.get("file_name"), str):
            raise DataError(path, f"file_stats[{i}] needs a string 'file_name'")
        rows = ent.get("num_rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise DataError(
                path, f"file_stats[{i}] ('{ent['file_name']}') needs an integer num_rows >= 0; found {rows!r}"
            )
        stats[os.path.basename(ent["file_name"])] = rows

    def columns(key: str) -> tuple[Column, ...]:
        out = []
        for i, ent in enumerate(doc[key]):
            if not isinstance(ent, dict) or not isinstance(ent.get("col_name"), str):
                raise DataError(path, f"{key}[{i}] needs a string 'col_name'")
            idx = ent.get("index", -1)
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise DataError(
                    path, f"{key}[{i}] ('{ent['col_name']}'): 'index' must be an integer; found {idx!r}"
                )
            out.append(Column(ent["col_name"], idx))
        return tuple(out)

    meta = ParquetMetadata(path, stats, columns("labels"), columns("conts"), columns("cats"))
    names = [c.name for c in meta.labels + meta.conts + meta.cats]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(path, f"_metadata.json lists column(s) {dup} more than once")
    return meta


def check_metadata(meta: ParquetMetadata, layout: Layout) -> None:
    """The metadata must describe exactly the model's label, dense and slot counts."""
    if layout.slot_size_array and len(layout.slot_size_array) != len(meta.cats):
        raise DataError(
            meta.path,
            f"'cats' lists {len(meta.cats)} columns but slot_size_array has "
            f"{len(layout.slot_size_array)} entries; they must be equal",
        )
    for key, got, want, what in (
        ("labels", len(meta.labels), layout.label_dim, "the Input's label dims"),
        ("conts", len(meta.conts), layout.dense_dim, "the Input's dense_dim"),
        ("cats", len(meta.cats), layout.slot_num, "the total slot_num of the sparse inputs"),
    ):
        if got != want:
            raise DataError(meta.path, f"'{key}' lists {got} columns but {what} is {want}")


@contextmanager
def _arrow_errors(path: str, what: str, sample: int | None = None) -> Iterator[None]:
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(path, f"{what}: {msg}", sample=sample) from None


class ParquetDecoder:
    """Decodes Parquet files described by one ``_metadata.json`` into :class:`Block` objects."""

    def __init__(self, layout: Layout, meta: ParquetMetadata, chunk_rows: int = CHUNK_ROWS) -> None:
        check_metadata(meta, layout)
        self.layout = layout
        self.meta = meta
        self.chunk_rows = max(1, int(chunk_rows))
        self.offsets = layout.slot_offsets()
        bounds = layout.key_bounds(global_keys=False)
        self.bounds = bounds
        self.key_max = (
            np.iinfo(np.uint32).max if layout.key_dtype == np.dtype(np.uint32) else np.iinfo(np.int64).max
        )
        self._one_hot_offsets: dict[int, np.ndarray] = {}

    def _resolve_columns(self, path: str, schema: pa.Schema) -> list[tuple[str, str, int]]:
        """(role, file column name, position) for labels, conts, cats in metadata order."""
        names = list(schema.names)
        known = set(names)
        by_index = not (known & self.meta.all_names)
        out = []
        for role, cols in (
            ("labels", self.meta.labels),
            ("conts", self.meta.conts),
            ("cats", self.meta.cats),
        ):
            for k, col in enumerate(cols):
                if col.name in known:
                    pos = names.index(col.name)
                elif by_index and 0 <= col.index < len(names):
                    pos = col.index
                else:
                    shown = names if len(names) <= 12 else names[:12] + ["..."]
                    raise DataError(
                        path,
                        f"column '{col.name}' ({role}[{k}] in {self.meta.path}) is missing; "
                        f"the file has columns {shown}",
                    )
                typ = schema.field(pos).type
                self._check_type(path, role, k, names[pos], typ)
                out.append((role, names[pos], pos))
        return out

    @staticmethod
    def _check_type(path: str, role: str, k: int, name: str, typ: pa.DataType) -> None:
        if role in ("labels", "conts"):
            if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
                raise DataError(
                    path,
                    f"column '{name}' ({role}[{k}]) has type {typ}; labels and dense features "
                    "must be float32",
                )
            return
        if pa.types.is_integer(typ):
            return
        if (pa.types.is_list(typ) or pa.types.is_large_list(typ)) and pa.types.is_integer(typ.value_type):
            return
        raise DataError(
            path,
            f"column '{name}' (cats[{k}]) has type {typ}; categorical columns must be int64 or list<int64>",
        )

    def blocks(self, path: str) -> Iterator[Block]:
        with _arrow_errors(path, "not a readable Parquet file"):
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            num_rows = pf.metadata.num_rows
        base = os.path.basename(path)
        if base not in self.meta.file_stats:
            raise DataError(self.meta.path, f"file_stats has no entry for '{base}' (listed in the file list)")
        if self.meta.file_stats[base] != num_rows:
            raise DataError(
                path,
                f"the file has {num_rows} rows but _metadata.json file_stats says "
                f"{self.meta.file_stats[base]}",
            )
        cols = self._resolve_columns(path, schema)
        names = [c[1] for c in cols]
        row = 0
        with _arrow_errors(path, "cannot read the Parquet data"):
            it = pf.iter_batches(
                batch_size=self.chunk_rows, columns=sorted(set(names), key=names.index), use_threads=False
            )
        while True:
            with _arrow_errors(path, "cannot read the Parquet data", sample=row):
                rb = next(it, None)
            if rb is None:
                break
            with _arrow_errors(path, "cannot decode the Parquet data", sample=row):
                blk = self._decode(path, rb, cols, row)
            yield blk
            row += rb.num_rows
        if row != num_rows:
            raise DataError(path, f"read {row} rows but the file footer says {num_rows}", sample=row)

    def _decode(self, path: str, rb: pa.RecordBatch, cols: list[tuple[str, str, int]], row0: int) -> Block:
        lay = self.layout
        m = rb.num_rows
        label = np.empty((m, lay.label_dim), dtype=np.float32)
        dense = np.empty((m, lay.dense_dim), dtype=np.float32)
        cat_arrays = []
        li = di = 0
        for role, name, _ in cols:
            arr = rb.column(name)
            if arr.null_count:
                first = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
                raise DataError(
                    path,
                    f"column '{name}' has a null at this row; Parquet data must have no nulls",
                    sample=row0 + first,
                )
            if role == "labels":
                label[:, li] = arr.to_numpy(zero_copy_only=False)
                li += 1
            elif role == "conts":
                dense[:, di] = arr.to_numpy(zero_copy_only=False)
                di += 1
            else:
                cat_arrays.append((name, arr))
        row_offsets, keys = [], []
        for j, spec in enumerate(lay.sparse):
            ro, k = self._sparse(path, j, spec.slot_num, cat_arrays, row0, m)
            row_offsets.append(ro)
            keys.append(k)
        return Block(label, dense, row_offsets, keys)

    def _slot_values(
        self, path: str, s: int, name: str, arr: pa.Array, row0: int, m: int
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """(nnz per row or None when one-hot, int64 keys with the slot offset added)."""
        lay = self.layout
        if pa.types.is_integer(arr.type):
            nnz = None
            vals = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if lay.fixed[s] and lay.max_nnz[s] != 1:
                raise DataError(
                    path,
                    f"column '{name}' (slot {s}) has one key per row but the sparse input is "
                    f"fixed-length with nnz_per_slot={int(lay.max_nnz[s])}",
                    sample=row0,
                )
        else:
            flat = arr.flatten()
            if flat.null_count:
                raise DataError(path, f"column '{name}' (slot {s}) has a null key inside a list", sample=row0)
            nnz = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
            vals = flat.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            over = nnz > lay.max_nnz[s]
            if over.any():
                i = int(np.argmax(over))
                raise DataError(
                    path,
                    f"column '{name}' (slot {s}): nnz={int(nnz[i])} is above the slot's maximum "
                    f"nnz_per_slot={int(lay.max_nnz[s])}",
                    sample=row0 + i,
                )
            if lay.fixed[s]:
                off = nnz != lay.max_nnz[s]
                if off.any():
                    i = int(np.argmax(off))
                    raise DataError(
                        path,
                        f"column '{name}' (slot {s}): nnz={int(nnz[i])} but the sparse input is "
                        f"fixed-length with nnz_per_slot={int(lay.max_nnz[s])}",
                        sample=row0 + i,
                    )
        if self.bounds is not None and vals.size:
            lo, hi = int(self.bounds[0][s]), int(self.bounds[1][s])
            bad = (vals < lo) | (vals >= hi)
            if bad.any():
                k = int(np.argmax(bad))
                i = k if nnz is None else int(np.searchsorted(np.cumsum(nnz), k, side="right"))
                raise DataError(
                    path,
                    f"column '{name}' (slot {s}): key {int(vals[k])} is outside [0, {hi}) given "
                    "by slot_size_array",
                    sample=row0 + i,
                )
        if self.offsets[s]:
            vals = vals + self.offsets[s]
        check_fit = lay.key_dtype == np.dtype(np.uint32) or self.offsets[s] != 0
        if check_fit and vals.size and (int(vals.min()) < 0 or int(vals.max()) > self.key_max):
            bad = (vals < 0) | (vals > self.key_max)
            k = int(np.argmax(bad))
            i = k if nnz is None else int(np.searchsorted(np.cumsum(nnz), k, side="right"))
            raise DataError(
                path,
                f"column '{name}' (slot {s}): key {int(vals[k])} (slot offset included) does not "
                f"fit the {lay.key_dtype} key type",
                sample=row0 + i,
            )
        return nnz, vals

    def _sparse(
        self, path: str, j: int, S: int, cat_arrays: list, row0: int, m: int
    ) -> tuple[np.ndarray, np.ndarray]:
        lay = self.layout
        slots = lay.slots_of(j)
        per_slot = [self._slot_values(path, s, *cat_arrays[s], row0, m) for s in slots]
        if all(nnz is None for nnz, _ in per_slot):
            keys = np.empty((m, S), dtype=lay.key_dtype)
            for c, (_, vals) in enumerate(per_slot):
                keys[:, c] = vals
            ro = self._one_hot_offsets.get(m * S)
            if ro is None:  # shared by blocks of the same size; never written to
                ro = np.arange(m * S + 1, dtype=np.int64)
                ro.flags.writeable = False
                self._one_hot_offsets[m * S] = ro
            return ro, keys.reshape(-1)
        nnz = np.empty((m, S), dtype=np.int64)
        for c, (cnt, _) in enumerate(per_slot):
            nnz[:, c] = 1 if cnt is None else cnt
        ro = np.empty(m * S + 1, dtype=np.int64)
        ro[0] = 0
        np.cumsum(nnz.reshape(-1), out=ro[1:])
        keys = np.empty(int(ro[-1]), dtype=lay.key_dtype)
        starts = ro[:-1].reshape(m, S)
        for c, (cnt, vals) in enumerate(per_slot):
            if cnt is None:
                keys[starts[:, c]] = vals
            else:
                row_start = np.zeros(m, dtype=np.int64)
                if m > 1:
                    np.cumsum(cnt[:-1], out=row_start[1:])
                dest = np.repeat(starts[:, c] - row_start, cnt) + np.arange(vals.shape[0], dtype=np.int64)
                keys[dest] = vals
        return ro, keys
