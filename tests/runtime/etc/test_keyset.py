"""Keyset files are raw native-order keys of the dataset's key type, read exactly; bad sizes name the file and
the offset of the cut-short key."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.errors import DataError
from hgc.runtime.etc.keyset import read_keyset, write_keyset


@pytest.mark.parametrize("dtype", ["uint32", "int64"])
def test_keys_read_as_written(tmp_path, dtype):
    rng = np.random.default_rng(5)
    keys = rng.permutation(np.arange(3, 3 + 97, dtype=np.int64) * 1_000_003 % (2**31))
    path = str(tmp_path / f"k.{dtype}")
    write_keyset(path, keys, dtype)
    assert (tmp_path / f"k.{dtype}").stat().st_size == keys.size * np.dtype(dtype).itemsize
    got = read_keyset(path, dtype)
    assert got.dtype == np.int64 and np.array_equal(got, keys)


def test_raw_native_bytes_and_large_uint32(tmp_path):
    raw = np.array([0xFFFFFFFF, 7, 0x80000000], np.uint32)
    path = tmp_path / "big.keyset"
    path.write_bytes(raw.tobytes())
    assert read_keyset(str(path), "uint32").tolist() == [0xFFFFFFFF, 7, 0x80000000]
    neg = np.array([-5, 2**40 + 1], np.int64)
    (tmp_path / "neg.keyset").write_bytes(neg.tobytes())
    assert read_keyset(str(tmp_path / "neg.keyset"), "int64").tolist() == [-5, 2**40 + 1]


def test_duplicates_dropped_first_order_kept(tmp_path):
    path = tmp_path / "dup.keyset"
    path.write_bytes(np.array([9, 4, 9, 1, 4, 11], np.int64).tobytes())
    assert read_keyset(str(path), "int64").tolist() == [9, 4, 1, 11]


def test_empty_keyset_is_no_keys(tmp_path):
    path = tmp_path / "empty.keyset"
    path.write_bytes(b"")
    assert read_keyset(str(path), "uint32").shape == (0,)


@pytest.mark.parametrize("dtype,size,offset", [("uint32", 4 * 5 + 3, 20), ("int64", 8 * 2 + 5, 16),
                                                ("int64", 4, 0)])
def test_cut_short_file_names_file_and_offset(tmp_path, dtype, size, offset):
    path = tmp_path / "bad.keyset"
    path.write_bytes(bytes(range(size)))
    with pytest.raises(DataError) as e:
        read_keyset(str(path), dtype)
    assert e.value.file == str(path) and e.value.offset == offset
    assert f"byte offset {offset}" in str(e.value) and "not a whole number" in str(e.value)


def test_missing_file_and_bad_key_type(tmp_path):
    with pytest.raises(DataError, match="keyset file not found") as e:
        read_keyset(str(tmp_path / "nope.keyset"), "int64")
    assert e.value.file.endswith("nope.keyset")
    with pytest.raises(ValueError, match="key_dtype='int32'"):
        read_keyset(str(tmp_path / "nope.keyset"), "int32")
    with pytest.raises(ValueError, match="do not fit the uint32"):
        write_keyset(str(tmp_path / "x.keyset"), np.array([2**33]), "uint32")
