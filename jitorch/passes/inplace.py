"""In-place kernels: an elementwise kernel writes its result over an input that dies there.

    plan = fuse(graph)
    mark_in_place(plan)     # step.in_place = the input whose buffer the step's output reuses

`relu(x @ w.T + b)` runs a matmul into a buffer and a kernel reading it; writing the kernel's output into
that same buffer instead of a second one halves the memory the pair touches (the matmul's output is
still in cache) and the memory the graph needs. A kernel qualifies when it has one output, no reduction
and no index map of its own (a single elementwise pass), and one of its inputs has the output's shape and
dtype, was made by an earlier kernel or matmul of this graph, is not returned (nor viewed: a view would
see the overwrite), and is read by no later step. Lowering makes the output and that input one buffer
parameter and checks every load of it reads the element the same iteration stores (lower.py), so the
load comes first and no iteration sees another's result; where it does not, it lowers the kernel
without reuse (`Kernel.in_place` says which happened).
"""
from __future__ import annotations

from jitorch.passes.fusion import ALONE, EXTERN_STEP, KERNEL, VIEW, FusionPlan, Step, view_base


def mark_in_place(plan: FusionPlan) -> None:
    """Set `in_place` on every kernel step that can overwrite an input (see the module docstring)."""
    made_by: dict[int, Step] = {id(v): step for step in plan.steps for v in step.outputs}
    kept = {id(view_base(v, made_by)) for v in plan.outputs}  # returned, or viewed by what is returned
    viewed = {id(step.inputs[0]) for step in plan.steps if step.kind == VIEW}
    last_read: dict[int, int] = {}
    for index, step in enumerate(plan.steps):
        for value in step.inputs:
            last_read[id(value)] = index
    for index, step in enumerate(plan.steps):
        if not _elementwise(step) or id(step.outputs[0]) in kept:
            continue
        out = step.outputs[0]
        for value in step.inputs:
            maker = made_by.get(id(value))
            if (maker is not None and maker.kind in (KERNEL, EXTERN_STEP) and value.type == out.type
                    and id(value) not in kept and id(value) not in viewed and last_read[id(value)] == index):
                step.in_place = value
                break


def _elementwise(step: Step) -> bool:
    return (step.kind == KERNEL and len(step.outputs) == 1 and not step.axes and step.copy_of is None
            and not step.read_from and not (step.nodes and step.nodes[0].op in ALONE))
