"""Follow one small function through every stage of the compiler, from the traced graph to LLVM IR.

The function is attention scores, softmax(q k^T / 8 + bias), with a bias that requires grad so the
compiler also builds a backward graph. Setting `JITORCH_DUMP` before the first compiled call makes
jitorch print each stage it goes through; this script collects those dumps and shows them in order,
each introduced by what the stage does:

    graph     the traced graph: every primitive the function ran, typed, with its source line
    passes    the graph after each optimization pass (simplify, cse, dce)
    autodiff  the graph split into a forward (which also returns what backward needs) and a backward
    fusion    elementwise, reduction and movement nodes grouped into fused kernels
    kernels   each fused kernel as a loop nest, printed as pseudo-C
    llvm      the kernels' LLVM IR after O3 for this CPU

Then it times the function eagerly and compiled, and prints `jitorch.explain`'s summary.

    python examples/inspect_pipeline.py [--stages graph,fusion,kernels] [--max-lines N]

The same dumps for any script: `jitorch run --dump=graph,passes,fusion,kernels,llvm script.py`, or
`JITORCH_DUMP=... python script.py` (add `JITORCH_DUMP_DIR=dir` to get one file per graph and stage).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import textwrap

import jitorch as torch
from jitorch import debug

WANTED = ("graph", "passes", "autodiff", "fusion", "kernels", "llvm")
INTRODUCTIONS = {
    "graph": "The traced graph: what the function did, one primitive per line, a type on every value. "
             "Composites such as softmax appear as the primitives they are made of.",
    "passes": "After each optimization pass: simplify (constant folding, algebra), cse (common "
              "subexpressions), dce (dead code). The pipeline runs once on the traced graph, and again "
              "on the forward and backward graphs that autodiff makes.",
    "autodiff": "The gradient: a forward graph that also returns the values the backward needs, and a "
                "backward graph from the output's gradient to the inputs' gradients, built from the same "
                "VJP rules eager autograd uses.",
    "fusion": "Fusion: nodes grouped into kernels, each printed on one line with a name that says what "
              "it computes (e_ for elementwise, r_ for kernels with a reduction); matmul stays a call to BLAS.",
    "kernels": "Loop nests: each fused kernel as the loops it will run, in pseudo-C. `parallel` loops are "
               "split across threads when the kernel is big enough.",
    "llvm": "LLVM IR after optimization at O3 for this CPU: the loops above as machine-level code, "
            "vectorized where LLVM could (look for <8 x float>).",
    "asm": "The machine code.",
}


def attention_scores(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.T / 8.0 + bias, dim=-1)


def sections(text: str) -> list[tuple[str, str, list[str]]]:
    """Split dump text into (stage, header, lines), using the `=== stage: graph: title (time) ===` headers."""
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("=== ") and line.endswith(" ==="):
            stage = line[4:].split(":", 1)[0]
            found.append((stage, line, []))
        elif found:
            found[-1][2].append(line)
    return found


def excerpt(stage: str, lines: list[str], max_lines: int) -> list[str]:
    """At most `max_lines` of a dump; for LLVM IR, starting near the first vector instruction (the loop
    body) rather than the argument unpacking at the top of each function."""
    if max_lines <= 0 or len(lines) <= max_lines:
        return lines
    start = 0
    if stage == "llvm":
        vector = next((i for i, line in enumerate(lines) if "x float>" in line), 0)
        start = max(0, min(vector - 5, len(lines) - max_lines))
    shown = lines[start:start + max_lines]
    before = [f"... ({start} lines)"] if start else []
    after = [f"... ({len(lines) - start - len(shown)} more lines; --max-lines 0 shows everything)"]
    return before + shown + (after if start + len(shown) < len(lines) else [])


def show(text: str, max_lines: int) -> None:
    introduced: set[str] = set()
    previous: dict[str, list[str]] = {}  # graph name -> its text after the last pass shown
    for stage, header, lines in sections(text):
        if stage not in introduced:
            introduced.add(stage)
            intro = textwrap.fill(f"{stage.upper()}: {INTRODUCTIONS.get(stage, '')}", 98, subsequent_indent="# ")
            print(f"\n{'#' * 100}\n# {intro}\n{'#' * 100}")
        while lines and not lines[-1].strip():
            lines.pop()
        print(header)
        graph = header.split(":")[1].strip()
        if stage == "passes" and previous.get(graph) == lines:
            print("(unchanged)")
            continue
        if stage == "passes":
            previous[graph] = lines
        print("\n".join(excerpt(stage, lines, max_lines)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(s for s in WANTED if s in debug.STAGES),
                        help=f"comma-separated stages to show, of: {','.join(debug.STAGES)}")
    parser.add_argument("--max-lines", type=int, default=60, help="lines shown per dump (0: all)")
    parser.add_argument("--backend", default=None, help="compile backend (default: jitorch's default)")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s in debug.STAGES]

    torch.manual_seed(0)
    q, k = torch.randn(32, 64), torch.randn(48, 64)
    bias = torch.zeros(48, requires_grad=True)
    compiled = torch.compile(attention_scores, backend=args.backend)
    print(f"compiling attention_scores(q: {list(q.shape)}, k: {list(k.shape)}, bias: {list(bias.shape)}, "
          f"requires_grad) with JITORCH_DUMP={','.join(stages)}")

    # jitorch reads JITORCH_DUMP when it compiles; the dumps go to stderr, collected here to print in order
    os.environ["JITORCH_DUMP"] = ",".join(stages)
    dumps = io.StringIO()
    try:
        with contextlib.redirect_stderr(dumps):
            compiled(q, k, bias)  # the first call traces, optimizes and compiles
    finally:
        del os.environ["JITORCH_DUMP"]
    show(dumps.getvalue(), args.max_lines)

    print(f"\n{'#' * 100}\n# RESULT\n{'#' * 100}")
    difference = (compiled(q, k, bias) - attention_scores(q, k, bias)).abs().max().item()
    print(f"compiled vs eager: largest difference {difference:.2e}")
    eager_time = torch.benchmark(attention_scores, q, k, bias, compiled=False)
    compiled_time = torch.benchmark(compiled, q, k, bias)
    print(f"eager {eager_time.median * 1e6:.1f} us, compiled {compiled_time.median * 1e6:.1f} us, "
          f"speedup {eager_time.median / compiled_time.median:.2f}x")
    summary = str(torch.explain(attention_scores, q, k, bias)).split("\n--- ")[0]
    print(summary)


if __name__ == "__main__":
    main()
