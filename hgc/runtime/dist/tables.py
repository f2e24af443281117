"""From single-GPU embedding tables to sharded ones and back.

A single-GPU table (the cpu target's EmbeddingTable with its SparseOptimizer) and a sharded table meet in
:class:`RowsState`: the rows in use, each with its key (or category), slot, vector and optimizer states.
:func:`shard_table` builds the sharded table a placement plan asks for and fills it from a single-GPU table
(the Trainer's, which also serves as the pool of initial rows for keys seen later).
"""
from __future__ import annotations

import numpy as np

from hgc.passes.plan_placement import DISTRIBUTED, HYBRID, LOCALIZED, ONE_HOT, TablePlan
from hgc.runtime.dist.comm import Communicator
from hgc.runtime.dist.embedding import DistributedEmbedding, LocalizedEmbedding, ShardedEmbedding
from hgc.runtime.dist.hybrid import HybridEmbedding
from hgc.runtime.dist.shard import RowsState
from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.optim.sparse import SparseOptimizer


def rows_state_of(table: EmbeddingTable, opt: SparseOptimizer) -> RowsState:
    """The rows a single-GPU table uses, in row order (one-hot: every category)."""
    if table.hash is None:
        keys, rows = np.arange(table.capacity, dtype=np.int64), np.arange(table.capacity)
    else:
        keys, rows = table.hash.dump()
    n = rows.shape[0]
    lazy = opt.prev_time[:n].copy() if opt.update_type == "LazyGlobal" else None
    return RowsState(keys, table.rows[rows].copy(), table.slot_ids(), [s[:n].copy() for s in opt.states()], lazy)


def put_rows_state(table: EmbeddingTable, opt: SparseOptimizer, state: RowsState, with_states: bool) -> None:
    """Store ``state``'s rows in a single-GPU table (hash keys are inserted), optionally with their
    optimizer states."""
    table.load(state.keys, state.vectors, None if table.hash is None else state.slot_ids)
    if with_states:
        set_states_of_table(table, opt, state)


def set_states_of_table(table: EmbeddingTable, opt: SparseOptimizer, state: RowsState) -> None:
    """Set the optimizer states of ``state``'s keys, which the single-GPU table already holds."""
    if not len(state):
        return
    rows = state.keys if table.hash is None else table.hash.get_mark(state.keys)
    missing = (rows < 0) | (rows >= table.capacity)
    if missing.any():
        raise ValueError(f"embedding '{table.name}': key {state.keys[int(np.argmax(missing))]} is not in the table; "
                         f"load the sparse model before its optimizer states")
    full = [s.copy() for s in opt.states()]
    if len(state.states) != len(full):
        raise ValueError(f"embedding '{table.name}': {len(state.states)} optimizer state kind(s) given, the "
                         f"{opt.optimizer} optimizer keeps {len(full)}")
    for mine, theirs in zip(full, state.states):
        mine[rows] = theirs
    opt.load_states(full)
    if state.prev_time is not None and opt.update_type == "LazyGlobal":
        opt.prev_time[rows] = state.prev_time


def shard_table(plan: TablePlan, comm: Communicator, table: EmbeddingTable, opt: SparseOptimizer, *,
                batchsize: int, statistics_batches: int = 20, pool: np.ndarray | None = None) -> ShardedEmbedding:
    """The sharded table ``plan`` describes, holding what ``table``/``opt`` hold now (rows, optimizer states,
    Adam step). Hash tables draw the initial vectors of keys seen later from ``pool`` (default: ``table``'s
    own preallocated rows, which a table that is no longer trained keeps untouched beyond its used rows)."""
    if plan.embedding_vec_size != table.vec_size:
        raise ValueError(f"embedding '{plan.name}': the plan says vec {plan.embedding_vec_size}, the table has "
                         f"{table.vec_size}")
    state = rows_state_of(table, opt)
    pool = table.rows if pool is None else pool
    sharded: ShardedEmbedding
    if plan.type == DISTRIBUTED:
        sharded = DistributedEmbedding(plan, comm, table.combiner, opt, pool, table.size)
    elif plan.type in (LOCALIZED, ONE_HOT):
        if (plan.type == ONE_HOT) != (table.hash is None):
            raise ValueError(f"embedding '{plan.name}': a {plan.type} needs a "
                             f"{'one-hot' if plan.type == ONE_HOT else 'hash'} table")
        sharded = LocalizedEmbedding(plan, comm, table.combiner, opt, None if table.hash is None else pool,
                                     table.size)
    elif plan.type == HYBRID:
        if table.hash is not None:
            raise ValueError(f"embedding '{plan.name}': a HybridSparseEmbedding needs a one-hot table")
        sharded = HybridEmbedding(plan, comm, table.combiner, opt, state, batchsize, statistics_batches)
    else:
        raise ValueError(f"embedding '{plan.name}': no sharding for embedding type '{plan.type}'")
    if plan.type != HYBRID:
        sharded.put(state, with_states=True)
    sharded.times = opt.times
    return sharded
