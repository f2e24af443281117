"""Norm data files: a 64-byte header, then samples (label, dense, per slot nnz + keys).

With ``Check_t.Sum`` every record, the header included, is framed as ``int32 length, payload, int8 check``
where ``check`` is the byte sum of the payload (nnz integers included) modulo 256. With ``Check_t.Non``
the header and payloads follow each other bare. Files are decoded in chunks by a compiled kernel, so memory
stays bounded and no Python code runs per sample.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from hgc.errors import DataError
from hgc.runtime.data import _norm_kernel as K
from hgc.runtime.data.layout import Block, Layout

HEADER_BYTES = 64
CHUNK_BYTES = 4 << 20
CHUNK_SAMPLES = 16384
_FIELDS = ("error_check", "number_of_records", "label_dim", "dense_dim", "slot_num")


@dataclass(frozen=True)
class NormHeader:
    error_check: int
    number_of_records: int
    label_dim: int
    dense_dim: int
    slot_num: int
    size: int  # bytes the header occupies in the file (64, or 69 with Sum framing)


def header_bytes(checksum: bool) -> int:
    return HEADER_BYTES + 5 if checksum else HEADER_BYTES


def read_header(f: BinaryIO, path: str, file_size: int, layout: Layout, checksum: bool) -> NormHeader:
    """Read and validate the header at the start of ``f`` against the layout and the check type."""
    need = header_bytes(checksum)
    raw = f.read(need)
    if len(raw) < need:
        if checksum and len(raw) >= 4 and struct.unpack_from("<i", raw)[0] != HEADER_BYTES:
            _not_sum(path, raw)
        raise DataError(
            path,
            f"truncated header: the file has {file_size} bytes but a Norm header "
            f"{'record (Check_t.Sum framing) ' if checksum else ''}needs {need}",
            sample=None,
            offset=len(raw),
        )
    base = 0
    if checksum:
        length = struct.unpack_from("<i", raw)[0]
        if length != HEADER_BYTES:
            _not_sum(path, raw)
        payload = raw[4 : 4 + HEADER_BYTES]
        got = sum(payload) & 255
        if got != raw[4 + HEADER_BYTES]:
            raise DataError(
                path,
                f"checksum mismatch in the header record: the stored check byte is "
                f"{raw[4 + HEADER_BYTES]}, the payload sums to {got} (mod 256)",
                offset=4 + HEADER_BYTES,
            )
        base = 4
    vals = struct.unpack_from("<8q", raw, base)
    hdr = NormHeader(*vals[:5], size=need)
    want_check = 1 if checksum else 0
    if hdr.error_check != want_check:
        if hdr.error_check in (0, 1):
            rule = (
                f"header error_check={hdr.error_check} means Check_t.{'Sum' if hdr.error_check else 'Non'} "
                f"but the reader uses Check_t.{'Sum' if checksum else 'Non'}"
            )
        elif not checksum and (hdr.error_check & 0xFFFFFFFF) == HEADER_BYTES:
            rule = (
                "header error_check must be 0 or 1; the file starts with the int32 64, so it looks like "
                "Check_t.Sum framing but the reader uses Check_t.Non"
            )
        else:
            rule = f"header error_check={hdr.error_check}: must be 0 (Check_t.Non) or 1 (Check_t.Sum)"
        raise DataError(path, rule, offset=base)
    if hdr.number_of_records < 0:
        raise DataError(
            path, f"header number_of_records={hdr.number_of_records} is negative", offset=base + 8
        )
    checks = (
        ("label_dim", layout.label_dim, 16, "the Input's label dims"),
        ("dense_dim", layout.dense_dim, 24, "the Input's dense_dim"),
        ("slot_num", layout.slot_num, 32, "the total slot_num of the sparse inputs"),
    )
    for name, want, off, what in checks:
        got_v = getattr(hdr, name)
        if got_v != want:
            raise DataError(path, f"header {name}={got_v} does not match {what} ({want})", offset=base + off)
    return hdr


def _not_sum(path: str, raw: bytes) -> None:
    first = struct.unpack_from("<i", raw)[0]
    if len(raw) >= 8 and struct.unpack_from("<q", raw)[0] in (0, 1):
        ec = struct.unpack_from("<q", raw)[0]
        rule = (
            f"the file starts with a bare header (error_check={ec}), not a Check_t.Sum header record; "
            "it was written with Check_t.Non but the reader uses Check_t.Sum"
        )
    else:
        rule = f"the Check_t.Sum header record must start with the int32 64 (its length); found {first}"
    raise DataError(path, rule, offset=0)


class DecodeScratch:
    """Output buffers of the decoder, reused from chunk to chunk (one per worker thread)."""

    def __init__(self) -> None:
        self.buf: np.ndarray | None = None
        self.nmax = -1
        self.owner: object = None

    def ensure(self, dec: NormDecoder, nmax: int) -> None:
        if self.owner is dec and self.nmax >= nmax:
            self.cursors[:] = 0
            return
        lay = dec.layout
        G = len(lay.sparse)
        nmax = max(nmax, self.nmax if self.owner is dec else 0)
        self.ld_out = np.empty(nmax * (lay.label_dim + lay.dense_dim), dtype=np.uint32)
        ro_len = nmax * dec.slots_per_input + 1
        self.ro_base = np.concatenate([[0], np.cumsum(ro_len)[:-1]]).astype(np.int64)
        self.ro_out = np.empty(int(ro_len.sum()), dtype=np.int64)
        self.ro_out[self.ro_base] = 0
        caps = dec.per_input_max * nmax
        self.key_base = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        total = int(caps.sum())
        if lay.key_bytes == 4:
            self.keys32, self.keys64 = np.empty(total, dtype=np.uint32), np.empty(0, dtype=np.int64)
        else:
            self.keys32, self.keys64 = np.empty(0, dtype=np.uint32), np.empty(total, dtype=np.int64)
        self.cursors = np.zeros(G, dtype=np.int64)
        self.scratch = np.zeros(G, dtype=np.int64)
        self.nmax, self.owner = nmax, dec


class NormDecoder:
    """Decodes Norm files for one layout and check type into :class:`Block` objects."""

    def __init__(
        self,
        layout: Layout,
        checksum: bool,
        chunk_samples: int = CHUNK_SAMPLES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.layout = layout
        self.checksum = checksum
        self.chunk_samples = max(1, int(chunk_samples))
        self.max_payload = layout.max_record_payload()
        self.min_payload = layout.min_record_payload()
        self.max_record = self.max_payload + (5 if checksum else 0)
        self.capacity = max(int(chunk_bytes), 2 * self.max_record)
        bounds = layout.key_bounds(global_keys=True)
        self.check_range = bounds is not None
        self.lo, self.hi = bounds if bounds is not None else (np.zeros(1, np.int64), np.zeros(1, np.int64))
        self.per_input_max = np.array(
            [
                int(layout.max_nnz[list(layout.slots_of(j))].astype(np.int64).sum())
                for j in range(len(layout.sparse))
            ],
            dtype=np.int64,
        )
        self.slots_per_input = np.array([sp.slot_num for sp in layout.sparse], dtype=np.int64)
        self.local_slot = np.array(
            [s - layout.slot_starts[j] for j, sp in enumerate(layout.sparse) for s in layout.slots_of(j)],
            dtype=np.int64,
        )

    def blocks(self, path: str, scratch: DecodeScratch | None = None) -> Iterator[Block]:
        """Yield the samples of the file at ``path`` as blocks of at most ``chunk_samples`` rows.

        With a ``scratch``, the blocks live in its buffers and are only valid until the next block is
        requested (the reader's workers use one scratch each, so no memory is allocated per chunk)."""
        try:
            f = open(path, "rb")
        except OSError as e:
            raise DataError(path, f"cannot open the data file: {e.strerror or e}") from None
        with f:
            try:
                size = os.fstat(f.fileno()).st_size
                yield from self._blocks(f, path, size, scratch)
            except OSError as e:
                raise DataError(path, f"cannot read the data file: {e.strerror or e}") from None

    def _blocks(self, f: BinaryIO, path: str, size: int, scratch: DecodeScratch | None) -> Iterator[Block]:
        lay = self.layout
        hdr = read_header(f, path, size, lay, self.checksum)
        remaining = hdr.number_of_records
        file_off = hdr.size  # file offset of buf[0]
        if scratch is not None:
            if scratch.buf is None or scratch.buf.shape[0] < self.capacity:
                scratch.buf = np.empty(self.capacity, dtype=np.uint8)
            buf = scratch.buf
        else:
            buf = np.empty(self.capacity, dtype=np.uint8)
        view = memoryview(buf)
        fill = 0
        sample = 0
        eof = False
        while remaining > 0:
            while not eof and fill < self.capacity:
                got = f.readinto(view[fill:])
                if not got:
                    eof = True
                    break
                fill += got
            nmax = min(remaining, self.chunk_samples)
            n, pos, code, slot, value, out = self._decode(buf, fill, nmax, scratch)
            if code not in (K.OK, K.INCOMPLETE):
                raise self._error(path, hdr, code, sample + n, file_off + pos, slot, value)
            if n:
                yield out
                remaining -= n
                sample += n
            if code == K.INCOMPLETE and n == 0 and not eof and fill >= self.capacity:
                # cannot happen (a buffer holds two largest records); guards the loop against spinning
                raise DataError(path, "a sample does not fit the read buffer", sample=sample, offset=file_off)
            if code == K.INCOMPLETE and n == 0 and eof:
                raise DataError(
                    path,
                    f"truncated: the header says {hdr.number_of_records} samples but the file "
                    f"ends inside sample {sample} ({size} bytes)",
                    sample=sample,
                    offset=file_off + pos,
                )
            left = fill - pos
            if left:
                buf[:left] = buf[pos:fill]
            file_off += pos
            fill = left
        if fill or f.read(1):
            raise DataError(
                path,
                f"the file has bytes after the {hdr.number_of_records} samples its header "
                f"announces (number_of_records disagrees with the file size {size})",
                sample=hdr.number_of_records,
                offset=file_off,
            )

    def _decode(self, buf: np.ndarray, fill: int, nmax: int, scratch: DecodeScratch | None) -> tuple:
        lay = self.layout
        ld = lay.label_dim + lay.dense_dim
        G = len(lay.sparse)
        sc = scratch if scratch is not None else DecodeScratch()
        sc.ensure(self, nmax)
        n, pos, code, slot, value = K.decode_norm(
            buf,
            0,
            fill,
            nmax,
            ld,
            lay.key_bytes,
            self.checksum,
            self.min_payload,
            self.max_payload,
            lay.max_nnz,
            lay.fixed,
            lay.input_of_slot,
            self.check_range,
            self.lo,
            self.hi,
            sc.ld_out,
            sc.ro_out,
            sc.ro_base,
            self.slots_per_input,
            self.local_slot,
            sc.keys32,
            sc.keys64,
            sc.key_base,
            sc.cursors,
            sc.scratch,
        )
        n = int(n)
        if n == 0:
            return n, int(pos), int(code), int(slot), int(value), None
        lab_dense = sc.ld_out[: n * ld].view(np.float32).reshape(n, ld)
        keys_all = sc.keys32 if lay.key_bytes == 4 else sc.keys64
        row_offsets, keys = [], []
        for j in range(G):
            b = int(sc.ro_base[j])
            row_offsets.append(sc.ro_out[b : b + n * int(self.slots_per_input[j]) + 1])
            k = int(sc.key_base[j])
            keys.append(keys_all[k : k + int(sc.cursors[j])])
        blk = Block(lab_dense[:, : lay.label_dim], lab_dense[:, lay.label_dim :], row_offsets, keys)
        return n, int(pos), int(code), int(slot), int(value), blk

    def _error(
        self, path: str, hdr: NormHeader, code: int, sample: int, offset: int, slot: int, value: int
    ) -> DataError:
        lay = self.layout
        if code == K.BAD_LENGTH:
            rule = (
                f"record length {value} is impossible for this layout (a sample payload takes "
                f"{self.min_payload}..{self.max_payload} bytes)"
            )
        elif code == K.CHECKSUM:
            rule = (
                f"checksum mismatch: the payload sums to {value} (mod 256) but the stored check byte differs"
            )
        elif code == K.NNZ_NEGATIVE:
            rule = f"slot {slot}: nnz={value} is negative"
        elif code == K.NNZ_ABOVE_MAX:
            rule = (
                f"slot {slot}: nnz={value} is above the slot's maximum nnz_per_slot={int(lay.max_nnz[slot])}"
            )
        elif code == K.NNZ_NOT_FIXED:
            rule = (
                f"slot {slot}: nnz={value} but the sparse input is fixed-length (is_fixed_length=True) with "
                f"nnz_per_slot={int(lay.max_nnz[slot])}"
            )
        elif code == K.PAYLOAD_OVERRUN:
            rule = f"slot {slot}: the slot runs past the end of the record length"
        elif code == K.PAYLOAD_TRAILING:
            rule = f"the record length leaves {value} bytes unused after the last slot"
        elif code == K.KEY_RANGE:
            lo, hi = int(self.lo[slot]), int(self.hi[slot])
            rule = (
                f"slot {slot}: key {value} is outside the slot's range [{lo}, {hi}) given by slot_size_array "
                f"(Norm keys carry the slot offset)"
            )
        else:
            rule = f"decoder error code {code}"
        return DataError(path, rule, sample=sample, offset=offset)


def read_norm_file(path: str, layout: Layout, check_type: str = "Sum") -> Block:
    """Decode a whole Norm file into one block (convenience for tools and tests)."""
    from hgc.runtime.data.assemble import concat_blocks
    from hgc.runtime.data.layout import check_type_name

    dec = NormDecoder(layout, check_type_name(check_type) == "Sum")
    return concat_blocks(layout, list(dec.blocks(path)))
