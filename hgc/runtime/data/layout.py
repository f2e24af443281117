"""What a reader must produce: the label/dense/sparse layout of the model's ``Input``, and decoded blocks.

A :class:`Layout` is built once per reader from explicit arguments (the runtime bridges ``Input`` and
``DataReaderParams`` to it). A :class:`Block` is a run of consecutive decoded samples of one file; the
batch assembler cuts blocks into :class:`~hgc.runtime.data.batch.Batch` objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KEY_DTYPES = {"uint32": np.dtype(np.uint32), "int64": np.dtype(np.int64)}
_KEY_ALIASES = {
    "uint32": "uint32",
    "i32": "uint32",
    "u32": "uint32",
    "int64": "int64",
    "i64": "int64",
    "longlong": "int64",
    "long long": "int64",
}
FORMATS = ("Norm", "Raw", "Parquet")
CHECK_TYPES = ("Sum", "Non")


def enum_name(value: Any) -> str:
    """Name of an hgc/HugeCTR enum member, or the string itself."""
    return str(getattr(value, "name", value))


def format_name(value: Any) -> str:
    """Normalise a ``DataReaderType_t`` member or name to "Norm" | "Raw" | "Parquet" (RawAsync reads as Raw)."""
    name = enum_name(value)
    for known in FORMATS:
        if name.lower() == known.lower():
            return known
    if name.lower() == "rawasync":
        return "Raw"  # the asynchronous Raw reader reads the same fixed-stride files; hgc's Raw reader is threaded
    raise ValueError(f"data_reader_type={value!r}: must be one of {', '.join(FORMATS)}")


def check_type_name(value: Any) -> str:
    """Normalise a ``Check_t`` member or name to "Sum" | "Non"."""
    name = enum_name(value)
    if name.lower() == "sum":
        return "Sum"
    if name.lower() in ("non", "none"):
        return "Non"
    raise ValueError(f"check_type={value!r}: must be Check_t.Sum or Check_t.Non")


def key_dtype_of(value: Any) -> np.dtype:
    """Normalise a key type ("uint32"/"int64", I32/I64, a numpy dtype, or i64_input_key as bool)."""
    if isinstance(value, bool):
        return KEY_DTYPES["int64" if value else "uint32"]
    if isinstance(value, (np.dtype, type)):
        dt = np.dtype(value)
        if dt in (KEY_DTYPES["uint32"], KEY_DTYPES["int64"]):
            return dt
        raise ValueError(f"key_dtype={value!r}: must be uint32 (I32) or int64 (I64)")
    alias = _KEY_ALIASES.get(enum_name(value).lower())
    if alias is None:
        raise ValueError(f"key_dtype={value!r}: must be uint32 (I32) or int64 (I64)")
    return KEY_DTYPES[alias]


@dataclass(frozen=True)
class SparseSpec:
    """One sparse input: ``slot_num`` slots, at most ``nnz_per_slot[s]`` keys in slot s."""

    slot_num: int
    nnz_per_slot: tuple[int, ...]
    is_fixed_length: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.slot_num, (int, np.integer)) or self.slot_num < 1:
            raise ValueError(f"slot_num={self.slot_num!r}: must be an integer >= 1")
        if len(self.nnz_per_slot) != self.slot_num:
            raise ValueError(f"nnz_per_slot={self.nnz_per_slot!r}: needs slot_num={self.slot_num} entries")
        if any((not isinstance(k, (int, np.integer))) or k < 1 for k in self.nnz_per_slot):
            raise ValueError(f"nnz_per_slot={self.nnz_per_slot!r}: every entry must be an integer >= 1")

    @classmethod
    def coerce(cls, spec: Any) -> SparseSpec:
        """Accept a SparseSpec, a ``(slot_num, nnz_per_slot, is_fixed_length)`` tuple, a mapping, or any
        object with ``slot_num``/``nnz_per_slot``/``is_fixed_length`` attributes (DataReaderSparseParam)."""
        if isinstance(spec, SparseSpec):
            return spec
        if isinstance(spec, Mapping):
            get = spec.get
            slot_num, nnz, fixed = get("slot_num"), get("nnz_per_slot", 1), get("is_fixed_length", False)
            name = get("name", get("top_name", ""))
        elif isinstance(spec, (tuple, list)):
            if not 2 <= len(spec) <= 3:
                raise ValueError(
                    f"sparse input {spec!r}: expected (slot_num, nnz_per_slot[, is_fixed_length])"
                )
            slot_num, nnz = spec[0], spec[1]
            fixed = spec[2] if len(spec) == 3 else False
            name = ""
        elif hasattr(spec, "slot_num"):
            slot_num = spec.slot_num
            nnz = getattr(spec, "nnz_per_slot", 1)
            fixed = getattr(spec, "is_fixed_length", False)
            name = getattr(spec, "name", getattr(spec, "top_name", ""))
        else:
            raise TypeError(
                f"sparse input {spec!r}: not a SparseSpec, tuple, mapping or DataReaderSparseParam"
            )
        if slot_num is None:
            raise ValueError(f"sparse input {spec!r}: slot_num is required")
        slot_num = int(slot_num)
        if isinstance(nnz, (int, np.integer)):
            nnz_t = (int(nnz),) * slot_num
        else:
            nnz_t = tuple(int(k) for k in nnz)
        return cls(slot_num, nnz_t, bool(fixed), str(name or ""))


@dataclass(frozen=True)
class Layout:
    """Everything a decoder needs to know about the model's input, with derived per-slot arrays."""

    label_dims: tuple[int, ...]
    dense_dim: int
    sparse: tuple[SparseSpec, ...]
    key_dtype: np.dtype = KEY_DTYPES["uint32"]
    slot_size_array: tuple[int, ...] = ()
    # derived (filled in __post_init__)
    max_nnz: np.ndarray = field(init=False, repr=False, compare=False)
    fixed: np.ndarray = field(init=False, repr=False, compare=False)
    input_of_slot: np.ndarray = field(init=False, repr=False, compare=False)
    slot_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            any((not isinstance(d, (int, np.integer))) or d < 0 for d in self.label_dims)
            or not self.label_dims
        ):
            raise ValueError(f"label_dims={self.label_dims!r}: needs one or more integers >= 0")
        if not isinstance(self.dense_dim, (int, np.integer)) or self.dense_dim < 0:
            raise ValueError(f"dense_dim={self.dense_dim!r}: must be an integer >= 0")
        if any((not isinstance(s, (int, np.integer))) or s < 0 for s in self.slot_size_array):
            raise ValueError(f"slot_size_array={self.slot_size_array!r}: entries must be integers >= 0")
        max_nnz = np.array([k for sp in self.sparse for k in sp.nnz_per_slot], dtype=np.int32)
        fixed = np.array(
            [sp.is_fixed_length for sp in self.sparse for _ in range(sp.slot_num)], dtype=np.bool_
        )
        inp = np.array([j for j, sp in enumerate(self.sparse) for _ in range(sp.slot_num)], dtype=np.int32)
        starts, acc = [], 0
        for sp in self.sparse:
            starts.append(acc)
            acc += sp.slot_num
        object.__setattr__(self, "max_nnz", max_nnz)
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "input_of_slot", inp)
        object.__setattr__(self, "slot_starts", tuple(starts))

    @classmethod
    def make(
        cls,
        label_dims: int | Sequence[int] = (1,),
        dense_dim: int = 0,
        sparse: Sequence[Any] = (),
        key_dtype: Any = "uint32",
        slot_size_array: Sequence[int] = (),
    ) -> Layout:
        """Build a layout from loose arguments (int or list label dims, tuples for sparse inputs)."""
        dims = (
            (int(label_dims),)
            if isinstance(label_dims, (int, np.integer))
            else tuple(int(d) for d in label_dims)
        )
        specs = tuple(SparseSpec.coerce(s) for s in sparse)
        return cls(
            dims, int(dense_dim), specs, key_dtype_of(key_dtype), tuple(int(s) for s in slot_size_array)
        )

    @property
    def label_dim(self) -> int:
        return int(sum(self.label_dims))

    @property
    def slot_num(self) -> int:
        return int(self.max_nnz.shape[0])

    @property
    def key_bytes(self) -> int:
        return int(self.key_dtype.itemsize)

    def slots_of(self, j: int) -> range:
        """Global slot indices of sparse input j."""
        start = self.slot_starts[j]
        return range(start, start + self.sparse[j].slot_num)

    def slot_offsets(self) -> np.ndarray:
        """offset[s] = sum of slot_size_array[:s] (int64), or zeros without a slot_size_array."""
        if not self.slot_size_array:
            return np.zeros(self.slot_num, dtype=np.int64)
        sizes = np.asarray(self.slot_size_array, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def effective_slot_sizes(self) -> np.ndarray:
        """Per-slot key range width. A zero entry shares the offset of the next slot, so its keys follow the
        next non-zero slot's range; a trailing zero has no range to check (width -1)."""
        sizes = np.asarray(self.slot_size_array, dtype=np.int64)
        eff = sizes.copy()
        nxt = -1
        for s in range(len(sizes) - 1, -1, -1):
            if sizes[s] > 0:
                nxt = sizes[s]
            else:
                eff[s] = nxt
        return eff

    def key_bounds(self, global_keys: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """[lo, hi) per slot for key validation, or None without a slot_size_array.

        ``global_keys``: keys already carry the slot offset (Norm); otherwise keys are local to the slot
        (Raw, Parquet before the reader adds the offset). Slots without a checkable range get [-2^63, 2^63-1).
        """
        if not self.slot_size_array:
            return None
        eff = self.effective_slot_sizes()
        lo = self.slot_offsets() if global_keys else np.zeros(self.slot_num, dtype=np.int64)
        hi = lo + eff
        unchecked = eff < 0
        lo = np.where(unchecked, np.iinfo(np.int64).min, lo)
        hi = np.where(unchecked, np.iinfo(np.int64).max, hi)
        return lo.astype(np.int64), hi.astype(np.int64)

    def max_record_payload(self) -> int:
        """Largest possible Norm sample payload in bytes (label, dense, every slot at its maximum nnz)."""
        return 4 * (self.label_dim + self.dense_dim) + int(
            np.sum(4 + self.key_bytes * self.max_nnz.astype(np.int64))
        )

    def min_record_payload(self) -> int:
        """Smallest possible Norm sample payload (fixed-length slots at their nnz, others empty)."""
        fixed_keys = int(np.sum(np.where(self.fixed, self.max_nnz, 0).astype(np.int64)))
        return 4 * (self.label_dim + self.dense_dim) + 4 * self.slot_num + self.key_bytes * fixed_keys


@dataclass
class Block:
    """Consecutive decoded samples of one file: label/dense rows and one CSR per sparse input."""

    label: np.ndarray  # float32 (m, label_dim)
    dense: np.ndarray  # float32 (m, dense_dim)
    row_offsets: list[np.ndarray]  # per input: int64 (m*slot_num_j + 1), starting at 0
    keys: list[np.ndarray]  # per input: key_dtype

    @property
    def m(self) -> int:
        return int(self.label.shape[0])
