"""Structural and type checks of a Graph, run after every pass (torch.fx's `lint`).

`verify(graph)` raises VerifyError naming the graph and the offending node's line when a value is used
before its definition or comes from another graph, a name or a definition repeats, an op is not in the
registry, a stored type differs from what the registry's shape rule infers now, an attribute could not
be printed and read back, or an output is not defined in the graph. Fused bodies are verified too.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jitorch.ir.dtypes import DType
from jitorch.ir.graph import Graph, Node, Value
from jitorch.ir.ops import OPS
from jitorch.ir.printer import format_node
from jitorch.ir.types import Literal, TensorType


class VerifyError(RuntimeError):
    """A graph breaks an IR invariant: a bug in whatever built or transformed it."""


def verify(graph: Graph) -> None:
    """Check `graph`'s invariants; raise VerifyError naming the first broken one."""
    defined: dict[int, Value] = {}
    names: dict[str, str] = {}  # name -> what defined it, for the message

    def fail(message: str, node: Node | None = None) -> VerifyError:
        where = f"\n    {format_node(node)}" if node is not None else ""
        return VerifyError(f"verify({graph.name}): {message}{where}")

    def define(value: Any, what: str, node: Node | None) -> None:
        if not isinstance(value, Value) or not isinstance(value.type, TensorType):
            raise fail(f"{what} is {value!r}, not a typed Value", node)
        if id(value) in defined:
            raise fail(f"%{value.name} is defined twice", node)
        if value.name in names:
            raise fail(f"the name %{value.name} is used by {names[value.name]} and by {what}", node)
        defined[id(value)] = value
        names[value.name] = what

    for value in graph.inputs:
        define(value, f"input %{getattr(value, 'name', '?')}", None)
        if value.producer is not None:
            raise fail(f"input %{value.name} has a producer node")

    node_outputs = {id(node.output) for node in graph.nodes}
    for node in graph.nodes:
        op = OPS.get(node.op)
        if op is None:
            raise fail(f"op {node.op!r} is not in the registry", node)
        for operand in node.inputs:
            if type(operand) is Literal:
                if not _literal_ok(operand):
                    raise fail(f"literal {operand.value!r} does not have the Python type of dtype "
                               f"{operand.dtype.name}", node)
                continue
            if not isinstance(operand, Value):
                raise fail(f"operand {operand!r} is neither a Value nor a Literal", node)
            if id(operand) not in defined:
                why = "is used before its definition" if id(operand) in node_outputs else \
                    "is not defined in this graph (a value from another graph?)"
                raise fail(f"operand %{operand.name} {why}", node)
        for key, value in node.attrs.items():
            _check_attr(key, value, fail, node)
        try:
            inferred = op.infer(*node.inputs, **node.attrs)
        except Exception as error:
            raise fail(f"the shape rule of {node.op} rejects the node: {type(error).__name__}: {error}", node) \
                from error
        if inferred != node.output.type:
            raise fail(f"%{node.output.name} is stored as {node.output.type} but {node.op} infers {inferred}", node)
        if node.output.producer is not node:
            raise fail(f"%{node.output.name}'s producer is not the node defining it", node)
        define(node.output, f"node %{node.output.name}", node)

    for i, value in enumerate(graph.outputs):
        if not isinstance(value, Value) or id(value) not in defined:
            what = f"%{value.name}" if isinstance(value, Value) else repr(value)
            raise fail(f"output {i} ({what}) is not defined in this graph")


def _literal_ok(operand: Literal) -> bool:
    """The literal's value is stored as the Python type its dtype prints and parses as."""
    expected = bool if operand.dtype.is_bool else int if operand.dtype.is_integer else float
    return type(operand.value) is expected


def _check_attr(key: str, value: Any, fail: Any, node: Node) -> None:
    if isinstance(value, Graph):
        if key != "body":
            raise fail(f"attribute {key} holds a graph; only `body` may", node)
        verify(value)
        return
    if isinstance(value, np.generic) or not (value is None or isinstance(value, (bool, int, float, str, DType, tuple))):
        raise fail(f"attribute {key}={value!r} is not a bool, int, float, str, dtype, None or tuple", node)
    if isinstance(value, tuple):
        for item in value:
            _check_attr(key, item, fail, node)
