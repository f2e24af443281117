"""An independent Norm / Raw / Parquet writer and Norm parser, written from the byte layouts in the
reference facts (§4) with struct/pyarrow only — no hgc code — plus helpers that turn batches back into
per-sample records for comparison."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# A sample: (labels: list[float], dense: list[float], slots: list[list[int]])


def _frame(payload: bytes, checksum: bool) -> bytes:
    if not checksum:
        return payload
    check = sum(struct.unpack(f"{len(payload)}b", payload)) % 256  # signed chars, mod 256
    return struct.pack("<i", len(payload)) + payload + struct.pack("<B", check)


def norm_header(
    records: int,
    label_dim: int,
    dense_dim: int,
    slot_num: int,
    checksum: bool,
    reserved: tuple[int, int, int] = (0, 0, 0),
) -> bytes:
    body = struct.pack("<qqqqq", 1 if checksum else 0, records, label_dim, dense_dim, slot_num)
    body += struct.pack("<qqq", *reserved)
    return _frame(body, checksum)


def norm_sample(labels, dense, slots, i64: bool, checksum: bool) -> bytes:
    body = b"".join(struct.pack("<f", float(v)) for v in list(labels) + list(dense))
    for keys in slots:
        body += struct.pack("<i", len(keys))
        body += b"".join(struct.pack("<q" if i64 else "<I", int(k)) for k in keys)
    return _frame(body, checksum)


def norm_file(
    samples,
    label_dim: int,
    dense_dim: int,
    slot_num: int,
    i64: bool,
    checksum: bool,
    records: int | None = None,
) -> bytes:
    out = norm_header(len(samples) if records is None else records, label_dim, dense_dim, slot_num, checksum)
    for lab, den, slots in samples:
        out += norm_sample(lab, den, slots, i64, checksum)
    return out


def parse_norm(data: bytes, i64: bool) -> tuple[tuple[int, ...], list]:
    """A slow reference parser: (header fields, samples)."""
    pos = 0
    checksum = struct.unpack_from("<i", data, 0)[0] == 64 and len(data) >= 69
    if checksum:
        pos = 4
    hdr = struct.unpack_from("<8q", data, pos)
    pos += 64 + (1 if checksum else 0)
    _, n, L, D, S = hdr[:5]
    kfmt, kb = ("<q", 8) if i64 else ("<I", 4)
    samples = []
    for _ in range(n):
        if checksum:
            pos += 4
        vals = struct.unpack_from(f"<{L + D}f", data, pos)
        pos += 4 * (L + D)
        slots = []
        for _ in range(S):
            nnz = struct.unpack_from("<i", data, pos)[0]
            pos += 4
            slots.append([struct.unpack_from(kfmt, data, pos + kb * j)[0] for j in range(nnz)])
            pos += kb * nnz
        if checksum:
            pos += 1
        samples.append((list(vals[:L]), list(vals[L:]), slots))
    assert pos == len(data)
    return hdr, samples


def write_file_list(path: str, files: list[str]) -> None:
    with open(path, "w") as f:
        f.write(f"{len(files)}\n" + "".join(p + "\n" for p in files))


def raw_file(samples, float_label_dense: bool) -> bytes:
    """Samples with integer (or float) label/dense and one or more keys per slot (fixed per slot)."""
    out = b""
    for lab, den, slots in samples:
        t = "<f" if float_label_dense else "<i"
        out += b"".join(struct.pack(t, v) for v in list(lab) + list(den))
        out += b"".join(struct.pack("<i", int(k)) for keys in slots for k in keys)
    return out


def parquet_file(path: str, labels: dict, conts: dict, cats: dict, order: list[str] | None = None) -> None:
    """Columns: float32 label/conts; cats as int64 arrays or lists of lists (list<int64>)."""
    cols = {}
    for name, v in labels.items():
        cols[name] = pa.array(np.asarray(v, dtype=np.float32))
    for name, v in conts.items():
        cols[name] = pa.array(np.asarray(v, dtype=np.float32))
    for name, v in cats.items():
        if len(v) and isinstance(v[0], (list, tuple)):
            cols[name] = pa.array([list(map(int, x)) for x in v], type=pa.list_(pa.int64()))
        else:
            cols[name] = pa.array(np.asarray(v, dtype=np.int64))
    names = order or list(cols)
    pq.write_table(pa.table({n: cols[n] for n in names}), path)


def metadata(
    path: str,
    files: list[tuple[str, int]],
    labels: list[str],
    conts: list[str],
    cats: list[str],
    index: dict[str, int] | None = None,
) -> None:
    index = index or {}
    nxt = iter(range(10**6))
    doc = {
        "file_stats": [{"file_name": f, "num_rows": n} for f, n in files],
        "labels": [{"col_name": c, "index": index.get(c, next(nxt))} for c in labels],
        "conts": [{"col_name": c, "index": index.get(c, next(nxt))} for c in conts],
        "cats": [{"col_name": c, "index": index.get(c, next(nxt))} for c in cats],
    }
    with open(os.path.join(path, "_metadata.json"), "w") as f:
        json.dump(doc, f)


def random_samples(
    rng: np.random.Generator,
    n: int,
    label_dim: int,
    dense_dim: int,
    max_nnz: list[int],
    fixed: list[bool] | None = None,
    key_hi: int = 1 << 31,
    i64: bool = False,
) -> list:
    fixed = fixed or [False] * len(max_nnz)
    out = []
    for _ in range(n):
        lab = [float(np.float32(x)) for x in rng.random(label_dim)]
        den = [float(np.float32(x)) for x in rng.standard_normal(dense_dim)]
        slots = []
        for k, f in zip(max_nnz, fixed):
            nnz = k if f else int(rng.integers(0, k + 1))
            hi = key_hi if not i64 else (1 << 62)
            slots.append([int(x) for x in rng.integers(0, hi, nnz)])
        out.append((lab, den, slots))
    return out


def batches_to_samples(batches, slot_counts: list[int], label_dim: int) -> list:
    """Real rows of reader batches as (labels, dense, slots) with slots of every sparse input in order."""
    out = []
    for b in batches:
        for i in range(b.size):
            slots = []
            for sb, S in zip(b.sparse, slot_counts):
                ro = sb.row_offsets
                for s in range(S):
                    slots.append([int(k) for k in sb.keys[ro[i * S + s] : ro[i * S + s + 1]]])
            out.append(([float(x) for x in b.label[i, :label_dim]], [float(x) for x in b.dense[i]], slots))
    return out


def assert_same_samples(got: list, want: list) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(np.float32(g[0]), np.float32(w[0]), err_msg=f"labels of sample {i}")
        np.testing.assert_array_equal(np.float32(g[1]), np.float32(w[1]), err_msg=f"dense of sample {i}")
        assert g[2] == w[2], f"keys of sample {i}: {g[2]} != {w[2]}"


def check_padding(batch) -> None:
    """Rows size..n of a batch: zero label/dense, no keys."""
    assert np.all(batch.label[batch.size :] == 0) and np.all(batch.dense[batch.size :] == 0)
    for sb in batch.sparse:
        nnz = sb.nnz()
        assert nnz.shape[0] == batch.n
        assert np.all(nnz[batch.size :] == 0)
        assert sb.row_offsets[0] == 0 and sb.row_offsets[-1] == sb.keys.shape[0]
        assert np.all(np.diff(sb.row_offsets) >= 0)
