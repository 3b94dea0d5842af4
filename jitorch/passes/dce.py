"""Dead code elimination.

Guarantees: the result computes the same outputs from the same inputs, keeps every input (the
calling convention does not change), and contains only nodes some output depends on.
"""
from __future__ import annotations

from typing import Sequence

from jitorch.ir.graph import Graph, Node, Value
from jitorch.ir.types import Literal
from jitorch.passes.rebuild import rebuild, same_inputs


def live_nodes(nodes: Sequence[Node], outputs: Sequence[Value | Literal]) -> list[Node]:
    """The nodes among `nodes` (in topological order) that `outputs` are computed from, in the same order."""
    live = {id(v) for v in outputs if not isinstance(v, Literal)}
    kept = []
    for node in reversed(nodes):
        if id(node.output) in live:
            kept.append(node)
            live.update(id(a) for a in node.inputs if not isinstance(a, Literal))
    return kept[::-1]


def dce(graph: Graph) -> Graph:
    kept = live_nodes(graph.nodes, graph.outputs)
    if len(kept) == len(graph.nodes):
        return graph
    return rebuild(graph.name, same_inputs(graph), kept, graph.outputs)
