from __future__ import annotations

import numpy as np
import pytest

from hgc.errors import DataError
from tests.runtime.inference.db_contract import check_roundtrip, check_tables_are_separate, random_table

pytest.importorskip("rocksdict", reason="the rocksdict package is missing (pip install 'hgc[hps]')")
from hgc.runtime.inference.rocksdb_db import RocksDatabase


def test_contract(tmp_path):
    db = RocksDatabase(str(tmp_path / "db"), num_threads=2, max_get_batch_size=13, max_set_batch_size=29)
    try:
        check_roundtrip(db, "m.t")
        check_tables_are_separate(db, "m.a", "m.b")
    finally:
        db.close()


def test_persists_and_opens_read_only(tmp_path):
    path = str(tmp_path / "db")
    keys, vecs = random_table(4, 90, 3)
    db = RocksDatabase(path)
    db.open_table("m.t", 3)
    db.insert("m.t", keys, vecs)
    db.close()
    ro = RocksDatabase(path, read_only=True)
    ro.open_table("m.t", 3)
    found, got = ro.fetch("m.t", keys[::-1])
    assert found.all() and np.array_equal(got, vecs[::-1])
    with pytest.raises(ValueError, match="'read_only' = True is not allowed here: nothing can be written"):
        ro.insert("m.t", keys[:1], vecs[:1])
    with pytest.raises(ValueError, match="'read_only' = True .* holds no table 'm.other'"):
        ro.open_table("m.other", 3)
    ro.close()
    rw = RocksDatabase(path)  # reopening read-write keeps the table
    rw.open_table("m.t", 3)
    assert rw.size("m.t") == 90
    rw.close()


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="'path' = .* read_only is set, so it must be an existing RocksDB"):
        RocksDatabase(str(tmp_path / "none"), read_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="read_only is set, but the folder holds no RocksDB database"):
        RocksDatabase(str(tmp_path / "empty"), read_only=True)
    with pytest.raises(ValueError, match="its folder .* does not exist"):
        RocksDatabase(str(tmp_path / "no" / "db"))
    first = RocksDatabase(str(tmp_path / "locked"))
    with pytest.raises(ValueError, match="RocksDB cannot open a database there"):
        RocksDatabase(str(tmp_path / "locked"))  # the first one holds the lock
    first.close()


def test_vector_size_mismatch_is_a_data_error(tmp_path):
    db = RocksDatabase(str(tmp_path / "db"))
    db.open_table("t", 2)
    db.insert("t", np.array([3]), np.ones((1, 2), np.float32))
    db.open_table("t", 4)
    with pytest.raises(DataError, match="holds a vector of 8 bytes; the embedding's vectors of 4 float32"):
        db.fetch("t", np.array([3]))
    db.close()
