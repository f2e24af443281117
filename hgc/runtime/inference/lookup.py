"""An embedding layer at inference: the keys of a batch → the parameter server (through the embedding cache
when one is used) → the combined vectors.

The parameter-server key of an input key is the key itself for hash embeddings, and key + the offset of its
slot for one-hot embeddings (LocalizedSlotSparseEmbeddingOneHot, HybridSparseEmbedding), whose sparse model
files hold row numbers; a one-hot key outside its slot's range is an error, as in training. Every distinct
key of a batch is looked up once; the slot vectors are then summed (``sum``) or averaged (``mean``, where a
key the server lacks counts with its default vector) exactly as the training runtime combines them.

:class:`EmbeddingLookup` has the interface the cpu executor expects of an embedding (``forward``;
``backward`` is refused: nothing trains here); :meth:`EmbeddingLookup.resolve` is the part both targets
share (the cuda target combines on the device).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgc.errors import TrainingError
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.embedding.table import _combine

ONE_HOT_OPS = ("LocalizedSlotSparseEmbeddingOneHot", "HybridSparseEmbedding")

#: keys (distinct int64) -> vectors (n, vec) float32
Source = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TableSpec:
    """What the lookup needs of one embedding node."""

    name: str
    vec: int
    combiner: str
    one_hot: bool
    slot_sizes: tuple[int, ...] = ()

    @classmethod
    def of(cls, node: Any) -> TableSpec:
        a = node.attrs
        return cls(node.name, int(a["embedding_vec_size"]), str(a["combiner"]), node.op in ONE_HOT_OPS,
                   tuple(int(s) for s in (a.get("slot_size_array") or ())))


def server_keys(spec: TableSpec, sparse: SparseBatch) -> np.ndarray:
    """The parameter-server key (int64) of every key of the batch."""
    keys = np.asarray(sparse.keys)
    keys = keys.view(np.int64) if keys.dtype == np.uint64 else keys.astype(np.int64, copy=False)
    if not spec.one_hot:
        return keys.reshape(-1)
    sizes = np.asarray(spec.slot_sizes, np.int64)
    if sparse.slot_num != sizes.shape[0]:
        raise ValueError(f"embedding '{spec.name}': the input has {sparse.slot_num} slots but slot_size_array has "
                         f"{sizes.shape[0]} entries")
    offsets = np.asarray(sparse.row_offsets, np.int64)
    slot = np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64) % sparse.slot_num, np.diff(offsets))
    bad = (keys < 0) | (keys >= sizes[slot])
    if bad.any():
        j = int(np.argmax(bad))
        sample = int(np.searchsorted(offsets, j, side="right") - 1) // sparse.slot_num
        raise ValueError(f"embedding '{spec.name}': key {keys[j]} of slot {slot[j]} is outside [0, {sizes[slot[j]]}) "
                         f"given by slot_size_array (sample {sample})")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return keys + starts[slot]


class EmbeddingLookup:
    """One embedding node served from ``source`` (the cache, or the parameter server directly)."""

    def __init__(self, spec: TableSpec, source: Source) -> None:
        self.spec = spec
        self.source = source
        self.vec_size = spec.vec
        self.name = spec.name

    def resolve(self, sparse: SparseBatch) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (u, vec) float32 of the batch's distinct keys, the index into them of every key)."""
        keys = server_keys(self.spec, sparse)
        unique, inverse = np.unique(keys, return_inverse=True)
        vectors = np.ascontiguousarray(self.source(unique), np.float32).reshape(unique.shape[0], self.spec.vec)
        return vectors, inverse.reshape(-1).astype(np.int64, copy=False)

    def forward(self, sparse: SparseBatch, training: bool) -> tuple[np.ndarray, Any]:
        """Combined vectors (n, slot_num, vec) float32."""
        if training:
            raise TrainingError(f"embedding '{self.name}': an inference model does not train")
        offsets = np.ascontiguousarray(sparse.row_offsets, np.int64)
        nseg = offsets.shape[0] - 1
        if nseg % sparse.slot_num:
            raise ValueError(f"embedding '{self.name}': row_offsets has {offsets.shape[0]} entries, not "
                             f"n·slot_num + 1 with slot_num={sparse.slot_num}")
        vectors, rows = self.resolve(sparse)
        out = np.empty((nseg, self.spec.vec), np.float32)
        _combine(offsets, rows, vectors if vectors.shape[0] else np.zeros((1, self.spec.vec), np.float32),
                 self.spec.combiner == "mean", out)
        return out.reshape(nseg // sparse.slot_num, sparse.slot_num, self.spec.vec), None

    def backward(self, saved: Any, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise TrainingError(f"embedding '{self.name}': an inference model has no backward pass")


def direct_source(fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Source:
    """A source that asks the parameter server for every key (no embedding cache)."""
    return lambda keys: fetch(keys)[0]
