"""The LLVM backend: fuse, lower, build one LLVM module per graph, JIT it, and run it with the runtime.

    run = llvm_backend(graph, timings)      # registered as "llvm" in jitorch.frontend.backends
    outputs = run([x, weight, bias])

Stage times go into `timings` (fusion, lowering, llvm, codegen); `JITORCH_DUMP=fusion,kernels,llvm,asm`
prints the fused graph, the loop nests as pseudo-C, the optimized LLVM IR and the assembly.

Building LLVM IR with llvmlite costs milliseconds per kernel, and the JIT's cache is keyed by that IR:
so the IR text itself is kept next to the object code (`<cache dir>/ir/<key>.ll`), keyed by the loop
nests, the vector width and the source of the code generator, checked by sha256, and rebuilt when
anything differs. A disk-cache hit then costs reading two files and loading the object code.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from jitorch import debug
from jitorch.codegen import jit, llvm, llvm_scalar, loopnest, mathlib, mathlib_constants, mathlib_ops, runtime
from jitorch.codegen.jit import get_jit
from jitorch.codegen.llvm import build_module
from jitorch.codegen.loopnest import Kernel, format_kernel
from jitorch.codegen.lower import lower
from jitorch.ir.graph import Graph
from jitorch.passes.fusion import KERNEL, FusionPlan, format_plan, fuse
from jitorch.passes.inplace import mark_in_place


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
    """Compile `graph`; the result runs it on input arrays (the backend contract of compile.py)."""
    start = time.perf_counter()
    plan = fuse(graph)
    mark_in_place(plan)
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
        text = module_text(graph.name, list(kernels.values()))
        _timed(timings, "llvm", start)
        start = time.perf_counter()
        names = [k.name for k in kernels.values()]
        module = get_jit().compile(text, names)
        elapsed = _timed(timings, "codegen", start)
        _dump_machine_code(graph.name, module, elapsed)
        compiled = {index: runtime.CompiledKernel(k, runtime.kernel_function(module.address(k.name)))
                    for index, k in kernels.items()}
    return runtime.CompiledGraph(graph, plan, compiled, module)


def _dump_machine_code(name: str, module: Any, seconds: float) -> None:
    if debug.enabled("llvm"):
        debug.dump("llvm", name, "optimized IR", module.llvm_ir_optimized, seconds)
    if debug.enabled("asm"):
        debug.dump("asm", name, "assembly", module.asm, seconds)


_texts: dict[str, str] = {}  # in this process, by key


@functools.cache
def _generator_version() -> str:
    """A hash of the code that turns loop nests into IR: cached IR is stale once any of it changes."""
    digest = hashlib.sha256()
    for module in (loopnest, llvm, llvm_scalar, mathlib, mathlib_ops, mathlib_constants):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


@functools.cache
def vector_bits() -> int | None:
    """512 on hosts with AVX-512 (measured faster for compute-bound kernels, see llvm.py), else None: the
    target machine's own preference."""
    _, features = jit.host_cpu()
    return 512 if "+avx512f" in features.split(",") else None


def module_text(name: str, kernels: list[Kernel]) -> str:
    """The LLVM IR of a module of `kernels`: from memory, from the disk cache, or built (and kept)."""
    key_text = f"{_generator_version()}\n{vector_bits()}\n{name}\n{kernels!r}"
    key = hashlib.sha256(key_text.encode()).hexdigest()
    text = _texts.get(key)
    if text is not None:
        return text
    disk = os.environ.get("JITORCH_DISABLE_DISK_CACHE", "") in ("", "0")
    path = jit.cache_dir() / "ir" / f"{key}.ll"
    text = _read_text(path) if disk else None
    if text is None:
        text = build_module(name, kernels, vector_bits())
        if disk:
            _write_text(path, text)
    _texts[key] = text
    return text


def _read_text(path: Path) -> str | None:
    """The IR stored at `path` when its first line is the sha256 of the rest, else None."""
    try:
        checksum, _, text = path.read_text().partition("\n")
    except (OSError, ValueError):
        return None
    return text if checksum == f"; sha256 {hashlib.sha256(text.encode()).hexdigest()}" else None


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".ll")
        with os.fdopen(descriptor, "w") as file:
            file.write(f"; sha256 {hashlib.sha256(text.encode()).hexdigest()}\n{text}")
        os.replace(temporary, path)
    except OSError:
        pass  # the cache is an optimization: jit.py warns about an unwritable directory
