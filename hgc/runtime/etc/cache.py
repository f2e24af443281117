"""The embedding training cache (ETC): training tables fed pass by pass from host parameter servers.

Each embedding table gets a parameter server (PS; Staged or Cached, see ``parameter_server.py``) holding
every row the table ever had, with its optimizer states; the Trainer's table (host or device) holds the rows
of the current pass. ``update(keyset files)`` starts a pass:

1. write back: every row in the training table goes to the PS (vectors, states, slot id);
2. load: the keys of the pass's keyset that the PS holds and the table does not are brought in. When the
   table cannot hold its current keys plus the pass's, it is rebuilt with the pass's keys only (an eviction).
   Keys no PS has seen yet are left to training, which inserts them at first sight with the table's
   initializer: free rows are kept filled with the initializer's next values, so a key starts from the same
   vector as in a table big enough for everything (see ``init_stream.py``).

With one keyset file for several tables, each table loads the keyset's keys its own PS holds, and every
key no PS holds counts as possibly new in each table. With one file per table, counts are exact and a pass
that cannot fit raises TrainingError before training.

``dump()`` writes each PS to its sparse model folder; ``get_incremental_model()`` gives, per table, the keys
whose vectors changed (or that are new) since the last call, with their vectors.

Training with the cache equals training without it when nothing is evicted (same seed, same batches).
Evictions keep Local updates (and SGD, AdaGrad) exact too; a Global update moves only the rows that are in
the training table at the time, as in HugeCTR. Evaluation sees the rows in the training table.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hgc.errors import TrainingError
from hgc.ir.registry import get_op
from hgc.runtime import logging as log
from hgc.runtime.etc.config import CACHED, EtcConfig
from hgc.runtime.etc.init_stream import InitStream
from hgc.runtime.etc.keyset import read_keyset
from hgc.runtime.etc.parameter_server import CachedPS, StagedPS
from hgc.runtime.etc.records import RowCodec
from hgc.runtime.etc.sparse_model import STATE_FILES, read_chunks, write_folder
from hgc.runtime.etc.table_ops import table_ops

DISTRIBUTED = "DistributedSlotSparseEmbeddingHash"


class TableCache:
    """One table's PS, training-table operations and bookkeeping."""

    def __init__(self, name: str, ops: Any, ps: StagedPS | CachedPS, codec: RowCodec, stream: InitStream | None,
                 optimizer: str, localized: bool, sparse_model: str) -> None:
        self.name, self.ops, self.ps, self.codec, self.stream = name, ops, ps, codec, stream
        self.optimizer, self.localized, self.sparse_model = optimizer, localized, sparse_model
        self.shift = 0  # free row r of the training table holds initializer chunk r + shift
        self.changed: list[np.ndarray] = []
        self.evictions = 0

    # -- training table → PS ----------------------------------------------------------------------------
    def write_back(self) -> None:
        snap = self.ops.snapshot()
        if not len(snap):
            return
        records = self.codec.pack(snap)
        found, old = self.ps.get(snap.keys)
        changed = ~found | np.any(self.codec.vectors(old) != records[:, :self.codec.vec], axis=1)
        self.ps.put(snap.keys, records)
        if changed.any():
            self.changed.append(snap.keys[changed])

    # -- PS → training table ------------------------------------------------------------------------------
    def prefetch(self, keyset: np.ndarray, new_keys: int, exact: bool, source: str) -> None:
        """Bring in the rows of ``keyset`` (call after ``write_back``); ``new_keys`` keys may be new here."""
        if self.ops.one_hot:
            return
        ops, cap = self.ops, self.ops.capacity
        known = keyset[self.ps.contains(keyset)]
        size = ops.size()
        to_load = known[~np.isin(known, ops.resident_keys())]
        if size + to_load.shape[0] + new_keys <= cap:
            if to_load.shape[0]:
                ops.append(self.codec.unpack(to_load, self.ps.fetch(to_load)))
                self._refill(size)
            log.info(f"ETC: embedding '{self.name}': pass {source}: {to_load.shape[0]} rows loaded, "
                     f"{ops.size()} of {cap} rows in use")
            return
        need = known.shape[0] + (new_keys if exact else 0)
        if need > cap:
            raise TrainingError(f"embedding '{self.name}': the pass of keyset {source} needs {need} rows "
                                f"({known.shape[0]} stored, {new_keys if exact else 0} new) but its training table "
                                f"holds {cap}; raise workspace_size_per_gpu_in_mb or split the pass")
        ops.rebuild(self.codec.unpack(known, self.ps.fetch(known)))
        self._refill(size)
        self.evictions += 1
        log.info(f"ETC: embedding '{self.name}': pass {source}: table rebuilt with {known.shape[0]} stored rows "
                 f"({size} rows written back and evicted)")

    def _refill(self, size_before: int) -> None:
        """Keep the next new key on the initializer chunk it would get without the cache."""
        if self.stream is None:
            return
        consumed = size_before + self.shift
        size, cap = self.ops.size(), self.ops.capacity
        self.shift = consumed - size
        if size < cap:
            self.ops.set_free_rows(size, self.stream.rows(size + self.shift, cap + self.shift))

    # -- views of the PS ------------------------------------------------------------------------------------
    def incremental(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.unique(np.concatenate(self.changed)) if self.changed else np.zeros(0, np.int64)
        self.changed = []
        _, records = self.ps.get(keys)
        return keys.astype(np.int64), np.ascontiguousarray(self.codec.vectors(records), np.float32)

    def write_folder(self, path: str, with_states: bool) -> None:
        write_folder(path, self.ps.chunks, self.codec, STATE_FILES[self.optimizer] if with_states else (),
                     self.localized)

    def close(self) -> None:
        self.ps.close()


class EmbeddingTrainingCache:
    """The cache of every embedding table of one Trainer (see the module docstring)."""

    def __init__(self, trainer: Any, config: EtcConfig, rank: int = 0) -> None:
        names = list(trainer.tables)
        if len(config.ps_types) != len(names):
            raise ValueError(f"the embedding training cache has {len(config.ps_types)} ps_types / sparse_models "
                             f"entries but the model has {len(names)} embedding tables {names}")
        self.trainer, self.config = trainer, config
        inp = next(n for n in trainer.graph.nodes() if get_op(n.op).kind == "input")
        self.key_dtype = str(inp.attrs["key_dtype"])
        self.tables: list[TableCache] = []
        try:
            for i, name in enumerate(names):
                self.tables.append(self._table_cache(i, name, rank))
        except BaseException:
            self.close()
            raise

    def _table_cache(self, i: int, name: str, rank: int) -> TableCache:
        t = self.trainer
        ops = table_ops(t.tables[name], t.sparse_opts[name])
        opt = t.sparse_opts[name]
        codec = RowCodec(ops.vec_size, ops.n_states, ops.lazy)
        cfg = self.config
        if cfg.ps_types[i] == CACHED:
            ps: StagedPS | CachedPS = CachedPS(name, codec.width, cfg.local_path(rank), cfg.cache_for(i),
                                               block_capacity=max(1, ops.capacity))
        else:
            ps = StagedPS(name, codec.width)
        stream = None
        if not ops.one_hot:
            table = t.tables[name]
            sizes = getattr(table, "slot_sizes", None)
            if sizes is None:
                sizes = table.emb.slot_sizes
            stream = InitStream.of_table(t.seed, i, ops.vec_size, ops.capacity, [int(s) for s in sizes])
        localized = t.graph.node(name).op != DISTRIBUTED
        tc = TableCache(name, ops, ps, codec, stream, str(opt.optimizer), localized, cfg.sparse_models[i])
        path = cfg.sparse_models[i]
        if path and os.path.exists(path):
            if not os.path.isdir(path):
                ps.close()
                raise ValueError(f"sparse_models entry '{path}' exists and is not a sparse model folder")
            if os.listdir(path):
                for keys, records in read_chunks(path, codec, str(opt.optimizer), ops.state_fill):
                    ps.put(keys, records)
                    if ops.one_hot:
                        ops.overwrite(codec.unpack(keys, records))
                log.info(f"ETC: embedding '{name}': {len(ps)} rows loaded from {path} into the "
                         f"{cfg.ps_types[i]} parameter server")
        return tc

    # -- the pass flow ------------------------------------------------------------------------------------------
    def update(self, keyset_files: Sequence[str]) -> None:
        """Start a pass: write the training tables back, then load the rows of the keyset(s): one file for
        every table, or one file per table (in the order the embeddings were added)."""
        files = list(keyset_files)
        n = len(self.tables)
        if len(files) not in (1, n):
            raise ValueError(f"EmbeddingTrainingCache.update(): keyset_file_list has {len(files)} files; give one "
                             f"keyset file for all {n} embedding tables or one per table")
        keysets = [read_keyset(f, self.key_dtype) for f in files]
        self.write_back()
        if len(files) == 1 and n > 1:
            ks = keysets[0]
            stored = np.zeros(ks.shape[0], bool)
            for tc in self.tables:
                if not tc.ops.one_hot:  # one-hot PS keys are categories, not the dataset's keys
                    stored |= tc.ps.contains(ks)
            new = int((~stored).sum())
            for tc in self.tables:
                tc.prefetch(ks, new, False, files[0])
            return
        for tc, ks, f in zip(self.tables, keysets, files):
            tc.prefetch(ks, int((~tc.ps.contains(ks)).sum()), True, f)

    def write_back(self) -> None:
        """Every row of the training tables into its PS (the tables keep them)."""
        self.trainer.check_finite()
        for tc in self.tables:
            tc.write_back()

    # -- outputs ------------------------------------------------------------------------------------------------
    def get_incremental_model(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per table, (keys int64 (N,), vectors float32 (N, vec)) of the rows whose vectors changed or that
        were added since the last call, keys ascending."""
        self.write_back()
        return [tc.incremental() for tc in self.tables]

    def dump(self) -> None:
        """Write every table that has a sparse model path to it (with optimizer states)."""
        self.write_back()
        for tc in self.tables:
            if tc.sparse_model:
                tc.write_folder(tc.sparse_model, with_states=True)
                log.info(f"ETC: embedding '{tc.name}': {len(tc.ps)} rows written to {tc.sparse_model}")

    def save(self, sparse_names: Sequence[str]) -> None:
        """``save_params_to_files``' sparse part: the tables with a sparse model path are dumped there, the
        others are written (without optimizer states) under their snapshot names."""
        self.write_back()
        for tc, snapshot_name in zip(self.tables, sparse_names):
            if tc.sparse_model:
                tc.write_folder(tc.sparse_model, with_states=True)
                log.info(f"ETC: embedding '{tc.name}': {len(tc.ps)} rows written to {tc.sparse_model}")
            else:
                tc.write_folder(snapshot_name, with_states=False)
                log.info(f"Rank0: Write hash table to file {snapshot_name}")

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per table: PS kind and size, evictions of the training table, and the Cached-PS counters."""
        out: dict[str, dict[str, Any]] = {}
        for tc in self.tables:
            row: dict[str, Any] = {"ps": tc.ps.kind, "rows": len(tc.ps), "evictions": tc.evictions}
            if isinstance(tc.ps, CachedPS):
                row.update(cache_evictions=tc.ps.num_evict, cached_keys=tc.ps.cached_keys,
                           hit_rates=list(tc.ps.hit_rates))
            out[tc.name] = row
        return out

    def close(self) -> None:
        for tc in self.tables:
            tc.close()
