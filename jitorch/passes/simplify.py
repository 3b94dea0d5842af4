"""Constant folding and IEEE-safe algebraic simplification, as peephole rules.

Guarantees: every algebraic rewrite gives bit-identical results for every input, including -0.0, inf and nan:
so `x - 0.0 -> x`, `x * 1.0 -> x`, `x / 1.0 -> x`, but never `x + 0.0 -> x` (-0.0 + 0.0 is +0.0) nor
`x * 0 -> 0` (inf * 0 is nan). Constant folding evaluates ops on uniform (`full`) operands with the
registry's own numpy implementation. `detach` (a gradient barrier) is removed only with
`after_autodiff=True`, once gradients have been taken.

With `after_autodiff=True` one more rule reshapes work rather than algebra: a batched matmul by a matrix
expanded over the batch (a linear layer on a sequence) becomes one matmul of all the rows, the same sum of
products for every element (BLAS may block them differently, so the last bits may differ, as between
numpy's batched and 2-D matmuls). Only once gradients are taken: the matrix's gradient then stays a product
per batch element, summed over the batch as eager sums it, where the gradient of one product of B x M rows
would be a float32 dot product of B x M terms, less accurate than eager's.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from jitorch.ir.graph import Graph, GraphBuilder, Node, Value, replay
from jitorch.ir.ops import ELEMENTWISE, OPS
from jitorch.ir.types import Literal

Rule = Callable[[GraphBuilder, Node, list], Any]


def _producer(value: Any) -> Node | None:
    return None if isinstance(value, Literal) else value.producer


def _is_literal(value: Any, number: float) -> bool:
    return isinstance(value, Literal) and value.value == number and not (
        value.dtype.is_floating_point and number == 0 and np.signbit(value.value))


def _uniform(value: Any) -> Any:
    """The single value of a literal or a `full` node's output, else None."""
    if isinstance(value, Literal):
        return value.numpy_value()
    node = _producer(value)
    if node is not None and node.op == "full":
        return node.output.dtype.numpy.type(node.attrs["value"])
    return None


_MOVES = ("reshape", "expand", "permute", "slice", "flip")


def _fold(builder: GraphBuilder, node: Node, inputs: list) -> Any:
    """An op on uniform operands is a uniform constant: a `full` node."""
    op = OPS[node.op]
    if not inputs or not (node.op in _MOVES or op.kind == ELEMENTWISE):
        return None
    values = [_uniform(v) for v in inputs]
    if any(v is None for v in values):
        return None
    folded = values[0] if node.op in _MOVES else op.eager(*map(np.asarray, values), **node.attrs)
    dtype = node.output.dtype
    return builder.emit("full", shape=tuple(node.output.shape), value=np.asarray(folded).astype(dtype.numpy).item(),
                        dtype=dtype)


def _identity(builder: GraphBuilder, node: Node, inputs: list) -> Any:
    attrs, first = node.attrs, inputs[0] if inputs else None
    same_type = first is not None and not isinstance(first, Literal) and first.type == node.output.type
    if node.op in ("reshape", "expand", "cast") and same_type:
        return first
    if node.op == "permute" and attrs["perm"] == tuple(range(len(attrs["perm"]))):
        return first
    if node.op == "slice" and same_type and all(s == 1 for s in attrs["steps"]):
        return first
    if node.op in ("sub", "add") and len(inputs) == 2:
        a, b = inputs
        if node.op == "sub" and _is_literal(b, 0):
            return a
        if node.op == "add" and node.output.dtype.is_integer and (_is_literal(b, 0) or _is_literal(a, 0)):
            return b if _is_literal(a, 0) else a
    if node.op == "mul":
        a, b = inputs
        if _is_literal(b, 1):
            return a
        if _is_literal(a, 1):
            return b
    if node.op in ("div", "pow") and _is_literal(inputs[1], 1):
        return first
    return None


def _reshaped(builder: GraphBuilder, value: Value, shape: tuple[int, ...]) -> Value:
    """`value` reshaped to `shape`, from what a reshape made it from: nothing to emit for a round trip."""
    inner = _producer(value)
    if inner is not None and inner.op == "reshape":
        value = inner.inputs[0]
    return value if tuple(value.shape) == tuple(shape) else builder.emit("reshape", value, shape=tuple(shape))


def _permuted(builder: GraphBuilder, value: Value, perm: tuple[int, ...]) -> Value:
    """`value` permuted by `perm`, composed with the permute it was made by: nothing to emit for a round trip."""
    inner = _producer(value)
    if inner is not None and inner.op == "permute":
        perm, value = tuple(inner.attrs["perm"][p] for p in perm), inner.inputs[0]
    return value if perm == tuple(range(len(perm))) else builder.emit("permute", value, perm=perm)


def _combine(builder: GraphBuilder, node: Node, inputs: list) -> Any:
    if node.op == "pow" and isinstance(inputs[1], Literal) and inputs[1].value == 2:
        return builder.emit("mul", inputs[0], inputs[0])
    inner = _producer(inputs[0]) if inputs else None
    if inner is None:
        return None
    if node.op == "reshape" and inner.op == "reshape":
        return _reshaped(builder, inputs[0], node.attrs["shape"])
    if node.op == "permute" and inner.op == "permute":
        return _permuted(builder, inputs[0], node.attrs["perm"])
    if node.op == "neg" and inner.op == "neg":
        return inner.inputs[0]
    return None


def _matrix_rows(builder: GraphBuilder, node: Node, inputs: list) -> Any:
    """A batched matmul by a matrix expanded over the batch (how `x @ w` broadcasts `w`, as in a linear layer
    on a sequence) is one matmul of all the rows of `x` by the matrix: one GEMM instead of one per batch
    element, each small, and no batch of copies of the matrix."""
    if node.op != "matmul" or len(node.output.shape) < 3:
        return None
    rows, matrix = inputs
    expand = _producer(matrix)
    batch, inner, columns = len(node.output.shape) - 2, *matrix.shape[-2:]
    if expand is None or expand.op != "expand":
        return None
    source = tuple(expand.inputs[0].shape)
    if any(size != 1 for size in source[:batch]) or source[batch:] != (inner, columns):  # broadcast over the batch only
        return None
    flat = _reshaped(builder, rows, (math.prod(rows.shape[:-1]), inner))
    product = builder.emit("matmul", flat, _reshaped(builder, expand.inputs[0], (inner, columns)))
    return builder.emit("reshape", product, shape=tuple(node.output.shape))


def _transposed_product(builder: GraphBuilder, node: Node, inputs: list, uses: dict[int, int]) -> Any:
    """`(a @ b).mT` is `b.mT @ a.mT`: BLAS reads transposed operands in place, so the product comes out in the
    layout wanted instead of as a transposed view (a linear layer's weight gradient, `(x.T @ dy).T`, reached
    the optimizer as one, whose every pass then strode across memory). Only for a product nothing else uses,
    which would otherwise be computed twice."""
    if node.op != "permute" or uses.get(id(node.inputs[0]), 0) != 1:
        return None
    product = _producer(inputs[0])
    rank = len(node.output.shape)
    if product is None or product.op != "matmul" or rank < 2 or node.attrs["perm"] != _swap_last(node.output):
        return None
    a, b = product.inputs
    if len(a.shape) < 2 or len(b.shape) < 2:  # a vector operand: no matrix to transpose
        return None
    return builder.emit("matmul", _permuted(builder, b, _swap_last(b)), _permuted(builder, a, _swap_last(a)))


def _swap_last(value: Value) -> tuple[int, ...]:
    """The perm of `value.mT`."""
    rank = len(value.shape)
    return (*range(rank - 2), rank - 1, rank - 2)


RULES: tuple[Rule, ...] = (_fold, _identity, _combine)
RULES_AFTER_AUTODIFF: tuple[Rule, ...] = RULES + (_matrix_rows,)


def simplify(graph: Graph, *, after_autodiff: bool = False) -> Graph:
    rules = RULES_AFTER_AUTODIFF if after_autodiff else RULES
    if after_autodiff:
        rules += (functools.partial(_transposed_product, uses=graph.use_counts()),)

    def rewrite(builder: GraphBuilder, node: Node, inputs: list) -> Value | None:
        if after_autodiff and node.op == "detach":
            return inputs[0]
        builder.scope, builder.location = node.scope, node.location
        for rule in rules:
            found = rule(builder, node, inputs)
            if found is not None:
                return found
        return None

    return replay(graph, rewrite)
