"""The text form: print_graph / parse_graph round trips, exact floats, names, and parse errors."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgc.errors import GraphError
from hgc.ir.build import add_node
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.parser import parse_graph
from hgc.ir.printer import print_graph
from hgc.ir.registry import all_ops
from hgc.ir.types import DTYPES, B, Batch, TensorType

# -- strategies -------------------------------------------------------------------------------
PLAIN_NAMES = st.from_regex(r"[a-z_][a-z0-9_.]{0,7}", fullmatch=True)
ODD_NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)
TRICKY_NAMES = st.sampled_from(['say "hi"', "a, b", "x -> y", "n: 1", "{x}", "B", "-", "\n"])
NAMES = PLAIN_NAMES | ODD_NAMES | TRICKY_NAMES

DIMS = st.integers(-3, 100_000) | st.builds(lambda n, d: Batch(Fraction(n, d)),
                                             st.integers(-40, 40), st.integers(1, 9))
TYPES = st.builds(TensorType, st.lists(DIMS, max_size=4).map(tuple), st.sampled_from(DTYPES), st.booleans())

SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
           | st.sampled_from([0.1, 1e-7, -0.0, 5e-324, 1.7976931348623157e308, 1 / 3]) | st.text(max_size=10)
           | st.sampled_from(['quote " inside', "back\\slash", "tab\tnew\nline", "Relu", "Default"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4).map(tuple)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4).map(Attrs), max_leaves=10)
ATTRS = st.dictionaries(st.text(max_size=12), VALUES, max_size=5).map(Attrs)


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    ops = sorted(all_ops())
    n = draw(st.integers(0, 8))
    pool = iter(draw(st.lists(NAMES, min_size=5 * n, max_size=5 * n, unique=True)))
    g = Graph(draw(ATTRS))
    produced: list[str] = []
    for _ in range(n):
        op = draw(st.sampled_from(ops))
        inputs = draw(st.lists(st.sampled_from(produced), max_size=3)) if produced else []
        outputs = [next(pool) for _ in range(draw(st.integers(0, 3)))]
        types = [draw(TYPES) for _ in outputs]
        name = next(pool) if not outputs or draw(st.booleans()) else ""
        g.add(Node(op, tuple(inputs), tuple(outputs), draw(ATTRS), tuple(types), name))
        produced += outputs
    return g


def roundtrip(g: Graph) -> Graph:
    text = print_graph(g)
    back = parse_graph(text)
    assert back == g
    assert print_graph(back) == text
    return back


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_random_graphs_round_trip(g: Graph) -> None:
    back = roundtrip(g)
    assert [n.attrs for n in back.nodes()] == [n.attrs for n in g.nodes()]
    assert print_graph(g).isascii()


@given(st.floats(allow_nan=False))
def test_floats_are_exact(x: float) -> None:
    g = Graph({"x": x})
    back = parse_graph(print_graph(g)).meta["x"]
    assert back == x and type(back) is float and math.copysign(1, back) == math.copysign(1, x)


# -- hand-built graphs ------------------------------------------------------------------------
def input_node(key_dtype: str = "int64") -> Node:
    sparse = (Attrs(name="wide", slot_num=1, nnz_per_slot=(2,), is_fixed_length=False),
              Attrs(name="deep", slot_num=26, nnz_per_slot=(1,) * 26, is_fixed_length=True))
    attrs = Attrs(label_dims=(1,), label_names=("label",), dense_dim=13, dense_name="dense",
                  sparse=sparse, key_dtype=key_dtype)
    types = (TensorType((B, 1)), TensorType((B, 13)), TensorType((B, 1, 2), key_dtype, True),
             TensorType((B, 26, 1), key_dtype, True))
    return Node("Input", (), ("label", "dense", "wide", "deep"), attrs, types, "data")


def wdl_like() -> Graph:
    g = Graph({"model_name": "wdl", "optimizer": Attrs(optimizer_type="Adam", update_type="Global",
                                                       beta1=0.9, beta2=0.999, epsilon=1e-7)})
    g.add(input_node())
    g.add(Node("Embedding", ("deep",), ("emb",), Attrs(embedding_vec_size=11, combiner="sum", optimizer=None),
               (TensorType((B, 26, 11)),)))
    add_node(g, "Reshape", ["emb"], ["flat"], {"leading_dim": 11})
    add_node(g, "Reshape", ["flat"], ["back"], {"leading_dim": 286})
    add_node(g, "Concat", ["back", "dense"], ["cat"])
    add_node(g, "InnerProduct", ["cat"], ["fc1"], {"num_output": 33, "weight_init_type": "XavierUniform"})
    add_node(g, "ReLU", ["fc1"], ["relu1"])
    add_node(g, "Dropout", ["relu1"], ["drop1"], {"dropout_rate": 0.1})
    add_node(g, "Slice", ["drop1"], ["s0", "s1"], {"ranges": [(0, 11), (11, 33)]})
    add_node(g, "InnerProduct", ["s1"], ["fc2"], {"num_output": 1})
    return g


def test_real_graph_text_and_round_trip() -> None:
    g = wdl_like()
    text = print_graph(g)
    lines = text.splitlines()
    assert lines[0].startswith('graph {"model_name": "wdl", "optimizer": {"beta1": 0.9')
    assert lines[1].startswith("data = Input() -> label: float32(B, 1), dense: float32(B, 13), "
                               "wide: sparse int64(B, 1, 2), deep: sparse int64(B, 26, 1) {")
    assert '"nnz_per_slot": [2]' in lines[1]
    assert lines[3].startswith("Reshape(emb) -> flat: float32(26*B, 11) {")
    assert lines[4].startswith("Reshape(flat) -> back: float32(B, 286)")
    assert "Concat(back, dense) -> cat: float32(B, 299)" in text
    assert 'Slice(drop1) -> s0: float32(B, 11), s1: float32(B, 22) {"ranges": [[0, 11], [11, 33]]}' in text
    assert '"dropout_rate": 0.1}' in text
    assert len(lines) == len(g) + 1
    roundtrip(g)


def test_names_shown_only_when_not_default() -> None:
    g = Graph()
    g.add(Node("Input", (), ("x",), types=(TensorType((B, 4)),), name="data"))
    g.add(Node("ReLU", ("x",), ("y",), types=(TensorType((B / 3, 4)),)))
    g.add(Node("Sink", ("y", "x"), (), types=()))
    text = print_graph(g)
    assert text.splitlines()[1:] == ["data = Input() -> x: float32(B, 4)", "ReLU(x) -> y: float32(B/3, 4)",
                                     "Sink(y, x) ->"]
    back = roundtrip(g)
    assert back.node("Sink").inputs == ("y", "x")


def test_quoted_names_and_comments() -> None:
    g = Graph()
    g.add(Node("Input", (), ('a "b"', "c d"), types=(TensorType((B, 1)), TensorType((2 * B / 3, 5))),
               name="in put"))
    text = print_graph(g)
    assert text.splitlines()[1] == ('"in put" = Input() -> "a \\"b\\"": float32(B, 1), '
                                    '"c d": float32(2*B/3, 5)')
    assert parse_graph("# a comment\n\n" + text.replace("\n", "\r\n")) == g


def test_order_is_deterministic() -> None:
    assert print_graph(wdl_like()) == print_graph(wdl_like())
    assert print_graph(wdl_like().copy()) == print_graph(wdl_like())


# -- parse errors -----------------------------------------------------------------------------
HEAD = "graph {}\n"


@pytest.mark.parametrize("text, where, expected", [
    ("", "line 1", "header line"),
    ("nodes {}\n", "line 1, column 1", "header line"),
    ("graph [1]\n", "line 1", "graph meta must be a JSON object"),
    ("graph {\"a\": }\n", "line 1, column", "the graph meta as a JSON object"),
    (HEAD + "ReLU x) -> y: float32(B)\n", "line 2, column 6", "'(' after the op name"),
    (HEAD + "Input() -> x: float32(B, 4)\nReLU(x -> y: float32(B)\n", "line 3, column 8",
     "',' or ')' after an input tensor name"),
    (HEAD + "Input() x: float32(B)\n", "line 2, column 9", "'->' before the outputs"),
    (HEAD + "Input() -> x float32(B)\n", "line 2, column 14", "':' between an output name and its type"),
    (HEAD + "Input() -> x: float31(B)\n", "line 2, column 15", "a dtype"),
    (HEAD + "Input() -> x: float32(B, C)\n", "line 2, column 26", "a dimension"),
    (HEAD + "Input() -> x: float32(B/0)\n", "line 2, column 23", "non-zero divisor"),
    (HEAD + "Input() -> x: float32(B 4)\n", "line 2, column 25", "',' or ')' in the shape"),
    (HEAD + "Input() -> x: float32(B) y\n", "line 2, column 26", "'{' opening the attributes"),
    (HEAD + "Input() -> x: float32(B) {\"a\": 1} z\n", "line 2, column 35",
     "end of line after the attributes"),
    (HEAD + "Input() -> x: float32(B) [1]\n", "line 2", "'{' opening the attributes"),
    (HEAD + "Input() -> x: float32(B) {\"a\": 1, \"a\": 2}\n", "line 2", "duplicate key \"a\""),
    (HEAD + "Input() -> x: float32(B) {\"a\": tru}\n", "line 2, column", "the attributes as a JSON object"),
    (HEAD + "ReLU(x) -> y: float32(B)\n", "line 2", "bottom tensor 'x' is not produced"),
    (HEAD + "data = Input() -> x: float32(B)\nReLU(x) -> x: float32(B)\n", "line 3",
     "top tensor 'x' is already produced"),
    (HEAD + "= ReLU(x) -> y: float32(B)\n", "line 2, column 1", "a node name or an op name"),
    (HEAD + "\"bad = ReLU(x) -> y: float32(B)\n", "line 2, column 1", "quoted JSON string"),
])
def test_parse_errors_name_line_and_expectation(text: str, where: str, expected: str) -> None:
    with pytest.raises(GraphError) as info:
        parse_graph(text)
    msg = str(info.value)
    assert msg.startswith(where), msg
    assert expected in msg, msg
