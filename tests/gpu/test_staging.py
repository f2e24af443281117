"""Batches to the device: key conversion and CSR checks (no GPU needed), then on the GPU the Stager's pinned
double buffers: every array arrives intact, a slot is not refilled before the work reading it ran, even when
that work is still queued behind a slow kernel when the next batches are put, and a slot's device memory is
never memory that work queued on the caller's stream still writes."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.cuda.staging import check_sparse, key_array
from hgc.runtime.data.batch import Batch, SparseBatch


def test_keys_become_int64_values_and_uint64_keeps_its_bits() -> None:
    assert key_array(np.array([3, 7], np.uint32)).dtype == np.int64
    assert key_array(np.array([2**32 - 1], np.uint32))[0] == 2**32 - 1
    big = np.array([2**63 + 5], np.uint64)
    assert key_array(big)[0] == np.array(big).view(np.int64)[0]
    with pytest.raises(ValueError, match="integer"):
        key_array(np.array([1.5]))


def test_csr_rules() -> None:
    ok = SparseBatch(np.array([0, 1, 3, 3, 4], np.int64), np.arange(4, dtype=np.int64), 2)
    check_sparse(ok, 2)
    with pytest.raises(ValueError, match="n·slot_num"):
        check_sparse(ok, 3)
    with pytest.raises(ValueError, match="ends at"):
        check_sparse(SparseBatch(np.array([0, 1, 3, 3, 5], np.int64), np.arange(4, dtype=np.int64), 2), 2)


def host_batch(n: int, seed: int, key_dtype: type = np.uint32) -> Batch:
    r = np.random.default_rng(seed)
    nnz = r.integers(0, 4, n * 3)
    offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    keys = r.integers(0, 2**31, int(offsets[-1])).astype(key_dtype)
    # a one-hot input flagged as such on odd batches (its offsets are not copied: the Stager's 0, 1, 2, ...)
    one_hot = SparseBatch(np.arange(n * 2 + 1, dtype=np.int64), r.integers(0, 50, n * 2).astype(key_dtype), 2,
                          one_hot=bool(seed % 2))
    return Batch(n, (r.random((n, 2)) < 0.5).astype(np.float32), r.uniform(-1, 1, (n, 5)).astype(np.float32),
                 [SparseBatch(offsets, keys, 3), one_hot])


SLOW = r"""
extern "C" __global__ void slow_copy(const float* src, float* dst, long long n, long long spins) {
  for (long long k = 0; k < spins; ++k) __nanosleep(1000);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}
"""


@pytest.mark.gpu
def test_stager_copies_every_array() -> None:
    from tests.gpu._util import gpu

    cp = gpu()
    from hgc.runtime.cuda.staging import Stager

    st = Stager(depth=2)
    s = cp.cuda.Stream()
    for i, kdt in enumerate((np.uint32, np.int64, np.uint32, np.int64, np.uint32)):
        b = host_batch(17 + 4 * i, seed=i, key_dtype=kdt)
        db = st.put(b)
        with s:
            db.wait(s)
            got = (db.label.copy(), db.dense.copy(), [(x.keys[:x.nkeys].copy(), x.offsets.copy()) for x in db.sparse])
            db.release(s)
        s.synchronize()
        assert np.array_equal(cp.asnumpy(got[0]), b.label) and np.array_equal(cp.asnumpy(got[1]), b.dense)
        for (k, o), sb in zip(got[2], b.sparse):
            assert np.array_equal(cp.asnumpy(k), sb.keys.astype(np.int64))
            assert np.array_equal(cp.asnumpy(o), sb.row_offsets)
        assert [x.nseg for x in db.sparse] == [b.n * 3, b.n * 2]


@pytest.mark.gpu
def test_a_slot_waits_for_the_step_that_reads_it() -> None:
    from tests.gpu._util import gpu

    cp = gpu()
    from hgc.runtime.cuda.staging import Stager

    kernel = cp.RawKernel(SLOW, "slow_copy")
    st = Stager(depth=2)
    s = cp.cuda.Stream(non_blocking=True)
    batches = [host_batch(301, seed=10 + i) for i in range(6)]
    outs = []
    for b in batches:
        db = st.put(b)  # the third put reuses the first slot: it must wait for the slow reader below
        out = cp.empty(db.label.size, cp.float32)
        with s:
            db.wait(s)
            kernel((1,), (128,), (db.label, out, np.int64(out.size), np.int64(20_000)))  # ~20 ms
            db.release(s)
        outs.append(out)
    s.synchronize()
    for b, out in zip(batches, outs):
        assert np.array_equal(cp.asnumpy(out), b.label.reshape(-1))


@pytest.mark.gpu
def test_pinned_parts_are_copied_from_where_they_are() -> None:
    """A batch in page-locked arrays (pinned_empty) skips the fill: its large parts are copied straight from
    them (kept alive by the slot until it is reused); small parts and pageable ones are filled as before."""
    from tests.gpu._util import gpu

    cp = gpu()
    from hgc.runtime.cuda.staging import DIRECT_COPY_BYTES, Stager, is_pinned, pinned_empty

    def pin(a: np.ndarray) -> np.ndarray:
        out = pinned_empty(a.shape, a.dtype)
        out[...] = a
        return out

    st = Stager(depth=2)
    s = cp.cuda.Stream()
    for i, kdt in enumerate((np.uint32, np.int64, np.uint64)):
        n = 20_011 + i
        r = np.random.default_rng(i)
        label = pin((r.random((n, 1)) < 0.5).astype(np.float32))
        dense = pin(r.uniform(-1, 1, (n, 7)).astype(np.float32))
        keys = pin(r.integers(0, 2**31, n * 3).astype(kdt))
        small = r.integers(0, 9, n).astype(kdt)  # pageable: filled
        b = Batch(n, label, dense, [SparseBatch(np.arange(n * 3 + 1, dtype=np.int64), keys, 3, one_hot=True),
                                    SparseBatch(np.arange(n + 1, dtype=np.int64), small, 1)])
        assert is_pinned(dense) and is_pinned(keys[5:]) and not is_pinned(small)
        assert label.nbytes >= DIRECT_COPY_BYTES  # so the label column is copied directly too
        db = st.put(b)
        slot = st.slots[(st.index - 1) % 2]
        assert len(slot.keep) == 3 and all(any(np.shares_memory(k, a) for k in slot.keep) for a in (label, dense, keys))
        with s:
            db.wait(s)
            got = [db.label.copy(), db.dense.copy(), db.sparse[0].keys[:n * 3].copy(), db.sparse[1].keys[:n].copy(),
                   db.sparse[1].offsets.copy()]
            db.release(s)
        s.synchronize()
        assert np.array_equal(cp.asnumpy(got[0]), label) and np.array_equal(cp.asnumpy(got[1]), dense)
        assert np.array_equal(cp.asnumpy(got[2]), keys.astype(np.int64) if kdt != np.uint64 else keys.view(np.int64))
        assert np.array_equal(cp.asnumpy(got[3]), small.astype(np.int64) if kdt != np.uint64 else small.view(np.int64))
        assert np.array_equal(cp.asnumpy(got[4]), np.arange(n + 1))


SLOW_FILL = r"""
extern "C" __global__ void slow_fill(float* dst, long long n, long long spins) {
  for (long long k = 0; k < spins; ++k) __nanosleep(1000);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) dst[i] = -7.0f;
}
"""


@pytest.mark.gpu
def test_slot_memory_is_not_what_the_callers_stream_still_uses() -> None:
    """A slot's device buffer comes from the copy stream's share of CuPy's pool. Memory the caller's stream
    has just freed — a temporary that a queued slow kernel still writes — is never where a batch lands (the
    direct copies of page-locked parts start at once, long before that kernel has run)."""
    from tests.gpu._util import gpu

    cp = gpu()
    from hgc.runtime.cuda.staging import Stager, pinned_empty

    def pin(a: np.ndarray) -> np.ndarray:
        out = pinned_empty(a.shape, a.dtype)
        out[...] = a
        return out

    kernel = cp.RawKernel(SLOW_FILL, "slow_fill")
    s = cp.cuda.Stream(non_blocking=True)
    r = np.random.default_rng(5)
    n = 30_011
    offsets = np.arange(n * 2 + 1, dtype=np.int64)
    b = Batch(n, pin((r.random((n, 1)) < 0.5).astype(np.float32)), pin(r.uniform(-1, 1, (n, 7)).astype(np.float32)),
              [SparseBatch(pin(offsets), pin(r.integers(0, 2**31, n * 2).astype(np.uint32)), 2)])
    with s:
        tmp = cp.empty(8 << 20, cp.float32)
        kernel((1,), (256,), (tmp, np.int64(tmp.size), np.int64(30_000)))  # ~30 ms, then overwrites all of tmp
        del tmp  # free in s's order: the pool gives it to s's next allocation
        st = Stager(depth=2)
        db = st.put(b)
        db.wait(s)
        got = [db.label.copy(), db.dense.copy(), db.sparse[0].keys[:n * 2].copy(), db.sparse[0].offsets.copy()]
        db.release(s)
    s.synchronize()
    assert np.array_equal(cp.asnumpy(got[0]), b.label) and np.array_equal(cp.asnumpy(got[1]), b.dense)
    assert np.array_equal(cp.asnumpy(got[2]), b.sparse[0].keys.astype(np.int64))
    assert np.array_equal(cp.asnumpy(got[3]), offsets)


@pytest.mark.gpu
def test_pinned_batch_moves_the_large_arrays() -> None:
    from tests.gpu._util import gpu

    gpu()
    from hgc.runtime.cuda.staging import DIRECT_COPY_BYTES, is_pinned, pinned_batch

    b = host_batch(30_011, seed=3)  # the second input is one-hot on odd seeds: its offsets stay as they are
    p = pinned_batch(b)
    large = [p.label, p.dense, p.sparse[0].keys, p.sparse[0].row_offsets, p.sparse[1].keys]
    assert all(a.nbytes >= DIRECT_COPY_BYTES and is_pinned(a) for a in large)
    assert p.sparse[1].row_offsets is b.sparse[1].row_offsets and p.sparse[1].one_hot
    for got, want in zip(large, [b.label, b.dense, b.sparse[0].keys, b.sparse[0].row_offsets, b.sparse[1].keys]):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    small = host_batch(5, seed=3)
    assert pinned_batch(small).dense is small.dense and not is_pinned(small.dense)
