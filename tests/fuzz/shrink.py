"""Shrink a failing fuzz program to a small one that fails the same way.

    small = shrink(program, backend="llvm", problem=report.problems[0])

Greedy: try simpler programs (one output, an earlier output, a step replaced by an input holding its value,
no requires_grad, contiguous inputs), keep the first that still shows the same kind of problem, drop the
steps and inputs nothing needs any more, repeat until nothing simpler fails.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

import jitorch

from .differential import check_program
from .generator import Input, Program, dependencies, written

KINDS = ("not identical to eager", "differs from eager", "less accurate than eager", "does not raise",
         "requires_grad of outputs", "output dtypes", "did not reuse", "nonzero where eager", "missing",
         "NaN/Inf positions", "values differ", "shape")


def kind(problem: str) -> str:
    """What went wrong, without where and by how much: `[llvm] raised ZeroDivisionError`."""
    backend = problem.split("]", 1)[0] + "]" if problem.startswith("[") else ""
    first = "first call: " if "first call:" in problem else ""
    raised = re.search(r"\braised (\w+)", problem)
    if raised:
        return f"{backend} {first}raised {raised.group(1)}"
    for name in KINDS:
        if name in problem:
            return f"{backend} {first}{name}"
    return problem[:80]


def values_of(program: Program) -> dict[str, np.ndarray]:
    """Every variable's value after an eager run of the program."""
    code = compile("\n".join(program.steps), "<shrink>", "exec")
    args, _ = program.make_inputs()
    env = dict(zip((i.name for i in program.inputs), args))
    from .generator import namespace
    with jitorch.no_grad():
        exec(code, namespace(), env)  # noqa: S102 - the program's own code
    return {name: value.detach().numpy().copy() for name, value in env.items() if isinstance(value, jitorch.Tensor)}


def prune(program: Program) -> Program:
    """Drop steps and inputs the outputs do not need; recompute the outputs' scales."""
    needed = dependencies(program, program.outputs)
    steps = [s for s in program.steps if written(s) in needed or any(
        s.split(" = ", 1)[1].startswith(f"{m}.") for m in program.mutated if m in needed)]
    inputs = [i for i in program.inputs if i.name in needed]
    smaller = replace(program, steps=steps, inputs=inputs, mutated=[m for m in program.mutated if m in needed])
    try:
        values = values_of(smaller)
    except Exception:  # noqa: BLE001 - an invalid candidate: the caller's check rejects it
        return smaller
    scales = {}
    for name in smaller.outputs:
        magnitudes = [float(np.abs(values[v]).max()) for v in dependencies(smaller, [name])
                      if v in values and values[v].dtype.kind == "f" and values[v].size]
        scales[name] = max([1.0, *magnitudes])
    return replace(smaller, scales=scales)


def candidates(program: Program) -> Iterator[Program]:
    made = [written(s) for s in program.steps]
    if len(program.outputs) > 1:
        for name in program.outputs:
            yield replace(program, outputs=[name])
    try:
        values = values_of(program)
    except Exception:  # noqa: BLE001
        values = {}
    for name in reversed(made):  # a step becomes an input holding its value
        if name in values and name not in program.outputs:
            value = values[name]
            cut = Input(name, value, "contiguous", value.dtype.kind == "f")
            steps = [s for s in program.steps if written(s) != name]
            yield replace(program, inputs=[cut, *program.inputs], steps=steps)
    for name in made[:-1]:
        if name not in program.outputs:
            yield replace(program, outputs=[name])
    for k, spec in enumerate(program.inputs):
        if spec.requires_grad:
            yield replace(program, inputs=[*program.inputs[:k], replace(spec, requires_grad=False),
                                           *program.inputs[k + 1:]])
        if spec.layout != "contiguous":
            yield replace(program, inputs=[*program.inputs[:k], replace(spec, layout="contiguous"),
                                           *program.inputs[k + 1:]])


def shrink(program: Program, backend: str, problem: str, budget: int = 300,
           fails: Callable[[Program], bool] | None = None) -> Program:
    """The smallest program found that still shows `problem`'s kind of failure with `backend`."""
    wanted = kind(problem)

    def same_failure(candidate: Program) -> bool:
        try:
            return any(kind(p) == wanted for p in check_program(candidate, [backend]).problems)
        except Exception:  # noqa: BLE001 - a candidate that breaks the harness is not a reproduction
            return False

    fails = fails or same_failure
    current = prune(program)
    if not fails(current):
        current = program
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for candidate in candidates(current):
            tries += 1
            smaller = prune(candidate)
            if fails(smaller):
                current, improved = smaller, True
                break
            if tries >= budget:
                break
    return current
