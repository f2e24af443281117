import numpy as np
import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node
from hgc.ir.registry import RefContext, get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import check_grad, infer, random_inputs
from tests.ir.ops._tiny import graph_with, json_round_trip


def test_infer_one_output_per_range():
    out = infer("Slice", {"ranges": [(0, 3), (2, 9), (2, 13)]}, [TensorType((B, 13), "float16")])
    assert out == [TensorType((B, w), "float16") for w in (3, 7, 11)]
    assert infer("Slice", {"ranges": [(1, 4)]}, [TensorType((B, 5, 7))]) == [TensorType((B, 5, 3))]


def test_identical_full_ranges_are_allowed():
    assert len(infer("Slice", {"ranges": [(0, 7), (0, 7)]}, [TensorType((B, 7))])) == 2


@pytest.mark.parametrize("ranges,pattern", [
    ([], r"non-empty list"),
    ([(-1, 3)], r"negative"),
    ([(3, 3)], r"reversed or empty"),
    ([(4, 2)], r"reversed or empty"),
    ([(2, 5), (1, 6)], r"out of order"),
    ([(0, 6), (1, 5)], r"out of order or inside"),
    ([(0, 2.5)], r"integer pairs"),
])
def test_bad_ranges(ranges, pattern):
    g = graph_with(x=TensorType((B, 9)))
    with pytest.raises(ValueError, match=rf"Slice layer 's0'.*'ranges'.*{pattern}"):
        add_node(g, "Slice", ["x"], ["s0"], {"ranges": ranges})


def test_range_beyond_width():
    g = graph_with(x=TensorType((B, 9)))
    pattern = r"Slice layer 's0': Slice range \(4, 10\) exceeds the input width 9.*'x' float32\(B, 9\)"
    with pytest.raises(ShapeError, match=pattern):
        add_node(g, "Slice", ["x"], ["s0", "s1"], {"ranges": [(0, 4), (4, 10)]})


def test_top_count_must_match_ranges():
    g = graph_with(x=TensorType((B, 9)))
    with pytest.raises(ShapeError, match=r"produces 2 tensors but 1 top names"):
        add_node(g, "Slice", ["x"], ["s0"], {"ranges": [(0, 4), (4, 9)]})


def test_forward_matches_numpy():
    (x,) = random_inputs([(5, 11)])
    ys, _ = get_op("Slice").forward(RefContext(), {"ranges": ((0, 4), (3, 11))}, [x], [])
    assert np.array_equal(ys[0], x[:, 0:4]) and np.array_equal(ys[1], x[:, 3:11])


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 7)])
def test_gradient_accumulates_overlaps(shape):
    check_grad("Slice", {"ranges": [(0, 4), (2, 6), (2, 7)]}, random_inputs([shape]))


def test_json():
    _, written = json_round_trip("Slice", {"ranges": [(0, 4), (2, 7)]})
    assert written == {"ranges": [[0, 4], [2, 7]]}
