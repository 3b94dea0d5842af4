"""Dumping compiler stages: `JITORCH_DUMP=graph,passes,fusion,kernels,llvm,asm` prints the named stages
to stderr, each headed with its name and how long it took; `JITORCH_DUMP_DIR=dir` writes them to
files instead, one per graph and stage."""
from __future__ import annotations

import os
import re
import sys

STAGES = ("graph", "passes", "autodiff", "fusion", "kernels", "llvm", "asm")
_written: dict[str, int] = {}  # file name -> dumps that wanted it: a recompile (new shape) gets its own file


def enabled(stage: str) -> bool:
    wanted = os.environ.get("JITORCH_DUMP", "")
    return bool(wanted) and (stage in wanted.split(",") or "all" in wanted.split(","))


def dump(stage: str, graph_name: str, title: str, text: str, seconds: float | None = None) -> None:
    """Emit one stage's text if `stage` is being dumped."""
    if not enabled(stage):
        return
    timing = f" ({seconds * 1e3:.2f} ms)" if seconds is not None else ""
    header = f"=== {stage}: {graph_name}: {title}{timing} ==="
    directory = os.environ.get("JITORCH_DUMP_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{graph_name}.{stage}.{title}").strip("_")
        count = _written.get(slug, 0)
        _written[slug] = count + 1
        slug = f"{slug}.{count}" if count else slug
        with open(os.path.join(directory, f"{slug}.txt"), "w") as f:
            f.write(header + "\n" + text.rstrip("\n") + "\n")
        return
    sys.stderr.write(header + "\n" + text.rstrip("\n") + "\n\n")
