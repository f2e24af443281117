import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.data.reader import DataReader
from tests.runtime.data import spec


def _samples(rng, n, L=1, D=4, nnz=(1, 1, 1), floats=False, key_hi=100):
    out = []
    for _ in range(n):
        lab = (
            [float(np.float32(x)) for x in rng.random(L)]
            if floats
            else [int(x) for x in rng.integers(0, 2, L)]
        )
        den = (
            [float(np.float32(x)) for x in rng.random(D)]
            if floats
            else [int(x) for x in rng.integers(0, 1000, D)]
        )
        out.append((lab, den, [[int(k) for k in rng.integers(0, key_hi, c)] for c in nnz]))
    return out


def _reader(path, B=8, **kw):
    kw.setdefault("label_dims", 1)
    kw.setdefault("dense_dim", 4)
    kw.setdefault("sparse", [(3, 1, True)])
    kw.setdefault("repeat", False)
    kw.setdefault("num_workers", 3)
    return DataReader("Raw", str(path), B, **kw)


def _expected(samples, floats):
    out = []
    for lab, den, slots in samples:
        if floats:
            out.append((lab, den, slots))
        else:
            d = np.log(np.asarray(den, dtype=np.float32) + np.float32(1.0))
            out.append(([float(x) for x in lab], [float(x) for x in d], slots))
    return out


@pytest.mark.parametrize("floats", [False, True])
def test_round_trip_int_and_float(tmp_path, floats):
    rng = np.random.default_rng(2 + floats)
    samples = _samples(rng, 29, floats=floats)
    path = tmp_path / "t.bin"
    path.write_bytes(spec.raw_file(samples, floats))
    r = _reader(path, float_label_dense=floats)
    batches = list(r)
    assert [b.size for b in batches] == [8, 8, 8, 5] and r.is_eof()
    spec.check_padding(batches[-1])
    spec.assert_same_samples(spec.batches_to_samples(batches, [3], 1), _expected(samples, floats))
    assert batches[0].sparse[0].keys.dtype == np.uint32


def test_num_samples_reads_a_prefix_and_multi_input_multi_hot(tmp_path):
    rng = np.random.default_rng(7)
    samples = _samples(rng, 20, L=2, D=2, nnz=(2, 1, 3))
    path = tmp_path / "t.bin"
    path.write_bytes(spec.raw_file(samples, False))
    r = _reader(
        path, B=6, label_dims=[1, 1], dense_dim=2, sparse=[(2, [2, 1], True), (1, 3, True)], num_samples=15
    )
    batches = list(r)
    assert [b.size for b in batches] == [6, 6, 3]
    spec.assert_same_samples(spec.batches_to_samples(batches, [2, 1], 2), _expected(samples[:15], False))


def test_repeat_mode_wraps_with_short_block(tmp_path):
    rng = np.random.default_rng(8)
    samples = _samples(rng, 10)
    path = tmp_path / "t.bin"
    path.write_bytes(spec.raw_file(samples, False))
    r = _reader(path, B=4, repeat=True, num_workers=2)
    sizes = [r.read().size for _ in range(7)]
    assert sizes == [4, 4, 2, 4, 4, 2, 4] and not r.is_eof()
    r.close()


def test_size_not_multiple_of_stride(tmp_path):
    rng = np.random.default_rng(1)
    data = spec.raw_file(_samples(rng, 5), False)
    path = tmp_path / "t.bin"
    path.write_bytes(data[:-3])
    with pytest.raises(DataError) as e:
        _reader(path)
    assert (
        "not a multiple of the sample stride 32" in e.value.rule
        and e.value.sample == 4
        and e.value.offset == 128
    )


def test_num_samples_beyond_file(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "t.bin"
    path.write_bytes(spec.raw_file(_samples(rng, 5), False))
    with pytest.raises(DataError) as e:
        _reader(path, num_samples=9)
    assert "num_samples=9" in e.value.rule and e.value.sample == 5 and e.value.offset == 160


def test_negative_int_dense_and_key_range(tmp_path):
    rng = np.random.default_rng(1)
    samples = _samples(rng, 12, key_hi=50)
    samples[9][1][2] = -4
    path = tmp_path / "t.bin"
    path.write_bytes(spec.raw_file(samples, False))
    with pytest.raises(DataError) as e:
        list(_reader(path))
    assert "negative" in e.value.rule and e.value.sample == 9 and e.value.offset == 9 * 32 + 4 * 3
    samples[9][1][2] = 4
    samples[10][2][1] = [57]
    path.write_bytes(spec.raw_file(samples, False))
    with pytest.raises(DataError) as e:
        list(_reader(path, slot_size_array=[100, 57, 100]))
    assert "slot 1: key 57" in e.value.rule and e.value.sample == 10 and e.value.offset == 10 * 32 + 4 * 6
    assert len(list(_reader(path, slot_size_array=[100, 58, 100]))) == 2


def test_raw_rejects_i64_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="32-bit"):
        _reader(tmp_path / "x.bin", key_dtype="int64")
    with pytest.raises(DataError, match="cannot open"):
        _reader(tmp_path / "x.bin")


def test_set_source_switches_file(tmp_path):
    rng = np.random.default_rng(4)
    a, b = _samples(rng, 5), _samples(rng, 11)
    (tmp_path / "a.bin").write_bytes(spec.raw_file(a, False))
    (tmp_path / "b.bin").write_bytes(spec.raw_file(b, False))
    r = _reader(tmp_path / "a.bin", B=4)
    assert sum(x.size for x in r) == 5 and r.is_eof()
    r.set_source(str(tmp_path / "b.bin"))
    assert not r.is_eof()
    got = spec.batches_to_samples(list(r), [3], 1)
    spec.assert_same_samples(got, _expected(b, False))
    r.set_source()
    assert sum(x.size for x in r) == 11
