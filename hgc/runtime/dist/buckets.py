"""Dense gradients all-reduced in buckets, in the order the backward pass produces them.

The weights are grouped, last layer first, into buckets of about ``bucket_bytes``; each bucket is flattened
into one buffer per local GPU and summed over all GPUs with one ``allreduce_async``. A backward pass that
reports each layer's gradients as soon as they exist (:meth:`GradBuckets.ready`) starts a bucket's
all-reduce the moment its last layer is done, so communication overlaps the rest of the backward pass (the
cuda target's plan); :meth:`finish` waits for all buckets and hands back the summed gradients. The cpu
target reports every layer after its backward pass (:meth:`reduce`), which runs the same code.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hgc.runtime.dist.comm import Communicator, Pending

DEFAULT_BUCKET_BYTES = 25 << 20


@dataclass(frozen=True)
class Slot:
    node: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype


class GradBuckets:
    """``weights``: the dense weights per node, in graph order (the executor's weight map)."""

    def __init__(self, comm: Communicator, weights: Mapping[str, Sequence[np.ndarray]],
                 bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) or bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes = {bucket_bytes!r} is not allowed: must be an integer > 0")
        self.comm = comm
        self.buckets: list[list[Slot]] = []
        size = bucket_bytes
        for node in reversed(list(weights)):  # a layer's weights stay together in one bucket
            if not weights[node]:
                continue
            if size >= bucket_bytes:
                self.buckets.append([])
                size = 0
            for i, w in enumerate(weights[node]):
                self.buckets[-1].append(Slot(node, i, tuple(w.shape), np.dtype(w.dtype)))
                size += int(w.size) * np.dtype(w.dtype).itemsize
        self.bucket_of = {s.node: b for b, bucket in enumerate(self.buckets) for s in bucket}
        self._grads: list[dict[str, list[Any]]] = []
        self._waiting: list[set[str]] = []
        self._pending: dict[int, Pending] = {}

    def start(self) -> None:
        """Begin a step (one gradient map per local GPU)."""
        self._grads = [{} for _ in self.comm.local]
        self._waiting = [{s.node for s in bucket} for bucket in self.buckets]
        self._pending = {}

    def ready(self, node: str, grads: Sequence[Sequence[Any] | None]) -> None:
        """Layer ``node``'s weight gradients on every local GPU (None: zero) are final; a bucket whose layers
        are all final starts its all-reduce."""
        if node not in self.bucket_of:
            return
        for mine, g in zip(self._grads, grads):
            if g is not None:
                mine[node] = list(g)
        b = self.bucket_of[node]
        self._waiting[b].discard(node)
        if not self._waiting[b]:
            self._launch(b)

    def _launch(self, b: int) -> None:
        bucket = self.buckets[b]
        dtype = np.result_type(*[s.dtype for s in bucket])
        flats = []
        for mine in self._grads:
            pieces = []
            for s in bucket:
                g = mine.get(s.node)
                pieces.append(np.zeros(int(np.prod(s.shape, dtype=np.int64)), dtype) if g is None
                              else np.asarray(g[s.index], dtype).reshape(-1))
            flats.append(np.concatenate(pieces))
        self._pending[b] = self.comm.allreduce_async(flats)

    def finish(self) -> dict[str, list[np.ndarray]]:
        """Start what has not started, wait for every bucket; the summed gradients per node."""
        for b in range(len(self.buckets)):
            if b not in self._pending:
                self._launch(b)
        out: dict[str, list[np.ndarray]] = {}
        for b, bucket in enumerate(self.buckets):
            flat = self._pending[b].wait()[0]
            at = 0
            for s in bucket:
                n = int(np.prod(s.shape, dtype=np.int64))
                out.setdefault(s.node, []).append(flat[at:at + n].reshape(s.shape).astype(s.dtype, copy=False))
                at += n
        self._pending = {}
        return out

    def reduce(self, per_gpu: Sequence[Mapping[str, Sequence[Any]]]) -> dict[str, list[np.ndarray]]:
        """All of a step at once: each local GPU's gradients per node → their sums over all GPUs."""
        self.start()
        for bucket in self.buckets:
            for s in bucket:
                if s.index == 0:
                    self.ready(s.node, [g.get(s.node) for g in per_gpu])
        return self.finish()
