from __future__ import annotations

import numpy as np
import pytest

from hgc.errors import HgcError
from hgc.runtime.embedding.hash_table import HashTable, TableFullError


def reference_insert(mapping: dict[int, int], keys: np.ndarray) -> np.ndarray:
    out = []
    for k in keys.tolist():
        if k not in mapping:
            mapping[k] = len(mapping)
        out.append(mapping[k])
    return np.asarray(out, np.int64)


def test_rows_are_given_in_order_of_first_appearance() -> None:
    rng = np.random.default_rng(3)
    table, ref = HashTable("emb", 5003), {}
    pool = rng.integers(-2**62, 2**62, size=1601)
    for n in (1, 17, 301, 2999):  # repeats inside and across batches; the probe array grows on the way
        keys = pool[rng.integers(0, pool.shape[0], size=n)]
        np.testing.assert_array_equal(table.get_insert(keys), reference_insert(ref, keys))
    assert len(table) == len(ref)
    dumped_keys, rows = table.dump()
    assert dumped_keys.dtype == np.int64
    np.testing.assert_array_equal(dumped_keys, np.fromiter(ref, np.int64))
    np.testing.assert_array_equal(rows, np.arange(len(ref)))


def test_uint32_and_int64_keys_name_the_same_entries() -> None:
    table = HashTable("emb", 11)
    rows = table.get_insert(np.array([7, 4294967295, 7, 3], np.uint32))
    np.testing.assert_array_equal(rows, [0, 1, 0, 2])
    np.testing.assert_array_equal(table.get_mark(np.array([3, 4294967295, 7], np.int64)), [2, 1, 0])


def test_get_mark_marks_unknown_keys_and_inserts_nothing() -> None:
    table = HashTable("emb", 13)
    table.get_insert(np.array([10, 20, 30], np.int64))
    rows = table.get_mark(np.array([20, 99, -5, 10, 99], np.int64))
    np.testing.assert_array_equal(rows, [1, -1, -1, 0, -1])
    assert len(table) == 3
    np.testing.assert_array_equal(table.dump()[0], [10, 20, 30])


def test_full_table_error_names_table_capacity_and_need_and_changes_nothing() -> None:
    table = HashTable("wide_embedding", 7)
    table.get_insert(np.array([1, 2, 3, 4, 5], np.int64))
    with pytest.raises(TableFullError) as info:
        table.get_insert(np.array([5, 6, 7, 7, 8, 1], np.int64))  # needs 5 + 3 = 8 distinct keys
    assert isinstance(info.value, HgcError)
    msg = str(info.value)
    assert "wide_embedding" in msg and "7 rows" in msg and "8 distinct keys" in msg
    assert len(table) == 5
    np.testing.assert_array_equal(table.get_mark(np.array([6, 7, 8], np.int64)), [-1, -1, -1])
    # a batch whose length exceeds the free rows but whose new keys fit is fine
    rows = table.get_insert(np.array([6, 6, 6, 7, 7, 1, 2], np.int64))
    np.testing.assert_array_equal(rows, [5, 5, 5, 6, 6, 0, 1])
    assert len(table) == 7


def test_load_inserts_distinct_keys_in_order_and_rejects_repeats() -> None:
    table = HashTable("emb", 9)
    np.testing.assert_array_equal(table.load(np.array([40, -1, 2**62], np.int64)), [0, 1, 2])
    np.testing.assert_array_equal(table.load(np.array([8, 40], np.int64)), [3, 0])
    with pytest.raises(ValueError, match="distinct"):
        table.load(np.array([1, 5, 1], np.int64))
    with pytest.raises(TableFullError):
        table.load(np.arange(100, 107))
    table.clear()
    assert len(table) == 0 and table.get_mark(np.array([40]))[0] == -1


def test_bad_capacity_and_key_dtype() -> None:
    with pytest.raises(ValueError, match="capacity=-3"):
        HashTable("emb", -3)
    with pytest.raises(ValueError, match="integer"):
        HashTable("emb", 4).get_insert(np.array([1.5]))
