"""Memory: many calls of a compiled model leave the process's resident memory flat, and
`jitorch.compiler.reset()` (or dropping a compiled function) releases its graphs and compiled code."""
from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

import jitorch
import jitorch.nn as nn

BACKENDS = ["interpreter", "llvm"]
SLACK = 2 << 20  # bytes of growth allowed over 10,000 calls (~200 bytes a call): allocator noise, not a leak


def _backend(name: str) -> str:
    if name == "llvm":
        from jitorch.frontend import backends
        if "llvm" not in backends.BACKENDS:
            pytest.skip("the llvm backend is not registered")
    return name


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def small_model() -> nn.Module:
    jitorch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 10))


def test_ten_thousand_calls_keep_memory_flat() -> None:
    from jitorch.frontend.compile import default_backend

    model = small_model()
    compiled = jitorch.compile(model, backend=default_backend())
    x = jitorch.randn(16, 32)

    def call(i: int) -> None:
        if i % 10:
            with jitorch.no_grad():
                compiled(x)
        else:  # every tenth call trains: the backward graph, gradients accumulated into the parameters
            compiled(x).sum().backward()
    for i in range(500):  # warm-up: buffers planned, output pool filled, kernels timed
        call(i)
    model.zero_grad()
    gc.collect()
    before = resident_bytes()
    for i in range(10_000):
        call(i)
        if i % 1000 == 999:
            model.zero_grad()
    gc.collect()
    grown = resident_bytes() - before
    assert grown < SLACK, f"resident memory grew {grown / 2 ** 20:.1f} MiB over 10,000 calls"
    assert compiled.stats["compiles"] == 2 and compiled.stats["fallbacks"] == 0, compiled.stats


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_releases_compiled_graphs(backend: str) -> None:
    compiled = jitorch.compile(lambda x, w: (x @ w).relu().sum(0), backend=_backend(backend))
    x, w = jitorch.randn(4, 3), jitorch.randn(3, 5, requires_grad=True)
    compiled(x, w).sum().backward()
    entry = compiled.entries()[0]
    watched = [entry, entry.run_forward, entry.backward[0], *entry.graphs.values()]
    refs = [weakref.ref(obj) for obj in watched]
    del entry, watched
    jitorch.compiler.reset()
    gc.collect()
    alive = [ref() for ref in refs if ref() is not None]
    assert not alive, f"still alive after reset: {[type(a).__name__ for a in alive]}"
    out = compiled(x, w)  # still usable: compiles afresh
    np.testing.assert_allclose(out.detach().numpy(), (x @ w).relu().sum(0).detach().numpy(), rtol=1e-6)
    assert compiled.stats["compiles"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dropped_compiled_function_frees_its_graphs(backend: str) -> None:
    compiled = jitorch.compile(lambda x: x.exp() * 2, backend=_backend(backend))
    compiled(jitorch.ones(3))
    refs = [weakref.ref(compiled), weakref.ref(compiled.entries()[0]), weakref.ref(compiled.entries()[0].run_forward)]
    del compiled
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_reset_releases_machine_code() -> None:
    # fixed (JIT._modules kept every compiled module, and its execution engine, forever)
    _backend("llvm")
    compiled = jitorch.compile(lambda x: (x * 3).tanh() + 1, backend="llvm")
    compiled(jitorch.ones(7, 3))
    module = weakref.ref(compiled.entries()[0].run_forward.keep_alive)
    assert module() is not None
    jitorch.compiler.reset()
    gc.collect()
    assert module() is None, "the compiled module outlives reset()"


def test_machine_code_is_shared_while_in_use_and_released_after() -> None:
    _backend("llvm")
    first = jitorch.compile(lambda x: (x * 5).sigmoid() - 2, backend="llvm")
    second = jitorch.compile(lambda x: (x * 5).sigmoid() - 2, backend="llvm")
    first(jitorch.ones(5, 2))
    second(jitorch.ones(5, 2))
    module = first.entries()[0].run_forward.keep_alive
    assert second.entries()[0].run_forward.keep_alive is module  # one kernel text, compiled once
    engine, module = module._engine, weakref.ref(module)
    del first
    gc.collect()
    assert module() is not None and not engine.closed  # `second` still runs it
    np.testing.assert_allclose(second(jitorch.zeros(5, 2)).numpy(), np.full((5, 2), -1.5, np.float32), rtol=1e-6)
    del second
    gc.collect()
    assert module() is None and engine.closed
