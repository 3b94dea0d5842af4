"""Graphviz DOT for a Graph: `jitorch.ir.dot.to_dot(graph)` -> text for `dot -Tsvg`.

Inputs are green ellipses, nodes boxes labeled with their op call and type, outputs blue ellipses; edges
run from each value's producer to its users. Nodes are named by position, so the text is byte-stable.
"""
from __future__ import annotations

import json

from jitorch.ir.graph import Graph
from jitorch.ir.printer import format_call
from jitorch.ir.types import Literal


def _quote(text: str) -> str:
    # DOT strings take C-like escapes; JSON's are a compatible subset, and \n stays a line break
    return json.dumps(text, ensure_ascii=False)


def to_dot(graph: Graph) -> str:
    lines = [f"digraph {_quote(graph.name)} {{",
             '  node [shape=box, fontname="monospace", fontsize=10];',
             '  edge [fontname="monospace", fontsize=8];']
    where: dict[int, str] = {}
    for i, value in enumerate(graph.inputs):
        where[id(value)] = f"in{i}"
        label = f"%{value.name}\n{value.type}"
        lines.append(f"  in{i} [label={_quote(label)}, shape=ellipse, style=filled, fillcolor=\"#d5f5d5\"];")
    for i, node in enumerate(graph.nodes):
        where[id(node.output)] = f"n{i}"
        label = f"%{node.output.name} = {format_call(node)}\n{node.output.type}"
        if node.scope:
            label += f"\n{node.scope}"
        lines.append(f"  n{i} [label={_quote(label)}];")
        values = [(position, a) for position, a in enumerate(node.inputs) if type(a) is not Literal]
        for position, operand in values:
            edge_label = f" [label=\"{position}\"]" if len(values) > 1 else ""
            lines.append(f"  {where[id(operand)]} -> n{i}{edge_label};")
    for i, value in enumerate(graph.outputs):
        label = f"return {i}\n{value.type}"
        lines.append(f"  out{i} [label={_quote(label)}, shape=ellipse, style=filled, fillcolor=\"#d5e5f5\"];")
        lines.append(f"  {where[id(value)]} -> out{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"
