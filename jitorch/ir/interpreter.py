"""The reference semantics of a Graph: run each node with the registry's numpy implementation.

    outputs = run(graph, [np.ones((64, 784), np.float32), weight, bias])   # [array of shape (64, 128)]

Each graph gets an execution plan once (cached on the graph): value slots, literal constants, and which
intermediates die after which node, so memory is released as soon as nothing needs it. Results are
converted to the node's static dtype exactly as eager dispatch does, so the interpreter agrees with eager
mode bit for bit.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitorch.ir.graph import Graph, Value
from jitorch.ir.ops import OPS
from jitorch.ir.types import Literal, ShapeError


@dataclass(frozen=True)
class _Step:
    eager: Callable[..., Any]
    operands: tuple[int, ...]  # slots
    attrs: dict[str, Any]
    output: int
    shape: tuple[int, ...]
    dtype: np.dtype
    frees: tuple[int, ...]  # slots whose last use is this step


@dataclass(frozen=True)
class _Plan:
    nodes: list  # the graph's lists, held to notice a graph being rebound to other lists
    inputs: list
    outputs: list
    count: int
    template: list[Any]  # initial slot contents: literal constants filled in, everything else None
    steps: tuple[_Step, ...]
    output_slots: tuple[int, ...]


def _plan(graph: Graph) -> _Plan:
    plan = graph._interpreter_plan
    if plan is not None and plan.nodes is graph.nodes and plan.count == len(graph.nodes) \
            and plan.inputs is graph.inputs and plan.outputs is graph.outputs:
        return plan
    slots: dict[int, int] = {}
    template: list[Any] = []

    def slot(value: Any) -> int:
        if type(value) is Literal:
            template.append(value.numpy_value())
            return len(template) - 1
        if id(value) not in slots:
            raise ValueError(f"run({graph.name}): %{value.name} is used before its definition (verify the graph)")
        return slots[id(value)]

    def define(value: Value) -> int:
        slots[id(value)] = len(template)
        template.append(None)
        return slots[id(value)]

    for value in graph.inputs:
        define(value)
    last_use: dict[int, int] = {}  # slot -> index of the last step reading it
    raw = []
    for index, node in enumerate(graph.nodes):
        operands = tuple(slot(a) for a in node.inputs)
        for operand, source in zip(operands, node.inputs):
            if type(source) is not Literal:
                last_use[operand] = index
        output = define(node.output)
        last_use.setdefault(output, index)  # a value nothing reads dies at once
        raw.append((node, operands, output))
    kept = {slots[id(v)] for v in graph.outputs}
    frees: dict[int, list[int]] = {}
    for value_slot, index in last_use.items():
        if value_slot not in kept:
            frees.setdefault(index, []).append(value_slot)
    steps = tuple(_Step(OPS[node.op].eager, operands, node.attrs, output, node.output.shape,
                        node.output.dtype.numpy, tuple(frees.get(index, ())))
                  for index, (node, operands, output) in enumerate(raw))
    plan = _Plan(graph.nodes, graph.inputs, graph.outputs, len(graph.nodes), template, steps,
                 tuple(slots[id(v)] for v in graph.outputs))
    graph._interpreter_plan = plan
    return plan


def _check_input(graph: Graph, value: Value, array: Any) -> np.ndarray:
    if type(array) is not np.ndarray:
        array = np.asarray(array)
    expected = value.type
    if array.dtype != expected.dtype.numpy:
        raise TypeError(f"{graph.name}: input %{value.name} expects {expected}, got a {array.dtype} array "
                        f"of shape {tuple(array.shape)}")
    if array.shape != expected.shape:
        raise ShapeError(f"{graph.name}: input %{value.name} expects {expected}, got shape {tuple(array.shape)}")
    return array


def _owner(array: np.ndarray) -> Any:
    """The object that owns an array's memory: views of one buffer share it."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array if array.base is None else array.base


def run(graph: Graph, inputs: Sequence[Any]) -> list[np.ndarray]:
    """Execute `graph` on numpy arrays (one per graph input, of its exact shape and dtype)."""
    plan = _plan(graph)
    if len(inputs) != len(graph.inputs):
        raise TypeError(f"{graph.name}: expected {len(graph.inputs)} inputs, got {len(inputs)}")
    env = list(plan.template)
    arrays = [_check_input(graph, value, array) for value, array in zip(graph.inputs, inputs)]
    env[:len(arrays)] = arrays
    for index, step in enumerate(plan.steps):
        try:
            result = step.eager(*[env[s] for s in step.operands], **step.attrs)
        except Exception as error:
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"while running {graph.nodes[index]} in graph {graph.name}")
            raise
        if type(result) is not np.ndarray:
            result = np.asarray(result)
        if result.dtype != step.dtype:
            result = result.astype(step.dtype)
        if result.shape != step.shape:
            raise RuntimeError(f"{graph.name}: {graph.nodes[index]} computed shape {result.shape}; "
                               f"the registry's eager and infer rules for this op disagree")
        env[step.output] = result
        for dead in step.frees:
            env[dead] = None
    outputs = [env[s] for s in plan.output_slots]
    owners = {id(_owner(array)) for array in arrays}
    return [out.copy() if not out.flags.writeable or id(_owner(out)) in owners else out for out in outputs]
