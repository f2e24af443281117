"""Property test: thousands of mutated files per format. Each either reads correctly or raises DataError —
never another exception, never a hang. Where the format can detect a mutation (Check_t.Sum covers every
byte; truncation breaks number_of_records), the test demands the DataError."""

import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.data.layout import Layout
from hgc.runtime.data.norm import NormDecoder
from hgc.runtime.data.parquet import ParquetDecoder, load_metadata
from hgc.runtime.data.raw import RawFile
from hgc.runtime.data.reader import DataReader
from tests.runtime.data import spec

SIZES = [40, 30, 20]


def _valid_block(blk, layout, rows=None):
    if rows is not None:
        assert blk.label.shape == (rows, layout.label_dim)
    for ro, keys, sp in zip(blk.row_offsets, blk.keys, layout.sparse):
        assert ro.shape == (blk.m * sp.slot_num + 1,) and ro[0] == 0 and ro[-1] == keys.shape[0]
        nnz = np.diff(ro).reshape(blk.m, sp.slot_num)
        assert np.all(nnz >= 0) and np.all(nnz <= np.asarray(sp.nnz_per_slot))


def _mutants(rng, data: bytes, header: int, count: int, header_fields: bool, checksum: bool):
    """(kind, bytes) pairs: truncations, single/multi byte flips, insertions/deletions, header field edits."""
    n = len(data)
    for i in range(count):
        kind = i % 6
        b = bytearray(data)
        if kind == 0:
            yield "truncate", bytes(b[: int(rng.integers(0, n))])
        elif kind == 1:
            p = int(rng.integers(0, n))
            b[p] ^= int(rng.integers(1, 256))
            yield "flip1", bytes(b)
        elif kind == 2:
            for p in rng.integers(0, n, int(rng.integers(2, 6))):
                b[int(p)] ^= int(rng.integers(1, 256))
            yield "flipN", bytes(b)
        elif kind == 3:
            p = int(rng.integers(0, n))
            if rng.random() < 0.5:
                del b[p : p + int(rng.integers(1, 9))]
            else:
                b[p:p] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
            yield "splice", bytes(b)
        elif header_fields:
            field = int(rng.integers(0, 8))
            base = 4 if checksum else 0
            old = struct.unpack_from("<q", b, base + 8 * field)[0]
            new = int(
                rng.choice([-1, 0, 1, 2, 3, old - 1, old + 1, 1 << 40, -(1 << 62), int(rng.integers(0, 99))])
            )
            struct.pack_into("<q", b, base + 8 * field, new)
            if checksum:
                b[68] = sum(struct.unpack("64b", bytes(b[4:68]))) % 256
            yield ("reserved" if field >= 5 else "header"), bytes(b)
        else:
            p = int(rng.integers(0, min(n, header + 40)))
            b[p] ^= 1 << int(rng.integers(0, 8))
            yield "flip1", bytes(b)


@pytest.mark.parametrize("checksum", [True, False])
def test_norm_mutations(tmp_path, checksum):
    rng = np.random.default_rng(100 + checksum)
    offs = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    samples = []
    for _ in range(5):
        slots = [
            [int(offs[s] + rng.integers(0, SIZES[s])) for _ in range(int(rng.integers(0, k + 1)))]
            for s, k in enumerate([2, 1, 3])
        ]
        samples.append(
            ([float(np.float32(rng.random()))], [float(np.float32(x)) for x in rng.random(2)], slots)
        )
    data = spec.norm_file(samples, 1, 2, 3, False, checksum)
    layout = Layout.make(1, 2, [(2, [2, 1], False), (1, 3, False)], "uint32", SIZES)
    dec = NormDecoder(layout, checksum, chunk_samples=2)
    path = str(tmp_path / "m.data")
    counts = {"ok": 0, "error": 0}
    for kind, mutated in _mutants(rng, data, 69 if checksum else 64, 600, True, checksum):
        with open(path, "wb") as f:
            f.write(mutated)
        try:
            blocks = list(dec.blocks(path))
        except DataError as e:
            assert e.file == path and e.rule
            counts["error"] += 1
            continue
        counts["ok"] += 1
        for blk in blocks:
            _valid_block(blk, layout)
        assert kind not in ("truncate",) or mutated == data, "a truncated file read without error"
        if checksum:
            assert kind not in ("flip1",), "Check_t.Sum let a flipped byte through"
        if kind == "reserved" or mutated == data:
            got = sum(b.m for b in blocks)
            assert got == 5
    assert counts["error"] > 300 and counts["ok"] > 10


def test_raw_mutations(tmp_path):
    rng = np.random.default_rng(7)
    samples = [
        (
            [int(rng.integers(0, 2))],
            [int(x) for x in rng.integers(0, 100, 2)],
            [[int(rng.integers(0, s))] for s in SIZES],
        )
        for _ in range(6)
    ]
    data = spec.raw_file(samples, False)
    layout = Layout.make(1, 2, [(3, 1, True)], "uint32", SIZES)
    path = str(tmp_path / "m.bin")
    errors = 0
    for i, (kind, mutated) in enumerate(_mutants(rng, data, 0, 1000, False, False)):
        with open(path, "wb") as f:
            f.write(mutated)
        pinned = 6 if i % 2 else 0  # num_samples given (HugeCTR requires it) or taken from the file size
        try:
            raw = RawFile(path, layout, pinned, False)
            blk = raw.block(0, raw.num_samples)
            raw.close()
        except DataError as e:
            assert e.file == path
            errors += 1
            continue
        _valid_block(blk, layout, raw.num_samples)
        assert np.all(np.isfinite(blk.dense))
        if kind == "truncate" and pinned:
            raise AssertionError("a truncated Raw file read with num_samples set")
    assert errors > 300


def _parquet_base(tmp_path, rng):
    n = 8
    labels = {"label": rng.random(n).astype(np.float32)}
    conts = {"I1": rng.random(n).astype(np.float32), "I2": rng.random(n).astype(np.float32)}
    cats = {
        "C1": rng.integers(0, SIZES[0], n),
        "C2": [list(rng.integers(0, SIZES[1], rng.integers(0, 3))) for _ in range(n)],
        "C3": rng.integers(0, SIZES[2], n),
    }
    path = str(tmp_path / "p.parquet")
    spec.parquet_file(path, labels, conts, cats)
    spec.metadata(str(tmp_path), [("p.parquet", n)], ["label"], ["I1", "I2"], ["C1", "C2", "C3"])
    return path, n


def test_parquet_mutations(tmp_path):
    rng = np.random.default_rng(9)
    path, n = _parquet_base(tmp_path, rng)
    data = Path(path).read_bytes()
    meta_path = str(tmp_path / "_metadata.json")
    meta_text = Path(meta_path).read_bytes()
    layout = Layout.make(1, 2, [(1, 1, True), (2, [2, 1], False)], "int64", SIZES)
    meta = load_metadata(meta_path)
    dec = ParquetDecoder(layout, meta, chunk_rows=3)
    errors = 0
    for kind, mutated in _mutants(rng, data, 0, 800, False, False):
        with open(path, "wb") as f:
            f.write(mutated)
        try:
            blocks = list(dec.blocks(path))
        except DataError as e:
            assert e.file in (path, meta_path)
            errors += 1
            continue
        for blk in blocks:
            _valid_block(blk, layout)
        assert sum(b.m for b in blocks) == n
        assert kind != "truncate", "a truncated Parquet file read without error"
    with open(path, "wb") as f:
        f.write(data)
    meta_errors = 0
    for kind, mutated in _mutants(rng, meta_text, 0, 200, False, False):
        with open(meta_path, "wb") as f:
            f.write(mutated)
        try:
            m = load_metadata(meta_path)
            list(ParquetDecoder(layout, m).blocks(path))
        except DataError as e:
            assert e.file in (path, meta_path)
            meta_errors += 1
    assert errors > 300 and meta_errors > 100


def test_structured_metadata_edits(tmp_path):
    rng = np.random.default_rng(11)
    path, _n = _parquet_base(tmp_path, rng)
    meta_path = str(tmp_path / "_metadata.json")
    base = json.load(open(meta_path))
    layout = Layout.make(1, 2, [(1, 1, True), (2, [2, 1], False)], "int64", SIZES)
    edits = [
        lambda d: d.pop(rng.choice(list(d))),
        lambda d: d.__setitem__(
            "file_stats", [{"file_name": "p.parquet", "num_rows": int(rng.integers(-2, 20))}]
        ),
        lambda d: d["cats"].reverse(),
        lambda d: d["cats"].pop(),
        lambda d: d["conts"][0].__setitem__("col_name", "nope"),
        lambda d: d["labels"][0].__setitem__("index", "zero"),
        lambda d: d.__setitem__("labels", {"col_name": "label"}),
        lambda d: d["cats"].append(d["cats"][0]),
    ]
    outcomes = set()
    for i in range(200):
        doc = json.loads(json.dumps(base))
        edits[i % len(edits)](doc)
        with open(meta_path, "w") as f:
            json.dump(doc, f)
        try:
            list(ParquetDecoder(layout, load_metadata(meta_path)).blocks(path))
            outcomes.add("ok")
        except DataError as e:
            assert e.file in (path, meta_path)
            outcomes.add("error")
    assert outcomes == {"ok", "error"}


def _run_with_timeout(fn, seconds=20.0):
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the reader hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_threaded_reader_never_hangs_on_mutations(tmp_path):
    rng = np.random.default_rng(13)
    samples = spec.random_samples(rng, 12, 1, 2, [2, 2], key_hi=100)
    data = spec.norm_file(samples, 1, 2, 2, False, True)
    files = [str(tmp_path / f"{k}.data") for k in range(3)]
    spec.write_file_list(str(tmp_path / "l.txt"), files)
    outcomes = set()
    for i, (_, mutated) in enumerate(_mutants(rng, data, 69, 60, True, True)):
        for k, f in enumerate(files):
            with open(f, "wb") as fh:
                fh.write(mutated if k == i % 3 else data)
        for repeat in (False, True):
            r = DataReader(
                "Norm",
                str(tmp_path / "l.txt"),
                5,
                label_dims=1,
                dense_dim=2,
                sparse=[(2, 2, False)],
                repeat=repeat,
                num_workers=2,
                prefetch=1,
            )
            try:
                _run_with_timeout(lambda r=r: [r.read() for _ in range(12)])
                outcomes.add("ok")
            except DataError:
                outcomes.add("error")
            finally:
                r.close()
    assert "error" in outcomes
    assert all(os.path.exists(f) for f in files)
