"""What differs between the targets: which one trains a model, the one place its executor is made, and the
views the trainer and the checkpoints use of state that lives on the GPU.

Choosing. ``HGC_TARGET`` (``config.target``) = ``cpu`` or ``cuda`` forces a target; ``auto`` (the default)
takes cuda when CuPy imports and sees a GPU, else cpu. A forced cuda target on a machine that cannot run it
is an error that says why. In auto mode a model with a layer the cuda target has no kernel for yet (the
lowering raises NotBuiltError) trains on the cpu target instead, and the log says so; a forced cuda target
raises that NotBuiltError.

State on the GPU. On cuda the executor owns the dense weights (one flat fp32 buffer), the dense optimizer
states, the BatchNorm statistics and the embedding tables with their optimizer states. The trainer keeps host
mirrors of the dense weights and dense optimizer states in HugeCTR's file order (refreshed when read, pushed
after a load); :class:`DeviceSparseOptimizer` gives a device table the shape of the cpu SparseOptimizer, so
checkpoint code reads and writes both targets the same way.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hgc.config import config
from hgc.errors import NotBuiltError, TrainingError
from hgc.runtime import logging as log

TARGETS = ("cpu", "cuda")


# -- choosing ------------------------------------------------------------------------------------------
def cuda_unavailable_reason() -> str | None:
    """None when the cuda target can run here, else why it cannot (CuPy missing, no driver, no GPU)."""
    try:
        from hgc.codegen.nvrtc import import_cupy

        cp: Any = import_cupy()
    except ImportError as e:
        return f"CuPy does not import ({e})"
    try:
        count = int(cp.cuda.runtime.getDeviceCount())
    except Exception as e:  # noqa: BLE001  (CUDARuntimeError without a driver, or a broken install)
        return f"CUDA reports no usable GPU ({type(e).__name__}: {e})"
    return None if count > 0 else "CuPy sees no GPU"


def cuda_available() -> bool:
    """True when CuPy imports and reports at least one GPU."""
    return cuda_unavailable_reason() is None


def requested_target() -> str:
    """``config.target`` (HGC_TARGET) checked: "auto", "cpu" or "cuda"."""
    t = config.target
    if t not in ("auto", *TARGETS):
        raise ValueError(f"config.target (HGC_TARGET) = {t!r} is not allowed: must be 'auto', 'cpu' or 'cuda'")
    return t


def resolve_target(target: str | None = None) -> str:
    """The target that trains: ``target`` ("auto" | "cpu" | "cuda"; None = HGC_TARGET). A forced cuda
    target that cannot run here raises TrainingError naming the reason."""
    t = requested_target() if target is None else target
    if t == "cpu":
        return "cpu"
    if t == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise TrainingError(f"the cuda target was requested (HGC_TARGET=cuda) but cannot run here: {reason}; "
                                f"install CuPy for this machine's CUDA version and check that a GPU is visible, "
                                f"or set HGC_TARGET=cpu")
        return "cuda"
    if t != "auto":
        raise ValueError(f"target={t!r} is not allowed: must be 'auto', 'cpu' or 'cuda'")
    return "cuda" if cuda_available() else "cpu"


def device_name() -> str:
    """The name of the current CUDA device (for the log)."""
    from hgc.codegen.nvrtc import import_cupy

    cp: Any = import_cupy()
    dev = int(cp.cuda.runtime.getDevice())
    name = cp.cuda.runtime.getDeviceProperties(dev)["name"]
    return f"{name.decode() if isinstance(name, bytes) else name} (device {dev})"


# -- the executor ------------------------------------------------------------------------------------------
def make_executor(target: str, graph: Any, plans: Mapping[str, Any], weights: Mapping[str, Sequence[np.ndarray]],
                  tables: Mapping[str, Any], seed: int, *, forced: bool = False,
                  passes: Sequence[str] = ()) -> tuple[str, Any]:
    """(target, executor) running ``graph``: a CpuExecutor over the host ``weights`` and ``tables``, or a
    CudaExecutor of the lowered graph with copies of them on the GPU. A cuda target that cannot lower the
    graph falls back to cpu unless ``forced``."""
    from hgc.runtime.cpu.executor import CpuExecutor

    if target == "cuda":
        from hgc.codegen.lower import lower

        try:
            plan = lower(graph, plans, passes=tuple(passes))
        except NotBuiltError as e:
            if forced:
                raise
            log.info(f"The cuda target cannot run this model yet ({e}); training on the cpu target instead "
                     f"(set HGC_TARGET=cuda to make this an error)")
            target = "cpu"
        else:
            from hgc.runtime.cuda.executor import CudaExecutor

            return "cuda", CudaExecutor(plan, weights, tables, seed)
    if target != "cpu":
        raise ValueError(f"target={target!r} is not allowed: must be 'cpu' or 'cuda'")
    return "cpu", CpuExecutor(graph, dict(weights), tables, seed)


# -- device state in the shapes the cpu target uses ---------------------------------------------------------
SPARSE_STATE_KINDS = {"Adam": ("m", "v"), "MomentumSGD": ("momentum",), "Nesterov": ("accum",),
                      "AdaGrad": ("accum",), "SGD": ()}


def _xp(a: Any) -> Any:
    from hgc.runtime.cuda.metrics import array_module

    return array_module(a)


def _key_bits(keys: np.ndarray) -> np.ndarray:
    """Keys as the uint64 bit patterns of their int64 values (the hash tables' key form)."""
    k = np.ascontiguousarray(keys).reshape(-1)
    if k.dtype.kind not in "iu":
        raise ValueError(f"keys must be an integer array, got dtype {k.dtype}")
    return k if k.dtype == np.uint64 else k.astype(np.int64, copy=False).view(np.uint64)


class DeviceTable:
    """A device embedding table (hgc.runtime.cuda.embedding.DeviceEmbedding) seen as the cpu target's
    EmbeddingTable: ``name``, ``capacity``, ``vec_size``, ``size``, ``dump()``, ``slot_ids()``, ``load()``."""

    def __init__(self, emb: Any) -> None:
        self.emb = emb

    name = property(lambda self: self.emb.name)
    capacity = property(lambda self: int(self.emb.capacity))
    vec_size = property(lambda self: int(self.emb.vec))
    size = property(lambda self: int(self.emb.size))

    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        return self.emb.dump()

    def slot_ids(self) -> np.ndarray:
        return self.emb.slot_ids()

    def host_rows(self) -> np.ndarray:
        """A host copy of every row (capacity × vec)."""
        return np.array(self.emb.table.get())

    def load(self, keys: np.ndarray, vectors: np.ndarray, slot_ids: np.ndarray | None = None) -> None:
        """Set the vectors of the given (distinct) keys, inserting the keys the table lacks in the given order
        (as EmbeddingTable.load); one-hot keys are rows."""
        emb = self.emb
        xp = _xp(emb.table)
        keys = np.asarray(keys).reshape(-1)
        vectors = np.asarray(vectors, np.float32)
        if vectors.size != keys.shape[0] * self.vec_size:
            raise ValueError(f"embedding '{self.name}': the rows of keys ({keys.shape[0]}) and embeddings "
                             f"({vectors.size} values for vec_size {self.vec_size}) are not consistent")
        vectors = np.ascontiguousarray(vectors.reshape(keys.shape[0], self.vec_size))
        if slot_ids is not None and np.asarray(slot_ids).shape[0] != keys.shape[0]:
            raise ValueError(f"embedding '{self.name}': {np.asarray(slot_ids).shape[0]} slot ids for "
                             f"{keys.shape[0]} keys; the rows are not consistent")
        if keys.shape[0] == 0:
            return
        if emb.one_hot:
            rows = keys.astype(np.int64)
            bad = (rows < 0) | (rows >= self.capacity)
            if bad.any():
                raise ValueError(f"embedding '{self.name}': key {rows[np.argmax(bad)]} is outside the one-hot "
                                 f"table [0, {self.capacity})")
            if np.unique(rows).shape[0] != rows.shape[0]:
                raise ValueError(f"embedding '{self.name}': the keys to load must be distinct")
        else:
            bits = _key_bits(keys)
            n_distinct = np.unique(bits).shape[0]
            if n_distinct != bits.shape[0]:
                raise ValueError(f"hash table '{self.name}': the keys to load must be distinct, "
                                 f"got {bits.shape[0] - n_distinct} repeated key(s) among {bits.shape[0]}")
            present = _key_bits(emb.dump()[0])  # the keys in row order
            rows = np.full(bits.shape[0], -1, np.int64)
            if present.shape[0]:
                order = np.argsort(present, kind="stable")
                pos = np.searchsorted(present[order], bits)
                hit = pos < present.shape[0]
                hit[hit] = present[order][pos[hit]] == bits[hit]
                rows[hit] = order[pos[hit]]
            new = rows < 0
            if new.any():
                size = present.shape[0]
                slots = (np.asarray(slot_ids).astype(np.uint64)[new] if slot_ids is not None
                         else np.zeros(int(new.sum()), np.uint64))
                emb._insert_host(bits[new], slots)  # rows size, size + 1, … in order (raises when full)
                rows[new] = np.arange(size, size + int(new.sum()), dtype=np.int64)
            if slot_ids is not None:
                emb.row_slot[xp.asarray(rows)] = xp.asarray(np.asarray(slot_ids).astype(np.uint64))
        emb.table[xp.asarray(rows)] = xp.asarray(vectors)


class DeviceSparseOptimizer:
    """The optimizer of one device embedding table, seen as the cpu target's SparseOptimizer: ``states()``
    (host copies of the whole capacity × vec buffers), ``load_states``, ``state_kinds`` and ``times`` (Adam's
    step count)."""

    def __init__(self, emb: Any) -> None:
        self.emb = emb

    @property
    def optimizer(self) -> str:
        return str(self.emb.optimizer)

    @property
    def update_type(self) -> str:
        return str(self.emb.update_type)

    @property
    def state_kinds(self) -> tuple[str, ...]:
        return SPARSE_STATE_KINDS[self.optimizer]

    @property
    def times(self) -> int:
        return int(self.emb.times)

    @times.setter
    def times(self, value: int) -> None:
        self.emb.times = int(value)

    def states(self) -> list[np.ndarray]:
        return list(self.emb.state_arrays())

    def load_states(self, states: Sequence[np.ndarray]) -> None:
        """Replace the state buffers (as SparseOptimizer.load_states, including where the Global update's
        span of rows ends: after the last row with a non-zero state)."""
        emb = self.emb
        if len(states) != len(emb.states):
            raise ValueError(f"sparse {self.optimizer}: expected {len(emb.states)} state kind(s) "
                             f"{list(self.state_kinds)}, got {len(states)}")
        used = np.zeros(int(emb.capacity), bool)
        for kind, mine, theirs in zip(self.state_kinds, emb.states, states):
            arr = np.ascontiguousarray(theirs, np.float32)
            if arr.size != mine.size:
                raise ValueError(f"sparse {self.optimizer}: state '{kind}' has {arr.size} values, expected "
                                 f"{emb.capacity}×{emb.vec}")
            arr = arr.reshape(mine.shape)
            mine.set(arr)
            used |= np.any(arr != 0, axis=1)
        emb.hi.fill(int(np.flatnonzero(used)[-1]) + 1 if used.any() else 0)


def to_file_order(by_node: Mapping[str, Sequence[np.ndarray]], slices: Mapping[str, slice],
                  into: list[np.ndarray]) -> None:
    """Copy per-node arrays (the executor's view) into the file-order list ``into`` (in place), using each
    node's slice of the file order."""
    for node, arrays in by_node.items():
        span = slices[node]
        if len(arrays) != span.stop - span.start:
            raise ValueError(f"node '{node}' has {len(arrays)} weights on the device, {span.stop - span.start} in "
                             f"the dense file")
        for k, a in enumerate(arrays, span.start):
            into[k][...] = np.asarray(a).reshape(into[k].shape)


def by_node(flat: Sequence[np.ndarray], slices: Mapping[str, slice]) -> dict[str, list[np.ndarray]]:
    """The file-order list ``flat`` cut into each node's weights."""
    return {node: list(flat[span]) for node, span in slices.items()}
