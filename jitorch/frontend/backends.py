"""Backends turn an optimized graph into a function from input arrays to output arrays.

`interpreter` runs the graph with the numpy reference interpreter (for bisecting codegen bugs);
`llvm` (registered by jitorch.codegen when available) runs fused, JIT-compiled kernels.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

Executable = Callable[[list[np.ndarray]], list[np.ndarray]]


def interpreter(graph: Any, timings: dict[str, float]) -> Executable:
    from jitorch.ir import interpreter as reference

    start = time.perf_counter()
    run = lambda inputs: reference.run(graph, inputs)  # noqa: E731
    timings["backend"] = timings.get("backend", 0.0) + time.perf_counter() - start
    return run


def llvm(graph: Any, timings: dict[str, float]) -> Executable:
    # imported here: llvmlite loads only when something is compiled
    from jitorch.codegen.backend import llvm_backend

    return llvm_backend(graph, timings)


BACKENDS: dict[str, Callable[[Any, dict[str, float]], Executable]] = {"interpreter": interpreter, "llvm": llvm}
