"""Run a fuzz program eagerly, compiled and in float64, and compare what the runs produce.

    problems = check_program(program, backends=["interpreter", "llvm"])   # [] when all agree

Each backend's compiled function is called four times on fresh copies of the inputs: the first call runs
eagerly while tracing (and must give exactly the eager results), the others run the compiled code (kernels
are timed on early calls and may then go parallel; call 2's outputs must survive calls 3 and 4 unchanged,
whatever the runtime's buffer pool does). For those calls, results and gradients (of sum_k <out_k, W_k> with
fixed random W_k, w.r.t. the inputs requiring grad) must

- be as accurate as eager: max|compiled - float64| <= K * max|eager - float64| + atol, per tensor, for
  programs computing in float32;
- else (a program computing in float64 only is its own float64 reference, or that run failed) match eager
  within a tolerance scaled by the dtype and by the magnitude of the values they come from;
- have eager's dtypes, shapes and requires_grad, and integers and bools equal;
- raise where eager raises, with the same exception type and message, and nowhere else;
and the backend must not give up on a graph (the llvm backend warns and falls back to the interpreter).
"""
from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import jitorch

from .generator import Program

K = 4.0  # compiled may be this many times less accurate than eager
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
MAX_GRAD = 1e4


def llvm_status() -> tuple[bool, str]:
    """Whether the LLVM backend is registered and importable, and why not."""
    from jitorch.frontend import backends

    if "llvm" not in backends.BACKENDS:
        return False, "the llvm backend is not registered in jitorch.frontend.backends"
    try:
        import jitorch.codegen.backend  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure means: not available
        return False, f"the llvm backend cannot be imported: {type(error).__name__}: {error}"
    return True, ""


@dataclass
class Run:
    """What one call of a program produced (arrays copied out), or the exception it raised and where."""

    outputs: list[np.ndarray] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)  # the dtypes of every value the program made
    requires_grad: list[bool] = field(default_factory=list)
    grads: list[np.ndarray | None] = field(default_factory=list)
    mutated: list[np.ndarray] = field(default_factory=list)
    error: tuple[str, str] | None = None
    stage: str = ""
    trace: str = ""
    live: list[jitorch.Tensor] = field(default_factory=list)  # the output tensors themselves


def weights(program: Program, index: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng([program.seed, 99, index]).standard_normal(shape)


def evaluate(fn: Callable[..., Any], program: Program, reference: bool = False) -> Run:
    """Call fn on fresh inputs, then backpropagate a fixed weighted sum of the float outputs."""
    run = Run()
    args, leaves = program.make_inputs(reference)
    default = jitorch.get_default_dtype()
    if reference:
        jitorch.set_default_dtype(jitorch.float64)
    try:
        run.stage = "forward"
        outputs = fn(*args)
        if not all(isinstance(o, jitorch.Tensor) for o in outputs):
            raise TypeError(f"outputs are not all tensors: {[type(o).__name__ for o in outputs]}")
        run.outputs = [o.detach().numpy().copy() for o in outputs]
        run.live = list(outputs)
        run.dtypes = [o.dtype.name for o in outputs]
        run.computed = sorted(getattr(fn, "dtypes", ()))
        run.requires_grad = [o.requires_grad for o in outputs]
        run.mutated = [args[i].detach().numpy().copy() for i, spec in enumerate(program.inputs)
                       if spec.name in program.mutated]
        run.stage = "backward"
        loss = None
        for k, out in enumerate(outputs):
            if out.requires_grad and out.dtype.is_floating_point:
                term = (out * jitorch.tensor(weights(program, k, tuple(out.shape))).to(out.dtype)).sum()
                loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        run.grads = [None if leaf is None or leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]
        run.stage = "done"
    except Exception as error:  # noqa: BLE001 - compared between runs
        run.error = (type(error).__name__, str(error))
        run.trace = traceback.format_exc(limit=-6)
    finally:
        jitorch.set_default_dtype(default)
    return run


def validate(program: Program) -> bool:
    """A program worth running: eager and float64 runs succeed with finite, moderate values and gradients."""
    for reference in (False, True):
        run = evaluate(program.function(reference), program, reference)
        if run.error is not None:
            return False
        for array in run.outputs + [g for g in run.grads if g is not None]:
            if array.dtype.kind == "f" and array.size and (
                    not np.all(np.isfinite(array)) or np.abs(array).max() > MAX_GRAD):
                return False
    return True


# ----------------------------------------------------------------------------------------------------
# comparing


def _float_eps(run: Run, program: Program) -> float:
    """Tolerances follow the least precise float the program computes in."""
    names = set(run.dtypes) | set(run.computed) | {spec.value.dtype.name for spec in program.inputs}
    return EPS["float32"] if "float32" in names or not names & set(EPS) else EPS["float64"]


def _worst(got: np.ndarray, want: np.ndarray) -> str:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    at = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return f"max abs difference {float(diff.max()) if diff.size else 0:.3g} at {tuple(int(i) for i in at)} " \
           f"(got {got[at] if diff.size else '-'}, want {want[at] if diff.size else '-'})"


def compare_arrays(what: str, got: np.ndarray, want: np.ndarray, ref: np.ndarray | None, eps: float,
                   scale: float) -> list[str]:
    if got.shape != want.shape:
        return [f"{what}: shape {got.shape}, eager gives {want.shape}"]
    if want.dtype.kind != "f":
        if not np.array_equal(got, want):
            mismatched = int(np.sum(got != want))
            return [f"{what}: {mismatched} of {want.size} values differ from eager; {_worst(got, want)}"]
        return []
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_got, nan_want) or not np.array_equal(np.isinf(got), np.isinf(want)):
        return [f"{what}: NaN/Inf positions differ from eager"]
    finite = ~(nan_want | np.isinf(want))
    got64, want64 = got[finite].astype(np.float64), want[finite].astype(np.float64)
    atol = 64 * eps * scale
    if ref is not None and ref.shape == want.shape:
        ref64 = ref[finite].astype(np.float64)
        got_error = float(np.max(np.abs(got64 - ref64), initial=0.0))
        eager_error = float(np.max(np.abs(want64 - ref64), initial=0.0))
        if got_error > K * eager_error + 4 * eps * scale:
            return [f"{what}: less accurate than eager: max error vs float64 {got_error:.3g}, eager's "
                    f"{eager_error:.3g} (K={K}, scale {scale:.3g})"]
        # as accurate as eager: what separates them is their rounding errors, which a sum of many values
        # makes larger than the tolerance below, scaled by the values and not by how many are added (seed
        # 72121: 30000 values cancelling to 0.1354, eager 0.1875, compiled 0.1346; seed 107972: errors
        # 1.1e-5 and 3.1e-5 on -0.1498, 4.3e-5 apart)
        return []
    if np.any(np.abs(got64 - want64) > 1000 * eps * np.abs(want64) + atol):
        return [f"{what}: differs from eager beyond tolerance; {_worst(got, want)}"]
    return []


def compare(got: Run, eager: Run, ref: Run | None, program: Program, exact: bool = False) -> list[str]:
    """Problems with `got` against `eager` (and the float64 `ref`); exact=True wants identical arrays."""
    if got.error != eager.error:
        if eager.error is None:
            return [f"raised {got.error[0]} ({got.stage}) where eager does not: {got.error[1]}\n{got.trace}"]
        if got.error is None:
            return [f"does not raise where eager raises {eager.error[0]}: {eager.error[1]}"]
        return [f"raised {got.error[0]}: {got.error[1]!r}; eager raises {eager.error[0]}: {eager.error[1]!r}"]
    if eager.error is not None:
        return []
    problems = []
    if got.dtypes != eager.dtypes or len(got.outputs) != len(eager.outputs):
        return [f"output dtypes {got.dtypes}, eager gives {eager.dtypes}"]
    if got.requires_grad != eager.requires_grad:
        problems.append(f"requires_grad of outputs {got.requires_grad}, eager gives {eager.requires_grad}")
    eps = _float_eps(eager, program)
    if eps == EPS["float64"]:
        # a program computing in float64 only is its own float64 reference: eager's error is 0 by construction,
        # so "as accurate as eager" would demand 4 ulp of the values' magnitude even from an ill-conditioned
        # result (seed 60782: -2.5 / (v + 2 * sum) near a pole, one reassociated add 5.3e-15 off)
        ref = None
    grad_scale = max([1.0] + [float(np.abs(g).max()) for g in eager.grads if g is not None and g.size])
    scale_all = max([1.0, *program.scales.values()])
    pairs = [(f"output {k} ({name})", got.outputs[k], eager.outputs[k],
              ref.outputs[k] if ref and ref.outputs else None, program.scales.get(name, 1.0))
             for k, name in enumerate(program.outputs)]
    pairs += [(f"mutated input {k}", g, w, r, scale_all) for k, (g, w, r) in
              enumerate(zip(got.mutated, eager.mutated, ref.mutated if ref else [None] * len(eager.mutated)))]
    for k, (g, w) in enumerate(zip(got.grads, eager.grads)):
        name = f"gradient of {program.inputs[k].name}"
        if w is None:
            if g is not None and np.any(g):
                problems.append(f"{name}: nonzero where eager gives none")
            continue
        if g is None:
            problems.append(f"{name}: missing (eager computes one)")
            continue
        pairs.append((name, g, w, ref.grads[k] if ref and ref.grads else None, grad_scale * scale_all))
    for what, g, w, r, scale in pairs:
        if exact:
            if g.shape != w.shape or not np.array_equal(g, w, equal_nan=w.dtype.kind == "f"):
                problems.append(f"{what}: not identical to eager; {_worst(g, w) if g.shape == w.shape else ''}")
            continue
        problems += compare_arrays(what, g, w, r, eps, max(scale, 1.0))
    return problems


@dataclass
class Report:
    program: Program
    problems: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def check_program(program: Program, backends: list[str]) -> Report:
    """Run the program eagerly, in float64 and with each backend; list every disagreement."""
    report = Report(program)
    fn = program.function()
    eager = evaluate(fn, program)
    ref = evaluate(program.function(reference=True), program, reference=True)
    if ref.error is not None:
        ref = None
    for backend in backends:
        if backend == "llvm":
            available, why = llvm_status()
            if not available:
                report.skipped.append(why)
                continue
        compiled = jitorch.compile(fn, backend=backend)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = evaluate(compiled, program)
            # calls 2-4 run the compiled code (kernels are timed on early calls, then may go parallel)
            later = [evaluate(compiled, program) for _ in range(3)]
        # a backend that gives up on a graph and hands it to another is a bug, however right the results
        report.problems += [f"[{backend}] {w.message}" for w in caught if "backend failed" in str(w.message)]
        report.problems += [f"[{backend}] first call: {p}" for p in compare(first, eager, None, program, exact=True)]
        seen = set()
        for call, run in enumerate(later, start=2):
            for problem in compare(run, eager, ref, program):
                if problem not in seen:
                    seen.add(problem)
                    label = f"[{backend}]" if call == 2 else f"[{backend}] call {call}:"
                    report.problems.append(f"{label} {problem}")
        for k, (live, copy) in enumerate(zip(later[0].live, later[0].outputs)):
            if not np.array_equal(live.detach().numpy(), copy, equal_nan=copy.dtype.kind == "f"):
                report.problems.append(f"[{backend}] output {k} of call 2 was overwritten by later calls")
        if compiled.fallback_reasons:
            report.fallbacks += [f"[{backend}] {reason}" for reason in compiled.fallback_reasons]
        elif first.error is None and compiled.stats["hits"] != len(later):
            report.problems.append(f"[{backend}] the second call did not reuse the compiled graph: {compiled.stats}")
    return report
