import os
import struct

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.data.layout import Layout
from hgc.runtime.data.norm import NormDecoder, read_norm_file
from hgc.runtime.data.reader import DataReader
from tests.runtime.data import spec


def _layout(label=1, dense=3, sparse=((4, 2, False),), i64=False, ssa=()):
    return Layout.make(label, dense, sparse, "int64" if i64 else "uint32", ssa)


def _read_all(path, layout, checksum=True, chunk=65536):
    dec = NormDecoder(layout, checksum, chunk_samples=chunk)
    blocks = list(dec.blocks(path))
    return blocks


def _blocks_to_samples(blocks, layout):
    from hgc.runtime.data.assemble import concat_blocks
    from hgc.runtime.data.batch import Batch, SparseBatch

    blk = concat_blocks(layout, blocks)
    b = Batch(
        blk.m,
        blk.label,
        blk.dense,
        [SparseBatch(ro, k, sp.slot_num) for ro, k, sp in zip(blk.row_offsets, blk.keys, layout.sparse)],
    )
    return spec.batches_to_samples([b], [sp.slot_num for sp in layout.sparse], layout.label_dim)


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("i64", [False, True])
def test_independent_writer_files_read_exactly(tmp_path, checksum, i64):
    rng = np.random.default_rng(11 + checksum + 2 * i64)
    sparse = ((3, [2, 1, 5], False), (2, 3, False))  # two inputs split the 5 slots in order; multi-hot
    lay = _layout(label=2, dense=3, sparse=sparse, i64=i64)
    samples = spec.random_samples(rng, 53, 2, 3, [2, 1, 5, 3, 3], i64=i64)
    path = tmp_path / "a.data"
    path.write_bytes(spec.norm_file(samples, 2, 3, 5, i64, checksum))
    # small chunks force the streaming path (samples split across buffer refills)
    for chunk in (7, 65536):
        got = _blocks_to_samples(_read_all(str(path), lay, checksum, chunk), lay)
        spec.assert_same_samples(got, samples)


def test_checksum_includes_nnz_bytes(tmp_path):
    # a file whose checksums exclude the nnz integers (what the docs claim) is rejected
    lay = _layout(label=1, dense=1, sparse=((1, 1, False),))
    payload = struct.pack("<ff", 0.5, 0.25) + struct.pack("<i", 1) + struct.pack("<I", 7)
    wrong = sum(struct.unpack("8b", payload[:8]) + struct.unpack("4b", payload[12:])) % 256
    data = spec.norm_header(1, 1, 1, 1, True) + struct.pack("<i", len(payload)) + payload + bytes([wrong])
    path = tmp_path / "x.data"
    path.write_bytes(data)
    with pytest.raises(DataError) as e:
        _read_all(str(path), lay)
    assert "checksum" in e.value.rule and e.value.sample == 0
    assert e.value.offset == 69 + 4 + len(payload)


def test_fixed_length_input_and_read_norm_file(tmp_path):
    rng = np.random.default_rng(3)
    lay = _layout(label=1, dense=0, sparse=((3, 2, True),))
    samples = spec.random_samples(rng, 9, 1, 0, [2, 2, 2], fixed=[True] * 3)
    path = tmp_path / "f.data"
    path.write_bytes(spec.norm_file(samples, 1, 0, 3, False, True))
    blk = read_norm_file(str(path), lay, "Sum")
    assert blk.m == 9 and blk.keys[0].dtype == np.uint32
    assert np.array_equal(np.diff(blk.row_offsets[0]), np.full(27, 2))


def _write(tmp_path, data, name="bad.data"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _good(n=6, checksum=True, **kw):
    rng = np.random.default_rng(5)
    samples = spec.random_samples(rng, n, 1, 3, [2, 2, 2, 2], key_hi=1000)
    return samples, spec.norm_file(samples, 1, 3, 4, False, checksum, **kw)


def _err(tmp_path, data, checksum=True, layout=None):
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as e:
        _read_all(path, layout or _layout(), checksum)
    assert e.value.file == path
    return e.value


@pytest.mark.parametrize("checksum", [True, False])
def test_truncated_header(tmp_path, checksum):
    _, data = _good(checksum=checksum)
    err = _err(tmp_path, data[:30], checksum)
    assert "truncated header" in err.rule and err.offset == 30


@pytest.mark.parametrize("checksum", [True, False])
def test_truncated_sample_names_sample_and_offset(tmp_path, checksum):
    samples, data = _good(checksum=checksum)
    full = len(spec.norm_file(samples[:4], 1, 3, 4, False, checksum))
    err = _err(tmp_path, data[: full + 9], checksum)
    assert "truncated" in err.rule and err.sample == 4 and err.offset == full


@pytest.mark.parametrize("checksum", [True, False])
def test_number_of_records_above_file(tmp_path, checksum):
    _samples, data = _good(checksum=checksum, records=8)
    err = _err(tmp_path, data, checksum)
    assert "header says 8 samples" in err.rule and err.sample == 6 and err.offset == len(data)


@pytest.mark.parametrize("checksum", [True, False])
def test_number_of_records_below_file(tmp_path, checksum):
    samples, data = _good(checksum=checksum, records=5)
    err = _err(tmp_path, data, checksum)
    last = len(spec.norm_file(samples[:5], 1, 3, 4, False, checksum))
    assert "bytes after the 5 samples" in err.rule and err.sample == 5 and err.offset == last


@pytest.mark.parametrize("field,value,name", [(2, 2, "label_dim"), (3, 4, "dense_dim"), (4, 5, "slot_num")])
@pytest.mark.parametrize("checksum", [True, False])
def test_header_dims_disagree_with_input(tmp_path, field, value, name, checksum):
    samples, _ = _good(checksum=checksum)
    dims = [1, 3, 4]
    dims[field - 2] = value
    data = spec.norm_header(len(samples), *dims, checksum)
    err = _err(tmp_path, data, checksum)
    base = 4 if checksum else 0
    assert name in err.rule and f"{name}={value}" in err.rule and err.offset == base + 8 * field


def test_check_type_mismatch_both_ways(tmp_path):
    _, sum_data = _good(checksum=True)
    err = _err(tmp_path, sum_data, checksum=False)
    assert "Check_t.Sum" in err.rule and err.offset == 0
    _, non_data = _good(checksum=False)
    err = _err(tmp_path, non_data, checksum=True)
    assert "Check_t.Non" in err.rule and err.offset == 0
    # a Sum-framed header whose error_check says 0
    err = _err(tmp_path, spec._frame(struct.pack("<8q", 0, 6, 1, 3, 4, 0, 0, 0), True))
    assert "error_check=0" in err.rule and err.offset == 4


def test_checksum_mismatch_names_sample_and_offset(tmp_path):
    samples, data = _good()
    start = len(spec.norm_file(samples[:3], 1, 3, 4, False, True))
    b = bytearray(data)
    b[start + 4 + 5] ^= 0x10  # a dense byte of sample 3
    err = _err(tmp_path, bytes(b))
    rec = len(spec.norm_sample(*samples[3], False, True))
    assert "checksum mismatch" in err.rule and err.sample == 3 and err.offset == start + rec - 1


def test_header_checksum_mismatch(tmp_path):
    _, data = _good()
    b = bytearray(data)
    b[4 + 56] ^= 1  # a reserved header byte
    err = _err(tmp_path, bytes(b))
    assert "header record" in err.rule and err.offset == 68


@pytest.mark.parametrize("checksum", [True, False])
def test_nnz_above_slot_maximum(tmp_path, checksum):
    samples, _ = _good()
    samples[2][2][1] = [1, 2, 3]  # slot 1 allows 2
    data = spec.norm_file(samples, 1, 3, 4, False, checksum)
    err = _err(tmp_path, data, checksum)
    start = len(spec.norm_file(samples[:2], 1, 3, 4, False, checksum))
    nnz_off = start + (4 if checksum else 0) + 16 + 4 + 4 * len(samples[2][2][0])
    assert "slot 1" in err.rule and "nnz=3" in err.rule and "maximum" in err.rule
    assert err.sample == 2 and err.offset == nnz_off


def test_negative_nnz_and_fixed_length(tmp_path):
    samples, _ = _good(checksum=False)
    samples[1][2][0] = []
    data = spec.norm_file(samples, 1, 3, 4, False, False)
    err = _err(tmp_path, data, False, _layout(sparse=((4, 2, True),)))
    assert "fixed-length" in err.rule and err.sample == 0  # sample 0 already breaks it (random nnz)
    b = bytearray(spec.norm_file(samples, 1, 3, 4, False, False))
    b[64 + 16 : 64 + 20] = struct.pack("<i", -3)
    err = _err(tmp_path, bytes(b), False)
    assert "negative" in err.rule and err.sample == 0 and err.offset == 80


def test_key_outside_slot_size_array(tmp_path):
    rng = np.random.default_rng(9)
    sizes = [10, 20, 30, 40]
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    samples = []
    for _ in range(5):
        slots = [[int(offs[s] + rng.integers(0, sizes[s])) for _ in range(2)] for s in range(4)]
        samples.append(([0.0], [1.0, 2.0, 3.0], slots))
    lay = _layout(sparse=((4, 2, False),), ssa=sizes)
    path = _write(tmp_path, spec.norm_file(samples, 1, 3, 4, False, True))
    assert len(_blocks_to_samples(_read_all(path, lay), lay)) == 5
    samples[3][2][2][1] = 60  # slot 2 holds [30, 60)
    path = _write(tmp_path, spec.norm_file(samples, 1, 3, 4, False, True))
    with pytest.raises(DataError) as e:
        _read_all(path, lay)
    start = len(spec.norm_file(samples[:3], 1, 3, 4, False, True))
    assert "slot 2" in e.value.rule and "key 60" in e.value.rule and "[30, 60)" in e.value.rule
    assert e.value.sample == 3 and e.value.offset == start + 4 + 16 + 2 * 12 + 4 + 4


def test_bad_record_length(tmp_path):
    _samples, data = _good()
    b = bytearray(data)
    b[69:73] = struct.pack("<i", 3)
    err = _err(tmp_path, bytes(b))
    assert "record length 3" in err.rule and err.sample == 0 and err.offset == 69


def test_missing_data_file_is_data_error(tmp_path):
    lay = _layout()
    dec = NormDecoder(lay, True)
    with pytest.raises(DataError) as e:
        list(dec.blocks(str(tmp_path / "nope.data")))
    assert "cannot open" in e.value.rule


def test_reader_surfaces_worker_error(tmp_path):
    _samples, good = _good()
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    files = []
    for i, data in enumerate([good, bytes(bad)]):
        files.append(_write(tmp_path, data, f"{i}.data"))
    spec.write_file_list(str(tmp_path / "list.txt"), files)
    r = DataReader(
        "Norm",
        str(tmp_path / "list.txt"),
        4,
        label_dims=1,
        dense_dim=3,
        sparse=[(4, 2, False)],
        repeat=False,
        num_workers=2,
    )
    with pytest.raises(DataError) as e:
        list(r)
    assert e.value.file == files[1] and e.value.sample == 5
    with pytest.raises(DataError):  # stays broken until set_source
        r.read()
    r.close()
    assert not any(t.is_alive() for t in r._threads)


def test_many_files_multi_label_multi_input_via_reader(tmp_path):
    rng = np.random.default_rng(21)
    sparse = [(2, [1, 3], False), (3, 2, False)]
    files, want = [], []
    for k in range(3):
        samples = spec.random_samples(rng, 17 + k, 3, 2, [1, 3, 2, 2, 2], i64=True)
        files.append(_write(tmp_path, spec.norm_file(samples, 3, 2, 5, True, False), f"{k}.data"))
        want.append(samples)
    spec.write_file_list(str(tmp_path / "l.txt"), files)
    r = DataReader(
        "Norm",
        str(tmp_path / "l.txt"),
        5,
        label_dims=[1, 2],
        dense_dim=2,
        sparse=sparse,
        key_dtype="int64",
        check_type="Non",
        repeat=False,
        num_workers=1,
    )
    batches = list(r)
    assert all(b.sparse[0].keys.dtype == np.int64 for b in batches)
    assert batches[-1].size == (17 + 18 + 19) % 5
    spec.assert_same_samples(spec.batches_to_samples(batches, [2, 3], 3), want[0] + want[1] + want[2])
    assert os.path.exists(files[0])
