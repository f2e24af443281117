"""Raw data: one binary file of fixed-size samples, no header.

Each sample is ``label_dim`` labels and ``dense_dim`` dense values (int32, or float32 with
``float_label_dense=True``), then the keys as int32, one per slot (or ``nnz_per_slot[s]`` keys per slot for
fixed-hotness multi-hot). With int32 values the labels become floats and dense becomes ln(x + 1). Keys are
per-slot local ids: the reader adds no slot offset (the embedding does). Batches are contiguous runs of
samples read with ``pread`` and decoded with vectorised numpy.
"""

from __future__ import annotations

import os

import numpy as np

from hgc.errors import DataError
from hgc.runtime.data.layout import Block, Layout


class RawFile:
    """An open Raw file; :meth:`block` decodes samples ``[a, b)``."""

    def __init__(
        self, path: str, layout: Layout, num_samples: int = 0, float_label_dense: bool = False
    ) -> None:
        if layout.key_dtype != np.dtype(np.uint32):
            raise ValueError("key type int64 (i64_input_key=True): the Raw format stores only 32-bit keys")
        if num_samples < 0:
            raise ValueError(f"num_samples={num_samples}: must be >= 0")
        self.path = path
        self.layout = layout
        self.float_label_dense = bool(float_label_dense)
        self.keys_per_sample = int(layout.max_nnz.astype(np.int64).sum())
        self.width = layout.label_dim + layout.dense_dim + self.keys_per_sample
        self.stride = 4 * self.width
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise DataError(path, f"cannot open the Raw file: {e.strerror or e}") from None
        self._fd = fd
        try:
            size = os.fstat(fd).st_size
        except OSError as e:
            self.close()
            raise DataError(path, f"cannot stat the Raw file: {e.strerror or e}") from None
        self.file_size = size
        if size % self.stride:
            self.close()
            whole = size // self.stride
            raise DataError(
                path,
                f"the file size {size} is not a multiple of the sample stride {self.stride} bytes "
                f"(4 x (label {layout.label_dim} + dense {layout.dense_dim} + keys "
                f"{self.keys_per_sample})): truncated, or the dims do not match the file",
                sample=whole,
                offset=whole * self.stride,
            )
        have = size // self.stride
        if num_samples and num_samples > have:
            self.close()
            raise DataError(
                path,
                f"num_samples={num_samples} needs {num_samples * self.stride} bytes but the file "
                f"has {size}: it ends at sample {have}",
                sample=have,
                offset=size,
            )
        self.num_samples = int(num_samples or have)
        bounds = layout.key_bounds(global_keys=False)
        self._hi = None
        if bounds is not None:
            # per key column (slot s repeated nnz_per_slot[s] times)
            self._hi = np.repeat(bounds[1], layout.max_nnz).astype(np.int64)
            self._lo = np.repeat(bounds[0], layout.max_nnz).astype(np.int64)
            self._slot_of_col = np.repeat(np.arange(layout.slot_num), layout.max_nnz)

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def block(self, a: int, b: int) -> Block:
        """Decode samples ``[a, b)``."""
        lay = self.layout
        n = b - a
        arr = np.empty((n, self.width), dtype=np.int32)
        want = n * self.stride
        mv = memoryview(arr).cast("B")
        got = 0
        try:
            while got < want:
                k = os.preadv(self._fd, [mv[got:]], a * self.stride + got)
                if k <= 0:
                    raise DataError(
                        self.path,
                        f"the file ended while reading samples {a}..{b - 1} (it shrank after it was opened?)",
                        sample=a + got // self.stride,
                        offset=a * self.stride + got,
                    )
                got += k
        except OSError as e:
            raise DataError(
                self.path, f"cannot read the Raw file: {e.strerror or e}", sample=a, offset=a * self.stride
            ) from None
        L, D = lay.label_dim, lay.dense_dim
        if self.float_label_dense:
            ld = arr[:, : L + D].view(np.float32)
            label = np.ascontiguousarray(ld[:, :L])
            dense = np.ascontiguousarray(ld[:, L:])
        else:
            label = arr[:, :L].astype(np.float32)
            dense_i = arr[:, L : L + D]
            if D and n:
                neg = dense_i < 0
                if neg.any():
                    i, j = np.argwhere(neg)[0]
                    raise DataError(
                        self.path,
                        f"dense value {int(dense_i[i, j])} (feature {j}) is negative; "
                        "with float_label_dense=False the reader computes ln(x + 1), "
                        "which needs x >= 0",
                        sample=a + int(i),
                        offset=(a + int(i)) * self.stride + 4 * (L + int(j)),
                    )
            dense = np.log(dense_i.astype(np.float32) + np.float32(1.0))
        keys = arr[:, L + D :]
        if self._hi is not None and n:
            k64 = keys.view(np.uint32).astype(np.int64)
            bad = (k64 < self._lo) | (k64 >= self._hi)
            if bad.any():
                i, c = np.argwhere(bad)[0]
                s = int(self._slot_of_col[c])
                raise DataError(
                    self.path,
                    f"slot {s}: key {int(k64[i, c])} is outside [0, {int(self._hi[c])}) "
                    "given by slot_size_array (Raw keys are local to their slot)",
                    sample=a + int(i),
                    offset=(a + int(i)) * self.stride + 4 * (L + D + int(c)),
                )
        row_offsets, key_arrays = [], []
        for j, spec in enumerate(lay.sparse):
            sl = lay.slots_of(j)
            c0 = int(lay.max_nnz[: sl.start].astype(np.int64).sum())
            nnz = lay.max_nnz[sl.start : sl.stop].astype(np.int64)
            c1 = c0 + int(nnz.sum())
            if np.all(nnz == nnz[0]):
                ro = np.arange(n * spec.slot_num + 1, dtype=np.int64) * nnz[0]
            else:
                ro = np.empty(n * spec.slot_num + 1, dtype=np.int64)
                ro[0] = 0
                np.cumsum(np.tile(nnz, n), out=ro[1:])
            row_offsets.append(ro)
            key_arrays.append(np.ascontiguousarray(keys[:, c0:c1]).view(np.uint32).reshape(-1))
        return Block(label, dense, row_offsets, key_arrays)
