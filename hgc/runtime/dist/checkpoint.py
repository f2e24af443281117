"""Snapshots on several GPUs and ranks in HugeCTR's files, and loading any snapshot on any GPU count.

Writing follows HugeCTR's multi-GPU layout (facts §5.4): rank 0 writes every file, the other ranks send it
their rows. A sparse model folder lists the keys grouped by GPU (GPUs in global order, each in its row
order); the sparse optimizer file holds, per state kind, every GPU's whole preallocated buffer in the same
GPU order, so row j of GPU g's block belongs to the j-th key of g's group. hgc adds one file to the folder,
``hgc_layout.json``, saying how many keys and preallocated rows each block has; HugeCTR ignores it.

Reading re-shards: keys go to the GPUs that own them under the loading run's placement (any number of GPUs
and ranks, or the single-GPU cpu target), and optimizer states follow their keys through the block layout:
the folder's record, else — for files without one, such as HugeCTR's — the loading run's own layout when the
file has exactly its size and the keys are grouped as it would group them (HugeCTR's own rule); anything
else is refused, since rows could not be matched to keys. Every rank reads the files itself (they must be visible to all ranks, as HugeCTR
also requires for its data). Not carried by the files: LazyGlobal's per-row last-update steps.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from hgc.errors import DataError
from hgc.runtime import checkpoint as ck
from hgc.runtime.dist.parallel import ShardedTableView
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.dist.tables import put_rows_state, rows_state_of, set_states_of_table

LAYOUT_FILE = "hgc_layout.json"
DISTRIBUTED = "DistributedSlotSparseEmbeddingHash"


@dataclass(frozen=True)
class Block:
    keys: int  # keys of this GPU in the folder (consecutive)
    rows: int  # preallocated rows of this GPU in the optimizer file


def _comm(trainer: Any) -> Any:
    return getattr(trainer.executor, "comm", None)


def is_writer(trainer: Any) -> bool:
    """True on the process that writes snapshot files (rank 0; the only process of a one-rank run)."""
    comm = _comm(trainer)
    return comm is None or comm.is_root


def table_snapshot(trainer: Any, name: str) -> tuple[RowsState, list[Block], list[np.ndarray]]:
    """Embedding ``name`` as its files hold it: rows in file order, the blocks, the optimizer state buffers.
    Collective on a multi-GPU run."""
    table, opt = trainer.tables[name], trainer.sparse_opts[name]
    if isinstance(table, ShardedTableView):
        emb = table.emb
        state, keys, rows = emb.file_order(emb.comm.allgather_objs(emb.local_parts()))
        return state, [Block(k, r) for k, r in zip(keys, rows)], emb.state_buffers()
    state = rows_state_of(table, opt)
    return state, [Block(len(state), table.capacity)], [np.asarray(s) for s in opt.states()]


def _layout_json(trainer: Any, name: str, blocks: list[Block]) -> bytes:
    doc = {"format": "hgc sparse layout", "version": 1, "embedding": name,
           "embedding_type": trainer.graph.node(name).op,
           "vvgpu": [list(r) for r in trainer.cfg.vvgpu],
           "blocks": [{"keys": b.keys, "rows": b.rows} for b in blocks]}
    return json.dumps(doc, indent=1).encode()


def _writer(arr: np.ndarray, dtype: str) -> Callable[[BinaryIO], None]:
    return lambda f: f.write(np.ascontiguousarray(arr, np.dtype(dtype)).reshape(-1).tobytes())


def _folder_files(trainer: Any, name: str, state: RowsState, blocks: list[Block]
                  ) -> dict[str, Callable[[BinaryIO], None]]:
    files: dict[str, Callable[[BinaryIO], None]] = {ck.KEY_FILE: _writer(state.keys, "<i8"),
                                                     ck.VECTOR_FILE: _writer(state.vectors, "<f4")}
    if trainer.graph.node(name).op != DISTRIBUTED:
        files[ck.SLOT_FILE] = _writer(state.slot_ids, "<u8")
    layout = _layout_json(trainer, name, blocks)
    files[LAYOUT_FILE] = lambda f: f.write(layout)
    return files


def write_embedding(trainer: Any, name: str, model_dir: str, opt_path: str) -> None:
    """The sparse model folder (key, emb_vector, slot_id for localized types, hgc_layout.json) and the
    sparse optimizer file of embedding ``name``. Collective; rank 0 writes."""
    state, blocks, buffers = table_snapshot(trainer, name)
    if is_writer(trainer):
        ck.atomic_write_dir(model_dir, _folder_files(trainer, name, state, blocks))
        ck.write_sparse_opt(opt_path, buffers)


def save_snapshot(trainer: Any, prefix: str, iteration: int) -> None:
    """Every file of snapshot ``prefix``/``iteration`` (the names of ``save_params_to_files``), all replaced
    together. Collective; rank 0 writes, the others return once the files are in place."""
    names = ck.snapshot_names(prefix, iteration, len(trainer.tables))
    snaps = [table_snapshot(trainer, name) for name in trainer.tables]
    bns = [n for n in trainer.graph.nodes() if n.op == "BatchNorm"]
    if is_writer(trainer):
        with ck.all_or_nothing():
            for i, (name, (state, blocks, buffers)) in enumerate(zip(trainer.tables, snaps)):
                ck.atomic_write_dir(names.sparse[i], _folder_files(trainer, name, state, blocks))
                ck.write_sparse_opt(names.sparse_opt[i], buffers)
            ck.write_dense_model(names.dense, trainer.dense_weights)
            ck.write_dense_opt(names.dense_opt, trainer.dense_opt.states())
            if bns:
                ck.write_ntp(names.ntp, [_bn(trainer, n) for n in bns])
    comm = _comm(trainer)
    if comm is not None:
        comm.barrier()


def _bn(trainer: Any, node: Any) -> tuple[np.ndarray, np.ndarray]:
    st = trainer.bn_stats(node.name)
    if "mean" in st and "var" in st:
        return np.asarray(st["mean"], np.float32), np.asarray(st["var"], np.float32)
    width = trainer.executor.weights[node.name][0].size
    return np.zeros(width, np.float32), np.ones(width, np.float32)


# -- reading -------------------------------------------------------------------------------------------
def read_layout(model_dir: str) -> list[Block] | None:
    """The blocks recorded in a sparse model folder, or None when it has no record."""
    path = os.path.join(model_dir, LAYOUT_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return [Block(int(b["keys"]), int(b["rows"])) for b in doc["blocks"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"not a valid layout record ({e})") from None


def _current_blocks(trainer: Any, name: str, state: RowsState, total_rows: int) -> list[Block] | None:
    """The loading run's own blocks, when a file without a record has exactly their size and its keys are
    grouped as this run would group them (HugeCTR's rule: optimizer states reload into the same layout)."""
    table = trainer.tables[name]
    if total_rows != table.capacity:
        return None
    if not isinstance(table, ShardedTableView):
        return [Block(len(state), total_rows)] if len(state) <= total_rows else None
    caps = table.emb.capacities
    owner = table.emb.owners(state) if len(state) else np.zeros(0, np.int64)
    if (np.diff(owner) < 0).any():
        return None
    counts = np.bincount(owner, minlength=len(caps))
    if (counts > np.asarray(caps)).any():
        return None
    return [Block(int(c), int(r)) for c, r in zip(counts, caps)]


def _state_rows(blocks: list[Block], n_keys: int, path: str) -> np.ndarray:
    """For each key of the folder (in order), its row in the optimizer file."""
    if sum(b.keys for b in blocks) != n_keys:
        raise DataError(path, f"the layout record lists {sum(b.keys for b in blocks)} keys, the sparse model "
                              f"folder has {n_keys}")
    out, key_at, row_at = [], 0, 0
    for b in blocks:
        if b.keys > b.rows:
            raise DataError(path, f"a block of the layout has {b.keys} keys but only {b.rows} rows")
        out.append(np.arange(row_at, row_at + b.keys, dtype=np.int64))
        key_at += b.keys
        row_at += b.rows
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def read_embedding(trainer: Any, name: str, model_dir: str, opt_path: str | None = None) -> RowsState:
    """A sparse model folder (and optionally its optimizer file) as rows: keys, vectors, slot ids and, with
    ``opt_path``, each key's optimizer states."""
    table, opt = trainer.tables[name], trainer.sparse_opts[name]
    vec = table.vec_size
    keys, vectors, slots = ck.read_sparse_model(model_dir, vec)
    state = RowsState(keys.astype(np.int64), vectors, np.zeros(keys.shape[0], np.uint64) if slots is None else slots,
                      [], None)
    if opt_path is None:
        return state
    kinds = len(opt.state_kinds)
    dtype = np.dtype(getattr(opt, "state_dtype", np.float32))
    if kinds == 0:
        return state
    size = os.path.getsize(opt_path) if os.path.isfile(opt_path) else -1
    if size < 0:
        raise DataError(opt_path, "file not found")
    per_row = kinds * vec * dtype.itemsize
    if size % per_row:
        raise DataError(opt_path, f"sparse optimizer file holds {size} bytes, not a whole number of rows of "
                                  f"{kinds} state kind(s) × {vec} {dtype} values")
    total = size // per_row
    blocks = read_layout(model_dir) or _current_blocks(trainer, name, state, total)
    if blocks is None:
        raise DataError(opt_path, f"sparse optimizer file has {total} rows per state kind but this run's table "
                                  f"has {trainer.tables[name].capacity} laid out for its own GPUs, and "
                                  f"{model_dir} has no {LAYOUT_FILE} saying which row belongs to which key; "
                                  f"load it on the GPU layout that wrote it")
    if sum(b.rows for b in blocks) != total:
        raise DataError(opt_path, f"sparse optimizer file has {total} rows per state kind, its layout record "
                                  f"says {sum(b.rows for b in blocks)}")
    rows = _state_rows(blocks, len(state), opt_path)
    buffers = ck.read_sparse_opt(opt_path, kinds, total, vec, dtype)
    state.states = [buf[rows] for buf in buffers]
    return state


def load_embedding(trainer: Any, name: str, model_dir: str, opt_path: str | None = None) -> None:
    """Load a sparse model folder (and its optimizer file) into embedding ``name``, whatever GPU count wrote
    it; with an optimizer file named …_{i}.model the table's Adam step becomes i + 1. Collective."""
    state = read_embedding(trainer, name, model_dir, opt_path)
    with_states = opt_path is not None and bool(len(trainer.sparse_opts[name].state_kinds))
    table, opt = trainer.tables[name], trainer.sparse_opts[name]
    if isinstance(table, ShardedTableView):
        table.emb.put(state, with_states)
    else:
        put_rows_state(table, opt, state, with_states)
    if opt_path is not None:
        _resume_steps(opt, opt_path)


def model_dir_of(opt_path: str) -> str:
    """The sparse model folder of a sparse optimizer file of the same snapshot (…N_opt_sparse_I.model →
    …N_sparse_I.model)."""
    head, tail = os.path.split(opt_path)
    if "_opt_sparse_" not in tail:
        raise ValueError(f"opt_path = {opt_path!r} is not allowed without model_dir: its name does not say its "
                         f"sparse model folder (expected …_opt_sparse_….model)")
    before, after = tail.rsplit("_opt_sparse_", 1)
    return os.path.join(head, f"{before}_sparse_{after}")


def load_sparse_optimizer_states(trainer: Any, name: str, opt_path: str, model_dir: str | None = None) -> None:
    """Only the optimizer states of embedding ``name`` from a file written on any GPU count; its keys come from
    the snapshot's sparse model folder (``model_dir``, by default named after ``opt_path``) and must be in the
    table already (load the sparse model first). Collective. ``Checkpoints.load_sparse_optimizer_states``'s
    counterpart that re-shards."""
    state = read_embedding(trainer, name, model_dir or model_dir_of(opt_path), opt_path)
    table, opt = trainer.tables[name], trainer.sparse_opts[name]
    if len(opt.state_kinds):
        if isinstance(table, ShardedTableView):
            table.emb.set_states(state)
        else:
            set_states_of_table(table, opt, state)
    _resume_steps(opt, opt_path)


def needs_resharding(trainer: Any, name: str, opt_path: str) -> bool:
    """True when embedding ``name``'s optimizer file cannot be read as this run's own buffers: the run is
    sharded, or the file has another size and its folder records the GPU layout that wrote it."""
    if isinstance(trainer.tables[name], ShardedTableView):
        return True
    table, opt = trainer.tables[name], trainer.sparse_opts[name]
    own = len(opt.state_kinds) * table.capacity * table.vec_size * np.dtype(getattr(opt, "state_dtype", np.float32)).itemsize
    if not os.path.isfile(opt_path) or os.path.getsize(opt_path) == own:
        return False
    try:
        return os.path.exists(os.path.join(model_dir_of(opt_path), LAYOUT_FILE))
    except ValueError:
        return False


def _resume_steps(opt: Any, opt_path: str) -> None:
    from hgc.runtime.trainer import snapshot_iteration

    i = snapshot_iteration(opt_path)
    if i is not None:
        opt.times = i + 1


def load_snapshot(trainer: Any, prefix: str, iteration: int) -> None:
    """Load every file of snapshot ``prefix``/``iteration`` (written on any GPU count) and resume after
    iteration + 1 steps, as the Checkpoints loaders do one file at a time. Collective."""
    from hgc.runtime.trainer import Checkpoints

    names = ck.snapshot_names(prefix, iteration, len(trainer.tables))
    cp = Checkpoints(trainer)
    cp.load_dense_weights(names.dense)
    cp.load_dense_optimizer_states(names.dense_opt)
    for i, name in enumerate(trainer.tables):
        load_embedding(trainer, name, names.sparse[i], names.sparse_opt[i])

