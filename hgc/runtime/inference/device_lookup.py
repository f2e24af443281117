"""An embedding layer at inference on the cuda target: the executor's embedding forward with the rows taken
from the parameter server instead of a device hash table.

For each batch the keys are read back to the host, resolved through the same
:class:`~hgc.runtime.inference.lookup.EmbeddingLookup` as on cpu (embedding cache, volatile and persistent
databases, defaults), the distinct keys' vectors are copied to the device and the training runtime's
``combine`` kernel (sum / mean per slot, in the output dtype of the precision plan) writes the layer's
output. The object poses as the executor's DeviceEmbedding; it holds no table and refuses to train.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hgc.errors import TrainingError
from hgc.runtime.cuda.device import cupy, device_dtype, scalar
from hgc.runtime.cuda.embedding import BLOCK, MAX_BLOCKS, NO_BAD, DeviceEmbedding
from hgc.runtime.cuda.staging import DeviceSparse
from hgc.runtime.data.batch import SparseBatch
from hgc.runtime.inference.lookup import EmbeddingLookup


class DeviceLookupEmbedding(DeviceEmbedding):
    """Serves one embedding node of a CudaExecutor from ``lookup``; :meth:`bind` it to the executor's table
    spec and kernels before the first forward."""

    def __init__(self, lookup: EmbeddingLookup) -> None:  # no device table: DeviceEmbedding.__init__ not run
        self.lookup = lookup
        self.name, self.vec, self.capacity = lookup.name, lookup.spec.vec, 0
        self.one_hot = lookup.spec.one_hot
        self.slot_sizes = np.asarray(lookup.spec.slot_sizes, np.int64)
        self.spec: Any = None
        self.kernels: Any = None
        self.err = cupy().asarray(np.array([NO_BAD, 0, 0, 0], np.uint64))
        self.optimizer, self.update_type, self.states, self.times = "SGD", "Local", [], 0
        self._ws = self._saved = self._grads = None
        self._keep: tuple[Any, ...] = ()

    def bind(self, spec: Any, kernels: Any) -> None:
        """Take the lowered table spec (kernel names, output dtype) and the executor's compiled kernels."""
        if int(spec.vec_size) != self.vec:
            raise ValueError(f"embedding '{self.name}': the lowered plan has vectors of {spec.vec_size} values, "
                             f"the parameter server {self.vec}")
        self.spec, self.kernels = spec, kernels

    @property
    def size(self) -> int:
        return 0

    def forward_device(self, ds: DeviceSparse, training: bool, out: Any | None = None) -> Any:
        if training:
            raise TrainingError(f"embedding '{self.name}': an inference model does not train")
        if self.spec is None:
            raise RuntimeError(f"embedding '{self.name}': bind() was not called before the first forward")
        cp = cupy()
        nseg = int(ds.nseg)
        offsets = np.asarray(cp.asnumpy(ds.offsets[:nseg + 1]), np.int64)
        nkeys = int(offsets[-1]) if nseg else 0
        keys = np.asarray(cp.asnumpy(ds.keys[:nkeys]), np.int64)
        vectors, rows = self.lookup.resolve(SparseBatch(offsets, keys, ds.slot_num))
        if out is None:
            out = cp.empty((nseg, self.vec), device_dtype(self.spec.out_dtype))
        if nseg:
            table = cp.asarray(vectors if vectors.shape[0] else np.zeros((1, self.vec), np.float32))
            d_rows = cp.asarray(rows if rows.shape[0] else np.zeros(1, np.int64))
            vn = self.vec // (4 if self.vec % 4 == 0 else (2 if self.vec % 2 == 0 else 1))
            grid = (max(1, min(MAX_BLOCKS, -(-nseg * vn // BLOCK))), 1, 1)
            self._launch("combine", grid, (BLOCK, 1, 1), (ds.offsets, d_rows, scalar(nseg, "long long"), table, out))
            self._keep = (table, d_rows)  # alive until the next forward has been issued after this one
        return out

    def backward_update(self, grad: Any) -> None:
        raise TrainingError(f"embedding '{self.name}': an inference model has no backward pass")

    def backward(self, grad: Any) -> tuple[Any, Any]:
        raise TrainingError(f"embedding '{self.name}': an inference model has no backward pass")

    def update(self, lr: float, scaler: float = 1.0, rows: Any | None = None, grads: Any | None = None) -> None:
        raise TrainingError(f"embedding '{self.name}': an inference model is not updated")

    def dump(self) -> tuple[np.ndarray, np.ndarray]:
        raise TrainingError(f"embedding '{self.name}': an inference model's rows live in the parameter server")
