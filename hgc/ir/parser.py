"""Read the text form written by :func:`hgc.ir.printer.print_graph` back into a :class:`Graph`.

``parse_graph(print_graph(g)) == g`` for every graph. Blank lines and lines starting with ``#`` are
skipped. Errors are GraphErrors that give the line and column and say what was expected there.
The parser does not look ops up or infer types: :func:`hgc.ir.verify.verify` does that.
"""
from __future__ import annotations

import json
import re
from fractions import Fraction
from typing import Any

from hgc.errors import GraphError
from hgc.ir.graph import Graph
from hgc.ir.node import Attrs, Node
from hgc.ir.printer import BARE_NAME, HEADER
from hgc.ir.types import DTYPES, Batch, Dim, TensorType

_DIM = re.compile(r"(?:(-?\d+)\*)?B(?:/(\d+))?|(-?\d+)")
_HEADER = re.compile(rf"[ \t]*{HEADER}[ \t]+")
_DTYPE = re.compile("|".join(sorted(DTYPES, key=len, reverse=True)))


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"duplicate key {json.dumps(k)}")
        out[k] = v
    return out


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


class _Line:
    """A cursor over one line of the text form."""

    def __init__(self, text: str, lineno: int) -> None:
        self.text, self.lineno, self.pos = text, lineno, 0

    def fail(self, expected: str) -> GraphError:
        rest = self.text[self.pos:self.pos + 20]
        found = repr(rest) if rest else "end of line"
        return GraphError(f"line {self.lineno}, column {self.pos + 1}: expected {expected}, found {found}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def expect(self, s: str, what: str | None = None) -> None:
        self.skip_ws()
        if not self.peek(s):
            raise self.fail(what or f"'{s}'")
        self.pos += len(s)

    def name(self, what: str) -> str:
        self.skip_ws()
        if self.peek('"'):
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except ValueError:
                raise self.fail(f"{what} (a quoted JSON string)") from None
            self.pos = end
            return value
        m = BARE_NAME.match(self.text, self.pos)
        if not m:
            raise self.fail(what)
        self.pos = m.end()
        return m.group()

    def json(self, what: str) -> Any:
        self.skip_ws()
        try:
            value, end = _DECODER.raw_decode(self.text, self.pos)
        except _DuplicateKey as e:
            raise GraphError(f"line {self.lineno}: {what}: {e}") from None
        except json.JSONDecodeError as e:
            self.pos = e.pos
            raise self.fail(f"{what} ({e.msg})") from None
        self.pos = end
        return value

    def tensor_type(self) -> TensorType:
        self.skip_ws()
        sparse = False
        if self.peek("sparse "):
            sparse = True
            self.pos += len("sparse ")
        m = _DTYPE.match(self.text, self.pos)
        if not m:
            raise self.fail(f"a dtype (one of {', '.join(DTYPES)})")
        self.pos = m.end()
        self.expect("(", "'(' opening the shape")
        dims: list[Dim] = []
        self.skip_ws()
        if not self.peek(")"):
            while True:
                dims.append(self.dim())
                self.skip_ws()
                if self.peek(","):
                    self.pos += 1
                    continue
                break
        self.expect(")", "',' or ')' in the shape")
        return TensorType(tuple(dims), m.group(), sparse)

    def dim(self) -> Dim:
        self.skip_ws()
        m = _DIM.match(self.text, self.pos)
        if not m:
            raise self.fail("a dimension (an integer, B, k*B, B/d or k*B/d)")
        self.pos = m.end()
        if m.group(3) is not None:
            return int(m.group(3))
        if m.group(2) is not None and int(m.group(2)) == 0:
            self.pos = m.start()
            raise self.fail("a dimension with a non-zero divisor")
        return Batch(Fraction(int(m.group(1) or 1), int(m.group(2) or 1)))


def _attrs(value: Any, line: _Line, what: str) -> Attrs:
    if not isinstance(value, dict):
        raise GraphError(f"line {line.lineno}: {what} must be a JSON object, got {json.dumps(value)}")
    return Attrs(value)


def parse_node(line: _Line) -> Node:
    """One node line: ``[name =] op(in, …) -> out: type, … [{attrs}]``."""
    first = line.name("a node name or an op name")
    line.skip_ws()
    name = ""
    if line.peek("="):
        line.pos += 1
        name = first
        op = line.name("an op name")
    else:
        op = first
    line.expect("(", "'(' after the op name")
    inputs: list[str] = []
    line.skip_ws()
    if not line.peek(")"):
        while True:
            inputs.append(line.name("an input tensor name"))
            line.skip_ws()
            if line.peek(","):
                line.pos += 1
                continue
            break
    line.expect(")", "',' or ')' after an input tensor name")
    line.expect("->", "'->' before the outputs")
    outputs: list[str] = []
    types: list[TensorType] = []
    line.skip_ws()
    if not line.at_end() and not line.peek("{"):
        while True:
            outputs.append(line.name("an output tensor name"))
            line.expect(":", "':' between an output name and its type")
            types.append(line.tensor_type())
            line.skip_ws()
            if line.peek(","):
                line.pos += 1
                continue
            break
    line.skip_ws()
    attrs = Attrs()
    if not line.at_end():
        if not line.peek("{"):
            raise line.fail("',' before another output, '{' opening the attributes, or end of line")
        attrs = _attrs(line.json("the attributes as a JSON object"), line, "the attributes")
    line.skip_ws()
    if not line.at_end():
        raise line.fail("end of line after the attributes")
    return Node(op, tuple(inputs), tuple(outputs), attrs, tuple(types), name)


def parse_graph(text: str) -> Graph:
    """Build the graph described by ``text`` (the output of :func:`print_graph`)."""
    graph: Graph | None = None
    for lineno, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        line = _Line(raw, lineno)
        if graph is None:
            m = _HEADER.match(raw)
            if not m:
                raise line.fail(f"the header line '{HEADER} {{…meta…}}'")
            line.pos = m.end()
            meta = _attrs(line.json("the graph meta as a JSON object"), line, "the graph meta")
            line.skip_ws()
            if not line.at_end():
                raise line.fail("end of line after the graph meta")
            graph = Graph(meta)
            continue
        node = parse_node(line)
        try:
            graph.add(node)
        except GraphError as e:
            raise GraphError(f"line {lineno}: {e}") from None
    if graph is None:
        raise GraphError(f"line 1: expected the header line '{HEADER} {{…meta…}}', found an empty text")
    return graph
