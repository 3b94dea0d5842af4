"""The LLVM backend: fuse, lower, build one LLVM module per graph, JIT it, and run it with the runtime.

    run = llvm_backend(graph, timings)      # registered as "llvm" in jitorch.frontend.backends
    outputs = run([x, weight, bias])

Stage times go into `timings` (fusion, lowering, llvm, codegen); `JITORCH_DUMP=fusion,kernels,llvm,asm`
prints the fused graph, the loop nests as pseudo-C, the optimized LLVM IR and the assembly.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from jitorch import debug
from jitorch.codegen import runtime
from jitorch.codegen.jit import get_jit, optimize
from jitorch.codegen.llvm import build_module
from jitorch.codegen.loopnest import Kernel, format_kernel
from jitorch.codegen.lower import lower
from jitorch.ir.graph import Graph
from jitorch.passes.fusion import KERNEL, FusionPlan, format_plan, fuse


def _timed(timings: dict[str, float], stage: str, start: float) -> float:
    elapsed = time.perf_counter() - start
    timings[stage] = timings.get(stage, 0.0) + elapsed
    return elapsed


def lower_plan(plan: FusionPlan) -> dict[int, Kernel]:
    """The loop nest of every kernel step (by step index), with names unique within the module."""
    kernels: dict[int, Kernel] = {}
    seen: dict[str, int] = {}
    for index, step in enumerate(plan.steps):
        if step.kind != KERNEL:
            continue
        count = seen.get(step.name, 0)
        seen[step.name] = count + 1
        kernels[index] = lower(step, step.name if count == 0 else f"{step.name}_{count + 1}")
    return kernels


def llvm_backend(graph: Graph, timings: dict[str, float]) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    start = time.perf_counter()
    plan = fuse(graph)
    elapsed = _timed(timings, "fusion", start)
    if debug.enabled("fusion"):
        debug.dump("fusion", graph.name, "fused", format_plan(plan), elapsed)

    start = time.perf_counter()
    kernels = lower_plan(plan)
    elapsed = _timed(timings, "lowering", start)
    if debug.enabled("kernels"):
        debug.dump("kernels", graph.name, "loop nests", "\n\n".join(format_kernel(k) for k in kernels.values()),
                   elapsed)

    compiled: dict[int, runtime.CompiledKernel] = {}
    module: Any = None
    if kernels:
        start = time.perf_counter()
        text = build_module(graph.name, list(kernels.values()))
        _timed(timings, "llvm", start)
        start = time.perf_counter()
        names = [k.name for k in kernels.values()]
        module = get_jit().compile(text, names)
        elapsed = _timed(timings, "codegen", start)
        _dump_machine_code(graph.name, text, module, elapsed)
        compiled = {index: runtime.CompiledKernel(k, runtime.kernel_function(module.address(k.name)))
                    for index, k in kernels.items()}
    return runtime.CompiledGraph(graph, plan, compiled, module)


def _dump_machine_code(name: str, text: str, module: Any, seconds: float) -> None:
    if debug.enabled("llvm"):
        optimized = module.llvm_ir_optimized
        if not optimized:  # the code came from the disk cache: optimize the IR again to show it
            import llvmlite.binding as binding
            parsed = binding.parse_assembly(text)
            optimize(parsed)
            optimized = str(parsed)
        debug.dump("llvm", name, "optimized IR", optimized, seconds)
    if debug.enabled("asm"):
        debug.dump("asm", name, "assembly", module.asm, seconds)
