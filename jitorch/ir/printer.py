"""The IR text format: one line per node, a type on every value, attributes inline, module path and
source line as an aligned trailing comment. `parser.py` reads it back exactly.

    graph forward(%x: f32[64,784], %l1.weight: f32[128,784]) -> f32[64,128] {
      %0 : f32[784,128] = permute(%l1.weight, perm=(1,0))  # l1  model.py:12
      %1 : f32[64,128]  = matmul(%x, %0)                   # l1  model.py:12
      return %1
    }

Spelling: literals `2.0:f32`, `3:i64`, `true`; attributes `perm=(1,0)`, `axes=(1,)`, `dtype=f32`,
`value=-inf`, `accumulate=false`, `name="text"`, `none`; floats with `repr`, so they read back exactly.
The comment is `# scope  location`; an empty scope before a location prints `-`, and words that would
not read back (spaces, quotes, `#`) are JSON-quoted. A node whose attrs hold a Graph under "body" (a
fused kernel) prints as `fused[kernel name](%a, %b)`, followed by its body when `bodies=True`.
Output depends only on the graph: no ids, no set iteration.
"""
from __future__ import annotations

import json
import re
from typing import Any

from jitorch.ir.dtypes import DType
from jitorch.ir.graph import Graph, Node, Value
from jitorch.ir.types import Literal

BODY = "body"
EMPTY_SCOPE = "-"
_PLAIN = re.compile(r'[^\s"#(){}\[\],]+')
_USES = re.compile(r"uses=\d+")
# one long line should not push every comment far right
_COMMENT_COLUMN_MAX = 88
_SCOPE_COLUMN_MAX = 24


def quote(text: str) -> str:
    """`text` as one word of the format: itself when it reads back unchanged, else JSON-quoted."""
    if _PLAIN.fullmatch(text) and text != EMPTY_SCOPE and not _USES.fullmatch(text):
        return text
    return json.dumps(text)


def format_operand(operand: Value | Literal) -> str:
    return str(operand) if type(operand) is Literal else f"%{operand.name}"


def format_attr(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, DType):
        return value.short
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        inner = ",".join(format_attr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    # not a printable attribute (verify rejects it); still print something for error messages
    return repr(value)


def format_call(node: Node) -> str:
    """`op(%a, 2.0:f32, axis=1)`, or `fused[kernel](%a, %b)` for a node with a body graph."""
    body = node.attrs.get(BODY)
    kernel = f"[{quote(body.name)}]" if isinstance(body, Graph) else ""
    args = [format_operand(a) for a in node.inputs]
    args += [f"{key}={format_attr(value)}" for key, value in node.attrs.items() if not (key == BODY and kernel)]
    return f"{node.op}{kernel}({', '.join(args)})"


def format_node(node: Node) -> str:
    """The node's line without alignment or comment: `%1 : f32[64,128] = matmul(%x, %0)`."""
    return f"%{node.output.name} : {node.output.type} = {format_call(node)}"


def format_graph(graph: Graph, *, show_uses: bool = False, bodies: bool = False) -> str:
    """The graph's text (ends without a newline); `show_uses` adds `uses=N` to each node's comment,
    `bodies` prints the body graph of each fused node below it, indented."""
    return "\n".join(_graph_lines(graph, show_uses, bodies, ""))


def _signature(graph: Graph) -> str:
    params = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    results = [str(v.type) for v in graph.outputs]
    result = results[0] if len(results) == 1 else f"({', '.join(results)})"
    return f"graph {quote(graph.name)}({params}) -> {result} {{"


def _comment_words(node: Node, uses: str | None) -> list[str]:
    words = [] if uses is None else [uses]
    if node.scope or node.location:
        words.append(quote(node.scope) if node.scope else EMPTY_SCOPE)
    if node.location:
        words.append(quote(node.location))
    return words


def _columns(rows: list[list[str]], caps: list[int | None]) -> list[str]:
    """Left-aligned columns two spaces apart; a column is as wide as its widest cell, up to its cap."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    widths = [min(width, caps[i] or width) if i < len(caps) else width for i, width in enumerate(widths)]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _graph_lines(graph: Graph, show_uses: bool, bodies: bool, indent: str) -> list[str]:
    counts = graph.use_counts() if show_uses else {}
    name_width = max((len(node.output.name) + 1 for node in graph.nodes), default=0)
    type_width = max((len(str(node.output.type)) for node in graph.nodes), default=0)
    lefts = [f"{'%' + node.output.name:<{name_width}} : {node.output.type!s:<{type_width}} = {format_call(node)}"
             for node in graph.nodes]
    uses_column = [f"uses={counts.get(id(node.output), 0)}" if show_uses else None for node in graph.nodes]
    comments = _columns([_comment_words(node, uses) for node, uses in zip(graph.nodes, uses_column)],
                        [None, _SCOPE_COLUMN_MAX] if show_uses else [_SCOPE_COLUMN_MAX])
    column = min(max((len(left) for left, c in zip(lefts, comments) if c), default=0), _COMMENT_COLUMN_MAX)

    lines = [indent + _signature(graph)]
    inner = indent + "  "
    for node, left, comment in zip(graph.nodes, lefts, comments):
        lines.append(f"{inner}{left.ljust(column)}  # {comment}" if comment else (inner + left).rstrip())
        body = node.attrs.get(BODY)
        if bodies and isinstance(body, Graph):
            lines.extend(_graph_lines(body, show_uses, bodies, inner + "  "))
    returned = ", ".join(f"%{v.name}" for v in graph.outputs)
    lines.append(f"{inner}return {returned}".rstrip())
    lines.append(indent + "}")
    return lines
