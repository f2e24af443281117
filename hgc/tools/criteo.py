"""Criteo TSV (label, I1–I13, C1–C26; empty fields allowed) → Norm, Raw or Parquet.

The encoding follows HugeCTR's ``preprocess.py`` (seed 000), done in two streaming passes so memory
depends on the vocabulary, never on the input size:

1. *Counting.* Missing integers become INT32_MIN, missing categoricals "80000000". Per column, values seen
   fewer than ``freq_threshold`` (6) times are replaced by that placeholder. With ``feature_cross`` the
   distinct (C1, C2) and (C3, C4) pairs are collected too.
2. *Writing.* Labels are rank-encoded (0, 1). Dense values are rank-encoded from 1 and, with
   ``normalize_dense``, min-max scaled to [0, 1]. Categoricals are rank-encoded from 1; column C_i gets the
   running offset of the previous C columns' cardinalities, so keys are unique across slots. The crossed
   columns C1_C2 and C3_C4 are ``c1 * card(C2) + c2`` over the offset codes, rank-encoded from 1 and offset
   after the 26 categoricals.

Outputs (for each non-empty split of ``split``, default 80/10/10 in input order):

* ``norm`` — the ``criteo2hugectr`` layout: ``<out>/<split>/<split><k>.data`` (Check_t.Sum by default,
  ``samples_per_file`` = 40960 samples each), ``<out>/<split>/file_list.txt`` and ``file_list.keyset`` (the
  unique keys in first-seen order, key width of the data). With ``files_per_list`` > 0 the files are grouped
  into ``file_list.<j>.txt`` / ``file_list.<j>.keyset``. Sample: label, 13 dense floats, then (with
  ``feature_cross``) one wide slot holding the 2 crossed keys, then 26 one-key slots. Keys are global.
* ``raw`` — ``<out>/<split>_data.bin``: label and dense as int32 (dense = the raw count clipped at 0,
  missing = 0; the reader applies ln(x + 1)), or float32 preprocessed values with ``float_label_dense``;
  then one int32 key per slot, local to the slot (0-based codes). Slots: [C1_C2, C3_C4,] C1…C26.
* ``parquet`` — ``<out>/<split>/<k>.parquet``, ``_file_list.txt`` and ``_metadata.json``: float32
  ``label``, float32 I1…I13, int64 categoricals [C1_C2, C3_C4,] C1…C26 with local 0-based codes; use the
  returned ``slot_size_array`` in ``DataReaderParams``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from hgc.errors import DataError
from hgc.runtime.data.filelist import write_file_list
from hgc.runtime.data.layout import check_type_name
from hgc.tools.writers import NormWriter, raw_records, write_parquet_metadata

NUM_DENSE = 13
NUM_CATS = 26
COLUMNS = ["label"] + [f"I{i}" for i in range(1, NUM_DENSE + 1)] + [f"C{i}" for i in range(1, NUM_CATS + 1)]
INT_NAN = int(np.iinfo(np.int32).min)
CAT_NAN = "80000000"
CROSS_PAIRS = (("C1", "C2"), ("C3", "C4"))
SPLITS = ("train", "val", "test")
BLOCK_BYTES = 16 << 20
#: Per-batch counts are merged once they hold this many entries (and 4x the merged table): memory stays
#: bounded by the vocabularies, not by the input.
MERGE_ROWS = 1 << 20


@dataclass
class CriteoConversion:
    """What a conversion wrote."""

    format: str
    out_dir: str
    sources: dict[str, str] = field(default_factory=dict)  # split -> file list / .bin file
    num_samples: dict[str, int] = field(default_factory=dict)
    cardinalities: dict[str, int] = field(default_factory=dict)  # column -> number of categories
    slot_size_array: list[int] = field(default_factory=list)  # per slot (Raw, Parquet: local keys)
    vocabulary_size: int = 0  # Norm: largest key + 1
    slot_names: list[str] = field(default_factory=list)
    file_lists: dict[str, list[str]] = field(default_factory=dict)  # Norm with files_per_list: every list
    keysets: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, default=int)


# ------------------------------------------------------------------------------------------ reading
class _Input:
    """Streams record batches from one or more Criteo TSV files and reports progress in bytes."""

    def __init__(self, paths: Sequence[str], progress: Any) -> None:
        self.paths = list(paths)
        self.total = 0
        for p in self.paths:
            try:
                self.total += os.path.getsize(p)
            except OSError as e:
                raise DataError(p, f"cannot read the Criteo input: {e.strerror or e}") from None
        self.progress = progress

    def batches(self, desc: str) -> Iterator[tuple[str, int, pa.RecordBatch]]:
        """(path, first line index of the batch, batch)."""
        bar = _bar(self.total, desc, self.progress)
        done = 0
        try:
            for path in self.paths:
                bad: list[Any] = []

                def handler(row: Any, bad: list[Any] = bad) -> str:
                    bad.append(row)
                    return "error"

                if os.path.getsize(path) == 0:
                    continue
                types = {c: pa.int64() for c in COLUMNS[: 1 + NUM_DENSE]}
                types.update({c: pa.string() for c in COLUMNS[1 + NUM_DENSE :]})
                line = 0
                try:
                    src = pa.input_stream(path, compression="detect")
                    reader = pcsv.open_csv(
                        src,
                        read_options=pcsv.ReadOptions(
                            column_names=COLUMNS, block_size=BLOCK_BYTES, use_threads=True
                        ),
                        parse_options=pcsv.ParseOptions(
                            delimiter="\t", quote_char=False, escape_char=False, invalid_row_handler=handler
                        ),
                        convert_options=pcsv.ConvertOptions(
                            column_types=types,
                            strings_can_be_null=True,
                            null_values=[""],
                            quoted_strings_can_be_null=False,
                        ),
                    )
                    last = 0
                    for rb in reader:
                        yield path, line, rb
                        line += rb.num_rows
                        pos = src.tell() if not src.closed else last
                        if bar is not None:
                            bar.update(max(0, pos - last))
                        last = pos
                    done += os.path.getsize(path)
                except (pa.ArrowException, OSError) as e:
                    if bad:
                        row = bad[0]
                        number = row.number if row.number is not None else _find_bad_line(path, line)
                        where = f"line {number}" if number is not None else f"after line {line}"
                        raise DataError(
                            path,
                            f"{where}: expected 40 tab-separated fields (label, I1-I13, "
                            f"C1-C26), found {row.actual_columns}",
                            sample=(number - 1) if number is not None else line,
                        ) from None
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise DataError(path, f"not a readable Criteo TSV file: {msg}", sample=line) from None
        finally:
            if bar is not None:
                bar.close()


def _find_bad_line(path: str, start: int) -> int | None:
    """1-based number of the first line at or after line ``start`` (0-based) without 40 fields."""
    try:
        with pa.input_stream(path, compression="detect") as f:
            for number, raw in enumerate(_lines(f), start=1):
                if number > start and raw.count(b"\t") != len(COLUMNS) - 1:
                    return number
    except (pa.ArrowException, OSError):
        return None
    return None


def _lines(f: Any) -> Iterator[bytes]:
    tail = b""
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        parts = (tail + chunk).split(b"\n")
        tail = parts.pop()
        yield from parts
    if tail:
        yield tail


def _bar(total: int, desc: str, progress: Any) -> Any:
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr)


# ------------------------------------------------------------------------------------------ counting
class _Counts:
    """Value → count for one column, merged from per-batch value_counts."""

    def __init__(self) -> None:
        self.parts: list[pa.StructArray] = []
        self.size = 0
        self.merged: pa.Table | None = None

    def add(self, arr: pa.Array) -> None:
        vc = pc.value_counts(arr)
        self.parts.append(vc)
        self.size += len(vc)
        if self.size > max(MERGE_ROWS, 4 * (0 if self.merged is None else self.merged.num_rows)):
            self._merge()

    def _merge(self) -> None:
        tables = [
            pa.table({"v": p.field("values"), "c": p.field("counts").cast(pa.int64())}) for p in self.parts
        ]
        if self.merged is not None:
            tables.append(self.merged)
        if tables:
            t = pa.concat_tables(tables).group_by("v").aggregate([("c", "sum")])
            self.merged = pa.table({"v": t["v"], "c": t["c_sum"]})
        self.parts, self.size = [], 0

    def table(self) -> pa.Table:
        self._merge()
        if self.merged is None:
            return pa.table({"v": pa.array([], pa.string()), "c": pa.array([], pa.int64())})
        return self.merged


class _Distinct:
    """Distinct rows of two columns (for the crossed features)."""

    def __init__(self) -> None:
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.merged: pa.Table | None = None

    def add(self, a: pa.Array, b: pa.Array) -> None:
        t = pa.table({"a": a, "b": b}).group_by(["a", "b"]).aggregate([])
        self.parts.append(t)
        self.rows += t.num_rows
        if self.rows > max(MERGE_ROWS, 4 * (0 if self.merged is None else self.merged.num_rows)):
            self._merge()

    def _merge(self) -> None:
        tables = self.parts + ([self.merged] if self.merged is not None else [])
        if tables:
            self.merged = pa.concat_tables(tables).group_by(["a", "b"]).aggregate([]).select(["a", "b"])
        self.parts, self.rows = [], 0

    def table(self) -> pa.Table:
        self._merge()
        return (
            self.merged
            if self.merged is not None
            else pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.string())})
        )


def _filled(rb: pa.RecordBatch, col: str) -> pa.Array:
    arr = rb.column(col)
    if col.startswith("C"):
        return pc.fill_null(arr, CAT_NAN)
    return pc.fill_null(arr, INT_NAN)


@dataclass
class _Encoder:
    """Rank encoding of one column after the frequency threshold (codes from 1)."""

    categories: pa.Array  # sorted
    placeholder_index: int  # code - 1 of the placeholder, or -1 when no value was replaced

    @property
    def cardinality(self) -> int:
        return len(self.categories)

    def codes(self, arr: pa.Array) -> np.ndarray:
        """1-based codes (int64) of filled values."""
        idx = pc.index_in(arr, value_set=self.categories)
        if self.placeholder_index >= 0:
            idx = pc.fill_null(idx, self.placeholder_index)
        out = idx.to_numpy(zero_copy_only=False)
        return out.astype(np.int64) + 1


def _encoder(counts: pa.Table, threshold: int, placeholder: Any, is_label: bool) -> _Encoder:
    v, c = counts["v"], counts["c"]
    if is_label:
        kept = v
        rare = False
    else:
        keep_mask = pc.greater_equal(c, threshold)
        kept = pc.filter(v, keep_mask)
        rare = bool(pc.any(pc.invert(keep_mask)).as_py()) if len(v) else False
    kept = kept.combine_chunks() if isinstance(kept, pa.ChunkedArray) else kept
    if rare:
        has = bool(pc.any(pc.equal(kept, pa.scalar(placeholder, kept.type))).as_py()) if len(kept) else False
        if not has:
            kept = pa.concat_arrays([kept, pa.array([placeholder], kept.type)])
    cats = pc.take(kept, pc.sort_indices(kept))
    ph = -1
    if rare:
        ph = int(pc.index_in(pa.array([placeholder], cats.type), value_set=cats)[0].as_py())
    return _Encoder(cats, ph)


# ------------------------------------------------------------------------------------------ writers
class _NormSplit:
    def __init__(
        self,
        folder: str,
        split: str,
        samples_per_file: int,
        files_per_list: int,
        checksum: bool,
        slot_num: int,
        key_dtype: np.dtype,
        key_space: int,
    ) -> None:
        self.folder, self.split = folder, split
        self.per_file, self.per_list = samples_per_file, files_per_list
        self.checksum, self.slot_num, self.key_dtype = checksum, slot_num, key_dtype
        self.files: list[str] = []
        self.lists: list[str] = []
        self.keysets: list[str] = []
        self.writer: NormWriter | None = None
        self.seen = np.zeros(key_space, dtype=np.bool_)
        self.keyset_f = None
        os.makedirs(folder, exist_ok=True)

    def _list_name(self, j: int | None, ext: str) -> str:
        return os.path.join(self.folder, f"file_list{'' if j is None else f'.{j}'}{ext}")

    def _open_file(self) -> None:
        k = len(self.files)
        if self.per_list and k % self.per_list == 0 and k:
            self._close_list()
        if self.keyset_f is None:
            j = (k // self.per_list) if self.per_list else None
            name = self._list_name(j, ".keyset")
            self.keysets.append(name)
            self.keyset_f = open(name, "wb")
            self.seen[:] = False
        path = os.path.join(self.folder, f"{self.split}{k}.data")
        self.files.append(path)
        self.writer = NormWriter(path, 1, NUM_DENSE, self.slot_num, self.checksum)

    def _close_list(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.keyset_f is not None:
            self.keyset_f.close()
            self.keyset_f = None
        j = (len(self.lists)) if self.per_list else None
        start = j * self.per_list if self.per_list else 0
        group = self.files[start:]
        if group:
            name = self._list_name(j, ".txt")
            write_file_list(name, group)
            self.lists.append(name)

    def write(self, label_dense: np.ndarray, keys: np.ndarray) -> None:
        """``keys``: (m, keys per sample) in slot order (the wide slot's keys first)."""
        a = 0
        m = label_dense.shape[0]
        width = keys.shape[1]
        nnz_row = np.array(([2] if width == NUM_CATS + 2 else []) + [1] * NUM_CATS, dtype=np.int32)
        while a < m:
            if self.writer is None or self.writer.records >= self.per_file:
                if self.writer is not None:
                    self.writer.close()
                self._open_file()
            take = min(m - a, self.per_file - self.writer.records)
            k = keys[a : a + take].astype(self.key_dtype)
            self.writer.write(
                label_dense[a : a + take], np.broadcast_to(nnz_row, (take, len(nnz_row))), k.reshape(-1)
            )
            flat = k.reshape(-1)
            uniq, first = np.unique(flat, return_index=True)
            new = ~self.seen[uniq.astype(np.int64)]
            order = np.argsort(first[new], kind="stable")
            fresh = uniq[new][order]
            self.seen[fresh.astype(np.int64)] = True
            self.keyset_f.write(fresh.astype(self.key_dtype).tobytes())
            a += take

    def close(self) -> None:
        if self.files:
            self._close_list()


class _ParquetSplit:
    def __init__(self, folder: str, samples_per_file: int, cat_names: list[str]) -> None:
        self.folder = folder
        self.per_file = samples_per_file
        self.cat_names = cat_names
        self.names = ["label"] + COLUMNS[1 : 1 + NUM_DENSE] + cat_names
        self.schema = pa.schema(
            [(n, pa.float32()) for n in self.names[: 1 + NUM_DENSE]] + [(n, pa.int64()) for n in cat_names]
        )
        self.files: list[tuple[str, int]] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        os.makedirs(folder, exist_ok=True)

    def write(self, label: np.ndarray, dense: np.ndarray, cats: np.ndarray) -> None:
        a, m = 0, label.shape[0]
        while a < m:
            if self.writer is None or self.rows >= self.per_file:
                self._finish()
                path = os.path.join(self.folder, f"{len(self.files)}.parquet")
                self.files.append((path, 0))
                self.writer = pq.ParquetWriter(path, self.schema)
                self.rows = 0
            take = min(m - a, self.per_file - self.rows)
            cols = [pa.array(label[a : a + take])] + [
                pa.array(dense[a : a + take, j]) for j in range(NUM_DENSE)
            ]
            cols += [pa.array(cats[a : a + take, c]) for c in range(cats.shape[1])]
            self.writer.write_batch(pa.record_batch(cols, schema=self.schema))
            self.rows += take
            a += take

    def _finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
            path, _ = self.files[-1]
            self.files[-1] = (path, self.rows)
            self.writer = None

    def close(self) -> str | None:
        self._finish()
        if not self.files:
            return None
        write_file_list(os.path.join(self.folder, "_file_list.txt"), [p for p, _ in self.files])
        write_parquet_metadata(self.folder, self.files, ["label"], COLUMNS[1 : 1 + NUM_DENSE], self.cat_names)
        return os.path.join(self.folder, "_file_list.txt")


# ------------------------------------------------------------------------------------------ conversion
def convert_criteo(
    src: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    to: str = "norm",
    *,
    normalize_dense: bool = True,
    feature_cross: bool = True,
    freq_threshold: int = 6,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    samples_per_file: int | None = None,
    files_per_list: int = 0,
    check_type: Any = "Sum",
    i64_input_key: bool = False,
    float_label_dense: bool = False,
    progress: bool | None = None,
) -> CriteoConversion:
    """Convert Criteo TSV file(s) ``src`` into ``out_dir`` (see the module docstring for the layouts).

    ``progress``: None = a tqdm bar when tqdm is installed and stderr is a terminal; True/False force it.
    """
    fmt = str(to).lower()
    if fmt not in ("norm", "raw", "parquet"):
        raise ValueError(f"to={to!r}: must be 'norm', 'raw' or 'parquet'")
    if isinstance(freq_threshold, bool) or not isinstance(freq_threshold, int) or freq_threshold < 1:
        raise ValueError(f"freq_threshold={freq_threshold!r}: must be an integer >= 1")
    fractions = [float(x) for x in split]
    if not 1 <= len(fractions) <= 3 or any(x < 0 for x in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"split={tuple(split)!r}: 1 to 3 non-negative fractions (train, val, test) summing to 1"
        )
    per_file = samples_per_file if samples_per_file is not None else (40960 if fmt == "norm" else 1 << 20)
    if isinstance(per_file, bool) or not isinstance(per_file, int) or per_file < 1:
        raise ValueError(f"samples_per_file={samples_per_file!r}: must be an integer >= 1")
    if isinstance(files_per_list, bool) or not isinstance(files_per_list, int) or files_per_list < 0:
        raise ValueError(f"files_per_list={files_per_list!r}: must be an integer >= 0")
    if fmt == "raw" and i64_input_key:
        raise ValueError("i64_input_key=True: the Raw format stores only 32-bit keys")
    checksum = check_type_name(check_type) == "Sum"
    paths = [os.fspath(src)] if isinstance(src, (str, os.PathLike)) else [os.fspath(p) for p in src]
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    inp = _Input(paths, progress)

    # ---- pass 1: counts
    counts = {c: _Counts() for c in COLUMNS}
    pairs = {p: _Distinct() for p in CROSS_PAIRS} if feature_cross else {}
    total = 0
    for _, _, rb in inp.batches("criteo: counting"):
        total += rb.num_rows
        filled = {c: _filled(rb, c) for c in COLUMNS}
        for c in COLUMNS:
            counts[c].add(filled[c])
        for (a, b), d in pairs.items():
            d.add(filled[a], filled[b])
    if total == 0:
        raise DataError(paths[0], "the Criteo input holds no rows")
    enc = {
        c: _encoder(
            counts[c].table(), freq_threshold, CAT_NAN if c.startswith("C") else INT_NAN, c == "label"
        )
        for c in COLUMNS
    }
    del counts
    cats = COLUMNS[1 + NUM_DENSE :]
    card = {c: enc[c].cardinality for c in cats}
    offset = {}
    acc = 0
    for c in cats:
        offset[c] = acc
        acc += card[c]
    cross_cats: dict[tuple[str, str], np.ndarray] = {}
    for (a, b), d in pairs.items():
        t = d.table()
        va = enc[a].codes(t["a"].combine_chunks()) + offset[a]
        vb = enc[b].codes(t["b"].combine_chunks()) + offset[b]
        cross_cats[(a, b)] = np.unique(va * card[b] + vb)
        name = f"{a}_{b}"
        card[name] = len(cross_cats[(a, b)])
        offset[name] = acc
        acc += card[name]
    del pairs
    key_space = acc + 1
    cross_names = [f"{a}_{b}" for a, b in cross_cats]
    slot_cols = cross_names + cats  # Raw/Parquet slot order
    result = CriteoConversion(
        format={"norm": "Norm", "raw": "Raw", "parquet": "Parquet"}[fmt],
        out_dir=out,
        cardinalities={c: int(card[c]) for c in slot_cols},
        slot_names=slot_cols,
    )
    if fmt == "norm":
        kdt = np.dtype(np.int64) if i64_input_key else np.dtype(np.uint32)
        if kdt == np.uint32 and acc > np.iinfo(np.uint32).max:
            raise ValueError(f"the largest key {acc} does not fit uint32 keys; pass i64_input_key=True")
        result.vocabulary_size = int(key_space)
        result.slot_names = (["wide(" + ",".join(cross_names) + ")"] if cross_names else []) + cats
    else:
        result.slot_size_array = [int(card[c]) for c in slot_cols]

    # ---- pass 2: encode and write
    bounds = np.floor(np.cumsum(np.asarray(fractions + [0.0] * (3 - len(fractions))) * total + 1e-9)).astype(
        np.int64
    )
    bounds[-1] = total
    starts = np.concatenate([[0], bounds[:-1]])
    writers: dict[str, Any] = {}
    raw_files: dict[str, Any] = {}
    try:
        row = 0
        for _, _, rb in inp.batches("criteo: writing"):
            m = rb.num_rows
            filled = {c: _filled(rb, c) for c in COLUMNS}
            label = (enc["label"].codes(filled["label"]) - 1).astype(np.float32)
            dense_codes = np.stack([enc[c].codes(filled[c]) for c in COLUMNS[1 : 1 + NUM_DENSE]], axis=1)
            if normalize_dense:
                k = np.array([enc[c].cardinality for c in COLUMNS[1 : 1 + NUM_DENSE]], dtype=np.float64)
                dense = np.where(k > 1, (dense_codes - 1) / np.maximum(k - 1, 1), 0.0).astype(np.float32)
            else:
                dense = dense_codes.astype(np.float32)
            codes = {c: enc[c].codes(filled[c]) for c in cats}
            for (a, b), cc in cross_cats.items():
                v = (codes[a] + offset[a]) * card[b] + (codes[b] + offset[b])
                codes[f"{a}_{b}"] = np.searchsorted(cc, v).astype(np.int64) + 1
            for si, name in enumerate(SPLITS):
                lo, hi = max(starts[si], row), min(bounds[si], row + m)
                if lo >= hi:
                    continue
                sl = slice(lo - row, hi - row)
                if fmt == "norm":
                    if name not in writers:
                        writers[name] = _NormSplit(
                            os.path.join(out, name),
                            name,
                            per_file,
                            files_per_list,
                            checksum,
                            NUM_CATS + (1 if cross_names else 0),
                            kdt,
                            key_space,
                        )
                    keys = np.stack([codes[c][sl] + offset[c] for c in cross_names + cats], axis=1)
                    writers[name].write(np.concatenate([label[sl, None], dense[sl]], axis=1), keys)
                elif fmt == "parquet":
                    if name not in writers:
                        writers[name] = _ParquetSplit(os.path.join(out, name), per_file, slot_cols)
                    writers[name].write(
                        label[sl], dense[sl], np.stack([codes[c][sl] - 1 for c in slot_cols], 1)
                    )
                else:
                    if name not in raw_files:
                        path = os.path.join(out, f"{name}_data.bin")
                        raw_files[name] = open(path, "wb")
                        result.sources[name] = path
                        result.num_samples[name] = 0
                    if float_label_dense:
                        rd = dense[sl]
                    else:
                        ints = [pc.fill_null(rb.column(c), 0).to_numpy() for c in COLUMNS[1 : 1 + NUM_DENSE]]
                        rd = np.clip(np.stack(ints, 1)[sl], 0, np.iinfo(np.int32).max)
                    keys = np.stack([codes[c][sl] - 1 for c in slot_cols], axis=1)
                    lab = label[sl, None] if float_label_dense else label[sl, None].astype(np.int64)
                    raw_files[name].write(raw_records(lab, rd, keys, float_label_dense).tobytes())
                    result.num_samples[name] += int(hi - lo)
            row += m
    finally:
        for f in raw_files.values():
            f.close()
    for si, name in enumerate(SPLITS):
        w = writers.get(name)
        if w is None:
            continue
        if fmt == "norm":
            w.close()
            result.sources[name] = w.lists[0]
            result.file_lists[name] = list(w.lists)
            result.keysets[name] = list(w.keysets)
        else:
            result.sources[name] = w.close()
        result.num_samples[name] = int(bounds[si] - starts[si])
    with open(os.path.join(out, "criteo_conversion.json"), "w", encoding="utf-8") as f:
        f.write(result.to_json())
    return result
