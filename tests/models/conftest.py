"""Model-quality tests train real networks: under pytest-xdist, keep each worker's BLAS to one thread.

With ``-n 2`` on 2 cores, two workers each running a 2-thread OpenBLAS fight over the cores and the dense layers
slow down about six-fold; one BLAS thread per worker keeps every core busy without that contention.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _one_blas_thread_per_xdist_worker() -> Iterator[None]:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn (a test dependency) brings threadpoolctl; without it, run unlimited
        threadpool_limits = None
    if workers <= 1 or threadpool_limits is None:
        yield
        return
    import numpy  # noqa: F401  (load BLAS so the limit applies to it)

    with threadpool_limits(limits=max(1, (os.cpu_count() or 1) // workers), user_api="blas"):
        yield
