"""The initializer stream regenerates a table's initial rows at any position, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from hgc.runtime.embedding.table import EmbeddingTable
from hgc.runtime.etc.init_stream import InitStream


@pytest.mark.parametrize("vec,sizes,capacity", [(3, (), 41), (4, (7, 0, 13, 5), None), (1, (), 9), (5, (2, 9), None)])
def test_rows_match_the_tables_initial_rows(vec, sizes, capacity):
    seed, index = 1234, 2
    table = EmbeddingTable("t", vec, capacity, "sum", sizes, False, rng=np.random.default_rng([seed, 104729, index]))
    stream = InitStream.of_table(seed, index, vec, table.capacity, sizes)
    assert np.array_equal(stream.rows(0, table.capacity), table.rows)
    for a, b in [(1, 2), (3, 8), (table.capacity - 1, table.capacity), (5, 5)]:
        assert np.array_equal(stream.rows(a, b), table.rows[a:b])


def test_rows_beyond_capacity_continue_the_stream():
    small = InitStream.of_table(7, 0, 3, 10)
    big = EmbeddingTable("t", 3, 25, rng=np.random.default_rng([7, 104729, 0]))
    assert np.array_equal(small.rows(8, 25), big.rows[8:25])  # a smaller table hands on the same values
    slotted = InitStream.of_table(7, 0, 2, 10, (4, 6))
    rows = slotted.rows(10, 14)  # chunk c uses the bound of the block of row c mod capacity (block 0)
    assert np.abs(rows).max() <= np.float32(0.5) and rows.shape == (4, 2)
    other = InitStream.of_table(7, 1, 3, 10)
    assert not np.array_equal(other.rows(0, 4), small.rows(0, 4))
