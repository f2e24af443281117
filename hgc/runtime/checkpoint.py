"""Snapshot files in HugeCTR's layouts (facts §5.1–§5.4), written atomically and read back with size checks.

* ``{prefix}_dense_{iter}.model``: the fp32 dense weights, concatenated in layer order, no header.
* ``{prefix}_opt_dense_{iter}.model``: each dense optimizer state kind (N fp32 values, N = dense weight count)
  in order; kind k starts at byte k·align256(4N), the gap is zero padding. SGD: an empty file.
* ``{prefix}_dense_{iter}.model.ntp.json``: ``{"layers":[{"type":"BatchNorm","mean":[…],"var":[…]}, …]}``.
* ``{prefix}{i}_sparse_{iter}.model/``: a folder with ``key`` (int64), ``emb_vector`` (float32, vec per key)
  and, for localized embeddings, ``slot_id`` (uint64).
* ``{prefix}{i}_opt_sparse_{iter}.model``: each sparse state kind's whole preallocated buffer, in order.

All numbers are little-endian. A write goes to a hidden temporary next to the target and is renamed over it
only once complete, so an interrupted save leaves the previous file or folder as it was. Inside
``all_or_nothing()`` the renames wait until every file of the block is written: a snapshot is replaced
whole or not at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from hgc.errors import DataError

DENSE_OPT_ALIGN = 256
KEY_FILE, VECTOR_FILE, SLOT_FILE = "key", "emb_vector", "slot_id"


# -- names ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotNames:
    """Every file name of one snapshot (no separator between the prefix and an embedding's index)."""

    dense: str
    dense_opt: str
    ntp: str
    sparse: tuple[str, ...]
    sparse_opt: tuple[str, ...]


def snapshot_names(prefix: str, iteration: int, n_embeddings: int) -> SnapshotNames:
    """Names of the files ``save_params_to_files(prefix, iteration)`` writes for n embeddings."""
    dense = f"{prefix}_dense_{iteration}.model"
    return SnapshotNames(
        dense=dense,
        dense_opt=f"{prefix}_opt_dense_{iteration}.model",
        ntp=f"{dense}.ntp.json",
        sparse=tuple(f"{prefix}{i}_sparse_{iteration}.model" for i in range(n_embeddings)),
        sparse_opt=tuple(f"{prefix}{i}_opt_sparse_{iteration}.model" for i in range(n_embeddings)),
    )


# -- atomic writing -----------------------------------------------------------------------------------
def _temp_name(path: str, tag: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(head, f".{tail}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def _write_array(f: BinaryIO, arr: np.ndarray, dtype: str) -> None:
    """Append the raw bytes of arr converted to dtype (e.g. '<f4')."""
    f.write(np.ascontiguousarray(arr, dtype=np.dtype(dtype)).reshape(-1).data)


def _write_new_file(path: str, write: Callable[[BinaryIO], None]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


_local = threading.local()  # .blocks: per open all_or_nothing() block, (commit, discard) of each file


def _blocks() -> list[list[tuple[Callable[[], None], Callable[[], None]]]]:
    return _local.__dict__.setdefault("blocks", [])


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Files written in the block (by this thread) are put in place together when it ends, and none of them
    if it fails."""
    block: list[tuple[Callable[[], None], Callable[[], None]]] = []
    _blocks().append(block)
    try:
        yield
    except BaseException:
        for _, discard in block:
            discard()
        raise
    finally:
        _blocks().pop()
    for commit, _ in block:
        commit()


def _finish(commit: Callable[[], None], discard: Callable[[], None]) -> None:
    blocks = _blocks()
    if blocks:
        blocks[-1].append((commit, discard))
    else:
        commit()


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` with the bytes ``write(f)`` produces, replacing any old file only on success."""
    tmp = _temp_name(path, "tmp")
    try:
        _write_new_file(tmp, write)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _finish(lambda: os.replace(tmp, path), lambda: os.unlink(tmp))


def _swap_dir(tmp: str, path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        old = _temp_name(path, "old")
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)


def atomic_write_dir(path: str, files: dict[str, Callable[[BinaryIO], None]]) -> None:
    """Create folder ``path`` holding ``files``; an existing folder is swapped out once all are written."""
    tmp = _temp_name(path, "tmp")
    os.mkdir(tmp)
    try:
        for name, write in files.items():
            _write_new_file(os.path.join(tmp, name), write)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _finish(lambda: _swap_dir(tmp, path), lambda: shutil.rmtree(tmp, ignore_errors=True))


def _file_size(path: str) -> int:
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    return os.path.getsize(path)


def _read(path: str, dtype: str, count: int, offset: int = 0) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.dtype(dtype), count=count, offset=offset)
    return raw.astype(raw.dtype.newbyteorder("="), copy=False)


def _sizes(shapes: Sequence[Sequence[int]]) -> list[int]:
    return [int(np.prod(s, dtype=np.int64)) for s in shapes]


# -- dense model --------------------------------------------------------------------------------------
def write_dense_model(path: str, weights: Sequence[np.ndarray]) -> None:
    """The fp32 dense weights, in the given (layer) order, as one headerless file."""
    def write(f: BinaryIO) -> None:
        for w in weights:
            _write_array(f, w, "<f4")
    atomic_write(path, write)


def read_dense_model(path: str, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The dense weights of the given shapes (float32), checking that the file holds exactly that many."""
    sizes = _sizes(shapes)
    need, have = 4 * sum(sizes), _file_size(path)
    if have != need:
        raise DataError(path, f"dense model file holds {have} bytes, but the network's {sum(sizes)} dense "
                              f"weights take {need} bytes (fp32)")
    flat = _read(path, "<f4", sum(sizes))
    bounds = np.cumsum([0, *sizes])
    return [flat[a:b].reshape(tuple(s)) for a, b, s in zip(bounds[:-1], bounds[1:], shapes)]


# -- dense optimizer states ---------------------------------------------------------------------------
def dense_opt_stride(n_values: int) -> int:
    """Bytes from one state kind's start to the next: 4N rounded up to a multiple of 256."""
    return -(-4 * n_values // DENSE_OPT_ALIGN) * DENSE_OPT_ALIGN


def dense_opt_size(n_values: int, n_kinds: int) -> int:
    """Size of the dense optimizer file: padding between kinds, none after the last."""
    return 0 if n_kinds == 0 else (n_kinds - 1) * dense_opt_stride(n_values) + 4 * n_values


def write_dense_opt(path: str, states: Sequence[Sequence[np.ndarray]]) -> None:
    """One list of per-weight arrays per state kind (Adam: [m-list, v-list]); SGD ([]) gives an empty file."""
    counts = [sum(int(np.size(a)) for a in kind) for kind in states]
    if len(set(counts)) > 1:
        raise ValueError(f"{path}: every optimizer state kind must cover the same weights, got value counts "
                         f"{counts}")
    n = counts[0] if counts else 0
    gap = bytes(dense_opt_stride(n) - 4 * n)

    def write(f: BinaryIO) -> None:
        for k, kind in enumerate(states):
            if k:
                f.write(gap)
            for a in kind:
                _write_array(f, a, "<f4")
    atomic_write(path, write)


def read_dense_opt(path: str, n_kinds: int, shapes: Sequence[Sequence[int]]) -> list[list[np.ndarray]]:
    """The state kinds of a dense optimizer file, each split into arrays of the weight shapes.

    Accepts the file with or without padding after the last kind.
    """
    sizes = _sizes(shapes)
    n, have = sum(sizes), _file_size(path)
    exact = dense_opt_size(n, n_kinds)
    padded = n_kinds * dense_opt_stride(n)
    if have not in (exact, padded):
        raise DataError(path, f"dense optimizer file holds {have} bytes, but {n_kinds} state kind(s) of {n} "
                              f"fp32 values with 256-byte alignment take {exact} bytes")
    bounds = np.cumsum([0, *sizes])
    out = []
    for k in range(n_kinds):
        flat = _read(path, "<f4", n, offset=k * dense_opt_stride(n))
        out.append([flat[a:b].reshape(tuple(s)) for a, b, s in zip(bounds[:-1], bounds[1:], shapes)])
    return out


# -- non-trainable parameters (BatchNorm running statistics) -----------------------------------------
def write_ntp(path: str, stats: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """The running (mean, var) of every BatchNorm, in layer order."""
    layers = [{"type": "BatchNorm",
               "mean": [float(x) for x in np.asarray(mean, np.float32).reshape(-1)],
               "var": [float(x) for x in np.asarray(var, np.float32).reshape(-1)]} for mean, var in stats]
    text = json.dumps({"layers": layers}, separators=(",", ":")).encode()
    atomic_write(path, lambda f: f.write(text))


def read_ntp(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mean, var) float32 per BatchNorm entry of a ``.ntp.json`` file."""
    _file_size(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise DataError(path, 'expected an object with a "layers" list')
    out = []
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or "mean" not in entry or "var" not in entry:
            raise DataError(path, f'layers[{i}] needs "mean" and "var" lists')
        mean, var = np.asarray(entry["mean"], np.float32), np.asarray(entry["var"], np.float32)
        if mean.ndim != 1 or mean.shape != var.shape:
            raise DataError(path, f"layers[{i}]: mean has {mean.size} values but var has {var.size}")
        out.append((mean, var))
    return out


# -- sparse model folder ------------------------------------------------------------------------------
def write_sparse_model(path: str, keys: np.ndarray, vectors: np.ndarray,
                       slot_ids: np.ndarray | None = None) -> None:
    """Folder with ``key`` (int64), ``emb_vector`` (float32) and, given slot_ids, ``slot_id`` (uint64)."""
    keys = np.asarray(keys).reshape(-1)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0]:
        raise ValueError(f"{path}: the rows of keys ({keys.shape[0]}) and embeddings {vectors.shape} are not "
                         f"consistent")
    files: dict[str, Callable[[BinaryIO], None]] = {
        KEY_FILE: lambda f: _write_array(f, keys.astype(np.int64), "<i8"),
        VECTOR_FILE: lambda f: _write_array(f, vectors, "<f4"),
    }
    if slot_ids is not None:
        slots = np.asarray(slot_ids).reshape(-1)
        if slots.shape[0] != keys.shape[0]:
            raise ValueError(f"{path}: the rows of keys ({keys.shape[0]}) and slot ids ({slots.shape[0]}) "
                             f"are not consistent")
        files[SLOT_FILE] = lambda f: _write_array(f, slots.astype(np.uint64), "<u8")
    atomic_write_dir(path, files)


def read_sparse_model(path: str, vec_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(keys int64, vectors float32 (k, vec_size), slot ids uint64 or None when the folder has no slot_id)."""
    if not os.path.isdir(path):
        raise DataError(path, "sparse model folder not found")
    key_path, vec_path, slot_path = (os.path.join(path, n) for n in (KEY_FILE, VECTOR_FILE, SLOT_FILE))
    key_bytes, vec_bytes = _file_size(key_path), _file_size(vec_path)
    if key_bytes % 8:
        raise DataError(key_path, f"holds {key_bytes} bytes, not a whole number of int64 keys")
    n = key_bytes // 8
    if vec_bytes != 4 * vec_size * n:
        raise DataError(vec_path, f"the rows of keys and embeddings are not consistent: {n} keys need "
                                  f"{4 * vec_size * n} bytes of float32 vectors of size {vec_size}, "
                                  f"the file holds {vec_bytes}")
    keys = _read(key_path, "<i8", n)
    vectors = _read(vec_path, "<f4", n * vec_size).reshape(n, vec_size)
    slots = None
    if os.path.exists(slot_path):
        slot_bytes = _file_size(slot_path)
        if slot_bytes != 8 * n:
            raise DataError(slot_path, f"the rows of keys and slot ids are not consistent: {n} keys need "
                                       f"{8 * n} bytes of uint64 slot ids, the file holds {slot_bytes}")
        slots = _read(slot_path, "<u8", n)
    return keys, vectors, slots


# -- sparse optimizer states --------------------------------------------------------------------------
def _state_dtype(dtype: np.dtype | type | str) -> str:
    d = np.dtype(dtype)
    if d == np.float32:
        return "<f4"
    if d == np.float16:
        return "<f2"
    raise ValueError(f"sparse optimizer states are float32 or float16 (mixed precision), got {d}")


def write_sparse_opt(path: str, states: Sequence[np.ndarray]) -> None:
    """Each state kind's whole buffer (capacity × vec, fp32 or fp16), concatenated in kind order."""
    def write(f: BinaryIO) -> None:
        for s in states:
            _write_array(f, s, _state_dtype(s.dtype))
    atomic_write(path, write)


def read_sparse_opt(path: str, n_kinds: int, capacity: int, vec_size: int,
                    dtype: np.dtype | type | str = np.float32) -> list[np.ndarray]:
    """The state buffers (each capacity × vec_size) of a sparse optimizer file."""
    code = _state_dtype(dtype)
    per = capacity * vec_size
    need, have = n_kinds * per * np.dtype(code).itemsize, _file_size(path)
    if have != need:
        raise DataError(path, f"sparse optimizer file holds {have} bytes, but {n_kinds} state kind(s) of "
                              f"{capacity}×{vec_size} {np.dtype(dtype)} values take {need} bytes")
    flat = _read(path, code, n_kinds * per)
    return [flat[k * per:(k + 1) * per].reshape(capacity, vec_size) for k in range(n_kinds)]
