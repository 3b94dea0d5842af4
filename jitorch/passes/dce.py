"""Dead code elimination.

Guarantees: the result computes the same outputs from the same inputs, keeps every input (the
calling convention does not change), and contains only nodes some output depends on.
"""
from __future__ import annotations

from jitorch.ir.graph import Graph
from jitorch.ir.types import Literal
from jitorch.passes.rebuild import rebuild, same_inputs


def dce(graph: Graph) -> Graph:
    live = {id(v) for v in graph.outputs}
    kept = []
    for node in reversed(graph.nodes):
        if id(node.output) in live:
            kept.append(node)
            live.update(id(a) for a in node.inputs if not isinstance(a, Literal))
    if len(kept) == len(graph.nodes):
        return graph
    return rebuild(graph.name, same_inputs(graph), kept[::-1], graph.outputs)
