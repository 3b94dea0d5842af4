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


def _zero_size_lowering(program: Program, problem: str) -> bool:
    return "[llvm]" in problem and "ZeroDivisionError: integer modulo by zero" in problem


def _sequential_sums(program: Program, problem: str) -> bool:
    return "[llvm]" in problem and "less accurate than eager" in problem and any(
        spec.value.size >= 4096 for spec in program.inputs)


KNOWN_BUGS = [
    KnownBug("compile: an in-place write to a non-contiguous (view) argument is lost on compiled calls; the "
             "trace binds the view's base as a lifted tensor, so calls write into the first call's base",
             _writes_a_view_argument),
    KnownBug("llvm: lowering a kernel over a zero-size tensor divides by zero in loopnest.divmod_index "
             "(the backend then falls back to the interpreter with a warning)", _zero_size_lowering),
    KnownBug("llvm: float32 sums accumulate sequentially, so their error grows with the length (16x numpy's "
             "pairwise summation at 30,000 elements)", _sequential_sums),
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
