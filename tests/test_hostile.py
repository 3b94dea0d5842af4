"""Hostile input: every public op (the OpInfo table) and compiled functions called with NaN/Inf, empty tensors,
wrong dtypes and shapes, out-of-range indices, impossible sizes, and non-contiguous or overlapping arguments
to in-place ops.

A compiled function must do what eager does: the same results (NaN and Inf in the same places) or the same
exception type and message. Impossible allocations raise MemoryError or RuntimeError. Each batch runs in a
subprocess (`sys.executable -c ...`, address space capped so an allocation that cannot succeed fails instead
of exhausting the machine) that must exit with status 0 and print "survived": a crash in generated code
fails the test instead of killing the test run. The compiled function is always called once on clean input
first, so the hostile call runs the compiled code wherever the guards allow it.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import jitorch

TESTS = Path(__file__).resolve().parent
ADDRESS_SPACE = 8 << 30
BACKENDS = ["interpreter", "llvm"]


# ----------------------------------------------------------------------------------------------------
# outcomes: what a call produced, comparable between eager and compiled


def outcome(fn: Callable[..., Any], *args: Any, seed: int = 0) -> tuple:
    """("ok", leaves as arrays or plain values) or ("raise", exception type name, message)."""
    from jitorch.frontend.pytree import flatten

    jitorch.manual_seed(seed)  # random ops draw the same numbers in both runs
    try:
        with np.errstate(all="ignore"):
            result = fn(*args)
    except Exception as error:  # noqa: BLE001 - compared between eager and compiled
        return ("raise", type(error).__name__, str(error))
    leaves: list[Any] = []
    flatten(result, "output", leaves, [])
    return ("ok", [TensorLeaf(leaf.dtype.name, leaf.detach().numpy().copy()) if isinstance(leaf, jitorch.Tensor)
                   else leaf for leaf in leaves])


@dataclass(frozen=True, eq=False)
class TensorLeaf:
    dtype: str
    array: np.ndarray


def differences(got: tuple, want: tuple) -> str | None:
    """Why two outcomes differ, or None."""
    if got[0] != want[0] or (got[0] == "raise" and got[1:] != want[1:]):
        def said(result: tuple) -> Any:
            return result[:3] if result[0] == "raise" else "returns"
        return f"compiled {said(got)}, eager {said(want)}"
    if got[0] == "raise":
        return None
    if len(got[1]) != len(want[1]):
        return f"{len(got[1])} outputs, eager {len(want[1])}"
    for k, (g, w) in enumerate(zip(got[1], want[1])):
        if not isinstance(w, TensorLeaf) or not isinstance(g, TensorLeaf):
            same = g == w or (isinstance(w, float) and math.isnan(w) and isinstance(g, float) and math.isnan(g))
            if not same:
                return f"output {k}: {g!r}, eager {w!r}"
            continue
        g_dtype, g_array, w_dtype, w_array = g.dtype, g.array, w.dtype, w.array
        if (g_dtype, g_array.shape) != (w_dtype, w_array.shape):
            return f"output {k}: {g_dtype}{list(g_array.shape)}, eager {w_dtype}{list(w_array.shape)}"
        if w_array.dtype.kind != "f":
            if not np.array_equal(g_array, w_array):
                return f"output {k}: values differ"
            continue
        if not np.array_equal(np.isnan(g_array), np.isnan(w_array)):
            return f"output {k}: NaN positions differ: {g_array.ravel()[:8]} vs eager {w_array.ravel()[:8]}"
        if not np.array_equal(np.where(np.isinf(g_array), g_array, 0), np.where(np.isinf(w_array), w_array, 0)):
            return f"output {k}: Inf positions differ: {g_array.ravel()[:8]} vs eager {w_array.ravel()[:8]}"
        finite = np.isfinite(w_array)
        if not np.allclose(g_array[finite], w_array[finite], rtol=1e-4, atol=1e-5):
            return f"output {k}: finite values differ"
    return None


def check_compiled(name: str, fn: Callable[..., Any], clean: tuple, hostile: tuple, backend: str) -> list[str]:
    """Compile fn on the clean arguments, then call it on the hostile ones: eager's outcome or a failure."""
    compiled = jitorch.compile(fn, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome(compiled, *clean)
        got = outcome(compiled, *hostile)
    failures = [f"{name}: {w.message}" for w in caught if "backend failed" in str(w.message)]
    why = differences(got, outcome(fn, *hostile))
    return failures + ([f"{name}: {why}"] if why else [])


# ----------------------------------------------------------------------------------------------------
# batches over the OpInfo table (run in a subprocess; each returns its failures)


def _infos() -> list[Any]:
    sys.path.insert(0, str(TESTS))
    from opinfo import OPINFOS
    return OPINFOS


def _with_values(sample: Any, change: Callable[[Any], Any]) -> Any:
    from opinfo import Sample
    args, kwargs = sample.map(change)
    return Sample(args, kwargs)


def _call(info: Any) -> Callable[..., Any]:
    return lambda args, kwargs: info.op(*args, **kwargs)


def _float_data(arg: Any) -> bool:
    return arg.differentiable and arg.value.dtype.kind == "f"


def _poisoned(arg: Any) -> Any:
    """NaN, +Inf and -Inf in about a third of the elements of a float data argument."""
    from opinfo import Arg
    if not _float_data(arg) or not arg.value.size:
        return arg
    value = arg.value.copy()
    flat = value.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=value.dtype)
    flat[::3] = specials[np.arange(len(flat[::3])) % len(specials)]
    return Arg(value, arg.layout, arg.differentiable)


def _emptied(arg: Any) -> Any:
    from opinfo import Arg
    if not _float_data(arg) or not arg.value.ndim:
        return arg
    return Arg(arg.value[:0], "contiguous", arg.differentiable)


def _retyped(dtype: str) -> Callable[[Any], Any]:
    def change(arg: Any) -> Any:
        from opinfo import Arg
        if not _float_data(arg):
            return arg
        return Arg((arg.value > 0) if dtype == "bool" else np.round(arg.value).astype(dtype), arg.layout)
    return change


def _reshaped(arg: Any) -> Any:
    from opinfo import Arg
    if not _float_data(arg) or arg.value.ndim < 1:
        return arg
    return Arg(np.resize(arg.value, (7,) + arg.value.shape[1:] if arg.value.shape[0] != 7 else (5,)), "contiguous")


def _op_batch(backend: str, variant: Callable[[Any], Any], samples_per_op: int, what: str,
              second_only: bool = False) -> list[str]:
    failures = []
    for info in _infos():
        if "float32" not in info.dtypes:
            continue
        samples = [s for s in info.sample_list("float32") if any(_float_data(a) for a in s.arg_list())]
        for sample in samples[:samples_per_op]:
            if second_only:  # change only the second float tensor: a shape mismatch between operands
                floats = [a for a in sample.arg_list() if _float_data(a) and a.value.ndim]
                if len(floats) < 2:
                    continue
                target = floats[1]
                hostile = _with_values(sample, lambda a, t=target: variant(a) if a is t else a)
            else:
                hostile = _with_values(sample, variant)
            where = f"{info.name}({hostile.describe()}) {what}"
            failures += check_compiled(where, _call(info), sample.tensor_args(), hostile.tensor_args(), backend)
    return failures


def batch_nan_inf(backend: str) -> list[str]:
    return _op_batch(backend, _poisoned, 2, "with NaN/Inf")


def batch_empty(backend: str) -> list[str]:
    return _op_batch(backend, _emptied, 1, "with empty tensors")


def batch_wrong_dtypes_and_shapes(backend: str) -> list[str]:
    return (_op_batch(backend, _retyped("bool"), 1, "with bool for float") +
            _op_batch(backend, _retyped("int64"), 1, "with int64 for float") +
            _op_batch(backend, _reshaped, 1, "with a mismatched shape", second_only=True))


# ----------------------------------------------------------------------------------------------------
# batches: indices, impossible sizes, in-place ops on odd memory


def batch_indices(backend: str) -> list[str]:
    import jitorch.nn.functional as F  # noqa: N812

    x, weight = jitorch.randn(3, 4), jitorch.randn(5, 2)
    cases = [
        ("gather", lambda x, i: x.gather(1, i) * 2, (x, jitorch.tensor([[0, 1], [2, 3], [1, 1]])),
         [[[0, 4], [2, 3], [1, 1]], [[0, -1], [2, 3], [1, 1]], [[0, 2 ** 40], [2, 3], [1, 1]]]),
        ("index_select", lambda x, i: x.index_select(0, i) + 1, (x, jitorch.tensor([0, 2])),
         [[0, 3], [0, -4], [0, 2 ** 40], [-(2 ** 40), 0]]),
        ("embedding", lambda i, w: F.embedding(i, w) * 2, (jitorch.tensor([0, 2]), weight),
         [[0, 5], [0, -1], [2 ** 40, 0]]),
        ("x[i]", lambda x, i: x[i] * 2, (x, jitorch.tensor([0, 2])), [[0, 3], [0, -4], [-(2 ** 62), 1]]),
        ("x[:, i]", lambda x, i: x[:, i].exp(), (x, jitorch.tensor([0, 3])), [[0, 4], [-5, 0]]),
        ("scatter_add", lambda x, i: x.scatter_add(1, i, jitorch.ones(3, 2)), (x, jitorch.tensor([[0, 1]] * 3)),
         [[[0, 4]] * 3, [[-1, 0]] * 3]),
        ("setitem", _setitem_rows, (x, jitorch.tensor([0, 1])), [[0, 3], [-4, 0]]),
        ("cross_entropy", lambda x, t: F.cross_entropy(x, t), (x, jitorch.tensor([0, 1, 3])),
         [[0, 1, 4], [0, -1, 2]]),
    ]
    failures = []
    for name, fn, clean, bad_indices in cases:
        for bad in bad_indices:
            position = next(k for k, a in enumerate(clean) if not a.dtype.is_floating_point)
            hostile = list(clean)
            hostile[position] = jitorch.tensor(bad)
            failures += check_compiled(f"{name} with indices {bad}", fn, clean, tuple(hostile), backend)
            want = outcome(fn, *hostile)
            if want[0] == "raise" and want[1] not in ("IndexOutOfRange", "IndexError"):
                failures.append(f"{name} with indices {bad}: eager raises {want[1]}, not an IndexError")
        # the compiled function still works after the errors
        compiled = jitorch.compile(fn, backend=backend)
        outcome(compiled, *clean)
        for bad in bad_indices:
            hostile = [jitorch.tensor(bad) if not a.dtype.is_floating_point else a for a in clean]
            outcome(compiled, *hostile)
        why = differences(outcome(compiled, *clean), outcome(fn, *clean))
        if why:
            failures.append(f"{name}: after out-of-range calls: {why}")
    return failures


def _setitem_rows(x: jitorch.Tensor, index: jitorch.Tensor) -> jitorch.Tensor:
    y = x.clone()
    y[index] = 0.5
    return y


def _square(n: int) -> jitorch.Tensor:
    """An n x n tensor of ones that costs nothing to make (an expanded column)."""
    return jitorch.ones(n, 1).expand(n, n)


IMPOSSIBLE = [
    ("zeros", lambda: jitorch.zeros(2 ** 40, 2 ** 20)),
    ("empty", lambda: jitorch.empty(2 ** 62)),
    ("full", lambda: jitorch.full((2 ** 35, 2 ** 20), 1.0)),
    ("ones", lambda: jitorch.ones(2 ** 31, 2 ** 31, dtype=jitorch.float64)),
    ("randn", lambda: jitorch.randn(2 ** 40)),
    ("arange", lambda: jitorch.arange(2 ** 50)),
    ("linspace", lambda: jitorch.linspace(0.0, 1.0, 2 ** 40)),
    ("expand + add", lambda: jitorch.ones(3).expand(2 ** 22, 2 ** 21, 3) + 1),
    ("expand past int64", lambda: jitorch.ones(3).expand(2 ** 62, 2 ** 62, 3)),
    ("repeat", lambda: jitorch.ones(3).repeat(2 ** 30, 2 ** 30)),
    ("matmul", lambda: _square(2 ** 20) @ _square(2 ** 20)),
]


def batch_huge(backend: str) -> list[str]:
    failures = []
    for name, make in IMPOSSIBLE:
        got = outcome(make)
        if got[0] != "raise" or got[1] not in ("MemoryError", "RuntimeError"):
            failures.append(f"{name}: an impossible allocation gives {got[:2]}, not MemoryError or RuntimeError")
    # compiled: small shapes compile, then an impossible size arrives
    compiled = jitorch.compile(lambda x, n: x.expand(n, n, 3) * 2, backend=backend)
    outcome(compiled, jitorch.ones(3), 2)
    for n in (2 ** 22, 2 ** 40):
        got = outcome(compiled, jitorch.ones(3), n)
        if got[0] != "raise" or got[1] not in ("MemoryError", "RuntimeError"):
            failures.append(f"compiled expand to {n}: {got[:2]}, not MemoryError or RuntimeError")
    why = differences(outcome(compiled, jitorch.ones(3), 2), outcome(lambda: jitorch.ones(3).expand(2, 2, 3) * 2))
    if why:
        failures.append(f"compiled function after impossible sizes: {why}")
    return failures


def _arguments(layout: str) -> tuple[jitorch.Tensor, jitorch.Tensor]:
    """(argument, the tensor owning its memory) for one memory layout of a [4, 3] float32 argument."""
    values = np.arange(12, dtype=np.float32).reshape(4, 3) / 4
    if layout == "transposed":
        base = jitorch.tensor(np.ascontiguousarray(values.T))
        return base.mT, base
    if layout == "strided":
        base = jitorch.tensor(np.repeat(values, 2, axis=0))
        return base[::2], base
    if layout == "overlapping":  # every row is the same memory
        base = jitorch.tensor(values[:1].copy())
        return base.expand(4, 3), base
    if layout == "offset":
        base = jitorch.tensor(np.concatenate([values, values]))
        return base[2:6], base
    base = jitorch.tensor(values)
    return base, base


INPLACE = [
    ("add_", lambda x: x.add_(1.5)),
    ("mul_ then read", lambda x: x.mul_(2.0) + x.sum()),
    ("relu_ through a slice", lambda x: x[:, 1:].relu_()),
    ("copy_ from a flip", lambda x: x.copy_(x.flip(0))),
    ("setitem", lambda x: x.__setitem__((slice(None), 0), 7.0) or x * 1),
    ("clamp_", lambda x: x.clamp_(0.5, 2.0).exp()),
]


def batch_inplace(backend: str) -> list[str]:
    failures = []
    for name, fn in INPLACE:
        for layout in ("contiguous", "transposed", "strided", "offset", "overlapping"):
            for traced in ("contiguous", layout):  # the graph traced on ordinary memory, or on this layout
                def run(f: Callable[..., Any], layout: str = layout) -> tuple:
                    argument, base = _arguments(layout)
                    got = outcome(f, argument)
                    return got, base.numpy().copy()
                compiled = jitorch.compile(fn, backend=backend)
                run(compiled, traced)
                (got, got_memory), (want, want_memory) = run(compiled), run(fn)
                why = differences(got, want)
                if why is None and not np.array_equal(got_memory, want_memory):
                    why = f"memory after the call {got_memory.ravel()[:6]}, eager {want_memory.ravel()[:6]}"
                if why:
                    failures.append(f"{name} on {layout} memory (traced on {traced} memory): {why}")
    return failures


BATCHES = {"nan_inf": batch_nan_inf, "empty": batch_empty, "wrong": batch_wrong_dtypes_and_shapes,
           "indices": batch_indices, "huge": batch_huge, "inplace": batch_inplace}


# ----------------------------------------------------------------------------------------------------
# the tests: each batch in its own process


def _command(batch: str, backend: str) -> list[str]:
    code = ("import resource, sys, json, warnings\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
            f"sys.path[:0] = [{str(TESTS)!r}, {str(TESTS.parent)!r}]\n"
            "warnings.simplefilter('ignore')\n"
            f"if {batch!r} == 'segfault':\n    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
            "import test_hostile\n"
            f"failures = test_hostile.BATCHES[{batch!r}]({backend!r})\n"
            "print(json.dumps(failures))\n"
            "print('survived')\n")
    return [sys.executable, "-c", code]


def _start(batch: str, backend: str) -> subprocess.Popen:
    return subprocess.Popen(_command(batch, backend), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=TESTS.parent)


def _finish(process: subprocess.Popen, batch: str, backend: str) -> list[str]:
    """The batch's failures, once its process exited with status 0 after printing "survived"."""
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"the {batch} batch ({backend}) died with status {process.returncode}:\n" \
                                    f"{stderr[-3000:]}"
    lines = stdout.strip().splitlines()
    assert lines and lines[-1] == "survived", f"the {batch} batch did not finish:\n{stdout[-2000:]}"
    return json.loads(lines[-2])


def run_batch(batch: str, backend: str) -> list[str]:
    return _finish(_start(batch, backend), batch, backend)


# bugs found here and reported: (batch, a text the failure contains, the bug); each has a strict xfail
# regression test in tests/fuzz/test_regressions.py
KNOWN = [
    ("inplace", "(traced on transposed memory)", "an in-place write to a view argument is lost"),
    ("inplace", "(traced on strided memory)", "an in-place write to a view argument is lost"),
    ("inplace", "(traced on offset memory)", "an in-place write to a view argument is lost"),
    ("inplace", "on overlapping memory (traced on contiguous memory): compiled ('raise', 'ValueError'",
     "compiled write-back into overlapping memory raises numpy's ValueError, eager a RuntimeError"),
    ("indices", "cross_entropy with indices", "compiled cross_entropy raises gather's error, eager its own"),
]


def _needs(backend: str) -> None:
    if backend == "llvm":
        from jitorch.frontend import backends
        if "llvm" not in backends.BACKENDS:
            pytest.skip("the llvm backend is not registered")


@pytest.fixture(scope="module")
def running() -> dict[tuple[str, str], subprocess.Popen]:
    """Every batch's process, started together (they run side by side on the machine's cores)."""
    from jitorch.frontend import backends
    processes = {(batch, backend): _start(batch, backend) for batch in BATCHES for backend in BACKENDS
                 if backend in backends.BACKENDS}
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", list(BATCHES))
def test_hostile_batch_survives_and_matches_eager(batch: str, backend: str,
                                                  running: dict[tuple[str, str], subprocess.Popen]) -> None:
    _needs(backend)
    failures = _finish(running[batch, backend], batch, backend)
    new = [f for f in failures if not any(batch == known and pattern in f for known, pattern, _ in KNOWN)]
    assert not new, f"{len(new)} hostile cases differ from eager:\n" + "\n".join(new[:40])


def test_a_crashing_batch_is_reported_not_fatal() -> None:
    """The subprocess guard works: a batch whose process dies by a signal fails with its exit status."""
    with pytest.raises(AssertionError, match="died with status -11"):
        run_batch("segfault", "interpreter")
