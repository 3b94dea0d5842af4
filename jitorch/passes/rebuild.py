"""Building a graph from a selection of another graph's nodes: what DCE and partitioning share."""
from __future__ import annotations

from typing import Sequence

from jitorch.ir.graph import Graph, GraphBuilder, Node, Value
from jitorch.ir.types import Literal


def rebuild(name: str, inputs: Sequence[tuple[str, Value]], nodes: Sequence[Node],
            outputs: Sequence[Value]) -> Graph:
    """A new graph with `inputs` (new name, old value), the given nodes re-emitted in order, and
    `outputs` (old values). Every value a node or output uses must be an input or an earlier node's output."""
    builder = GraphBuilder(name)
    mapping: dict[int, Value] = {}
    for input_name, value in inputs:
        mapping[id(value)] = builder.add_input(input_name, value.type)
    for node in nodes:
        args = [a if isinstance(a, Literal) else mapping[id(a)] for a in node.inputs]
        builder.scope, builder.location = node.scope, node.location
        mapping[id(node.output)] = builder.emit(node.op, *args, **node.attrs)
    builder.set_outputs([mapping[id(v)] for v in outputs])
    return builder.build()


def same_inputs(graph: Graph) -> list[tuple[str, Value]]:
    return [(v.name, v) for v in graph.inputs]
