"""staging.fill: the pinned-buffer copy, split over threads for large arrays, equals np.copyto."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.cuda import staging


@pytest.mark.parametrize("src_dtype,dst_dtype", [(np.int64, np.int64), (np.int32, np.int64), (np.uint32, np.int64),
                                                 (np.float32, np.float32)])
@pytest.mark.parametrize("n", [1, 1_048_583, 3_407_873])  # below and above PARALLEL_COPY_BYTES, odd sizes
def test_fill_equals_copyto(src_dtype: type, dst_dtype: type, n: int) -> None:
    r = np.random.default_rng(n)
    src = (r.integers(0, 2**31 - 1, n) if np.dtype(src_dtype).kind in "iu" else r.uniform(-1, 1, n)).astype(src_dtype)
    want = np.empty(n, dst_dtype)
    np.copyto(want, src, casting="unsafe")
    got = np.full(n, -7, dst_dtype)
    staging.fill(got, src)
    assert np.array_equal(got, want)


def test_fill_uses_the_pool_for_large_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "_COPY_THREADS", 3)
    src = np.arange(staging.PARALLEL_COPY_BYTES // 8 + 5, dtype=np.int64)
    got = np.zeros_like(src)
    staging.fill(got, src)
    assert np.array_equal(got, src) and staging._copy_pool is not None
