"""Reading the IR text format (see printer.py) back into a Graph.

The parser rebuilds the graph through a GraphBuilder, so every node is type-checked by the registry and
its declared type must equal the inferred one. `format_graph(parse_graph(text)) == text` for every text
`format_graph` prints, and the parsed graph has the same names, ops, attrs (ints stay ints, tuples stay
tuples, dtypes are DTypes), literals, scopes and locations. Mistakes raise ParseError with the line number.
"""
from __future__ import annotations

import json
import re
from typing import Any

from jitorch.ir import dtypes
from jitorch.ir.graph import Graph, GraphBuilder, Value
from jitorch.ir.printer import BODY, EMPTY_SCOPE
from jitorch.ir.types import Literal, TensorType


class ParseError(ValueError):
    """Text that is not a well-formed, well-typed graph; names the line."""

    def __init__(self, message: str, line_number: int, line: str) -> None:
        super().__init__(f"line {line_number}: {message}\n    {line.strip()}")
        self.line_number = line_number


_STRING = r'"(?:[^"\\]|\\.)*"'
_TOKEN = re.compile(rf"""
    (?P<space>\s+)
  | (?P<value>%[^\s,()\[\]{{}}=:%\#"]+)
  | (?P<string>{_STRING})
  | (?P<kernel>\[(?:{_STRING}|[^\s"\[\]]+)\](?=\())
  | (?P<number>-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|inf\b)|nan\b)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>->|[()\[\],=:{{}}])
  | (?P<comment>\#.*)
""", re.VERBOSE)
_HEADER = re.compile(
    rf"\s*graph\s+(?P<name>{_STRING}|[^\s\"(]+)\s*\((?P<params>.*)\)\s*->\s*(?P<results>.*?)\s*\{{\s*$")
_COMMENT_WORD = re.compile(rf"{_STRING}|\S+")
_USES = re.compile(r"uses=\d+")
_WORDS = {"true": True, "false": False, "none": None}


def parse_graph(text: str) -> Graph:
    """The graph `text` describes (the inverse of `format_graph`)."""
    reader = _Reader(text.splitlines())
    graph = reader.graph()
    if reader.next_line() is not None:
        raise reader.error("unexpected text after the graph's closing brace")
    return graph


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eEn") else int(text)


class _Tokens:
    """The tokens of one line, with the reader to report errors against."""

    def __init__(self, reader: _Reader, text: str) -> None:
        self.reader = reader
        self.items: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise reader.error(f"unexpected character {text[position]!r} at column {position + 1}")
            if match.lastgroup != "space":
                self.items.append((match.lastgroup, match.group()))
            position = match.end()
        self.position = 0

    def peek(self) -> tuple[str, str]:
        return self.items[self.position] if self.position < len(self.items) else ("end", "")

    def take(self, kind: str | None = None, text: str | None = None) -> str:
        found_kind, found = self.peek()
        if (kind is not None and found_kind != kind) or (text is not None and found != text):
            wanted = repr(text) if text is not None else f"a {kind}"
            raise self.reader.error(f"expected {wanted}, found {found!r}" if found else f"expected {wanted}, "
                                    f"found the end of the line")
        self.position += 1
        return found

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] in ("punct", "word"):
            self.position += 1
            return True
        return False

    def type(self) -> TensorType:
        short = self.take("word")
        dtype = dtypes.BY_SHORT.get(short)
        if dtype is None:
            raise self.reader.error(f"unknown dtype {short!r} (expected one of {', '.join(dtypes.BY_SHORT)})")
        self.take("punct", "[")
        shape: list[int] = []
        while not self.accept("]"):
            if shape:
                self.take("punct", ",")
            size = _number(self.take("number"))
            if not isinstance(size, int) or size < 0:
                raise self.reader.error(f"dimension sizes are non-negative integers, got {size}")
            shape.append(size)
        return TensorType(tuple(shape), dtype)

    def attr(self) -> Any:
        kind, text = self.peek()
        if kind == "number":
            self.position += 1
            return _number(text)
        if kind == "string":
            self.position += 1
            return self.reader.unquote(text)
        if kind == "word":
            self.position += 1
            if text in _WORDS:
                return _WORDS[text]
            if text in dtypes.BY_SHORT:
                return dtypes.BY_SHORT[text]
            raise self.reader.error(f"unknown attribute value {text!r}")
        self.take("punct", "(")
        items: list[Any] = []
        while not self.accept(")"):
            items.append(self.attr())
            if not self.accept(","):
                self.take("punct", ")")
                break
        return tuple(items)

    def literal(self) -> Literal:
        kind, text = self.peek()
        if kind == "word" and text in ("true", "false"):
            self.position += 1
            return Literal(text == "true", dtypes.bool_)
        value = _number(self.take("number"))
        self.take("punct", ":")
        short = self.take("word")
        dtype = dtypes.BY_SHORT.get(short)
        if dtype is None or dtype.is_bool:
            raise self.reader.error(f"bad literal dtype {short!r}")
        if dtype.is_integer:
            if not isinstance(value, int):
                raise self.reader.error(f"literal {text} is not an integer but has dtype {short}")
            return Literal(value, dtype)
        return Literal(float(value), dtype)


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.index = -1  # the line being read

    def error(self, message: str) -> ParseError:
        """An error on the current line (past the end of the text: on its last line)."""
        index = max(0, min(self.index, len(self.lines) - 1))
        return ParseError(message, index + 1, self.lines[index] if self.lines else "")

    def unquote(self, word: str) -> str:
        """A word of the text: itself, or the string a JSON-quoted word spells."""
        if not word.startswith('"'):
            return word
        try:
            return json.loads(word)
        except ValueError as error:
            raise self.error(f"bad string {word}: {error}") from None

    def next_line(self) -> str | None:
        """Advance to the next line with content and return it (None at the end of the text)."""
        while self.index + 1 < len(self.lines):
            self.index += 1
            stripped = self.lines[self.index].strip()
            if stripped and not stripped.startswith("#"):
                return self.lines[self.index]
        self.index = len(self.lines)
        return None

    def peek_line(self) -> str | None:
        for line in self.lines[self.index + 1:]:
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                return stripped
        return None

    def graph(self) -> Graph:
        line = self.next_line()
        if line is None:
            raise self.error("expected `graph name(...) -> ... {`, found the end of the text")
        header = _HEADER.match(line)
        if header is None:
            raise self.error("expected `graph name(%input: type, ...) -> type {`")
        builder = GraphBuilder(self.unquote(header["name"]))
        values: dict[str, Value] = {}
        params = _Tokens(self, header["params"])
        while params.peek()[0] != "end":
            if values:
                params.take("punct", ",")
            name = params.take("value")[1:]
            params.take("punct", ":")
            values[name] = self._run(builder.add_input, name, params.type())
        results = self._result_types(header["results"])

        while True:
            line = self.next_line()
            if line is None:
                raise self.error("the graph is not closed with `}`")
            tokens = _Tokens(self, line)
            if tokens.peek() == ("word", "return"):
                tokens.take()
                outputs = self._operands(tokens, values)
                break
            self._node(tokens, builder, values)

        declared = [str(t) for t in results]
        returned = [str(v.type) for v in outputs]
        if declared != returned:
            raise self.error(f"returns ({', '.join(returned)}) but the header declares ({', '.join(declared)})")
        builder.set_outputs(outputs)
        if self.next_line() is None or self.lines[self.index].strip() != "}":
            raise self.error("expected `}` after the return")
        return builder.build()

    def _result_types(self, text: str) -> list[TensorType]:
        tokens = _Tokens(self, text)
        if not tokens.accept("("):
            found = [tokens.type()]
        else:
            found = []
            while not tokens.accept(")"):
                if found:
                    tokens.take("punct", ",")
                found.append(tokens.type())
        if tokens.peek()[0] != "end":
            raise self.error(f"unexpected {tokens.peek()[1]!r} in the result types")
        return found

    def _operands(self, tokens: _Tokens, values: dict[str, Value]) -> list[Value]:
        found = []
        while tokens.peek()[0] not in ("end", "comment"):
            if found:
                tokens.take("punct", ",")
            found.append(self._value(tokens, values))
        return found

    def _value(self, tokens: _Tokens, values: dict[str, Value]) -> Value:
        name = tokens.take("value")[1:]
        if name not in values:
            raise self.error(f"%{name} is not defined before this line")
        return values[name]

    def _node(self, tokens: _Tokens, builder: GraphBuilder, values: dict[str, Value]) -> None:
        name = tokens.take("value")[1:]
        tokens.take("punct", ":")
        declared = tokens.type()
        tokens.take("punct", "=")
        op = tokens.take("word")
        kernel = self.unquote(tokens.take()[1:-1]) if tokens.peek()[0] == "kernel" else None
        tokens.take("punct", "(")
        inputs: list[Value | Literal] = []
        attrs: dict[str, Any] = {}
        while not tokens.accept(")"):
            if inputs or attrs:
                tokens.take("punct", ",")
            kind, text = tokens.peek()
            if kind == "word" and tokens.items[tokens.position + 1:tokens.position + 2] == [("punct", "=")]:
                tokens.position += 2
                if text in attrs:
                    raise self.error(f"attribute {text} given twice")
                attrs[text] = tokens.attr()
            elif attrs:
                raise self.error("operands must come before attributes")
            elif kind == "value":
                inputs.append(self._value(tokens, values))
            else:
                inputs.append(tokens.literal())
        scope, location = self._comment(tokens)
        node_line = self.index
        if kernel is not None:
            attrs = {BODY: self._body(kernel, op), **attrs}
        after_body = self.index
        self.index = node_line  # errors in the node itself name its own line
        builder.scope, builder.location = scope, location
        output = self._run(builder._emit, op, inputs, attrs, name)
        if output.type != declared:
            raise self.error(f"%{name} is declared {declared} but {op} gives {output.type}")
        self.index = after_body
        values[name] = output

    def _body(self, kernel: str, op: str) -> Graph:
        following = self.peek_line()
        if following is None or not following.startswith("graph"):
            raise self.error(f"{op}[{kernel}] needs its body graph below it (print with bodies=True)")
        line_index = self.index
        body = self.graph()
        if body.name != kernel:
            self.index = line_index
            raise self.error(f"{op}[{kernel}] is followed by the body of graph {body.name}")
        return body

    def _comment(self, tokens: _Tokens) -> tuple[str, str]:
        kind, text = tokens.peek()
        if kind == "end":
            return "", ""
        if kind != "comment":
            raise self.error(f"unexpected {text!r} after the node")
        words = _COMMENT_WORD.findall(text[1:])
        if words and _USES.fullmatch(words[0]):
            words = words[1:]
        if len(words) > 2:
            raise self.error("the comment holds more than a scope and a location")
        scope = self.unquote(words[0]) if words and words[0] != EMPTY_SCOPE else ""
        location = self.unquote(words[1]) if len(words) == 2 else ""
        return scope, location

    def _run(self, function: Any, *args: Any) -> Any:
        """Call into the builder, turning its type and shape errors into errors on this line."""
        try:
            return function(*args)
        except (RuntimeError, TypeError, ValueError, IndexError) as error:
            raise self.error(f"{type(error).__name__}: {error}") from error
