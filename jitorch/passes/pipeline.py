"""The pass pipeline: each pass a pure Graph -> Graph, verified after it runs, timed, and dumped on request."""
from __future__ import annotations

import time
from typing import Callable

from jitorch import debug
from jitorch.ir.graph import Graph
from jitorch.ir.printer import format_graph
from jitorch.ir.verify import verify
from jitorch.passes.cse import cse
from jitorch.passes.dce import dce
from jitorch.passes.simplify import simplify

Pass = Callable[[Graph], Graph]


def run_passes(graph: Graph, passes: list[tuple[str, Pass]], timings: dict[str, float]) -> Graph:
    for name, transform in passes:
        start = time.perf_counter()
        graph = transform(graph)
        verify(graph)
        elapsed = time.perf_counter() - start
        timings[name] = timings.get(name, 0.0) + elapsed
        if debug.enabled("passes"):
            debug.dump("passes", graph.name, f"after {name}", format_graph(graph), elapsed)
    return graph


def before_autodiff() -> list[tuple[str, Pass]]:
    return [("simplify", simplify), ("cse", cse), ("dce", dce)]


def after_autodiff() -> list[tuple[str, Pass]]:
    return [("simplify", lambda g: simplify(g, after_autodiff=True)), ("cse", cse), ("dce", dce)]
