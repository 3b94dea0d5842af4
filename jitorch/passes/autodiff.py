"""Graph autodiff: a forward graph becomes a forward graph that also returns what backward needs, and
a backward graph, using the registry's VJP rules run on IR values (the same rules eager autograd runs).

`differentiate(graph, wrt, outputs)`:
1. replays the forward nodes into a joint graph, adds one gradient input per differentiated output,
   and walks the forward nodes in reverse applying each op's VJP rule to accumulate adjoints;
2. partitions the joint graph: a node belongs to the backward graph when it depends on a gradient
   input, to the forward graph otherwise; constants (nodes depending on no input) go wherever they are
   used. Forward values the backward graph uses are "saved": extra outputs of the forward graph and
   leading inputs of the backward graph.

Guarantees: forward outputs are unchanged (first in the forward graph's outputs); the backward graph's
outputs are the gradients of the `wrt` inputs, each with its input's type (zeros where no gradient
flows); gradients are only taken for values that depend on a `wrt` input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jitorch.ir.graph import Graph, GraphBuilder, Value
from jitorch.ir.ops import OPS
from jitorch.ir.types import Literal
from jitorch.passes.dce import dce
from jitorch.passes.rebuild import rebuild


@dataclass
class Differentiated:
    forward: Graph  # inputs as the original; outputs: original outputs, then saved intermediates
    backward: Graph  # inputs: saved forward inputs, saved intermediates, one gradient per differentiated output
    saved_inputs: tuple[int, ...]  # forward input indices the backward graph takes first
    saved_count: int  # intermediates saved as extra forward outputs
    wrt: tuple[int, ...]  # input indices whose gradients the backward graph returns, in order
    differentiated: tuple[int, ...]  # output indices that take a gradient input


def _depends_on(graph: Graph, roots: Sequence[Value]) -> set[int]:
    reached = {id(v) for v in roots}
    for node in graph.nodes:
        if any(not isinstance(a, Literal) and id(a) in reached for a in node.inputs):
            reached.add(id(node.output))
    return reached


def differentiate(graph: Graph, wrt: Sequence[int], outputs: Sequence[int]) -> Differentiated:
    builder = GraphBuilder(graph.name)
    mapping: dict[int, Value] = {}
    for value in graph.inputs:
        mapping[id(value)] = builder.add_input(value.name, value.type)
    for node in graph.nodes:
        builder.scope, builder.location = node.scope, node.location
        args = [a if isinstance(a, Literal) else mapping[id(a)] for a in node.inputs]
        mapping[id(node.output)] = builder.emit(node.op, *args, **node.attrs)
    forward_outputs = [mapping[id(v)] for v in graph.outputs]

    needs = _depends_on(graph, [graph.inputs[i] for i in wrt])
    grad_inputs = []
    adjoint: dict[int, Value] = {}
    for i in outputs:
        out = graph.outputs[i]
        grad = builder.add_input(f"grad{i}", out.type)
        grad_inputs.append(grad)
        if id(out) in needs:
            adjoint[id(out)] = grad if id(out) not in adjoint else adjoint[id(out)] + grad

    for node in reversed(graph.nodes):
        grad = adjoint.get(id(node.output))
        rule = OPS[node.op].vjp
        if grad is None or rule is None:
            continue
        builder.scope, builder.location = node.scope, node.location
        args = [a.value if isinstance(a, Literal) else mapping[id(a)] for a in node.inputs]
        grads = rule(grad, mapping[id(node.output)], *args, **node.attrs)
        for operand, g in zip(node.inputs, grads):
            if g is None or isinstance(operand, Literal) or id(operand) not in needs:
                continue
            if callable(g) and not isinstance(g, Value):
                g = g()
            adjoint[id(operand)] = g if id(operand) not in adjoint else adjoint[id(operand)] + g

    input_grads = []
    for i in wrt:
        value = graph.inputs[i]
        grad = adjoint.get(id(value))
        if grad is None:
            grad = builder.emit("full", shape=tuple(value.shape), value=0.0, dtype=value.dtype)
        input_grads.append(grad)
    builder.set_outputs(forward_outputs + input_grads)
    # gradients nobody asked for (e.g. of inputs that do not require grad) die here, before partitioning
    joint = dce(builder.build())
    return _partition(joint, graph, len(forward_outputs), tuple(wrt), tuple(outputs))


def _partition(joint: Graph, original: Graph, n_forward: int, wrt: tuple[int, ...],
               differentiated: tuple[int, ...]) -> Differentiated:
    forward_inputs = joint.inputs[:len(original.inputs)]
    grads_in = joint.inputs[len(original.inputs):]
    backward_side = _depends_on(joint, grads_in)
    # nodes that depend on no input at all (the zeros of `full`) are recomputed where they are used rather
    # than saved: a saved constant is a forward output kept alive until backward, as big as what it fills
    depends_on_inputs = _depends_on(joint, joint.inputs)
    constants = {id(n.output) for n in joint.nodes if id(n.output) not in depends_on_inputs}
    forward_nodes = [n for n in joint.nodes if id(n.output) not in backward_side]
    backward_nodes = [n for n in joint.nodes if id(n.output) in backward_side or id(n.output) in constants]
    forward_outputs = joint.outputs[:n_forward]
    input_grads = joint.outputs[n_forward:]

    saved: list[Value] = []
    saved_ids: set[int] = set()

    def save(value: Any) -> None:
        if isinstance(value, Literal) or id(value) in saved_ids:
            return
        if id(value) in backward_side or id(value) in constants:
            return
        saved_ids.add(id(value))
        saved.append(value)

    for node in backward_nodes:
        for operand in node.inputs:
            save(operand)
    for grad in input_grads:
        save(grad)

    positions = {id(v): i for i, v in enumerate(forward_inputs)}
    saved_inputs = [v for v in saved if id(v) in positions]
    saved_values = [v for v in saved if id(v) not in positions]
    forward = dce(rebuild(original.name, [(v.name, v) for v in forward_inputs], forward_nodes,
                          list(forward_outputs) + saved_values))
    backward_inputs = ([(v.name, v) for v in saved_inputs] + [(f"saved{i}", v) for i, v in enumerate(saved_values)]
                       + [(v.name, v) for v in grads_in])
    backward = dce(rebuild(f"{original.name}_backward", backward_inputs, backward_nodes, input_grads))
    return Differentiated(forward, backward, tuple(positions[id(v)] for v in saved_inputs), len(saved_values),
                          wrt, differentiated)
