"""Graph autodiff: a forward graph becomes a forward graph that also returns what backward needs, and
a backward graph, using the registry's VJP rules run on IR values (the same rules eager autograd runs).

`differentiate(graph, wrt, outputs)`:
1. replays the forward nodes into a joint graph, adds one gradient input per differentiated output,
   and walks the forward nodes in reverse applying each op's VJP rule to accumulate adjoints;
2. partitions the joint graph: a node belongs to the backward graph when it depends on a gradient
   input, to the forward graph otherwise; constants (nodes depending on no input) go wherever they are
   used, and so do views that keep every element (reshape, permute, expand: free to make again, where
   a saved one is a copy). Forward values the backward graph uses are "saved": extra outputs of the
   forward graph and leading inputs of the backward graph.

Gradients reaching one value are added up as they arrive, except the VJPs of slices: a slice's gradient is
zeros with the slice's region filled (`slice_scatter` into a `full` of 0), so adding up the gradients of T
slices of one tensor (an LSTM's chunked gates, the time steps `x[:, t]` of a sequence) would cost
O(T x size). They are held back instead, and regions along one dim that do not overlap become one `cat`
of the regions and zeros for the gaps: O(size). (Where such a gradient is -0.0 it stays -0.0, where adding
the zeros would have made it +0.0.)

Guarantees: forward outputs are unchanged (first in the forward graph's outputs); the backward graph's
outputs are the gradients of the `wrt` inputs, each with its input's type (zeros where no gradient
flows); gradients are only taken for values that depend on a `wrt` input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from jitorch.ir.graph import Graph, GraphBuilder, Value
from jitorch.ir.ops import OPS
from jitorch.ir.types import Literal
from jitorch.passes.dce import dce, live_nodes
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
    adjoint: dict[int, _Adjoint] = {}
    for i in outputs:
        out = graph.outputs[i]
        grad = builder.add_input(f"grad{i}", out.type)
        grad_inputs.append(grad)
        if id(out) in needs:
            adjoint.setdefault(id(out), _Adjoint()).add(grad)

    for node in reversed(graph.nodes):
        rule = OPS[node.op].vjp
        if id(node.output) not in adjoint or rule is None:
            continue
        builder.scope, builder.location = node.scope, node.location
        grad = adjoint[id(node.output)].total()
        args = [a.value if isinstance(a, Literal) else mapping[id(a)] for a in node.inputs]
        grads = rule(grad, mapping[id(node.output)], *args, **node.attrs)
        for operand, g in zip(node.inputs, grads):
            if g is None or isinstance(operand, Literal) or id(operand) not in needs:
                continue
            if callable(g) and not isinstance(g, Value):
                g = g()
            adjoint.setdefault(id(operand), _Adjoint()).add(g)

    input_grads = []
    for i in wrt:
        value = graph.inputs[i]
        grad = adjoint[id(value)].total() if id(value) in adjoint else None
        if grad is None:
            grad = builder.emit("full", shape=tuple(value.shape), value=0.0, dtype=value.dtype)
        input_grads.append(grad)
    builder.set_outputs(forward_outputs + input_grads)
    # gradients nobody asked for (e.g. of inputs that do not require grad) die here, before partitioning
    joint = dce(builder.build())
    return _partition(joint, graph, len(forward_outputs), tuple(wrt), tuple(outputs))


@dataclass(frozen=True, eq=False)  # values are IR values: `==` on them emits nodes
class _Region:
    """A slice's gradient: zeros but for `values` between `start` and `stop` of `dim`, spanning the other dims."""

    gradient: Value
    dim: int
    start: int
    stop: int
    values: Value


def _region(gradient: Value) -> _Region | None:
    """The region a slice's gradient fills (a unit-step slice along one dim), or None for any other gradient."""
    node = gradient.producer
    if node is None or node.op != "slice_scatter":
        return None
    base = node.inputs[0].producer
    if base is None or base.op != "full" or base.attrs["value"] != 0:
        return None
    starts, stops, steps = node.attrs["starts"], node.attrs["stops"], node.attrs["steps"]
    partial = [d for d, size in enumerate(gradient.shape) if (starts[d], stops[d]) != (0, size)]
    if len(partial) != 1 or any(step != 1 for step in steps):
        return None
    dim = partial[0]
    return _Region(gradient, dim, starts[dim], stops[dim], node.inputs[1])


def _tile(regions: list[_Region]) -> Value | None:
    """The sum of regions of one dim as one `cat` of them and of zeros between them; None when two overlap."""
    like, dim = regions[0].gradient, regions[0].dim
    parts: list[Value] = []
    position = 0
    for region in sorted(regions, key=lambda r: r.start):
        if region.start < position:
            return None
        if region.start > position:
            parts.append(like.new_full(_resized(like.shape, dim, region.start - position), 0.0))
        parts.append(region.values)
        position = region.stop
    if position < like.shape[dim]:
        parts.append(like.new_full(_resized(like.shape, dim, like.shape[dim] - position), 0.0))
    return like.builder.emit("cat", *parts, axis=dim)


def _resized(shape: tuple[int, ...], dim: int, size: int) -> tuple[int, ...]:
    return tuple(size if d == dim else s for d, s in enumerate(shape))


@dataclass
class _Adjoint:
    """The gradients reaching one value: the sum of the others so far, and the slice gradients held back."""

    dense: Value | None = None
    regions: list[_Region] = field(default_factory=list)

    def add(self, gradient: Value) -> None:
        region = _region(gradient)
        if region is not None:
            self.regions.append(region)
        else:
            self.dense = gradient if self.dense is None else self.dense + gradient

    def total(self) -> Value:
        """Everything added, with regions of one dim tiled (emitted where the builder is now)."""
        by_dim: dict[int, list[_Region]] = {}  # insertion-ordered: the emitted nodes are byte-stable
        for region in self.regions:
            by_dim.setdefault(region.dim, []).append(region)
        total = self.dense
        for regions in by_dim.values():
            tiled = _tile(regions) if len(regions) > 1 else None
            for gradient in [tiled] if tiled is not None else [r.gradient for r in regions]:
                total = gradient if total is None else total + gradient
        assert total is not None  # an adjoint is made by its first add()
        return total


def _views(joint: Graph, made_in_backward: set[int]) -> set[int]:
    """Views that keep every element (reshape, permute, expand) of forward values, by id of their output:
    backward makes its own from their operand, which it saves instead. A saved view is a copy as big as the
    view: a weight expanded over the batch for a batched matmul is the weight times the batch size, where
    the weight is an input, saved for free. (Views cost nothing to make again: kernels inline them.)"""
    returned = {id(v) for v in joint.outputs}  # stored anyway
    return {id(node.output) for node in joint.nodes
            if OPS[node.op].view and id(node.output) not in made_in_backward and id(node.output) not in returned
            and node.output.type.numel >= node.inputs[0].type.numel}


def _partition(joint: Graph, original: Graph, n_forward: int, wrt: tuple[int, ...],
               differentiated: tuple[int, ...]) -> Differentiated:
    forward_inputs = joint.inputs[:len(original.inputs)]
    grads_in = joint.inputs[len(original.inputs):]
    backward_side = _depends_on(joint, grads_in)
    # nodes that depend on no input at all (the zeros of `full`) are recomputed where they are used rather
    # than saved: a saved constant is a forward output kept alive until backward, as big as what it fills
    depends_on_inputs = _depends_on(joint, joint.inputs)
    constants = {id(n.output) for n in joint.nodes if id(n.output) not in depends_on_inputs}
    made_in_backward = backward_side | constants
    made_in_backward |= _views(joint, made_in_backward)
    forward_outputs = joint.outputs[:n_forward]
    input_grads = joint.outputs[n_forward:]
    forward_nodes = [n for n in joint.nodes if id(n.output) not in backward_side]
    # only what the gradients need: constants and views may serve the forward graph only
    backward_nodes = live_nodes([n for n in joint.nodes if id(n.output) in made_in_backward], input_grads)

    saved: list[Value] = []
    saved_ids: set[int] = set()

    def save(value: Any) -> None:
        if isinstance(value, Literal) or id(value) in saved_ids or id(value) in made_in_backward:
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
