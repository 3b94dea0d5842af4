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


KNOWN_BUGS: list[KnownBug] = []


def explained(program: Program, problems: list[str]) -> list[str]:
    """The known bugs that explain all of `problems` ([] when some problem is new)."""
    found = []
    for problem in problems:
        bugs = [bug.summary for bug in KNOWN_BUGS if bug.explains(program, problem)]
        if not bugs:
            return []
        found += [b for b in bugs if b not in found]
    return found
