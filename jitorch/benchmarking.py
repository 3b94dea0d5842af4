"""Measuring eager against compiled: `jitorch.benchmark(fn, *args)` and the `jitorch bench` command.

    >>> result = jitorch.benchmark(fn, x)              # compiled; `compiled=False` times it eagerly
    >>> result.median, result.spread, result.compile_time

Timings are medians over repeated runs after a warm-up call, with the interquartile range as the
spread; compile time is the first compiled call (trace + passes + codegen) minus a steady-state call.

`jitorch bench` runs the `WORKLOADS` of benchmarks/suite.py (or one `path/to/script.py:function`
whose function returns `(fn, args)`), each eagerly, compiled and against its numpy baseline, and
prints a table; `--json` writes the numbers, `--plot` a bar chart of speedups.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class BenchmarkResult:
    median: float  # seconds per call
    spread: float  # interquartile range, seconds
    runs: int
    compile_time: float | None = None  # seconds; None for eager
    samples: list[float] = field(default_factory=list, repr=False)  # seconds per call, as timed

    def __str__(self) -> str:
        compile_part = f", compile {_format_time(self.compile_time)}" if self.compile_time is not None else ""
        return f"{_format_time(self.median)} ± {_format_time(self.spread / 2)} ({self.runs} runs{compile_part})"


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def measure(call: Callable[[], Any], *, min_time: float = 0.2, max_runs: int = 1000,
            min_runs: int = 5) -> BenchmarkResult:
    """Time `call()` repeatedly for about `min_time` seconds (and at least `min_runs` times) after one
    warm-up call."""
    call()
    samples: list[float] = []
    deadline = time.perf_counter() + min_time
    while len(samples) < min_runs or (time.perf_counter() < deadline and len(samples) < max_runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return _summary(samples)


def measure_alternating(calls: list[Callable[[], Any]], *, min_time: float = 0.2, min_runs: int = 5,
                        rounds: int = 8) -> list[BenchmarkResult]:
    """`measure` for several calls in alternating rounds (each gets `min_time / rounds` per round), so
    a drift in the machine's speed, which on a shared VM can double times within seconds, reaches them
    alike and their ratio holds."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, taken in zip(calls, samples):
            result = measure(call, min_time=min_time / rounds, min_runs=max(1, -(-min_runs // rounds)))
            taken.extend(result.samples)
    return [_summary(taken) for taken in samples]


def _summary(samples: list[float]) -> BenchmarkResult:
    if len(samples) >= 4:
        low, _, high = statistics.quantiles(samples, n=4)
    else:
        low, high = min(samples), max(samples)
    return BenchmarkResult(statistics.median(samples), high - low, len(samples), samples=samples)


def _compile(fn: Callable, backend: str | None) -> Callable:
    """`fn` compiled, unless it already is (a compiled function or a compiled module)."""
    from jitorch.frontend.compile import CompiledFunction, _CompiledModule, compile

    if isinstance(fn, (CompiledFunction, _CompiledModule)):
        return fn
    return compile(fn, backend=backend)


def benchmark(fn: Callable, *args: Any, compiled: bool = True, backend: str | None = None, min_time: float = 0.2,
              **kwargs: Any) -> BenchmarkResult:
    """Median time of `fn(*args, **kwargs)`, compiled with `jitorch.compile` unless `compiled=False`.

    For compiled runs the first call's extra time is reported as `compile_time` (near zero when `fn`
    was already compiled and called with arguments of these shapes).
    """
    if not compiled:
        return measure(lambda: fn(*args, **kwargs), min_time=min_time)
    target = _compile(fn, backend)
    start = time.perf_counter()
    target(*args, **kwargs)
    first = time.perf_counter() - start
    result = measure(lambda: target(*args, **kwargs), min_time=min_time)
    result.compile_time = max(first - result.median, 0.0)
    return result


# ----------------------------------------------------------------------------------------------------
# the suite


@dataclass(frozen=True)
class Target:
    """A speed target: the row's `figure` ("compiled/numpy", "speedup" or "compiled" seconds) is at most
    `limit`, or at least it with `at_least`."""

    figure: str
    limit: float
    at_least: bool = False

    def __str__(self) -> str:
        limit = _format_time(self.limit) if self.figure in ("compiled", "compile") else f"{self.limit:g}x"
        return f"{self.figure} {'>=' if self.at_least else '<='} {limit}"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit


@dataclass
class Workload:
    """One benchmark: `setup(quick)` returns `(fn, args)`; `jitorch bench` times `fn(*args)` eagerly and
    compiled. `bytes(quick)` / `flops(quick)` turn the compiled time into GB/s or GFLOP/s; `numpy(quick)`
    returns a zero-argument numpy baseline. With `backward=True` each timed call is a training step:
    `fn(*args).backward()`, where only `fn` (the loss) is compiled. `targets` are checked at full size
    only; with `first_call=True` the first call is also timed in fresh processes (see first_calls)."""

    name: str
    setup: Callable[[bool], tuple[Callable, tuple]]
    bytes: Callable[[bool], int] | None = None
    flops: Callable[[bool], int] | None = None
    numpy: Callable[[bool], Callable[[], Any]] | None = None
    backward: bool = False
    targets: tuple[Target, ...] = ()
    first_call: bool = False


@dataclass
class Row:
    """One workload's results, in seconds; `error` is set (and the times are 0) when it failed."""

    name: str
    eager: float
    compiled: float
    speedup: float
    compile_time: float
    throughput: str = ""  # as printed: "12.3 GB/s" or "45.6 GFLOP/s"
    numpy: float | None = None
    eager_spread: float = 0.0
    compiled_spread: float = 0.0
    gb_per_s: float | None = None
    gflop_per_s: float | None = None
    fallbacks: int = 0  # compiled calls that ran eagerly instead
    note: str = ""
    error: str | None = None
    targets: list[str] = field(default_factory=list)
    met: bool | None = None  # every target met; None without targets (or at --quick sizes)

    @property
    def compiled_over_numpy(self) -> float | None:
        return self.compiled / self.numpy if self.numpy and self.compiled else None

    def figure(self, name: str) -> float | None:
        return {"compiled/numpy": self.compiled_over_numpy, "speedup": self.speedup, "compiled": self.compiled}[name]


def _load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"jitorch bench: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = str(path.resolve().parent)
    if directory not in sys.path:  # so the script can import its neighbours, as `python script.py` would
        sys.path.insert(0, directory)
    spec.loader.exec_module(module)
    return module


def load_suite() -> list[Workload]:
    """The workloads in benchmarks/suite.py: beside the current directory, or in jitorch's checkout."""
    candidates = [Path.cwd() / "benchmarks" / "suite.py",
                  Path(__file__).resolve().parent.parent / "benchmarks" / "suite.py"]
    for path in candidates:
        if path.is_file():
            return list(_load_module(path, "jitorch_benchmark_suite").WORKLOADS)
    raise SystemExit("jitorch bench: benchmarks/suite.py not found (run from a jitorch checkout, or name a "
                     "target: jitorch bench path/to/script.py:function)")


def load_target(target: str) -> Workload:
    """`path/to/script.py:function`: the function returns `(fn, args)` to benchmark, as a suite setup
    does; it may take one argument, `quick`."""
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise SystemExit(f"jitorch bench: a target is path/to/script.py:function, got {target!r}")
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"jitorch bench: no such file: {path}")
    module = _load_module(file, f"jitorch_benchmark_target_{file.stem}")
    factory = getattr(module, name, None)
    if not callable(factory):
        raise SystemExit(f"jitorch bench: {path} has no function {name!r}")
    takes_quick = bool(inspect.signature(factory).parameters)
    return Workload(name=f"{file.name}:{name}", setup=lambda quick: factory(quick) if takes_quick else factory())


def _training_step(fn: Callable) -> Callable:
    def step(*args: Any) -> None:
        fn(*args).backward()
    return step


def run_workload(workload: Workload, quick: bool, backend: str | None = None) -> Row:
    """Time one workload eagerly, compiled and (if it has one) its numpy baseline."""
    from jitorch.frontend.compile import _CompiledModule

    fn, args = workload.setup(quick)
    min_time = 0.05 if quick else 0.3
    min_runs = 3 if quick else 5
    compiled_fn = _compile(fn, backend)
    eager_call, compiled_call = fn, compiled_fn
    if workload.backward:
        eager_call, compiled_call = _training_step(fn), _training_step(compiled_fn)
    eager = measure(lambda: eager_call(*args), min_time=min_time, min_runs=min_runs)
    start = time.perf_counter()
    compiled_call(*args)
    first = time.perf_counter() - start
    if workload.numpy is not None:  # the baseline in the same stretch of time as the compiled calls
        # three times the samples, in as many rounds: the ratio is what targets check, and a slow stretch
        # of the machine falling on one side's rounds moves it less the more rounds there are
        compiled, baseline = measure_alternating([lambda: compiled_call(*args), workload.numpy(quick)],
                                                 min_time=3 * min_time, min_runs=min_runs, rounds=24)
    else:
        compiled = measure(lambda: compiled_call(*args), min_time=min_time, min_runs=min_runs)
    row = Row(workload.name, eager.median, compiled.median, eager.median / compiled.median,
              max(first - compiled.median, 0.0), eager_spread=eager.spread, compiled_spread=compiled.spread)
    if workload.bytes is not None:
        row.gb_per_s = workload.bytes(quick) / compiled.median / 1e9
        row.throughput = f"{row.gb_per_s:.1f} GB/s"
    if workload.flops is not None:
        row.gflop_per_s = workload.flops(quick) / compiled.median / 1e9
        row.throughput = row.throughput or f"{row.gflop_per_s:.1f} GFLOP/s"
    if workload.numpy is not None:
        row.numpy = baseline.median
    if not quick and workload.targets:
        row.targets = [str(t) for t in workload.targets]
        row.met = all(t.met(row.figure(t.figure)) for t in workload.targets)
    function = compiled_fn._compiled if isinstance(compiled_fn, _CompiledModule) else compiled_fn
    row.fallbacks = function.stats["fallbacks"]
    if row.fallbacks:
        reasons = function.fallback_reasons or function.recompile_reasons
        row.note = "ran eagerly: " + (reasons[0] if reasons else "see jitorch.explain()")
    else:
        row.note = _mismatch(fn(*args), compiled_fn(*args))
    return row


def _arrays(result: Any) -> list[Any]:
    from jitorch.frontend.tensor import Tensor

    if isinstance(result, Tensor):
        return [result.detach().numpy()]
    if isinstance(result, (tuple, list)):
        return [array for item in result for array in _arrays(item)]
    return []


def _mismatch(expected: Any, actual: Any, rtol: float = 1e-3) -> str:
    """"" when the compiled result matches eager (within float32 rounding), else what differs: a speedup
    is only worth reporting for the right answer."""
    for want, got in zip(_arrays(expected), _arrays(actual)):
        if want.shape != got.shape:
            return f"WRONG RESULT: compiled shape {got.shape}, eager {want.shape}"
        want, got = want.astype(np.float64), got.astype(np.float64)
        scale = float(np.max(np.abs(want), initial=0.0))
        if not np.allclose(got, want, rtol=rtol, atol=rtol * 1e-2 * scale + 1e-6, equal_nan=True):
            return f"WRONG RESULT: compiled differs from eager by up to {float(np.nanmax(np.abs(got - want))):.3g}"
    return ""


def _failed(workload: Workload, error: BaseException) -> Row:
    """A row for a workload that raised, naming the error and where it was raised."""
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        message += f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return Row(workload.name, 0.0, 0.0, 0.0, 0.0, error=message)


def format_table(rows: list[Row]) -> str:
    """The results as an aligned text table, then one line per failed or eagerly run workload."""
    header = ["workload", "eager", "compiled", "speedup", "throughput", "numpy", "compiled/numpy", "compile",
              "target", "met"]
    body = []
    for r in rows:
        if r.error is not None:
            body.append([r.name, "-", "-", "FAILED", "", "", "", "", "", ""])
            continue
        ratio = r.compiled_over_numpy
        flag = " *" if r.note else ""  # the note under the table says why the number is not what it seems
        body.append([r.name, _format_time(r.eager), _format_time(r.compiled), f"{r.speedup:.2f}x{flag}", r.throughput,
                     _format_time(r.numpy) if r.numpy is not None else "", f"{ratio:.2f}x" if ratio else "",
                     _format_time(r.compile_time), ", ".join(r.targets), _yes_no(r.met)])
    lines = _aligned(header, body, right={1, 2, 3, 4, 5, 6, 7})
    lines += [f"{r.name}: {r.error}" for r in rows if r.error is not None]
    lines += [f"* {r.name}: {r.note}" for r in rows if r.error is None and r.note]
    return "\n".join(lines)


def _aligned(header: list[str], body: list[list[str]], right: set[int]) -> list[str]:
    """The lines of a text table: columns padded to their widest cell (the `right` ones, numbers, on the
    right), a rule under the header."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in
                       enumerate(zip(line, widths))).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _yes_no(met: bool | None) -> str:
    return "" if met is None else "yes" if met else "NO"


# ----------------------------------------------------------------------------------------------------
# first calls, in fresh processes

_FIRST_CALL_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import jitorch, jitorch.codegen.backend, networkx  # the code generator's imports, timed on their own
imports = time.perf_counter() - start
from jitorch.benchmarking import _training_step, load_suite
from jitorch.codegen.jit import get_jit
workload = {{w.name: w for w in load_suite()}}[{name!r}]
fn, args = workload.setup({quick!r})
step = _training_step if workload.backward else (lambda f: f)
step(fn)(*args)  # warms what any first call pays: BLAS threads, numpy's and jitorch's lazy imports
start = time.perf_counter()
step(fn)(*args)
eager = time.perf_counter() - start
compiled = jitorch.compile(fn)
start = time.perf_counter()
step(compiled)(*args)
first = time.perf_counter() - start
print(json.dumps({{"imports": imports, "eager": eager, "first": first, "machine_code_compiles": get_jit().compiles,
                  "disk_hits": get_jit().disk_hits}}))
"""


@dataclass
class FirstCall:
    """A workload's first compiled call in a fresh process, in seconds: `compile` is that call minus an
    eager call (the first call runs eagerly while tracing); `imports` (llvmlite, networkx and the code
    generator, loaded once per process) is timed apart."""

    name: str
    cache: str  # "cold" (an empty disk cache) or "disk cache" (filled by the cold run)
    compile: float
    imports: float
    machine_code_compiles: int
    target: Target

    @property
    def met(self) -> bool | None:
        return self.target.met(self.compile)


def first_calls(workload: Workload, quick: bool) -> list[FirstCall]:
    """Time the first compiled call of `workload` in two fresh processes sharing a new, empty disk cache:
    cold, then from the cache the first one filled."""
    import subprocess
    import tempfile

    script = _FIRST_CALL_SCRIPT.format(name=workload.name, quick=quick)
    results = []
    with tempfile.TemporaryDirectory(prefix="jitorch-bench-cache-") as cache:
        environment = {**os.environ, "JITORCH_CACHE_DIR": cache}
        for how, target in (("cold", Target("compile", 1.0)), ("disk cache", Target("compile", 0.1))):
            process = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True,
                                     text=True)
            if process.returncode != 0:
                raise RuntimeError(f"first call of {workload.name} ({how}) failed:\n{process.stderr[-2000:]}")
            found = json.loads(process.stdout.strip().splitlines()[-1])
            results.append(FirstCall(workload.name, how, max(found["first"] - found["eager"], 0.0), found["imports"],
                                     found["machine_code_compiles"], target))
    return results


def format_first_calls(calls: list[FirstCall]) -> str:
    header = ["first call (fresh process)", "cache", "compile", "imports", "machine code compiled", "target", "met"]
    body = [[c.name, c.cache, _format_time(c.compile), _format_time(c.imports), str(c.machine_code_compiles),
             str(c.target), _yes_no(c.met)] for c in calls]
    return "\n".join(_aligned(header, body, right={2, 3, 4}))


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"cpu": _cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
                            "python": sys.version.split()[0]}
    try:
        from jitorch.codegen.runtime import get_num_threads
        info["threads"] = get_num_threads()
    except ImportError:  # no llvmlite: the interpreter backend
        pass
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    return info


def to_json(rows: list[Row], calls: list[FirstCall], quick: bool, backend: str) -> dict[str, Any]:
    results = []
    for r in rows:
        entry = asdict(r)
        entry["compiled_over_numpy"] = r.compiled_over_numpy
        results.append(entry)
    first = [{**asdict(c), "target": str(c.target), "met": c.met} for c in calls]
    return {"machine": machine(), "backend": backend, "quick": quick, "unit": "seconds", "workloads": results,
            "first_calls": first}


def _pyplot() -> Any:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("jitorch bench --plot needs matplotlib: pip install 'jitorch[plot]'") from None
    return plt


def plot(rows: list[Row], path: str) -> None:
    """A bar chart of the speedups, written to `path` (any format matplotlib knows by the extension)."""
    plt = _pyplot()
    rows = [r for r in rows if r.error is None]
    figure, axis = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    axis.barh([r.name for r in rows], [r.speedup for r in rows])
    axis.axvline(1.0, color="gray", linewidth=1)
    axis.invert_yaxis()  # the suite's order, top to bottom
    axis.set_xlabel("speedup of compiled over eager (x)")
    figure.tight_layout()
    figure.savefig(path)


def _select(workloads: list[Workload], only: str | None) -> list[Workload]:
    """`--only a,b`: the workloads whose name contains any of the comma-separated parts."""
    if not only:
        return workloads
    parts = [p.strip().lower() for p in only.split(",") if p.strip()]
    chosen = [w for w in workloads if any(p in w.name.lower() for p in parts)]
    if not chosen:
        names = "\n  ".join(w.name for w in workloads)
        raise SystemExit(f"jitorch bench: no workload matches --only {only!r}; the workloads are:\n  {names}")
    return chosen


def main(args: Any) -> int:
    """`jitorch bench`: run the suite (or a target), print progress to stderr and the table to stdout;
    exit status 1 when a workload failed."""
    from jitorch.frontend.compile import default_backend

    if args.plot:
        _pyplot()  # no matplotlib: say so before the run, not after it
    workloads = _select([load_target(args.target)] if args.target else load_suite(), args.only)
    backend = getattr(args, "backend", None) or os.environ.get("JITORCH_BACKEND") or default_backend()
    rows = []
    for i, workload in enumerate(workloads, 1):
        print(f"[{i}/{len(workloads)}] {workload.name} ...", end="", flush=True, file=sys.stderr)
        try:
            row = run_workload(workload, args.quick, backend)
        except Exception as error:  # one broken workload must not hide the others' numbers
            row = _failed(workload, error)
            print(f" FAILED: {row.error}", file=sys.stderr, flush=True)
        else:
            print(f" eager {_format_time(row.eager)}, compiled {_format_time(row.compiled)} "
                  f"({row.speedup:.2f}x)", file=sys.stderr, flush=True)
        rows.append(row)
    calls: list[FirstCall] = []
    for workload in (w for w in workloads if w.first_call):
        print(f"first call of {workload.name}, in fresh processes ...", end="", flush=True, file=sys.stderr)
        try:
            calls += first_calls(workload, args.quick)
        except Exception as error:  # noqa: BLE001 - reported; the table above still stands
            print(f" FAILED: {error}", file=sys.stderr, flush=True)
            rows.append(_failed(Workload(f"first call of {workload.name}", workload.setup), error))
        else:
            print(" " + ", ".join(f"{c.cache} {_format_time(c.compile)}" for c in calls[-2:]), file=sys.stderr,
                  flush=True)
    sizes = ""
    if args.quick and not args.target:
        sizes = " (--quick: smaller sizes than the names say; targets not checked)"
    print(f"backend {backend}{sizes}; median times; compile = first compiled call minus a later one\n")
    print(format_table(rows))
    if calls:
        print("\n" + format_first_calls(calls))
    info = machine()
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores"
          + (f", {info['threads']} jitorch threads" if "threads" in info else "")
          + (f", load average {info['load_average']}" if "load_average" in info else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(rows, calls, args.quick, backend), f, indent=2)
    if args.plot:
        plot(rows, args.plot)
    return 1 if any(r.error is not None for r in rows) else 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
