from pathlib import Path

import numpy as np
import pytest

from hgc.tools.writers import NormWriter, encode_norm, raw_records
from tests.runtime.data import spec


@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("i64", [False, True])
def test_encode_norm_is_byte_exact(checksum, i64):
    rng = np.random.default_rng(4 + checksum + 2 * i64)
    samples = spec.random_samples(rng, 23, 2, 3, [3, 1, 4], i64=i64)
    ld = np.array([s[0] + s[1] for s in samples], dtype=np.float32)
    nnz = np.array([[len(k) for k in s[2]] for s in samples])
    keys = np.array([k for s in samples for sl in s[2] for k in sl], dtype=np.int64 if i64 else np.uint32)
    got = encode_norm(ld, nnz, keys, checksum).tobytes()
    body = spec.norm_file(samples, 2, 3, 3, i64, checksum)
    assert got == body[69 if checksum else 64 :]


def test_norm_writer_patches_record_count(tmp_path):
    rng = np.random.default_rng(1)
    samples = spec.random_samples(rng, 10, 1, 2, [2, 2])
    path = str(tmp_path / "w.data")
    with NormWriter(path, 1, 2, 2, True) as w:
        for a in (0, 4):
            part = samples[a : a + 6] if a else samples[:4]
            ld = np.array([s[0] + s[1] for s in part], dtype=np.float32)
            nnz = np.array([[len(k) for k in s[2]] for s in part])
            keys = np.array([k for s in part for sl in s[2] for k in sl], dtype=np.uint32)
            w.write(ld, nnz, keys)
    data = Path(path).read_bytes()
    assert data == spec.norm_file(samples, 1, 2, 2, False, True)
    hdr, parsed = spec.parse_norm(data, False)
    assert hdr[1] == 10 and len(parsed) == 10
    with pytest.raises(ValueError, match="nnz sums"):
        encode_norm(np.zeros((1, 1), np.float32), np.array([[2]]), np.zeros(1, np.uint32), True)


@pytest.mark.parametrize("floats", [False, True])
def test_raw_records_match_spec(floats):
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 2, (7, 1))
    den = rng.integers(0, 50, (7, 3))
    keys = rng.integers(0, 1 << 31, (7, 4))
    if floats:
        lab, den = lab.astype(np.float32), rng.random((7, 3)).astype(np.float32)
    samples = [(list(lab[i]), list(den[i]), [[int(k)] for k in keys[i]]) for i in range(7)]
    assert raw_records(lab, den, keys, floats).tobytes() == spec.raw_file(samples, floats)
