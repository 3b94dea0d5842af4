"""`jitorch.explain(fn, *args)`: what compiling a function did, readable."""
from __future__ import annotations

from collections import Counter
from typing import Any


class Explanation:
    def __init__(self, compiled: Any) -> None:
        from jitorch.frontend.compile_entry import EagerEntry, Entry

        self.name = compiled.name
        entries = compiled.entries()
        self.graphs = [entry.graphs for entry in entries if isinstance(entry, Entry)]
        self.timings = [entry.timings for entry in entries if isinstance(entry, Entry)]
        self.fallback_reasons = [r for entry in entries if isinstance(entry, EagerEntry) for r in entry.reasons]
        self.recompile_reasons = list(compiled.recompile_reasons)
        self.graph_count = len(self.graphs)
        self.ops = Counter(node.op for graphs in self.graphs for key in ("optimized", "forward", "backward")
                           if key in graphs for node in graphs[key].nodes)

    def __str__(self) -> str:
        lines = [f"explain({self.name}): {self.graph_count} graph(s), {sum(self.ops.values())} ops"]
        if self.ops:
            lines.append("  ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.ops.items())))
        for i, timings in enumerate(self.timings):
            stages = ", ".join(f"{name} {seconds * 1e3:.2f} ms" for name, seconds in timings.items())
            lines.append(f"  graph {i} compile time: {stages}")
        lines += [f"  fallback: {reason}" for reason in self.fallback_reasons]
        lines += [f"  recompile: {reason}" for reason in self.recompile_reasons]
        for i, graphs in enumerate(self.graphs):
            for stage, graph in graphs.items():
                lines.append(f"--- graph {i} {stage} ---")
                lines.append(str(graph).rstrip("\n"))
        return "\n".join(lines)

    __repr__ = __str__
