"""UCI Adult (Census Income) CSV → Norm or Parquet, laid out for a Wide & Deep model.

The two UCI files (``adult.data``, ``adult.test``) hold 14 features and the label (``<=50K`` / ``>50K``, with a
trailing ``.`` in ``adult.test``); fields are separated by ``", "`` and ``?`` marks a missing value (kept as a
category of its own). Everything learnt from data (vocabularies, normalisation statistics) comes from the
training file only, so the test split is encoded exactly as unseen data would be.

Encoding of one sample:

* label: 1.0 for ``>50K``, else 0.0;
* dense (6 floats): ``age, fnlwgt, education_num, capital_gain, capital_loss, hours_per_week``; ``fnlwgt`` and
  the two capital columns are taken as ln(1 + x) first; then each column is standardised with the training
  mean and standard deviation;
* deep slots (one key each): the 8 categorical columns and ``age_bucket`` (age cut at 18, 25, …, 65);
* the wide slot (one slot, a fixed number of keys): the same 9 base features plus the crossed features of
  ``crosses`` (default education×occupation, age_bucket×education×occupation, native_country×occupation).

Every feature has its own vocabulary: code 0 stands for values seen fewer than ``min_count`` times in the
training file (and for values never seen there), codes 1… for the others in order of decreasing frequency.
The wide slot holds all wide features side by side: feature j's codes are shifted by the sizes of the wide
features before it, so the slot's keys lie in [0, wide size). Slot order in a sample: the wide slot, then the
deep slots. ``slot_size_array`` = [wide size, deep vocabulary sizes…]. Norm keys are global (slot s shifted by
the sizes of the slots before it); Parquet keys are local to their slot and the reader adds the same offsets,
so both formats give a model identical keys.

Outputs under ``out_dir``: ``train/`` and ``test/``, each with its data files (``adult_<k>.data`` or
``adult_<k>.parquet``), ``file_list.txt`` and, for Parquet, ``_metadata.json`` (columns ``label``, the dense
names, ``wide`` (a list column) and the deep slot names).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hgc.errors import DataError
from hgc.runtime.data.filelist import write_file_list
from hgc.runtime.data.layout import check_type_name
from hgc.tools.writers import NormWriter, write_parquet, write_parquet_metadata

COLUMNS = ("age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
           "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country")
CONTINUOUS = ("age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week")
CATEGORICAL = ("workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
               "native_country")
LOG_COLUMNS = ("fnlwgt", "capital_gain", "capital_loss")
AGE_BOUNDARIES = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)
BASE_FEATURES = (*CATEGORICAL, "age_bucket")
DEFAULT_CROSSES: tuple[tuple[str, ...], ...] = (
    ("education", "occupation"),
    ("age_bucket", "education", "occupation"),
    ("native_country", "occupation"),
)
FORMATS = ("Norm", "Parquet")


# ------------------------------------------------------------------------------------------ reading
@dataclass
class AdultTable:
    """The rows of one UCI Adult file: each column as a numpy array (int64 for the integer columns, str
    objects for the categorical ones) and the 0/1 label."""

    columns: dict[str, np.ndarray]
    label: np.ndarray  # float32 (n,)

    def __len__(self) -> int:
        return int(self.label.shape[0])


def read_adult(path: str | os.PathLike[str]) -> AdultTable:
    """Read ``adult.data`` or ``adult.test``. Blank lines and lines starting with ``|`` (the UCI test file's
    header) are skipped; a malformed row raises DataError naming the file, the row and the rule."""
    path = os.fspath(path)
    values: dict[str, list] = {c: [] for c in COLUMNS}
    labels: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            _parse(path, f, values, labels)
    except OSError as e:
        raise DataError(path, f"cannot read the Adult CSV: {e.strerror or e}") from None
    if not labels:
        raise DataError(path, "the file holds no data rows")
    cols = {c: np.asarray(v, dtype=np.int64 if c in CONTINUOUS else object) for c, v in values.items()}
    return AdultTable(cols, np.asarray(labels, dtype=np.float32))


def _parse(path: str, f: Iterable[str], values: dict[str, list], labels: list[float]) -> None:
    """Append the rows of an open Adult CSV to ``values`` (per column) and ``labels``."""
    for line_no, row in enumerate(csv.reader(f, skipinitialspace=True), start=1):
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("|"):
            continue
        if len(row) != len(COLUMNS) + 1:
            raise DataError(path, f"line {line_no}: expected {len(COLUMNS) + 1} comma-separated fields "
                                  f"(14 features and the label), found {len(row)}")
        fields = [v.strip() for v in row]
        label = fields[-1].rstrip(".")
        if label not in ("<=50K", ">50K"):
            raise DataError(path, f"line {line_no}: the label must be '<=50K' or '>50K' (optionally ending "
                                  f"in '.'), found {fields[-1]!r}")
        for name, v in zip(COLUMNS, fields):
            if name in CONTINUOUS:
                try:
                    values[name].append(int(v))
                except ValueError:
                    raise DataError(path, f"line {line_no}: column {name} must be an integer, found "
                                          f"{v!r}") from None
            else:
                values[name].append(v)
        labels.append(1.0 if label == ">50K" else 0.0)


def age_bucket(age: np.ndarray) -> np.ndarray:
    """Index of the age band: 0 below 18, k for AGE_BOUNDARIES[k-1] <= age < AGE_BOUNDARIES[k], 10 from 65."""
    return np.searchsorted(np.asarray(AGE_BOUNDARIES), np.asarray(age), side="right")


def feature_values(table: AdultTable, feature: str | tuple[str, ...]) -> np.ndarray:
    """The values of a base feature (a categorical column or ``age_bucket``) or of a cross of base features
    (joined with ``"^"``), as strings."""
    if isinstance(feature, tuple):
        parts = [feature_values(table, f) for f in feature]
        return np.asarray(["^".join(p) for p in zip(*parts)], dtype=object)
    if feature == "age_bucket":
        return age_bucket(table.columns["age"]).astype(str).astype(object)
    if feature not in CATEGORICAL:
        raise ValueError(f"feature={feature!r}: must be one of {BASE_FEATURES} or a tuple of them")
    return table.columns[feature]


def feature_name(feature: str | tuple[str, ...]) -> str:
    return "_x_".join(feature) if isinstance(feature, tuple) else feature


# ------------------------------------------------------------------------------------------ encoding
@dataclass
class AdultEncoder:
    """Vocabularies and dense statistics learnt from a training table (see the module docstring)."""

    crosses: tuple[tuple[str, ...], ...] = DEFAULT_CROSSES
    min_count: int = 2
    vocab: dict[str, dict[str, int]] = field(default_factory=dict)  # feature name -> value -> code (>= 1)
    mean: np.ndarray = field(default_factory=lambda: np.zeros(len(CONTINUOUS)))
    std: np.ndarray = field(default_factory=lambda: np.ones(len(CONTINUOUS)))

    def __post_init__(self) -> None:
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int) or self.min_count < 1:
            raise ValueError(f"min_count={self.min_count!r}: must be an integer >= 1")
        crosses = tuple(tuple(c) for c in self.crosses)
        for c in crosses:
            if len(c) < 2 or any(f not in BASE_FEATURES for f in c):
                raise ValueError(f"crosses entry {c!r}: must name 2 or more of {BASE_FEATURES}")
        self.crosses = crosses

    @property
    def wide_features(self) -> list[str | tuple[str, ...]]:
        return [*BASE_FEATURES, *self.crosses]

    @property
    def deep_features(self) -> list[str]:
        return list(BASE_FEATURES)

    def size(self, feature: str | tuple[str, ...]) -> int:
        """Vocabulary size of a feature, the out-of-vocabulary code 0 included."""
        return len(self.vocab[feature_name(feature)]) + 1

    @property
    def wide_size(self) -> int:
        return sum(self.size(f) for f in self.wide_features)

    @property
    def slot_size_array(self) -> list[int]:
        return [self.wide_size] + [self.size(f) for f in self.deep_features]

    def fit(self, table: AdultTable) -> AdultEncoder:
        """Learn the vocabularies and the dense statistics from ``table`` (the training split)."""
        for feat in [*BASE_FEATURES, *self.crosses]:
            counts = Counter(feature_values(table, feat).tolist())
            kept = sorted((v for v, n in counts.items() if n >= self.min_count), key=lambda v: (-counts[v], v))
            self.vocab[feature_name(feat)] = {v: i + 1 for i, v in enumerate(kept)}
        raw = self._raw_dense(table)
        self.mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    @staticmethod
    def _raw_dense(table: AdultTable) -> np.ndarray:
        cols = []
        for c in CONTINUOUS:
            x = table.columns[c].astype(np.float64)
            cols.append(np.log1p(np.maximum(x, 0.0)) if c in LOG_COLUMNS else x)
        return np.stack(cols, axis=1)

    def codes(self, table: AdultTable, feature: str | tuple[str, ...]) -> np.ndarray:
        """Codes (int64, 0 = out of vocabulary) of one feature for every row."""
        voc = self.vocab[feature_name(feature)]
        return np.fromiter((voc.get(v, 0) for v in feature_values(table, feature)), dtype=np.int64,
                           count=len(table))

    def transform(self, table: AdultTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(label float32 (n, 1), dense float32 (n, 6), wide keys int64 (n, wide nnz) local to the wide slot,
        deep keys int64 (n, 9) local to their slots)."""
        if not self.vocab:
            raise ValueError("AdultEncoder.transform(): call fit() on the training table first")
        dense = ((self._raw_dense(table) - self.mean) / self.std).astype(np.float32)
        wide, shift = [], 0
        for feat in self.wide_features:
            wide.append(self.codes(table, feat) + shift)
            shift += self.size(feat)
        deep = [self.codes(table, feat) for feat in self.deep_features]
        return table.label.reshape(-1, 1), dense, np.stack(wide, axis=1), np.stack(deep, axis=1)


# ------------------------------------------------------------------------------------------ writing
@dataclass
class AdultConversion:
    """What :func:`convert_adult` wrote and how a model reads it."""

    format: str
    out_dir: str
    sources: dict[str, str]  # "train" / "test" -> file list
    num_samples: dict[str, int]
    positive_rate: dict[str, float]
    dense_names: list[str]
    wide_features: list[str]  # names of the wide slot's features, in key order
    deep_slots: list[str]
    slot_size_array: list[int]  # [wide slot, deep slots...]
    i64_keys: bool

    @property
    def dense_dim(self) -> int:
        return len(self.dense_names)

    @property
    def wide_nnz(self) -> int:
        """Keys per sample in the wide slot."""
        return len(self.wide_features)

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct global keys: the largest key + 1."""
        return int(sum(self.slot_size_array))

    def sparse_params(self) -> list[tuple[str, int, bool, int]]:
        """``DataReaderSparseParam`` arguments (name, nnz per slot, fixed length, slot count) of the wide and
        the deep input, in sample order."""
        return [("wide", self.wide_nnz, True, 1), ("deep", 1, True, len(self.deep_slots))]


def _write_norm(path: str, label: np.ndarray, dense: np.ndarray, keys: np.ndarray, nnz: np.ndarray,
                checksum: bool, i64: bool) -> None:
    with NormWriter(path, 1, dense.shape[1], nnz.shape[1], checksum) as w:
        w.write(np.concatenate([label, dense], axis=1), nnz, keys.reshape(-1).astype(np.int64 if i64 else np.uint32))


def convert_adult(train_csv: str | os.PathLike[str], test_csv: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], format: str = "Norm", *,
                  crosses: Sequence[Sequence[str]] = DEFAULT_CROSSES, min_count: int = 2,
                  check_type: str = "Sum", samples_per_file: int = 0, i64_keys: bool = False) -> AdultConversion:
    """Encode the UCI Adult training and test files (see the module docstring) as ``format`` ("Norm" or
    "Parquet") under ``out_dir``. ``samples_per_file`` splits each split into files of that many samples
    (0: one file per split). Norm files use ``check_type`` ("Sum" or "Non") and 32-bit keys unless
    ``i64_keys``; Parquet keys are always int64."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: must be one of {FORMATS}")
    checksum = check_type_name(check_type) == "Sum"
    if isinstance(samples_per_file, bool) or not isinstance(samples_per_file, int) or samples_per_file < 0:
        raise ValueError(f"samples_per_file={samples_per_file!r}: must be an integer >= 0 (0: one file per split)")
    enc = AdultEncoder(tuple(tuple(c) for c in crosses), min_count)
    train = read_adult(train_csv)
    enc.fit(train)
    tables = {"train": train, "test": read_adult(test_csv)}
    out_dir = os.fspath(out_dir)
    sizes = enc.slot_size_array
    deep_offsets = np.cumsum(sizes)[:-1]  # global shift of each deep slot
    deep_names = [feature_name(f) for f in enc.deep_features]
    sources, counts, rates = {}, {}, {}
    for split, table in tables.items():
        label, dense, wide, deep = enc.transform(table)
        folder = os.path.join(out_dir, split)
        os.makedirs(folder, exist_ok=True)
        n = len(table)
        step = samples_per_file or n
        names = []
        for k, a in enumerate(range(0, n, step)):
            rows = slice(a, min(n, a + step))
            if format == "Norm":
                name = os.path.join(folder, f"adult_{k}.data")
                keys = np.concatenate([wide[rows], deep[rows] + deep_offsets], axis=1)
                m = keys.shape[0]
                nnz = np.concatenate([np.full((m, 1), wide.shape[1]), np.ones((m, deep.shape[1]))], axis=1)
                _write_norm(name, label[rows], dense[rows], keys, nnz.astype(np.int32), checksum, i64_keys)
            else:
                name = os.path.join(folder, f"adult_{k}.parquet")
                m = label[rows].shape[0]
                cols: list[object] = [label[rows, 0]] + [dense[rows, j] for j in range(dense.shape[1])]
                cols.append((np.arange(m + 1) * wide.shape[1], wide[rows].reshape(-1)))
                cols += [deep[rows, j] for j in range(deep.shape[1])]
                write_parquet(name, ["label", *CONTINUOUS, "wide", *deep_names], cols)
            names.append(name)
        if format == "Parquet":
            write_parquet_metadata(folder, [(p, min(step, n - i * step)) for i, p in enumerate(names)], ["label"],
                                   list(CONTINUOUS), ["wide", *deep_names])
        lst = os.path.join(folder, "file_list.txt")
        write_file_list(lst, names)
        sources[split], counts[split] = lst, n
        rates[split] = float(label.mean())
    return AdultConversion(format, out_dir, sources, counts, rates, list(CONTINUOUS),
                           [feature_name(f) for f in enc.wide_features], deep_names, sizes,
                           i64_keys or format == "Parquet")


def adult_files(data_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """(``adult.data``, ``adult.test``) paths under ``data_dir``; FileNotFoundError naming what is missing."""
    d = os.fspath(data_dir)
    paths = (os.path.join(d, "adult.data"), os.path.join(d, "adult.test"))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"UCI Adult files not found: {', '.join(missing)}")
    return paths


__all__ = [
    "DEFAULT_CROSSES",
    "AdultConversion",
    "AdultEncoder",
    "AdultTable",
    "adult_files",
    "age_bucket",
    "convert_adult",
    "read_adult",
]
