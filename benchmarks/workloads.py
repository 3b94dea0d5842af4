"""Workloads timed three ways in one run: jitorch eager, jitorch compiled (LLVM backend), numpy.

    python -m benchmarks.workloads            # every workload, a table of medians and ratios
    python -m benchmarks.workloads gelu mlp_forward

Each workload function builds its inputs, warms up (the first compiled call traces and compiles), and
returns a `Result` of medians over `runs` calls (`time.perf_counter`). The numpy column is the yardstick
the target is stated against: a copy of the same bytes for memory-bound kernels (`np.copyto` into an
existing array), the same matmuls for the MLP. `compile_times` runs fresh processes to time the first
call cold and from the disk cache. No CLI dependencies: `jitorch bench` can call `run`.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Result:
    name: str
    eager: float | None  # seconds, medians
    compiled: float | None
    numpy: float | None
    numpy_what: str
    target: str
    met: bool | None = None

    def ratio(self) -> float | None:
        return self.compiled / self.numpy if self.compiled and self.numpy else None

    def speedup(self) -> float | None:
        return self.eager / self.compiled if self.eager and self.compiled else None


def median_time(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2]


def _torch():  # noqa: ANN202 - the jitorch module, imported lazily so `--help` stays fast
    import jitorch
    return jitorch


# ----------------------------------------------------------------------------------------------------
# memory-bound kernels against a copy of the same bytes


def _copy_time(array: np.ndarray, runs: int) -> float:
    out = np.empty_like(array)
    return median_time(lambda: np.copyto(out, array), runs)


def gelu(runs: int = 20) -> Result:
    torch = _torch()
    from jitorch.frontend.functional import gelu as gelu_fn

    x = torch.randn(1 << 22)
    fn = lambda t: gelu_fn(t, approximate="tanh")  # noqa: E731
    compiled = torch.compile(fn)
    eager = median_time(lambda: fn(x), max(3, runs // 4))
    fast = median_time(lambda: compiled(x), runs)
    copy = _copy_time(x.numpy(), runs)
    return Result("gelu_tanh 2^22 f32", eager, fast, copy, "copyto", "<=1.5x copy, >=5x eager",
                  fast <= 1.5 * copy and eager >= 5 * fast)


def softmax(runs: int = 20) -> Result:
    torch = _torch()
    from jitorch.frontend.functional import softmax as softmax_fn

    x = torch.randn(4096, 1024)
    fn = lambda t: softmax_fn(t, 1)  # noqa: E731
    compiled = torch.compile(fn)
    eager = median_time(lambda: fn(x), max(3, runs // 4))
    fast = median_time(lambda: compiled(x), runs)
    copy = _copy_time(x.numpy(), runs)
    return Result("softmax (4096,1024) f32", eager, fast, copy, "copyto", "<=2x copy", fast <= 2 * copy)


def layer_norm(runs: int = 20) -> Result:
    torch = _torch()
    from jitorch.frontend.functional import layer_norm as layer_norm_fn

    x = torch.randn(4096, 1024)
    weight, bias = torch.randn(1024), torch.randn(1024)
    fn = lambda t: layer_norm_fn(t, 1024, weight, bias)  # noqa: E731
    compiled = torch.compile(fn)
    eager = median_time(lambda: fn(x), max(3, runs // 4))
    fast = median_time(lambda: compiled(x), runs)
    copy = _copy_time(x.numpy(), runs)
    return Result("layer_norm (4096,1024) f32", eager, fast, copy, "copyto", "<=2x copy", fast <= 2 * copy)


# ----------------------------------------------------------------------------------------------------
# the MLP: 256 x 784-512-512-10 with ReLU


def _mlp_parameters(torch, requires_grad: bool) -> list:  # noqa: ANN001
    torch.manual_seed(0)
    sizes = [784, 512, 512, 10]
    parameters = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        weight = torch.randn(fan_in, fan_out) * (1.0 / math.sqrt(fan_in))
        parameters += [weight, torch.zeros(fan_out)]
    for p in parameters:
        p.requires_grad_(requires_grad)
    return parameters


def _mlp(x, parameters):  # noqa: ANN001, ANN202
    w1, b1, w2, b2, w3, b3 = parameters
    h = (x @ w1 + b1).relu()
    h = (h @ w2 + b2).relu()
    return h @ w3 + b3


def mlp_forward(runs: int = 20) -> Result:
    torch = _torch()
    parameters = _mlp_parameters(torch, requires_grad=False)
    x = torch.randn(256, 784)
    fn = lambda t: _mlp(t, parameters)  # noqa: E731
    compiled = torch.compile(fn)
    eager = median_time(lambda: fn(x), runs)
    fast = median_time(lambda: compiled(x), runs)
    a, (w1, _, w2, _, w3, _) = x.numpy(), [p.numpy() for p in parameters]
    bare = median_time(lambda: ((a @ w1) @ w2) @ w3, runs)
    return Result("mlp forward 256x784-512-512-10", eager, fast, bare, "3 matmuls", "<=1.1x matmuls",
                  fast <= 1.1 * bare)


def mlp_train_step(runs: int = 10) -> Result:
    torch = _torch()
    from jitorch.frontend.functional import log_softmax

    parameters = _mlp_parameters(torch, requires_grad=True)
    x = torch.randn(256, 784)
    labels = torch.tensor(np.random.default_rng(0).integers(0, 10, 256))
    onehot = torch.tensor(np.eye(10, dtype=np.float32)[labels.numpy()])

    def loss_fn(inputs, targets):  # noqa: ANN001, ANN202
        return -(log_softmax(_mlp(inputs, parameters), 1) * targets).sum() / 256.0

    def step(fn) -> None:  # noqa: ANN001
        loss = fn(x, onehot)
        loss.backward()
        with torch.no_grad():
            for p in parameters:
                p -= 0.01 * p.grad
                p.grad = None

    compiled = torch.compile(loss_fn)
    eager = median_time(lambda: step(loss_fn), runs)
    fast = median_time(lambda: step(compiled), runs)
    return Result("mlp train step (fwd+bwd+sgd)", eager, fast, None, "", "faster than eager", fast < eager)


def cache_hit(runs: int = 2000) -> Result:
    torch = _torch()
    x = torch.randn(16)
    fn = lambda t: ((t * 2.0 + 1.0).relu() - 3.0).exp()  # noqa: E731
    compiled = torch.compile(fn)
    eager = median_time(lambda: fn(x), runs)
    fast = median_time(lambda: compiled(x), runs, warmup=20)
    return Result("cache hit, 16 elements, 4 ops", eager, fast, None, "", "<=15 us", fast <= 15e-6)


# ----------------------------------------------------------------------------------------------------
# compile time, in fresh processes

_COMPILE_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks import workloads
import jitorch as torch
from jitorch.frontend.functional import log_softmax
if {warm_imports}:
    import jitorch.codegen.backend  # networkx, llvmlite and the code generator, imported beforehand
parameters = workloads._mlp_parameters(torch, requires_grad=True)
x = torch.randn(256, 784)
targets = torch.zeros(256, 10)
def loss_fn(inputs, targets):
    return -(log_softmax(workloads._mlp(inputs, parameters), 1) * targets).sum() / 256.0
compiled = torch.compile(loss_fn)
start = time.perf_counter()
compiled(x, targets).backward()  # runs eagerly while tracing, then compiles forward and backward
print(time.perf_counter() - start)
"""


def compile_times() -> list[Result]:
    """The first call of the MLP loss with backward (trace, passes, autodiff, compile of both graphs, and
    the eager run the first call returns), in fresh processes: with an empty disk cache, then with the
    disk cache filled; each both counting the code generator's imports (networkx, llvmlite: about
    0.25 s) and with them done beforehand."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for warm_imports in (False, True):
        script = _COMPILE_SCRIPT.format(root=root, warm_imports=warm_imports)
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "JITORCH_CACHE_DIR": cache}
            times = []
            for _ in range(2):  # cold, then from the disk cache
                out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                     check=True)
                times.append(float(out.stdout.strip().splitlines()[-1]))
        cold, warm = times
        how = "imports done before" if warm_imports else "incl. imports"
        results += [Result(f"first call mlp fwd+bwd, cold, {how}", None, cold, None, "", "<=1 s", cold <= 1.0),
                    Result(f"first call mlp fwd+bwd, disk cache, {how}", None, warm, None, "", "<=0.1 s",
                           warm <= 0.1)]
    return results


WORKLOADS: dict[str, Callable[[], Result | list[Result]]] = {
    "gelu": gelu, "softmax": softmax, "layer_norm": layer_norm, "mlp_forward": mlp_forward,
    "mlp_train_step": mlp_train_step, "cache_hit": cache_hit, "compile": compile_times,
}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def format_table(results: list[Result]) -> str:
    header = ("workload", "eager", "compiled", "numpy", "compiled/numpy", "eager/compiled", "target", "met")
    rows = [header]
    for r in results:
        ratio, speedup = r.ratio(), r.speedup()
        rows.append((r.name, _ms(r.eager), _ms(r.compiled), f"{_ms(r.numpy)} {r.numpy_what}".strip(),
                     f"{ratio:.2f}x" if ratio else "-", f"{speedup:.1f}x" if speedup else "-", r.target,
                     "-" if r.met is None else "yes" if r.met else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def machine() -> str:
    import llvmlite

    from jitorch.codegen.jit import host_cpu
    from jitorch.codegen.runtime import get_num_threads
    cpu, _ = host_cpu()
    return (f"{platform.processor() or platform.machine()}, LLVM cpu {cpu}, {os.cpu_count()} cores, "
            f"{get_num_threads()} jitorch threads, numpy {np.__version__}, llvmlite {llvmlite.__version__}, "
            f"load average {os.getloadavg()[0]:.1f}")


def run(names: list[str] | None = None, progress: Callable[[str], None] | None = None) -> list[Result]:
    results: list[Result] = []
    for name in names or list(WORKLOADS):
        if progress is not None:
            progress(name)
        found = WORKLOADS[name]()
        results.extend(found if isinstance(found, list) else [found])
    return results


if __name__ == "__main__":
    chosen = sys.argv[1:] or None
    table = format_table(run(chosen, progress=lambda name: print(f"running {name} ...", file=sys.stderr)))
    print(machine())
    print(table)
