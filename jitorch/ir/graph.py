"""The IR's data structures: SSA values, nodes, graphs, the builder that type-checks every node, and replay.

A `Graph` is a flat list of `Node`s in topological order over typed `Value`s. Graphs are made only by a
`GraphBuilder`, whose `emit` runs the registry's shape rule, so every value has a checked static type.
Once built a graph is never mutated: a pass makes a new one, usually with `replay`.

    >>> from jitorch.ir import dtypes
    >>> b = GraphBuilder("double")
    >>> x = b.add_input("x", TensorType((3,), dtypes.float32))
    >>> b.set_outputs([x * 2.0])          # Values speak the operator vocabulary: this emits `mul`
    >>> print(b.build())
    graph double(%x: f32[3]) -> f32[3] {
      %0 : f32[3] = mul(%x, 2.0:f32)
      return %0
    }
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.ops import ELEMENTWISE, OPS
from jitorch.ir.types import Literal, TensorType
from jitorch.ir.vocabulary import OpVocabulary
from jitorch.ir.vocabulary_base import literal

# what a value name may contain: everything the text format can print without quoting
NAME = re.compile(r'[^\s,()\[\]{}=:%#"]+')


class Value(OpVocabulary):
    """An SSA value: a graph input (`producer` None) or a node's output, printed `%name`.

    Values compare by identity (`==` is the `eq` op, as for tensors), so keep them in lists or in dicts
    keyed by `id`. Arithmetic on a value emits nodes into the builder that made it.
    """

    __slots__ = ("builder", "name", "producer", "type")
    __hash__ = object.__hash__
    # numpy scalars on the left (`np.float32(2) * v`) defer to our reflected operators
    __array_ufunc__ = None

    def __init__(self, name: str, type: TensorType, producer: Node | None = None,
                 builder: GraphBuilder | None = None) -> None:
        self.name = name
        self.type = type
        self.producer = producer
        self.builder = builder

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return self.type.shape

    @property
    def dtype(self) -> DType:  # type: ignore[override]
        return self.type.dtype

    def _apply(self, name: str, *operands: Any, **attrs: Any) -> Value:
        if self.builder is None:
            raise ValueError(f"%{self.name} belongs to no builder; cannot emit {name} from it")
        return self.builder.emit(name, *operands, **attrs)

    def _coerce(self, value: Any) -> Any:
        raise TypeError(f"cannot use a {type(value).__name__} as an operand of IR value %{self.name}: "
                        f"use a Python scalar or another value of the same graph")

    def __bool__(self) -> bool:
        raise TypeError(f"the truth value of IR value %{self.name} is not known while building a graph "
                        f"(compare Values with `is`, not `==`)")

    def __repr__(self) -> str:
        return f"Value(%{self.name}: {self.type})"


@dataclass(eq=False)
class Node:
    """One operation: `output = op(*inputs, **attrs)`, with the module path and source line that made it."""

    op: str
    inputs: tuple[Value | Literal, ...]
    attrs: dict[str, Any]
    output: Value
    scope: str = ""
    location: str = ""

    def __str__(self) -> str:
        from jitorch.ir.printer import format_node
        return format_node(self)


class Graph:
    """A built, immutable graph: typed inputs, nodes in topological order, outputs."""

    def __init__(self, name: str, inputs: list[Value], nodes: list[Node], outputs: list[Value]) -> None:
        self.name = name
        self.inputs = inputs
        self.nodes = nodes
        self.outputs = outputs
        self._interpreter_plan: Any = None  # owned by jitorch.ir.interpreter

    def use_counts(self) -> dict[int, int]:
        """id(value) -> how many operand slots and return slots refer to it (absent: unused)."""
        counts: dict[int, int] = {}
        for node in self.nodes:
            for operand in node.inputs:
                if type(operand) is not Literal:
                    counts[id(operand)] = counts.get(id(operand), 0) + 1
        for value in self.outputs:
            counts[id(value)] = counts.get(id(value), 0) + 1
        return counts

    def users(self, value: Value) -> list[Node]:
        """The nodes that take `value` as an operand, in graph order, each once."""
        return [node for node in self.nodes if any(operand is value for operand in node.inputs)]

    def __str__(self) -> str:
        from jitorch.ir.printer import format_graph
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, {len(self.outputs)} outputs>"


def _attr(op: str, key: str, value: Any) -> Any:
    """An attribute value in its canonical form (Python scalars, tuples), or TypeError naming the op."""
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        return value.item()  # np.float64 is a float, but would print as `np.float64(...)`
    if value is None or isinstance(value, (bool, int, float, str, DType, Graph)):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(_attr(op, key, v) for v in value)
    raise TypeError(f"{op}: attribute {key}={value!r} has type {type(value).__name__}; attributes are "
                    f"bool, int, float, str, dtype, None or tuples of them")


class GraphBuilder:
    """Builds one graph. `scope` and `location` are stamped on each emitted node; the tracer sets them.

    Node outputs are named "0", "1", ... in emission order, skipping names inputs already use.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = ""
        self.location = ""
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self._names: set[str] = set()  # membership only: never iterated
        self._counter = 0
        self._built = False

    def _check_open(self) -> None:
        if self._built:
            raise ValueError(f"graph {self.name} was already built; start a new GraphBuilder (or use replay)")

    def _claim(self, name: str) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"graph {self.name}: invalid value name {name!r} (no spaces or any of ,()[]{{}}=:%#\")")
        if name in self._names:
            raise ValueError(f"graph {self.name}: a value named %{name} already exists")
        self._names.add(name)

    def add_input(self, name: str, type: TensorType) -> Value:
        """A new graph input; names are user-facing (`x`, `l1.weight`) and must be unique."""
        self._check_open()
        if not isinstance(type, TensorType):
            raise TypeError(f"graph {self.name}: input %{name} needs a TensorType, got {type!r}")
        self._claim(name)
        value = Value(name, type, None, self)
        self.inputs.append(value)
        return value

    def constant(self, value: bool | float, dtype: Any) -> Literal:
        """A scalar literal operand of `dtype` (`builder.constant(2, jitorch.float32)` is `2.0:f32`)."""
        return literal(value, dtypes.as_dtype(dtype))

    def emit(self, op: str, *inputs: Value | Literal, **attrs: Any) -> Value:
        """Append `op(*inputs, **attrs)`, type-checked by the registry's shape rule; returns its output."""
        return self._emit(op, inputs, attrs)

    def _emit(self, op: str, inputs: Sequence[Value | Literal], attrs: dict[str, Any],
              name: str | None = None) -> Value:
        self._check_open()
        entry = OPS.get(op)
        if entry is None:
            raise ValueError(f"unknown op {op!r}: it is not in the registry (jitorch.ir.ops.OPS)")
        for operand in inputs:
            if type(operand) is Literal:
                continue
            if not isinstance(operand, Value):
                raise TypeError(f"{op}: operands are IR Values or Literals, got {type(operand).__name__} "
                                f"(wrap scalars with builder.constant)")
            if operand.builder is not self:
                raise ValueError(f"{op}: operand %{operand.name} belongs to another graph than {self.name}")
        attrs = {key: _attr(op, key, value) for key, value in attrs.items()}
        out_type = entry.infer(*inputs, **attrs)
        if name is None:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
            self._counter += 1
        self._claim(name)
        output = Value(name, out_type, None, self)
        node = Node(op, tuple(inputs), attrs, output, self.scope, self.location)
        output.producer = node
        self.nodes.append(node)
        return output

    def set_outputs(self, values: Sequence[Value]) -> None:
        self._check_open()
        for value in values:
            if not isinstance(value, Value) or value.builder is not self:
                what = f"%{value.name}" if isinstance(value, Value) else type(value).__name__
                raise ValueError(f"graph {self.name}: output {what} is not a value of this graph")
        self.outputs = list(values)

    def build(self) -> Graph:
        """The finished graph; the builder accepts nothing more afterwards."""
        self._check_open()
        self._built = True
        return Graph(self.name, list(self.inputs), list(self.nodes), list(self.outputs))


Rewrite = Callable[[GraphBuilder, Node, list[Any]], "Value | Literal | None"]


def replay(graph: Graph, rewrite: Rewrite | None = None, name: str | None = None) -> Graph:
    """A new graph computing `graph` node by node: the torch.fx-style way to write a pass.

    For each node, `rewrite(builder, node, new_inputs)` may return a replacement for the node's output: a
    Value of the new builder with the same type, or a Literal of the same dtype (meaning every element
    equals it). Returning None re-emits the node unchanged, with its scope and location. A Literal is
    passed on as an operand to elementwise nodes that keep a Value operand, and materialized with `full`
    everywhere else. Inputs keep their names and types; `graph` is not modified.

        def double_to_add(builder, node, inputs):          # x * 2.0  ->  x + x
            if node.op == "mul" and type(inputs[1]) is Literal and inputs[1].value == 2:
                return builder.emit("add", inputs[0], inputs[0])
            return None

        faster = replay(graph, double_to_add)
    """
    builder = GraphBuilder(graph.name if name is None else name)
    mapping: dict[int, Value | Literal] = {}
    materialized: dict[int, Value] = {}
    for value in graph.inputs:
        mapping[id(value)] = builder.add_input(value.name, value.type)

    def as_value(old: Value) -> Value:
        """The new Value for `old`, materializing a Literal replacement as a `full` node once."""
        new = mapping[id(old)]
        if type(new) is Value:
            return new
        if id(old) not in materialized:
            source = old.producer
            builder.scope, builder.location = (source.scope, source.location) if source else ("", "")
            materialized[id(old)] = builder.emit("full", shape=old.shape, value=new.value, dtype=new.dtype)
        return materialized[id(old)]

    for node in graph.nodes:
        operands: list[Any] = [a if type(a) is Literal else mapping[id(a)] for a in node.inputs]
        keep_literals = OPS[node.op].kind == ELEMENTWISE and any(type(a) is Value for a in operands)
        if not keep_literals:
            operands = [as_value(old) if type(new) is Literal and type(old) is not Literal else new
                        for old, new in zip(node.inputs, operands)]
        builder.scope, builder.location = node.scope, node.location
        result = rewrite(builder, node, list(operands)) if rewrite is not None else None
        if result is None:
            result = builder.emit(node.op, *operands, **node.attrs)
        elif type(result) is Literal:
            if result.dtype is not node.output.dtype:
                raise TypeError(f"replay: rewrite of `{node}` returned literal {result}, "
                                f"not a {node.output.dtype.short} constant")
        elif not isinstance(result, Value) or result.builder is not builder:
            raise ValueError(f"replay: rewrite of `{node}` returned {result!r}, not a value of the new graph")
        elif result.type != node.output.type:
            raise TypeError(f"replay: rewrite of `{node}` returned %{result.name}: {result.type}, "
                            f"not {node.output.type}")
        mapping[id(node.output)] = result
    builder.scope, builder.location = "", ""
    builder.set_outputs([as_value(value) for value in graph.outputs])
    return builder.build()
