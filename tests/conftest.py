"""Suite-wide pytest options: the long differential fuzzing runs.

The `fuzz` marker is deselected by default (pyproject's addopts say `-m 'not fuzz'`). Run them with

    pytest -m fuzz --fuzz-count 10000 [--fuzz-seed 5]

or just `pytest --fuzz-count 10000`: asking for a fuzz count selects the fuzz tests, since that is what it
is for. For runs that must survive a crashing process, use tests/fuzz/run_fuzz.py.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fuzz", "differential fuzzing of the compiler")
    group.addoption("--fuzz-count", type=int, default=None,
                    help="programs for the tests marked `fuzz` (default 1000); selects them when given")
    group.addoption("--fuzz-seed", type=int, default=0, help="first seed of the tests marked `fuzz` (default 0)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--fuzz-count") is not None and config.option.markexpr.strip() == "not fuzz":
        config.option.markexpr = "fuzz"


FUZZ_CHUNK = 100


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `fuzz_seeds` runs once per chunk of 100 seeds of --fuzz-seed/--fuzz-count."""
    if "fuzz_seeds" in metafunc.fixturenames:
        count = metafunc.config.getoption("--fuzz-count") or 1000
        start = metafunc.config.getoption("--fuzz-seed")
        chunks = [range(s, min(s + FUZZ_CHUNK, start + count)) for s in range(start, start + count, FUZZ_CHUNK)]
        metafunc.parametrize("fuzz_seeds", chunks, ids=[f"seeds{c.start}-{c.stop - 1}" for c in chunks])
