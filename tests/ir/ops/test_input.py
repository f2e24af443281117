import pytest

from hgc.errors import ShapeError
from hgc.ir.build import add_node, check_attrs
from hgc.ir.graph import Graph
from hgc.ir.ops.input import output_names
from hgc.ir.registry import get_op
from hgc.ir.types import B, TensorType
from tests.gradcheck import infer

OP = "Input"


def sparse(name, slots, nnz=None, fixed=False):
    return {"name": name, "slot_num": slots, "nnz_per_slot": tuple(nnz or (1,) * slots), "is_fixed_length": fixed}


ATTRS = {"label_dims": (1,), "label_names": ("label",), "dense_dim": 13, "dense_name": "dense",
         "sparse": (sparse("wide", 1, (2,)), sparse("deep", 3, (1, 4, 2), True))}


def test_outputs_in_order():
    g = Graph()
    node = add_node(g, OP, [], output_names(check_attrs(OP, ATTRS)), ATTRS, name="data")
    assert node.name == "data" and node.outputs == ("label", "dense", "wide", "deep")
    assert node.types == (TensorType((B, 1)), TensorType((B, 13)),
                          TensorType((B, 1, 2), "uint32", sparse=True), TensorType((B, 3, 4), "uint32", sparse=True))
    assert get_op(OP).kind == "input" and get_op(OP).forward is None


def test_multi_label_int64_no_dense():
    attrs = {"label_dims": (2, 1), "label_names": ("a", "b"), "dense_dim": 0, "dense_name": "d",
             "sparse": (sparse("s", 2),), "key_dtype": "int64"}
    assert infer(OP, attrs, []) == [TensorType((B, 2)), TensorType((B, 1)), TensorType((B, 0)),
                                    TensorType((B, 2, 1), "int64", sparse=True)]


@pytest.mark.parametrize("change,pattern", [
    ({"label_dims": (0,)}, r"'label_dims'.*positive"),
    ({"label_names": ("",)}, r"'label_names'.*non-empty"),
    ({"dense_dim": -1}, r"'dense_dim' = -1"),
    ({"dense_name": ""}, r"'dense_name'"),
    ({"key_dtype": "int32"}, r"'key_dtype' = 'int32'"),
    ({"sparse": (sparse("s", 0, ()),)}, r"slot_num must be an integer > 0"),
    ({"sparse": ({**sparse("s", 3), "nnz_per_slot": (1, 1)},)}, r"nnz_per_slot has 2 entries but slot_num is 3"),
    ({"sparse": ({**sparse("s", 1), "is_fixed_length": 1},)}, r"is_fixed_length"),
    ({"sparse": ({"name": "s", "slot_num": 1},)}, r"missing \['nnz_per_slot', 'is_fixed_length'\]"),
])
def test_attribute_rules(change, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_attrs(OP, {**ATTRS, **change})


@pytest.mark.parametrize("change,pattern", [
    ({"label_names": ("a", "b")}, r"label_dims has 1 entries but label_names has 2"),
    ({"dense_name": "label"}, r"must be unique, repeated: \['label'\]"),
    ({"sparse": (sparse("s", 1), sparse("s", 2))}, r"repeated: \['s'\]"),
])
def test_cross_rules(change, pattern):
    attrs = {**ATTRS, **change}
    with pytest.raises(ShapeError, match=r"Input layer .data.: .*" + pattern):
        add_node(Graph(), OP, [], ["t0"], attrs, name="data")
