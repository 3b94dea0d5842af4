"""Graph passes: each a pure Graph -> Graph (its input unchanged, its output verified), checked by goldens
(IR text in, IR text out) for constant folding, IEEE-safe simplification, CSE, DCE and the autodiff
partition, and by running input and output graphs on the same values."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import jitorch
from jitorch.ir import dtypes
from jitorch.ir.graph import Graph, GraphBuilder
from jitorch.ir.interpreter import run
from jitorch.ir.parser import parse_graph
from jitorch.ir.printer import format_graph
from jitorch.ir.types import TensorType
from jitorch.ir.verify import verify
from jitorch.passes import pipeline
from jitorch.passes.autodiff import differentiate
from jitorch.passes.cse import cse
from jitorch.passes.dce import dce
from jitorch.passes.simplify import simplify
from tests.nn_reference import numeric_gradients
from tests.opinfo import record_dispatch


def snapshot(graph: Graph) -> tuple:
    """What a pass must leave alone: the text, and the very node, input and output objects."""
    return (format_graph(graph), [id(n) for n in graph.nodes], [id(v) for v in graph.inputs],
            [id(v) for v in graph.outputs], [dict(n.attrs) for n in graph.nodes])


def apply(transform: Callable[[Graph], Any], text: str) -> Any:
    """Run a pass on the parsed text; check it did not touch its input and that its output verifies."""
    graph = parse_graph(text)
    before = snapshot(graph)
    result = transform(graph)
    assert snapshot(graph) == before, "the pass modified its input graph"
    for out in (result.forward, result.backward) if hasattr(result, "forward") else (result,):
        verify(out)
    return result


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


SPECIAL = np.array([-0.0, 0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e-45], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# simplify


FOLD_IN = """\
graph fold(%x: f32[2,3]) -> (f32[2,3], i64[3,2]) {
  %0 : f32[2,3] = full(shape=(2,3), value=2.0, dtype=f32)  # -  model.py:1
  %1 : f32[2,3] = mul(%0, 3.0:f32)                         # -  model.py:2
  %2 : f32[2,3] = exp(%1)                                  # -  model.py:3
  %3 : f32[3,2] = permute(%2, perm=(1,0))                  # -  model.py:4
  %4 : f32[3,2] = flip(%3, axes=(1,))                      # -  model.py:5
  %5 : i64[3,2] = cast(%4, dtype=i64)                      # -  model.py:6
  %6 : f32[2,3] = add(%x, %2)                              # -  model.py:7
  return %6, %5
}"""

FOLD_OUT = """\
graph fold(%x: f32[2,3]) -> (f32[2,3], i64[3,2]) {
  %0 : f32[2,3] = full(shape=(2,3), value=2.0, dtype=f32)                 # -  model.py:1
  %1 : f32[2,3] = full(shape=(2,3), value=6.0, dtype=f32)                 # -  model.py:2
  %2 : f32[2,3] = full(shape=(2,3), value=403.42877197265625, dtype=f32)  # -  model.py:3
  %3 : f32[3,2] = full(shape=(3,2), value=403.42877197265625, dtype=f32)  # -  model.py:4
  %4 : f32[3,2] = full(shape=(3,2), value=403.42877197265625, dtype=f32)  # -  model.py:5
  %5 : i64[3,2] = full(shape=(3,2), value=403, dtype=i64)                 # -  model.py:6
  %6 : f32[2,3] = add(%x, %2)                                             # -  model.py:7
  return %6, %5
}"""

FOLD_PIPELINE_OUT = """\
graph fold(%x: f32[2,3]) -> (f32[2,3], i64[3,2]) {
  %0 : f32[2,3] = full(shape=(2,3), value=403.42877197265625, dtype=f32)  # -  model.py:3
  %1 : i64[3,2] = full(shape=(3,2), value=403, dtype=i64)                 # -  model.py:6
  %2 : f32[2,3] = add(%x, %0)                                             # -  model.py:7
  return %2, %1
}"""


def test_constant_folding_golden() -> None:
    assert format_graph(apply(simplify, FOLD_IN)) == FOLD_OUT  # folded in place; the dead ones DCE removes
    timings: dict[str, float] = {}
    folded = apply(lambda g: pipeline.run_passes(g, pipeline.before_autodiff(), timings), FOLD_IN)
    assert format_graph(folded) == FOLD_PIPELINE_OUT
    assert list(timings) == ["simplify", "cse", "dce"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for got, want in zip(run(folded, [x]), run(parse_graph(FOLD_IN), [x])):
        assert same_bits(got, want)


IEEE_IN = """\
graph ieee(%x: f32[8], %n: i64[8]) -> (f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], i64[8]) {
  %0 : f32[8] = sub(%x, 0.0:f32)
  %1 : f32[8] = mul(%x, 1.0:f32)
  %2 : f32[8] = mul(1.0:f32, %x)
  %3 : f32[8] = div(%x, 1.0:f32)
  %4 : f32[8] = pow(%x, 1.0:f32)
  %5 : f32[8] = add(%x, 0.0:f32)
  %6 : f32[8] = mul(%x, 0.0:f32)
  %7 : f32[8] = sub(%x, -0.0:f32)
  %8 : i64[8] = add(%n, 0:i64)
  return %0, %1, %2, %3, %4, %5, %6, %7, %8
}"""

IEEE_OUT = """\
graph ieee(%x: f32[8], %n: i64[8]) -> (f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], f32[8], i64[8]) {
  %0 : f32[8] = add(%x, 0.0:f32)
  %1 : f32[8] = mul(%x, 0.0:f32)
  %2 : f32[8] = sub(%x, -0.0:f32)
  return %x, %x, %x, %x, %x, %0, %1, %2, %n
}"""


def test_simplification_is_ieee_exact() -> None:
    """x - 0.0, x * 1.0, x / 1.0, x ** 1 are x for every x; x + 0.0 is not (-0.0 + 0.0 is +0.0), nor x * 0.0
    (inf * 0.0 is nan, -1 * 0.0 is -0.0), nor x - (-0.0)."""
    simplified = apply(simplify, IEEE_IN)
    assert format_graph(simplified) == IEEE_OUT
    n = np.arange(-4, 4, dtype=np.int64)
    for got, want in zip(run(simplified, [SPECIAL, n]), run(parse_graph(IEEE_IN), [SPECIAL, n])):
        assert same_bits(got, want), (got, want)


MOVES_IN = """\
graph moves(%x: f32[2,3]) -> (f32[2,3], f32[3,2], f32[2,3], f32[6], f32[2,3]) {
  %0 : f32[3,2] = permute(%x, perm=(1,0))
  %1 : f32[2,3] = permute(%0, perm=(1,0))
  %2 : f32[6]   = reshape(%x, shape=(6,))
  %3 : f32[3,2] = reshape(%2, shape=(3,2))
  %4 : f32[2,3] = reshape(%3, shape=(2,3))
  %5 : f32[2,3] = neg(%x)
  %6 : f32[2,3] = neg(%5)
  %7 : f32[2,3] = expand(%6, shape=(2,3))
  %8 : f32[2,3] = slice(%7, starts=(0,0), stops=(2,3), steps=(1,1))
  %9 : f32[2,3] = pow(%x, 2.0:f32)
  return %1, %0, %4, %2, %9
}"""

MOVES_OUT = """\
graph moves(%x: f32[2,3]) -> (f32[2,3], f32[3,2], f32[2,3], f32[6], f32[2,3]) {
  %0 : f32[3,2] = permute(%x, perm=(1,0))
  %1 : f32[6]   = reshape(%x, shape=(6,))
  %2 : f32[3,2] = reshape(%x, shape=(3,2))
  %3 : f32[2,3] = neg(%x)
  %4 : f32[2,3] = mul(%x, %x)
  return %x, %0, %x, %1, %4
}"""


def test_movement_round_trips_and_identities_disappear() -> None:
    simplified = apply(simplify, MOVES_IN)
    assert format_graph(simplified) == MOVES_OUT
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    for got, want in zip(run(simplified, [x]), run(parse_graph(MOVES_IN), [x])):
        assert same_bits(got, want)


LINEAR_IN = """\
graph linear(%x: f32[4,2,3], %w: f32[5,3]) -> f32[4,2,5] {
  %0 : f32[3,5]   = permute(%w, perm=(1,0))
  %1 : f32[1,3,5] = reshape(%0, shape=(1,3,5))
  %2 : f32[4,3,5] = expand(%1, shape=(4,3,5))
  %3 : f32[4,2,5] = matmul(%x, %2)
  return %3
}"""


def test_a_batched_matmul_by_an_expanded_matrix_becomes_one_matmul_of_rows_once_gradients_are_taken() -> None:
    # before autodiff it stays batched: w's gradient is then a product per batch element summed over the batch
    # (as eager computes it), not a float32 dot product over every row of the batch
    assert format_graph(apply(simplify, LINEAR_IN)) == LINEAR_IN
    simplified = apply(lambda graph: dce(simplify(graph, after_autodiff=True)), LINEAR_IN)
    assert format_graph(simplified) == """\
graph linear(%x: f32[4,2,3], %w: f32[5,3]) -> f32[4,2,5] {
  %0 : f32[3,5]   = permute(%w, perm=(1,0))
  %1 : f32[8,3]   = reshape(%x, shape=(8,3))
  %2 : f32[8,5]   = matmul(%1, %0)
  %3 : f32[4,2,5] = reshape(%2, shape=(4,2,5))
  return %3
}"""
    again = apply(lambda graph: simplify(graph, after_autodiff=True), format_graph(simplified))
    assert format_graph(again) == format_graph(simplified)  # idempotent
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 2, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(run(simplified, [x, w])[0], run(parse_graph(LINEAR_IN), [x, w])[0], rtol=1e-6,
                               atol=1e-6)
    broadcast_rows = """\
graph outer(%x: f32[4,2,3], %w: f32[5]) -> f32[4,2,5] {
  %0 : f32[1,1,5] = reshape(%w, shape=(1,1,5))
  %1 : f32[4,3,5] = expand(%0, shape=(4,3,5))
  %2 : f32[4,2,5] = matmul(%x, %1)
  return %2
}"""
    # expanded within the matrix too: not one matrix for every batch element
    assert format_graph(apply(lambda graph: simplify(graph, after_autodiff=True), broadcast_rows)) == broadcast_rows
    empty = apply(lambda graph: simplify(graph, after_autodiff=True), """\
graph empty(%x: f32[4,2,0], %w: f32[5,0]) -> f32[4,2,5] {
  %0 : f32[0,5]   = permute(%w, perm=(1,0))
  %1 : f32[1,0,5] = reshape(%0, shape=(1,0,5))
  %2 : f32[4,0,5] = expand(%1, shape=(4,0,5))
  %3 : f32[4,2,5] = matmul(%x, %2)
  return %3
}""")
    assert not run(empty, [np.zeros((4, 2, 0), np.float32), np.zeros((5, 0), np.float32)])[0].any()


TRANSPOSED_PRODUCTS = """\
graph grads(%x: f32[3,6], %dy: f32[3,4], %a: f32[2,3,4], %b: f32[2,4,5]) -> (f32[4,6], f32[2,5,3], f32[6,4], f32[4,6]) {
  %0 : f32[6,3]   = permute(%x, perm=(1,0))
  %1 : f32[6,4]   = matmul(%0, %dy)
  %2 : f32[4,6]   = permute(%1, perm=(1,0))
  %3 : f32[2,3,5] = matmul(%a, %b)
  %4 : f32[2,5,3] = permute(%3, perm=(0,2,1))
  %5 : f32[6,4]   = matmul(%0, %dy)
  %6 : f32[4,6]   = permute(%5, perm=(1,0))
  return %2, %4, %5, %6
}"""


def test_a_transposed_product_becomes_the_product_of_the_transposes_once_gradients_are_taken() -> None:
    """A linear layer's weight gradient, (x.T @ dy).T, is dy.T @ x: a contiguous result, not a transposed view
    of one. A product something else uses too (%5, returned) keeps its transpose: no second matmul."""
    simplified = apply(lambda graph: dce(simplify(graph, after_autodiff=True)), TRANSPOSED_PRODUCTS)
    assert format_graph(simplified) == """\
graph grads(%x: f32[3,6], %dy: f32[3,4], %a: f32[2,3,4], %b: f32[2,4,5]) -> (f32[4,6], f32[2,5,3], f32[6,4], f32[4,6]) {
  %0 : f32[6,3]   = permute(%x, perm=(1,0))
  %1 : f32[4,3]   = permute(%dy, perm=(1,0))
  %2 : f32[4,6]   = matmul(%1, %x)
  %3 : f32[2,5,4] = permute(%b, perm=(0,2,1))
  %4 : f32[2,4,3] = permute(%a, perm=(0,2,1))
  %5 : f32[2,5,3] = matmul(%3, %4)
  %6 : f32[6,4]   = matmul(%0, %dy)
  %7 : f32[4,6]   = permute(%6, perm=(1,0))
  return %2, %5, %6, %7
}"""
    assert format_graph(apply(simplify, TRANSPOSED_PRODUCTS)) == TRANSPOSED_PRODUCTS  # before autodiff: kept
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in ((3, 6), (3, 4), (2, 3, 4), (2, 4, 5))]
    for got, want in zip(run(simplified, arrays), run(parse_graph(TRANSPOSED_PRODUCTS), arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


DETACH = """\
graph stop(%x: f32[3]) -> f32[3] {
  %0 : f32[3] = detach(%x)
  %1 : f32[3] = mul(%0, %x)
  return %1
}"""


def test_detach_is_kept_until_gradients_are_taken() -> None:
    assert format_graph(apply(simplify, DETACH)) == DETACH
    assert format_graph(apply(lambda g: simplify(g, after_autodiff=True), DETACH)) == """\
graph stop(%x: f32[3]) -> f32[3] {
  %0 : f32[3] = mul(%x, %x)
  return %0
}"""
    split = apply(lambda g: differentiate(g, [0], [0]), DETACH)
    assert format_graph(split.backward) == """\
graph stop_backward(%saved0: f32[3], %grad0: f32[3]) -> f32[3] {
  %0 : f32[3] = mul(%grad0, %saved0)
  return %0
}"""  # d/dx (stop(x) * x) = stop(x): only the second operand is differentiated


# ----------------------------------------------------------------------------------------------------
# CSE and DCE


CSE_IN = """\
graph twice(%x: f32[2,3], %y: f32[2,3], %seed: i64[]) -> (f32[2,3], f32[2,3], f32[2,3], f32[2,3], f32[2,3]) {
  %0  : f32[2,3] = mul(%x, %y)                                  # a  model.py:1
  %1  : f32[2,3] = mul(%x, %y)                                  # b  model.py:2
  %2  : f32[2,3] = exp(%0)                                      # a  model.py:3
  %3  : f32[2,3] = exp(%1)                                      # b  model.py:4
  %4  : f32[2,3] = add(%2, %3)                                  # -  model.py:5
  %5  : f32[2,3] = mul(%x, 0.0:f32)                             # -  model.py:6
  %6  : f32[2,3] = mul(%x, -0.0:f32)                            # -  model.py:7
  %7  : f32[1,3] = sum(%x, axes=(0,))                           # -  model.py:8
  %8  : f32[2,1] = sum(%x, axes=(1,))                           # -  model.py:9
  %9  : f32[2,3] = rand_uniform(%seed, shape=(2,3), dtype=f32)  # -  model.py:10
  %10 : f32[2,3] = rand_uniform(%seed, shape=(2,3), dtype=f32)  # -  model.py:11
  %11 : f32[2,3] = sub(%9, %10)                                 # -  model.py:12
  %12 : f32[2,3] = expand(%7, shape=(2,3))                      # -  model.py:13
  %13 : f32[2,3] = expand(%8, shape=(2,3))                      # -  model.py:14
  %14 : f32[2,3] = sub(%12, %13)                                # -  model.py:15
  return %4, %5, %6, %11, %14
}"""

CSE_OUT = """\
graph twice(%x: f32[2,3], %y: f32[2,3], %seed: i64[]) -> (f32[2,3], f32[2,3], f32[2,3], f32[2,3], f32[2,3]) {
  %0  : f32[2,3] = mul(%x, %y)                                  # a  model.py:1
  %1  : f32[2,3] = exp(%0)                                      # a  model.py:3
  %2  : f32[2,3] = add(%1, %1)                                  # -  model.py:5
  %3  : f32[2,3] = mul(%x, 0.0:f32)                             # -  model.py:6
  %4  : f32[2,3] = mul(%x, -0.0:f32)                            # -  model.py:7
  %5  : f32[1,3] = sum(%x, axes=(0,))                           # -  model.py:8
  %6  : f32[2,1] = sum(%x, axes=(1,))                           # -  model.py:9
  %7  : f32[2,3] = rand_uniform(%seed, shape=(2,3), dtype=f32)  # -  model.py:10
  %8  : f32[2,3] = rand_uniform(%seed, shape=(2,3), dtype=f32)  # -  model.py:11
  %9  : f32[2,3] = sub(%7, %8)                                  # -  model.py:12
  %10 : f32[2,3] = expand(%5, shape=(2,3))                      # -  model.py:13
  %11 : f32[2,3] = expand(%6, shape=(2,3))                      # -  model.py:14
  %12 : f32[2,3] = sub(%10, %11)                                # -  model.py:15
  return %2, %3, %4, %9, %12
}"""


def test_cse_golden() -> None:
    """Equal op, operands and attributes merge (chains too, keeping the first's scope and line); literals
    that differ only in the sign of zero, different attributes and random draws do not."""
    merged = apply(cse, CSE_IN)
    assert format_graph(merged) == CSE_OUT
    x, y = SPECIAL.reshape(2, 4)[:, :3].copy(), np.full((2, 3), -1.0, np.float32)
    seed = np.array(5, np.int64)
    with np.errstate(invalid="ignore"):  # inf + -inf in the sums (numpy warns; the result is nan either way)
        pairs = list(zip(run(merged, [x, y, seed]), run(parse_graph(CSE_IN), [x, y, seed])))
    for got, want in pairs:
        assert same_bits(got, want)


DCE_IN = """\
graph dead(%x: f32[3], %unused: f32[3]) -> f32[3] {
  %0 : f32[3] = exp(%x)
  %1 : f32[3] = log(%x)
  %2 : f32[3] = mul(%1, %unused)
  %3 : f32[3] = neg(%0)
  %4 : f32[3] = tanh(%3)
  return %3
}"""

DCE_OUT = """\
graph dead(%x: f32[3], %unused: f32[3]) -> f32[3] {
  %0 : f32[3] = exp(%x)
  %1 : f32[3] = neg(%0)
  return %1
}"""


def test_dce_golden_keeps_every_input() -> None:
    assert format_graph(apply(dce, DCE_IN)) == DCE_OUT
    assert format_graph(apply(dce, DCE_OUT)) == DCE_OUT


@pytest.mark.parametrize("name", ["simplify", "simplify_after_autodiff", "cse", "dce"])
@pytest.mark.parametrize("text", [FOLD_IN, IEEE_IN, MOVES_IN, DETACH, CSE_IN, DCE_IN],
                         ids=["fold", "ieee", "moves", "detach", "cse", "dce"])
def test_every_pass_is_pure_and_idempotent(name: str, text: str) -> None:
    transform = {"simplify": simplify, "simplify_after_autodiff": lambda g: simplify(g, after_autodiff=True),
                 "cse": cse, "dce": dce}[name]
    once = apply(transform, text)
    assert format_graph(apply(transform, format_graph(dce(once)))) == format_graph(dce(once))


# ----------------------------------------------------------------------------------------------------
# autodiff partitioning


LAYER = """\
graph layer(%x: f32[2,3], %w: f32[3,4], %b: f32[4], %frozen: f32[4]) -> (f32[2,4], f32[]) {
  %0 : f32[2,4] = matmul(%x, %w)                 # l1  model.py:3
  %1 : f32[1,4] = reshape(%b, shape=(1,4))       # l1  model.py:3
  %2 : f32[2,4] = expand(%1, shape=(2,4))        # l1  model.py:3
  %3 : f32[2,4] = add(%0, %2)                    # l1  model.py:3
  %4 : f32[2,4] = tanh(%3)                       # -   model.py:4
  %5 : f32[1,4] = reshape(%frozen, shape=(1,4))  # -   model.py:5
  %6 : f32[2,4] = expand(%5, shape=(2,4))        # -   model.py:5
  %7 : f32[2,4] = mul(%4, %6)                    # -   model.py:5
  %8 : f32[1,1] = sum(%7, axes=(0,1))            # -   model.py:6
  %9 : f32[]    = reshape(%8, shape=())          # -   model.py:6
  return %4, %9
}"""

LAYER_FORWARD = """\
graph layer(%x: f32[2,3], %w: f32[3,4], %b: f32[4], %frozen: f32[4]) -> (f32[2,4], f32[], f32[2,4]) {
  %0  : f32[2,4] = matmul(%x, %w)                 # l1  model.py:3
  %1  : f32[1,4] = reshape(%b, shape=(1,4))       # l1  model.py:3
  %2  : f32[2,4] = expand(%1, shape=(2,4))        # l1  model.py:3
  %3  : f32[2,4] = add(%0, %2)                    # l1  model.py:3
  %4  : f32[2,4] = tanh(%3)                       # -   model.py:4
  %5  : f32[1,4] = reshape(%frozen, shape=(1,4))  # -   model.py:5
  %6  : f32[2,4] = expand(%5, shape=(2,4))        # -   model.py:5
  %7  : f32[2,4] = mul(%4, %6)                    # -   model.py:5
  %8  : f32[1,1] = sum(%7, axes=(0,1))            # -   model.py:6
  %9  : f32[]    = reshape(%8, shape=())          # -   model.py:6
  %10 : f32[2,4] = mul(%4, %4)                    # -   model.py:4
  %11 : f32[2,4] = sub(1.0:f32, %10)              # -   model.py:4
  return %4, %9, %11
}"""

LAYER_BACKWARD = """\
graph layer_backward(%frozen: f32[4], %w: f32[3,4], %saved0: f32[2,4], %grad0: f32[2,4], %grad1: f32[]) -> (f32[2,3], f32[4]) {
  %0  : f32[1,4] = reshape(%frozen, shape=(1,4))  # -   model.py:5
  %1  : f32[2,4] = expand(%0, shape=(2,4))        # -   model.py:5
  %2  : f32[1,1] = reshape(%grad1, shape=(1,1))   # -   model.py:6
  %3  : f32[2,4] = expand(%2, shape=(2,4))        # -   model.py:6
  %4  : f32[2,4] = mul(%3, %1)                    # -   model.py:5
  %5  : f32[2,4] = add(%grad0, %4)                # -   model.py:5
  %6  : f32[2,4] = mul(%5, %saved0)               # -   model.py:4
  %7  : f32[1,4] = sum(%6, axes=(0,))             # l1  model.py:3
  %8  : f32[4]   = reshape(%7, shape=(4,))        # l1  model.py:3
  %9  : f32[4,3] = permute(%w, perm=(1,0))        # l1  model.py:3
  %10 : f32[2,3] = matmul(%6, %9)                 # l1  model.py:3
  return %10, %8
}"""  # noqa: E501


def test_autodiff_partition_golden() -> None:
    """Forward returns its outputs, then what backward needs; backward takes those, then one gradient per
    differentiated output, and returns the gradients of the `wrt` inputs in order. Views that backward
    reads (of %w and %frozen) are made again in backward from the inputs, not saved as copies."""
    split = apply(lambda g: differentiate(g, [0, 2], [0, 1]), LAYER)
    assert format_graph(split.forward) == LAYER_FORWARD
    assert format_graph(split.backward) == LAYER_BACKWARD
    assert (split.saved_inputs, split.saved_count, split.wrt, split.differentiated) == ((3, 1), 1, (0, 2), (0, 1))
    saved_types = [v.type for v in split.forward.outputs[2:]]
    assert [v.type for v in split.backward.inputs[2:3]] == saved_types


def test_autodiff_partition_computes_eager_gradients() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 3), (3, 4), (4,), (4,))]
    cotangents = [rng.standard_normal((2, 4)).astype(np.float32), np.array(0.5, np.float32)]
    for wrt, outputs in (([0, 2], [0, 1]), ([1, 2, 3], [1]), ([3], [0])):
        split = apply(lambda g, wrt=wrt, outputs=outputs: differentiate(g, wrt, outputs), LAYER)
        forward = run(split.forward, arrays)
        saved = [arrays[i] for i in split.saved_inputs] + forward[2:]
        grads = run(split.backward, saved + [cotangents[i] for i in outputs])
        leaves = [jitorch.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
        x, w, b, frozen = leaves
        hidden = (x @ w + b).tanh()
        results = [hidden, (hidden * frozen).sum()]
        total = sum((results[i] * jitorch.tensor(cotangents[i])).sum() for i in outputs)
        expected = jitorch.autograd.grad(total, [leaves[i] for i in wrt], allow_unused=True) \
            if total.requires_grad else [None] * len(wrt)
        assert len(grads) == len(wrt)
        for i, got, want in zip(wrt, grads, expected):
            assert got.shape == arrays[i].shape
            want_array = np.zeros_like(arrays[i]) if want is None else want.numpy()
            np.testing.assert_allclose(got, want_array, rtol=1e-5, atol=1e-6, err_msg=f"wrt {wrt}, input {i}")
        for got, want in zip(forward[:2], results):
            np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_autodiff_of_an_input_no_output_depends_on_is_zero_made_in_backward() -> None:
    split = apply(lambda g: differentiate(g, [0, 3], [0]), LAYER)  # output 0 does not use %frozen
    assert [str(v.type) for v in split.backward.outputs] == ["f32[2,3]", "f32[4]"]
    zeros = split.backward.outputs[1].producer  # not a saved forward output: nothing to keep alive
    assert (zeros.op, zeros.attrs["value"]) == ("full", 0.0)
    assert [str(v.type) for v in split.forward.outputs] == ["f32[2,4]", "f32[]", "f32[2,4]"]


def test_autodiff_keeps_zeros_of_slice_gradients_out_of_the_forward_graph() -> None:
    split = apply(lambda g: differentiate(g, [0], [0]), """\
graph window(%x: f32[6,4]) -> f32[2,4] {
  %0 : f32[2,4] = slice(%x, starts=(1,0), stops=(3,4), steps=(1,1))
  %1 : f32[2,4] = exp(%0)
  return %1
}""")
    assert "f32[6,4]" not in [str(v.type) for v in split.forward.outputs]  # no zeros saved for backward
    assert [node.op for node in split.backward.nodes] == ["mul", "full", "slice_scatter"]


# ----------------------------------------------------------------------------------------------------
# gradients of many slices of one tensor: one cat, not a sum of input-sized slice_scatters


def time_steps(steps: int, used: Sequence[int] | None = None) -> Graph:
    """sum over t of x[:, t] * w, for x f32[2, steps, 3]: each x[:, t] a slice of x."""
    b = GraphBuilder("steps")
    x = b.add_input("x", TensorType((2, steps, 3), dtypes.float32))
    w = b.add_input("w", TensorType((2, 3), dtypes.float32))
    total = None
    for t in range(steps) if used is None else used:
        term = x.narrow(1, t, 1).reshape(2, 3) * w
        total = term if total is None else total + term
    b.set_outputs([total.sum_axes((0, 1)).reshape()])
    return b.build()


def test_autodiff_gathers_the_gradients_of_time_steps_into_one_cat() -> None:
    split = differentiate(time_steps(3), [0], [0])
    assert format_graph(split.backward) == """\
graph steps_backward(%w: f32[2,3], %grad0: f32[]) -> f32[2,3,3] {
  %0 : f32[1,1]   = reshape(%grad0, shape=(1,1))
  %1 : f32[2,3]   = expand(%0, shape=(2,3))
  %2 : f32[2,3]   = mul(%1, %w)
  %3 : f32[2,1,3] = reshape(%2, shape=(2,1,3))
  %4 : f32[2,3]   = mul(%1, %w)
  %5 : f32[2,1,3] = reshape(%4, shape=(2,1,3))
  %6 : f32[2,3]   = mul(%1, %w)
  %7 : f32[2,1,3] = reshape(%6, shape=(2,1,3))
  %8 : f32[2,3,3] = cat(%7, %5, %3, axis=1)
  return %8
}"""
    gaps = differentiate(time_steps(5, used=(3, 1)), [0], [0]).backward  # zeros where no step is read
    assert [(n.op, tuple(n.output.shape)) for n in gaps.nodes if n.op in ("full", "cat", "slice_scatter")] == [
        ("full", (2, 1, 3)), ("full", (2, 1, 3)), ("full", (2, 1, 3)), ("cat", (2, 5, 3))]


def _steps_reference(x: np.ndarray, w: np.ndarray, used: Sequence[int]) -> float:
    return float(sum((x[:, t] * w).sum() for t in used))


@pytest.mark.parametrize("used", [(0, 1, 2, 3), (3, 1), (2, 2, 0)], ids=["all", "gaps", "repeated"])
def test_gradients_of_time_steps_match_eager_and_finite_differences(used: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    split = pipeline.run_passes(time_steps(4, used), pipeline.before_autodiff(), {})
    split = differentiate(split, [0], [0])
    saved = [[x, w][i] for i in split.saved_inputs] + run(split.forward, [x, w])[1:]
    (graph_grad,) = run(split.backward, saved + [np.array(1.0, np.float32)])
    leaf = jitorch.tensor(x, requires_grad=True)
    sum((leaf[:, t] * jitorch.tensor(w)).sum() for t in used).backward()
    (numeric,) = numeric_gradients(lambda a: _steps_reference(a, w.astype(np.float64), used), [x])
    np.testing.assert_allclose(graph_grad, leaf.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(leaf.grad.numpy(), numeric, rtol=1e-5, atol=1e-5)


def test_backward_of_time_steps_grows_linearly_in_the_number_of_steps() -> None:
    """Nodes and elements written by the backward graph: T slice_scatters into zeros of the whole input
    would write T x (the input's size) elements."""
    sizes = []
    for steps in (4, 8, 16):
        backward = differentiate(time_steps(steps), [0], [0]).backward
        sizes.append((len(backward.nodes), sum(n.output.type.numel for n in backward.nodes)))
    (nodes4, elements4), (nodes8, elements8), (nodes16, elements16) = sizes
    assert nodes16 - nodes8 == 2 * (nodes8 - nodes4)
    assert elements16 - elements8 == 2 * (elements8 - elements4)


def test_eager_backward_of_time_steps_adds_each_step_into_one_buffer() -> None:
    w = jitorch.randn(2, 3)
    x = jitorch.randn(2, 16, 3, requires_grad=True)
    hidden = x * 2.0  # not a leaf: the steps' gradients meet in the engine's buffer for `hidden`
    loss = sum((x[:, t] * w).sum() + (hidden[:, t] * w).sum() for t in range(16))
    with record_dispatch() as seen:
        loss.backward()
    assert seen.count("slice_scatter") == 2  # the first step into x's gradient and into hidden's; the rest in place
    expected = np.broadcast_to(w.numpy()[:, None, :] * 3.0, (2, 16, 3))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, atol=1e-6)
    (again,) = jitorch.autograd.grad(sum((x[:, t] * w).sum() for t in range(16)), [x])  # captured, not .grad
    np.testing.assert_allclose(again.numpy(), expected / 3.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6, atol=1e-6)
    calls: list[np.ndarray] = []
    x.register_hook(lambda grad: calls.append(grad.numpy().copy()))
    sum((x[:, t] * w).sum() for t in range(16)).backward()
    assert len(calls) == 16  # a hook still sees each step's gradient
    np.testing.assert_allclose(x.grad.numpy(), expected * 4.0 / 3.0, rtol=1e-6, atol=1e-6)
