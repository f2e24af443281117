"""The frequent/infrequent split of HybridSparseEmbedding (HugeCTR's count threshold and rounding)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hgc.ir.ops.embeddings import HYBRID_DEFAULTS
from hgc.runtime.dist.hybrid import count_threshold, frequent_categories


def test_count_threshold_per_communication_type():
    p = dict(HYBRID_DEFAULTS, p_dup_max=0.02)
    m = 1024 / 4
    assert count_threshold(p, 1024, 4, 1, 20) == pytest.approx(1024 * 20 * math.sqrt(2 * 0.02 / (m * (m - 1))))
    ib = dict(p, communication_type="IB_NVLink_Hier", max_all_to_all_bandwidth=2e11,
              max_all_reduce_bandwidth=1e11, efficiency_bandwidth_ratio=0.5)
    assert count_threshold(ib, 1024, 8, 2, 20) == pytest.approx(20 * 2 * 2.0 * 0.5 * 2 / 1)
    assert count_threshold(ib, 1024, 8, 1, 20) == math.inf  # one node: nothing is worth replicating
    assert count_threshold(p, 4, 4, 1, 20) == math.inf  # one sample per GPU: no duplicates at all
    with pytest.raises(ValueError, match="communication_type = 'Ring'"):
        count_threshold(dict(p, communication_type="Ring"), 1024, 4, 1, 20)


def test_frequent_categories_are_the_most_counted_rounded_to_whole_gpus():
    counts = np.array([5, 0, 9, 9, 1, 7, 0, 3])
    assert frequent_categories(counts, 5, 1, 0).tolist() == [2, 3, 5, 0]  # ties: lower id first
    assert frequent_categories(counts, 5, 3, 0).tolist() == [2, 3, 5, 0, 7, 4]  # 4 → 6, a multiple of 3 GPUs
    assert frequent_categories(counts, 3, 4, 0).tolist() == [2, 3, 5, 0]  # 5 → 8 > 6 counted → 8 − 4
    assert frequent_categories(counts, 5, 2, 3).tolist() == [2, 3]  # capped at 3, whole GPUs: 2
    assert frequent_categories(counts, 10, 2, 0).size == 0
