"""Backends turn an optimized graph into a function from input arrays to output arrays.

`interpreter` runs the graph with the numpy reference interpreter (for bisecting codegen bugs);
`llvm` runs fused, JIT-compiled kernels (jitorch/codegen/backend.py), the default.
"""
from __future__ import annotations

import time
import warnings
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
    """Fused, JIT-compiled kernels; a graph the code generator fails on runs with the interpreter instead
    (with a warning naming the error: a bug to report)."""
    # imported here: llvmlite loads only when something is compiled
    from jitorch.codegen.backend import llvm_backend

    try:
        return llvm_backend(graph, timings)
    except Exception as error:  # noqa: BLE001 - any code generator failure
        warnings.warn(f"jitorch: the LLVM backend failed on graph {graph.name} ({type(error).__name__}: {error}); "
                      f"running it with the interpreter", RuntimeWarning, stacklevel=2)
        return interpreter(graph, timings)


BACKENDS: dict[str, Callable[[Any, dict[str, float]], Executable]] = {"interpreter": interpreter, "llvm": llvm}
