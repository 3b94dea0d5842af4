"""Common subexpression elimination.

Guarantees: two nodes with the same op, the same operands and the same attributes become one (random
ops excepted: equal operands there still mean two draws only if their seeds differ, which they do, but
they are left alone on principle). Outputs and inputs are unchanged.
"""
from __future__ import annotations

from typing import Any

from jitorch.ir.graph import Graph, GraphBuilder, Node, Value, replay
from jitorch.ir.ops import OPS, RANDOM
from jitorch.ir.types import Literal


def _key(node: Node, inputs: list[Any]) -> tuple:
    # literals by repr: -0.0 == 0.0 would merge `x * 0.0` with `x * -0.0`, whose zeros differ in sign
    operands = tuple(("lit", repr(a.value), a.dtype.name) if isinstance(a, Literal) else ("val", id(a))
                     for a in inputs)
    attrs = tuple(sorted((k, repr(v)) for k, v in node.attrs.items()))
    return node.op, operands, attrs


def cse(graph: Graph) -> Graph:
    seen: dict[tuple, Value] = {}

    def rewrite(builder: GraphBuilder, node: Node, inputs: list[Any]) -> Value | None:
        if OPS[node.op].kind == RANDOM:
            return None
        key = _key(node, inputs)
        if key in seen:
            return seen[key]
        value = builder.emit(node.op, *inputs, **node.attrs)
        seen[key] = value
        return value

    return replay(graph, rewrite)
