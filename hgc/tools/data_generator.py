"""Synthetic datasets: ``hgc.tools.DataGeneratorParams`` and ``DataGenerator(params).generate()``.

Outputs follow HugeCTR's generator:

* Norm: ``<dir of source>/train/gen_<k>.data`` (and ``<dir of eval_source>/val/gen_<k>.data``) plus the
  file lists ``source``/``eval_source``. Label and dense values are U(0, 1) floats; slot k has exactly
  ``nnz_array[k]`` keys drawn from ``[offset_k, offset_k + slot_size_array[k])`` (keys carry the slot
  offset). As in HugeCTR, a split whose file list already exists is not generated again.
* Parquet: ``.../train/gen_<k>.parquet``, the file lists and ``_metadata.json`` beside the files. Columns
  ``label0…``, then ``C<i>`` for the dense and categorical columns (i counts on from the labels). Keys are
  local to their slot, in ``[0, slot_size_array[k])``; a slot with ``nnz_array[k] > 1`` is a list column
  with 1 + (random mod nnz) keys per row.
* Raw: the single files ``source`` and ``eval_source`` with ``num_samples`` / ``eval_num_samples``
  samples; labels alternate 0, 1, 0, …; dense feature j is j; keys are local to their slot
  (``nnz_array[k]`` keys per slot, fixed).

Keys follow ``dist_type``: Uniform, or PowerLaw with P(rank r) proportional to r^-alpha inside each slot
(alpha = 0.9 Long, 1.1 Medium, 1.3 Short, or ``alpha`` for Specific); low ids are the frequent ones.

hgc extensions (keyword-only):

* ``learnable=True`` draws every label from a fixed random logistic model of the sample's features instead
  of independent noise, so a model trained on the data can reach a real AUC. For label column c the logit is
  ``2 * sum_s mean_k w_c(s, key) / sqrt(num_slot) + 1.5 * sum_j v_cj * z_j / sqrt(dense_dim)``, where
  ``w_c(s, key)`` is a hash of (seed, c, slot, local key) mapped to U(-sqrt 3, sqrt 3), ``v_cj ~ N(0, 1)``
  and ``z_j`` is dense feature j standardised; the label is 1 with probability sigmoid(logit). Raw data
  then gets random dense counts in [0, 50] (ln(x + 1) in the reader) or U(0, 1) floats.
* ``seed``: makes the data (and the learnable model) reproducible; files are identical for any
  ``num_threads``.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from hgc.runtime.data.filelist import write_file_list
from hgc.runtime.data.layout import check_type_name, enum_name, format_name
from hgc.tools.writers import NormWriter, raw_records, write_parquet, write_parquet_metadata

log = logging.getLogger("hgc.tools")

POWER_LAW_ALPHA = {"Long": 0.9, "Medium": 1.1, "Short": 1.3}


def _norm_choice(arg: str, value: Any, choices: tuple[str, ...]) -> str:
    name = enum_name(value)
    for c in choices:
        if name.lower() == c.lower():
            return c
    raise ValueError(f"{arg}={value!r}: must be one of {', '.join(choices)}")


def _int(arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{arg}={value!r}: must be an integer >= {minimum}")
    return int(value)


class DataGeneratorParams:
    """Parameters of a synthetic dataset (see the module docstring for what each format gets)."""

    def __init__(
        self,
        format: Any,
        label_dim: int,
        dense_dim: int,
        num_slot: int,
        i64_input_key: bool,
        source: str,
        eval_source: str,
        slot_size_array: list[int],
        nnz_array: list[int] | None = None,
        check_type: Any = "Sum",
        dist_type: Any = "PowerLaw",
        power_law_type: Any = "Specific",
        alpha: float = 1.2,
        num_files: int = 128,
        eval_num_files: int = 32,
        num_samples_per_file: int = 40960,
        num_samples: int = 5242880,
        eval_num_samples: int = 1310720,
        float_label_dense: bool = False,
        num_threads: int = 1,
        *,
        learnable: bool = False,
        seed: int | None = None,
    ) -> None:
        self.format = format
        self.label_dim = label_dim
        self.dense_dim = dense_dim
        self.num_slot = num_slot
        self.i64_input_key = i64_input_key
        self.source = source
        self.eval_source = eval_source
        self.slot_size_array = list(slot_size_array)
        self.nnz_array = list(nnz_array) if nnz_array else [1] * int(num_slot)
        self.check_type = check_type
        self.dist_type = dist_type
        self.power_law_type = power_law_type
        self.alpha = alpha
        self.num_files = num_files
        self.eval_num_files = eval_num_files
        self.num_samples_per_file = num_samples_per_file
        self.num_samples = num_samples
        self.eval_num_samples = eval_num_samples
        self.float_label_dense = float_label_dense
        self.num_threads = num_threads
        self.learnable = learnable
        self.seed = seed
        self.validate()

    def validate(self) -> None:
        """Check every argument; raise ValueError naming the argument, its value and the rule."""
        fmt = format_name(self.format)
        _int("label_dim", self.label_dim, 1)
        _int("dense_dim", self.dense_dim, 0)
        _int("num_slot", self.num_slot, 1)
        if not isinstance(self.i64_input_key, (bool, np.bool_)):
            raise ValueError(f"i64_input_key={self.i64_input_key!r}: must be True or False")
        if fmt == "Raw" and self.i64_input_key:
            raise ValueError("i64_input_key=True: the Raw format stores only 32-bit keys")
        for arg in ("source", "eval_source"):
            v = getattr(self, arg)
            if not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
                raise ValueError(f"{arg}={v!r}: must be a non-empty path")
        if len(self.slot_size_array) != self.num_slot:
            raise ValueError(
                f"slot_size_array has {len(self.slot_size_array)} entries; it needs num_slot={self.num_slot}"
            )
        for k, s in enumerate(self.slot_size_array):
            _int(f"slot_size_array[{k}]", s, 1)
        if len(self.nnz_array) != self.num_slot:
            raise ValueError(
                f"nnz_array has {len(self.nnz_array)} entries; it needs num_slot={self.num_slot}"
            )
        for k, s in enumerate(self.nnz_array):
            _int(f"nnz_array[{k}]", s, 1)
        check_type_name(self.check_type)
        dist = _norm_choice("dist_type", self.dist_type, ("PowerLaw", "Uniform"))
        plt = _norm_choice("power_law_type", self.power_law_type, ("Long", "Medium", "Short", "Specific"))
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float, np.floating)):
            raise ValueError(f"alpha={self.alpha!r}: must be a number")
        if dist == "PowerLaw" and plt == "Specific" and (self.alpha <= 0 or abs(self.alpha - 1.0) < 1e-6):
            raise ValueError(f"alpha={self.alpha!r}: must be greater than 0 and not equal to 1.0")
        _int("num_files", self.num_files, 1)
        _int("eval_num_files", self.eval_num_files, 1)
        _int("num_samples_per_file", self.num_samples_per_file, 1)
        _int("num_samples", self.num_samples, 1)
        _int("eval_num_samples", self.eval_num_samples, 1)
        _int("num_threads", self.num_threads, 1)
        if self.seed is not None:
            _int("seed", self.seed, 0)

    @property
    def effective_alpha(self) -> float:
        plt = _norm_choice("power_law_type", self.power_law_type, ("Long", "Medium", "Short", "Specific"))
        return float(POWER_LAW_ALPHA.get(plt, self.alpha))

    def __repr__(self) -> str:
        return (
            f"DataGeneratorParams(format={enum_name(self.format)}, label_dim={self.label_dim}, "
            f"dense_dim={self.dense_dim}, num_slot={self.num_slot}, source={self.source!r})"
        )


# ---------------------------------------------------------------------------------------------- sampling
def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_keys(rng: np.random.Generator, size: int, count: int, power_law: bool, alpha: float) -> np.ndarray:
    """``count`` keys in [0, size): uniform, or P(key = r - 1) proportional to r^-alpha."""
    if not power_law:
        return rng.integers(0, size, count, dtype=np.int64)
    u = rng.random(count)
    e = 1.0 - alpha
    top = float(size + 1) ** e - 1.0
    y = (1.0 + u * top) ** (1.0 / e)
    return np.minimum(np.floor(y).astype(np.int64) - 1, size - 1).clip(0)


class LabelModel:
    """The fixed random logistic model behind ``learnable=True`` (see the module docstring)."""

    def __init__(self, seed: int, label_dim: int, dense_dim: int, num_slot: int) -> None:
        self.seed = int(seed)
        self.num_slot = num_slot
        self.dense_dim = dense_dim
        self.v = np.random.default_rng([self.seed, 7]).standard_normal((label_dim, dense_dim))
        self.label_dim = label_dim

    def key_weight(self, c: int, slot: int, keys: np.ndarray) -> np.ndarray:
        salt = np.uint64((self.seed * 1000003 + c * 7919 + slot * 104729) & 0xFFFFFFFFFFFFFFFF)
        h = _splitmix64(keys.astype(np.uint64) ^ _splitmix64(np.array([salt]))[0])
        u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return (u * 2.0 - 1.0) * math.sqrt(3.0)

    def labels(
        self, rng: np.random.Generator, z: np.ndarray, slot_keys: list[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """0/1 labels (n, label_dim). ``z``: standardised dense (n, dense_dim); ``slot_keys[s]``: (row of each
        key, local key) for slot s."""
        n = z.shape[0]
        out = np.empty((n, self.label_dim), dtype=np.float32)
        for c in range(self.label_dim):
            logit = np.zeros(n)
            for s, (rows, keys) in enumerate(slot_keys):
                w = self.key_weight(c, s, keys)
                tot = np.bincount(rows, weights=w, minlength=n)
                cnt = np.bincount(rows, minlength=n)
                logit += tot / np.maximum(cnt, 1)
            logit *= 2.0 / math.sqrt(max(self.num_slot, 1))
            if self.dense_dim:
                logit += 1.5 * (z @ self.v[c]) / math.sqrt(self.dense_dim)
            p = 1.0 / (1.0 + np.exp(-logit))
            out[:, c] = (rng.random(n) < p).astype(np.float32)
        return out


# ---------------------------------------------------------------------------------------------- generator
class DataGenerator:
    """Writes the dataset described by a :class:`DataGeneratorParams`."""

    def __init__(self, data_generator_params: DataGeneratorParams) -> None:
        if not isinstance(data_generator_params, DataGeneratorParams):
            raise TypeError(
                f"data_generator_params: expected DataGeneratorParams, got "
                f"{type(data_generator_params).__name__}"
            )
        data_generator_params.validate()
        self.params = data_generator_params
        self.written: list[str] = []

    def generate(self) -> None:
        """Generate the training and evaluation data."""
        p = self.params
        p.validate()
        fmt = format_name(p.format)
        seed = p.seed if p.seed is not None else int(np.random.SeedSequence().entropy % (1 << 63))
        self._model = LabelModel(seed, p.label_dim, p.dense_dim, p.num_slot) if p.learnable else None
        self._power = _norm_choice("dist_type", p.dist_type, ("PowerLaw", "Uniform")) == "PowerLaw"
        self._alpha = p.effective_alpha
        self._seed = seed
        if fmt == "Raw":
            self._raw(os.fspath(p.source), p.num_samples, 0)
            self._raw(os.fspath(p.eval_source), p.eval_num_samples, 1)
        else:
            for split, (lst, nfiles, sub) in enumerate(
                (
                    (os.fspath(p.source), p.num_files, "train"),
                    (os.fspath(p.eval_source), p.eval_num_files, "val"),
                )
            ):
                self._files(fmt, lst, nfiles, sub, split)

    # -------------------------------------------------------------- features
    def _rng(self, split: int, k: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, split, k])

    def _slot_keys(
        self, rng: np.random.Generator, n: int, s: int, variable: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(nnz per row, local keys) for slot s."""
        p = self.params
        k = int(p.nnz_array[s])
        nnz = (1 + rng.integers(0, k, n)) if (variable and k > 1) else np.full(n, k, dtype=np.int64)
        keys = sample_keys(rng, int(p.slot_size_array[s]), int(nnz.sum()), self._power, self._alpha)
        return nnz.astype(np.int64), keys

    def _labels(
        self, rng: np.random.Generator, z: np.ndarray, slots: list[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray | None:
        if self._model is None:
            return None
        n = z.shape[0]
        pairs = [(np.repeat(np.arange(n), nnz), keys) for nnz, keys in slots]
        return self._model.labels(rng, z, pairs)

    # -------------------------------------------------------------- Norm / Parquet
    def _files(self, fmt: str, list_path: str, nfiles: int, sub: str, split: int) -> None:
        p = self.params
        if fmt == "Norm" and os.path.exists(list_path):
            log.warning("%s exists; remove it to generate a new dataset", list_path)
            return
        folder = os.path.join(os.path.dirname(list_path) or ".", sub)
        os.makedirs(folder, exist_ok=True)
        ext = ".data" if fmt == "Norm" else ".parquet"
        names = [f"{folder}/gen_{k}{ext}" for k in range(nfiles)]
        work = self._norm_file if fmt == "Norm" else self._parquet_file
        with ThreadPoolExecutor(max_workers=p.num_threads) as ex:
            list(ex.map(lambda k: work(names[k], split, k), range(nfiles)))
        parent = os.path.dirname(list_path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        write_file_list(list_path, names)
        if fmt == "Parquet":
            L, D = p.label_dim, p.dense_dim
            write_parquet_metadata(
                folder,
                [(nm, p.num_samples_per_file) for nm in names],
                [f"label{i}" for i in range(L)],
                [f"C{i}" for i in range(L, L + D)],
                [f"C{i}" for i in range(L + D, L + D + p.num_slot)],
            )
        self.written.extend(names + [list_path])

    def _norm_file(self, path: str, split: int, k: int) -> None:
        p = self.params
        rng = self._rng(split, k)
        n = p.num_samples_per_file
        ld = rng.random((n, p.label_dim + p.dense_dim), dtype=np.float32)
        slots = [self._slot_keys(rng, n, s, variable=False) for s in range(p.num_slot)]
        labels = self._labels(rng, (ld[:, p.label_dim :].astype(np.float64) - 0.5) * math.sqrt(12.0), slots)
        if labels is not None:
            ld[:, : p.label_dim] = labels
        offsets = np.concatenate([[0], np.cumsum(np.asarray(p.slot_size_array, dtype=np.int64))[:-1]])
        nnz = np.stack([s[0] for s in slots], axis=1)
        kdt = np.int64 if p.i64_input_key else np.uint32
        per_slot = [(keys + offsets[s]).reshape(n, -1) for s, (_, keys) in enumerate(slots)]
        keys = np.concatenate(per_slot, axis=1).reshape(-1).astype(kdt)
        with NormWriter(
            path, p.label_dim, p.dense_dim, p.num_slot, check_type_name(p.check_type) == "Sum"
        ) as w:
            w.write(ld, nnz, keys)

    def _parquet_file(self, path: str, split: int, k: int) -> None:
        p = self.params
        rng = self._rng(split, k)
        n = p.num_samples_per_file
        L, D = p.label_dim, p.dense_dim
        label = rng.random((n, L), dtype=np.float32)
        dense = rng.random((n, D), dtype=np.float32)
        slots = [self._slot_keys(rng, n, s, variable=True) for s in range(p.num_slot)]
        labels = self._labels(rng, (dense.astype(np.float64) - 0.5) * math.sqrt(12.0), slots)
        if labels is not None:
            label = labels
        names = [f"label{i}" for i in range(L)] + [f"C{i}" for i in range(L, L + D + p.num_slot)]
        cols: list[object] = [label[:, i] for i in range(L)] + [dense[:, j] for j in range(D)]
        for s, (nnz, keys) in enumerate(slots):
            if p.nnz_array[s] == 1:
                cols.append(keys)
            else:
                cols.append((np.concatenate([[0], np.cumsum(nnz)]), keys))
        write_parquet(path, names, cols)

    # -------------------------------------------------------------- Raw
    def _raw(self, path: str, n: int, split: int) -> None:
        p = self.params
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        L, D = p.label_dim, p.dense_dim
        chunk = 1 << 18
        with open(path, "wb") as f:
            for c, a in enumerate(range(0, n, chunk)):
                m = min(chunk, n - a)
                rng = self._rng(split, c)
                slots = [self._slot_keys(rng, m, s, variable=False) for s in range(p.num_slot)]
                if self._model is None:
                    label = np.broadcast_to(((a + np.arange(m)) % 2)[:, None], (m, L))
                    dense = np.broadcast_to(np.arange(D)[None, :], (m, D))
                else:
                    if p.float_label_dense:
                        dense = rng.random((m, D), dtype=np.float32)
                        z = (dense.astype(np.float64) - 0.5) * math.sqrt(12.0)
                    else:
                        dense = rng.integers(0, 51, (m, D))
                        lx = np.log(dense + 1.0)
                        z = (lx - 3.0) / 0.8
                    label = self._labels(rng, z, slots)
                keys = np.concatenate([keys.reshape(m, -1) for _, keys in slots], axis=1)
                f.write(
                    raw_records(
                        np.asarray(label), np.asarray(dense), keys, bool(p.float_label_dense)
                    ).tobytes()
                )
        self.written.append(path)
