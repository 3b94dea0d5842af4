"""Compiled functions used from several threads at once.

Calls from many threads give each thread its own correct results (kernels on the shared thread pool, output
buffers from the shared pool, autograd per thread); a trace in one thread records nothing another thread
does; the first call for a guard key, made from several threads at once, compiles once; compiled functions
calling each other (or themselves) while tracing run inline, without deadlocks.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

import jitorch
import jitorch.nn.functional as F  # noqa: N812

BACKENDS = ["interpreter", "llvm"]
THREADS = 6


def _backend(name: str) -> str:
    if name == "llvm":
        from jitorch.frontend import backends
        if "llvm" not in backends.BACKENDS:
            pytest.skip("the llvm backend is not registered")
    return name


def _in_threads(work: Callable[[int], Any], count: int = THREADS, seconds: float = 300) -> list[Any]:
    """Run work(i) in `count` daemon threads released together; re-raise the first error, and fail (rather
    than hang) when they are not done within `seconds`: a deadlock."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"threads still running after {seconds} s: a deadlock"
    if errors:
        raise errors[0]
    return results


def model(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
    h = F.gelu(x @ w)
    return F.softmax(h, -1) * h.tanh() + h.sum(0, keepdim=True) * 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_calling_one_compiled_function_get_their_own_results(backend: str) -> None:
    compiled = jitorch.compile(model, backend=_backend(backend))
    rng = np.random.default_rng(0)
    # big enough for pooled output buffers (>= 64 KiB) and, after the timed calls, the parallel thread pool
    inputs = [(rng.standard_normal((256, 96)).astype(np.float32), rng.standard_normal((96, 128)).astype(np.float32))
              for _ in range(THREADS)]
    expected = [model(jitorch.tensor(x), jitorch.tensor(w)).numpy() for x, w in inputs]
    compiled(jitorch.tensor(inputs[0][0]), jitorch.tensor(inputs[0][1]))

    def work(i: int) -> list[jitorch.Tensor]:
        x, w = jitorch.tensor(inputs[i][0]), jitorch.tensor(inputs[i][1])
        return [compiled(x, w) for _ in range(15)]  # kept: a later call must not reuse their buffers
    for i, outputs in enumerate(_in_threads(work)):
        for call, out in enumerate(outputs):
            np.testing.assert_allclose(out.numpy(), expected[i], rtol=1e-4, atol=1e-5,
                                       err_msg=f"thread {i} call {call}")
    assert compiled.stats["compiles"] == 1 and compiled.stats["fallbacks"] == 0, compiled.stats


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_backpropagating_through_one_compiled_function(backend: str) -> None:
    compiled = jitorch.compile(model, backend=_backend(backend))
    rng = np.random.default_rng(1)
    inputs = [(rng.standard_normal((8, 5)), rng.standard_normal((5, 7))) for _ in range(THREADS)]

    def gradients(fn: Callable, x_values: np.ndarray, w_values: np.ndarray) -> tuple:
        x = jitorch.tensor(x_values.astype(np.float32), requires_grad=True)
        w = jitorch.tensor(w_values.astype(np.float32), requires_grad=True)
        (fn(x, w) * jitorch.arange(7, dtype=jitorch.float32)).sum().backward()
        return x.grad.numpy(), w.grad.numpy()
    expected = [gradients(model, *values) for values in inputs]
    gradients(compiled, *inputs[0])

    def work(i: int) -> list[tuple]:
        return [gradients(compiled, *inputs[i]) for _ in range(10)]
    for i, runs in enumerate(_in_threads(work)):
        for got in runs:
            for g, w in zip(got, expected[i]):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"thread {i}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_functions_compiled_in_threads_at_once(backend: str) -> None:
    """Each thread compiles its own functions (the JIT and its caches are shared) and runs them."""
    _backend(backend)
    rng = np.random.default_rng(2)
    x_values = rng.uniform(0.5, 2.0, (5, 6)).astype(np.float32)

    def work(i: int) -> list[tuple]:
        fns = [lambda x, k=k, i=i: (x * (i + 1) + k).log().softmax(-1) - x.amax(0) * k for k in range(2)]
        out = []
        for fn in fns:
            compiled = jitorch.compile(fn, backend=backend)
            x = jitorch.tensor(x_values)
            compiled(x)
            out.append((compiled(x).numpy(), fn(x).numpy()))
        return out
    for i, pairs in enumerate(_in_threads(work, count=4)):
        for got, want in pairs:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"thread {i}")


def test_a_trace_records_nothing_from_other_threads() -> None:
    stop = threading.Event()

    def busy() -> None:  # eager work in another thread while the trace records
        t = jitorch.ones(4)
        while not stop.is_set():
            t = (t * 1.0001).exp().log()

    def slow(x: jitorch.Tensor) -> jitorch.Tensor:
        y = x * 2
        time.sleep(0.05)
        return y + 1
    other = threading.Thread(target=busy)
    other.start()
    try:
        compiled = jitorch.compile(slow, backend="interpreter")
        compiled(jitorch.ones(4))
    finally:
        stop.set()
        other.join()
    graph = compiled.entries()[0].graphs["traced"]
    assert [node.op for node in graph.nodes] == ["mul", "add"]
    np.testing.assert_array_equal(compiled(jitorch.full((4,), 3.0)).numpy(), np.full(4, 7.0, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_calls_from_two_threads_compile_once(backend: str) -> None:
    # fixed (each thread traced and compiled: the cache was not re-checked under the lock)
    def slow(x: jitorch.Tensor) -> jitorch.Tensor:
        time.sleep(0.05)  # a slow trace: both threads are sure to miss the cache together
        return (x * 2).exp().sum(0)
    compiled = jitorch.compile(slow, backend=_backend(backend))
    results = _in_threads(lambda i: compiled(jitorch.ones(3, 4)).numpy(), count=2)
    for out in results:
        np.testing.assert_allclose(out, np.full(4, 3 * np.exp(2.0), np.float32), rtol=1e-6)
    assert compiled.stats["compiles"] == 1, compiled.stats
    assert compiled.stats["recompiles"] == 0 and len(compiled.entries()) == 1, compiled.stats


def test_compiled_functions_calling_compiled_functions_while_tracing() -> None:
    """A compiled function called while another traces runs inline: its ops join that trace, whether it
    has compiled code of its own or not."""
    inner = jitorch.compile(lambda x: x * 2, backend="interpreter")
    fresh = jitorch.compile(lambda x: x - 1, backend="interpreter")
    inner(jitorch.ones(3))  # compiled before the outer trace: its graph must not be run into it as a constant
    outer = jitorch.compile(lambda x: fresh(inner(x) + 1), backend="interpreter")
    outer(jitorch.ones(3))
    np.testing.assert_array_equal(outer(jitorch.full((3,), 5.0)).numpy(), np.full(3, 10.0, np.float32))
    assert outer.stats["compiles"] == 1 and outer.stats["hits"] == 1, outer.stats
    assert [node.op for node in outer.entries()[0].graphs["traced"].nodes] == ["mul", "add", "sub"]


def test_recursive_compiled_functions_in_two_threads_do_not_deadlock() -> None:
    """f calls g and g calls f, both compiled, their first calls made at once from two threads: each thread
    traces its own function (the other one inlined), and neither waits for the other."""
    def ping(x: jitorch.Tensor, depth: int) -> jitorch.Tensor:
        time.sleep(0.05)  # both traces are sure to be under way together
        return x + 1 if depth == 0 else pong(x * 2, depth - 1)

    def pong(x: jitorch.Tensor, depth: int) -> jitorch.Tensor:
        time.sleep(0.05)
        return x - 1 if depth == 0 else ping(x * 3, depth - 1)

    ping, pong = jitorch.compile(ping, backend="interpreter"), jitorch.compile(pong, backend="interpreter")
    functions = [ping, pong]
    results = _in_threads(lambda i: [functions[i](jitorch.ones(2), 3).numpy() for _ in range(2)], count=2, seconds=60)
    # ping(1, 3) = pong(2, 2) = ping(6, 1) = pong(12, 0) = 11; pong(1, 3) = ping(3, 2) = pong(6, 1) = ping(18, 0) = 19
    np.testing.assert_array_equal(results[0], [np.full(2, 11.0, np.float32)] * 2)
    np.testing.assert_array_equal(results[1], [np.full(2, 19.0, np.float32)] * 2)
    for compiled in functions:
        assert compiled.stats["compiles"] == 1 and compiled.stats["hits"] == 1, compiled.stats


def test_a_compiled_function_calling_itself() -> None:
    @jitorch.compile(backend="interpreter")
    def power(x: jitorch.Tensor, n: int) -> jitorch.Tensor:
        return x if n == 1 else x * power(x, n - 1)

    power(jitorch.full((2,), 2.0), 5)
    np.testing.assert_array_equal(power(jitorch.full((2,), 3.0), 5).numpy(), np.full(2, 243.0, np.float32))
    assert power.stats["compiles"] == 1 and power.stats["hits"] == 1, power.stats


def test_a_trace_does_not_hold_up_other_functions() -> None:
    """Two functions trace at once in two threads: each trace waits to see the other one under way."""
    under_way = [threading.Event(), threading.Event()]
    saw_the_other = [False, False]

    def traced(i: int) -> Callable:
        def fn(x: jitorch.Tensor) -> jitorch.Tensor:
            under_way[i].set()
            saw_the_other[i] = under_way[1 - i].wait(timeout=10)
            return x + i
        return jitorch.compile(fn, backend="interpreter")
    functions = [traced(0), traced(1)]
    _in_threads(lambda i: functions[i](jitorch.ones(2)), count=2, seconds=60)
    assert saw_the_other == [True, True]
