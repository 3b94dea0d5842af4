"""Minimal regression tests for the bugs the fuzzers found, one per bug, shrunk from the failing programs.

A bug in code outside tests/ that is not fixed yet is marked xfail(strict=True): the test turns into an
XPASS failure the day the fix lands, and then the mark (and the bug's entry in known.py) goes.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import jitorch

from .differential import llvm_status

VIEW_ARGUMENT_WRITE = ("compile: an in-place write to a non-contiguous (view) argument is lost on compiled calls "
                       "(Recorder.inplace binds the view's base as a lifted tensor, so the graph writes back into "
                       "the first call's base), reported")
ZERO_SIZE_LOWERING = ("llvm: lowering a copy kernel over a zero-size tensor raises ZeroDivisionError in "
                      "loopnest.divmod_index (the backend then warns and runs the graph with the interpreter), "
                      "reported")
SEQUENTIAL_SUMS = ("llvm: float32 sum kernels accumulate sequentially, so the error grows with the length (30x "
                   "numpy's pairwise summation at 4M elements), reported")


def _llvm() -> None:
    available, why = llvm_status()
    if not available:
        pytest.skip(why)


@pytest.mark.xfail(strict=True, reason=VIEW_ARGUMENT_WRITE)
@pytest.mark.parametrize("view", ["transposed", "strided"])
def test_inplace_write_to_a_view_argument_reaches_the_callers_tensor(view: str) -> None:
    # fuzz seeds 61 and 92: `x.add_(1.5)` on an argument arriving as x.mT or x[::2]
    def f(x: jitorch.Tensor) -> jitorch.Tensor:
        x.add_(1.0)
        return x * 2

    def argument(base: jitorch.Tensor) -> jitorch.Tensor:
        return base.mT if view == "transposed" else base[::2]

    compiled = jitorch.compile(f, backend="interpreter")
    first = jitorch.zeros(4, 3)
    compiled(argument(first))  # traces
    second = jitorch.zeros(4, 3)
    out = compiled(argument(second))  # runs the graph
    want = jitorch.zeros(4, 3)
    f(argument(want))
    np.testing.assert_array_equal(out.numpy(), np.full(tuple(out.shape), 2.0, np.float32))
    np.testing.assert_array_equal(second.numpy(), want.numpy())
    assert compiled.stats["hits"] == 1


@pytest.mark.xfail(strict=True, reason=VIEW_ARGUMENT_WRITE)
def test_backward_after_inplace_write_to_a_view_argument() -> None:
    # fuzz seed 232, the same bug seen from autograd: the compiled backward reaches into the graph of
    # the first call's (lifted) base, which that call's backward already freed
    def f(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return x.add_(w * 2)

    compiled = jitorch.compile(f, backend="interpreter")
    for _ in range(2):
        base, w = jitorch.zeros(4, 3), jitorch.ones(3, requires_grad=True)
        compiled(base[::2], w).sum().backward()
        np.testing.assert_array_equal(w.grad.numpy(), [4.0, 4.0, 4.0])
        np.testing.assert_array_equal(base.numpy()[::2], np.full((2, 3), 2.0, np.float32))


@pytest.mark.xfail(strict=True, reason=ZERO_SIZE_LOWERING)
@pytest.mark.parametrize("case", ["repeat", "stack_grad"])
def test_llvm_compiles_copies_of_zero_size_tensors(case: str) -> None:
    # fuzz seeds 0 and 1253: x.repeat(3, 1, 2, 2, 1) of a [0, 1, 1, 1] tensor; stack of [2, 0] tensors
    # where one requires grad (the backward graph slices a zero-size gradient)
    _llvm()
    if case == "repeat":
        compiled = jitorch.compile(lambda x: x.repeat(2, 2), backend="llvm")
        args = [jitorch.zeros(0, 1)]
    else:
        compiled = jitorch.compile(lambda a, b: jitorch.stack([a, b], 0), backend="llvm")
        args = [jitorch.zeros(2, 0), jitorch.zeros(2, 0, requires_grad=True)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*backend failed")
        compiled(*args)
        out = compiled(*args)
    assert tuple(out.shape) == ((0, 2) if case == "repeat" else (2, 2, 0))


@pytest.mark.xfail(strict=True, reason=SEQUENTIAL_SUMS)
def test_llvm_float32_sums_are_as_accurate_as_eager() -> None:
    # fuzz seed 80: jitorch.sum over 30,000 float32 values, 16x eager's error against float64
    _llvm()
    compiled = jitorch.compile(lambda t: t.sum(), backend="llvm")
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(3):
        x = rng.uniform(0.0, 1.0, 1 << 22).astype(np.float32)
        exact = float(x.astype(np.float64).sum())
        compiled(jitorch.tensor(x))
        got = compiled(jitorch.tensor(x)).item()
        eager = jitorch.tensor(x).sum().item()
        errors.append((abs(got - exact), abs(eager - exact), float(np.spacing(np.float32(exact)))))
    got_error, eager_error, ulp = np.max(errors, axis=0)
    assert got_error <= 4 * eager_error + 2 * ulp
