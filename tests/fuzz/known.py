"""Known, reported bugs that fuzz programs still hit, each with a predicate recognising its problems.

A fuzz run counts a program whose every problem one of these explains as "known", not as a new mismatch,
so the CI fuzz test stays a test of everything else. Each bug has a strict xfail regression test in
test_regressions.py: when the bug is fixed that test passes (and fails as XPASS) and its entry here goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .generator import Program


@dataclass(frozen=True)
class KnownBug:
    summary: str
    explains: Callable[[Program, str], bool]


def _writes_a_view_argument(program: Program, problem: str) -> bool:
    views = {spec.name for spec in program.inputs if spec.layout != "contiguous"}
    if not views & set(program.mutated):
        return False
    return "mutated input" in problem or "backward through the graph a second time" in problem or (
        "differs from eager" in problem or "less accurate" in problem)


def _whole_tensor_write(program: Program, problem: str) -> bool:
    return "nonzero where eager gives none" in problem and any("] = " in step or ".copy_(" in step
                                                               for step in program.steps)


def _contiguous_copy_before_matmul(program: Program, problem: str) -> bool:
    return "[llvm]" in problem and "less accurate than eager" in problem and any(
        "@" in step or "matmul" in step or "linear" in step for step in program.steps) and any(
        spec.layout != "contiguous" and spec.value.size >= 4096 for spec in program.inputs)


KNOWN_BUGS = [
    KnownBug("compile: an in-place write to a non-contiguous (view) argument is lost on compiled calls; the "
             "trace binds the view's base as a lifted tensor, so calls write into the first call's base",
             _writes_a_view_argument),
    KnownBug("eager autograd: `y[:] = b` / `y.copy_(b)` with b a leaf requiring grad leaves y requiring grad with "
             "no grad_fn, so b gets no gradient (the compiled function's gradient is the right one)",
             _whole_tensor_write),
    KnownBug("llvm runtime: non-contiguous inputs are copied to contiguous before the extern matmul, where "
             "numpy's float32 matmul takes a less accurate path (22x eager's error for a 20,000-long product)",
             _contiguous_copy_before_matmul),
]


def explained(program: Program, problems: list[str]) -> list[str]:
    """The known bugs that explain all of `problems` ([] when some problem is new)."""
    found = []
    for problem in problems:
        bugs = [bug.summary for bug in KNOWN_BUGS if bug.explains(program, problem)]
        if not bugs:
            return []
        found += [b for b in bugs if b not in found]
    return found
