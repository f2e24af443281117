"""The compiled Norm sample decoder (numba, GIL released).

One call decodes up to ``nmax`` consecutive samples from a byte buffer, validating framing, checksums,
nnz limits and key ranges as it goes. It writes the label/dense words, the CSR row offsets of every sparse
input (``ro_out`` from ``ro_base[g]``; the caller sets entry 0) and the keys (from ``key_base[g]``;
``cursors[g]`` counts them). Every index is bounds-checked against ``end`` before it is read, so a corrupt
file can never make it read outside the buffer. Return value: ``(n, pos, code, slot, value)``:
``n`` samples were decoded; on success or INCOMPLETE ``pos`` is where the next sample starts, on an error
it is the byte offset (in ``buf``) of the offending field.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
INCOMPLETE = 1
BAD_LENGTH = 2
CHECKSUM = 3
NNZ_NEGATIVE = 4
NNZ_ABOVE_MAX = 5
NNZ_NOT_FIXED = 6
PAYLOAD_OVERRUN = 7
PAYLOAD_TRAILING = 8
KEY_RANGE = 9


@njit(nogil=True, cache=True, inline="always")
def _u32(buf: np.ndarray, p: int) -> np.uint32:
    return (
        np.uint32(buf[p])
        | (np.uint32(buf[p + 1]) << np.uint32(8))
        | (np.uint32(buf[p + 2]) << np.uint32(16))
        | (np.uint32(buf[p + 3]) << np.uint32(24))
    )


@njit(nogil=True, cache=True, inline="always")
def _i32(buf: np.ndarray, p: int) -> np.int64:
    v = np.int64(_u32(buf, p))
    if v >= 2147483648:
        v -= 4294967296
    return v


@njit(nogil=True, cache=True, inline="always")
def _i64(buf: np.ndarray, p: int) -> np.int64:
    lo = np.uint64(_u32(buf, p))
    hi = np.uint64(_u32(buf, p + 4))
    return np.int64(lo | (hi << np.uint64(32)))


@njit(nogil=True, cache=True, inline="always")
def _byte_sum(buf: np.ndarray, p: int, limit: int) -> np.int64:
    # iterating over the slice lets LLVM vectorise the reduction
    acc = 0
    for x in buf[p:limit]:
        acc += x
    return acc & 255


@njit(nogil=True, cache=True)
def decode_norm(
    buf: np.ndarray,
    pos: int,
    end: int,
    nmax: int,
    ld: int,
    key_bytes: int,
    checksum: bool,
    min_payload: int,
    max_payload: int,
    max_nnz: np.ndarray,
    fixed: np.ndarray,
    input_of_slot: np.ndarray,
    check_range: bool,
    lo: np.ndarray,
    hi: np.ndarray,
    ld_out: np.ndarray,
    ro_out: np.ndarray,
    ro_base: np.ndarray,
    slots_per_input: np.ndarray,
    local_slot: np.ndarray,
    keys32: np.ndarray,
    keys64: np.ndarray,
    key_base: np.ndarray,
    cursors: np.ndarray,
    scratch: np.ndarray,
) -> tuple[int, int, int, int, int]:
    S = max_nnz.shape[0]
    G = cursors.shape[0]
    n = 0
    while n < nmax:
        start = pos
        if checksum:
            if pos + 4 > end:
                return n, start, INCOMPLETE, -1, 0
            length = _i32(buf, pos)
            if length < min_payload or length > max_payload:
                return n, start, BAD_LENGTH, -1, length
            p = pos + 4
            limit = p + length
            if limit + 1 > end:
                return n, start, INCOMPLETE, -1, 0
            got = _byte_sum(buf, p, limit)
            if got != np.int64(buf[limit]):
                return n, limit, CHECKSUM, -1, got
        else:
            p = pos
            limit = end
            if p + 4 * ld > end:
                return n, start, INCOMPLETE, -1, 0
        row = n * ld
        for j in range(ld):
            ld_out[row + j] = _u32(buf, p)
            p += 4
        for g in range(G):
            scratch[g] = cursors[g]
        for s in range(S):
            if p + 4 > limit:
                if checksum:
                    return n, p, PAYLOAD_OVERRUN, s, 0
                return n, start, INCOMPLETE, -1, 0
            nnz = _i32(buf, p)
            if nnz < 0:
                return n, p, NNZ_NEGATIVE, s, nnz
            if nnz > max_nnz[s]:
                return n, p, NNZ_ABOVE_MAX, s, nnz
            if fixed[s] and nnz != max_nnz[s]:
                return n, p, NNZ_NOT_FIXED, s, nnz
            p += 4
            if p + nnz * key_bytes > limit:
                if checksum:
                    return n, p, PAYLOAD_OVERRUN, s, nnz
                return n, start, INCOMPLETE, -1, 0
            g = input_of_slot[s]
            c = key_base[g] + scratch[g]
            if key_bytes == 4:
                for k in range(nnz):
                    v = _u32(buf, p)
                    if check_range:
                        iv = np.int64(v)
                        if iv < lo[s] or iv >= hi[s]:
                            return n, p, KEY_RANGE, s, iv
                    keys32[c + k] = v
                    p += 4
            else:
                for k in range(nnz):
                    v64 = _i64(buf, p)
                    if check_range and (v64 < lo[s] or v64 >= hi[s]):
                        return n, p, KEY_RANGE, s, v64
                    keys64[c + k] = v64
                    p += 8
            scratch[g] += nnz
            ro_out[ro_base[g] + n * slots_per_input[g] + local_slot[s] + 1] = scratch[g]
        if checksum:
            if p != limit:
                return n, p, PAYLOAD_TRAILING, -1, limit - p
            pos = limit + 1
        else:
            pos = p
        for g in range(G):
            cursors[g] = scratch[g]
        n += 1
    return n, pos, OK, -1, 0
