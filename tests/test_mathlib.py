"""mathlib accuracy against numpy (ulp sweeps over float32, random float64, special values), the
vectorization of a loop calling it, and the JIT's in-memory, on-disk and thread-safe caching."""
from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from llvmlite import ir

from jitorch.codegen import jit as jit_module
from jitorch.codegen.jit import JIT, CompiledModule, get_jit
from jitorch.codegen.mathlib import get_function

REPO = Path(__file__).resolve().parents[1]
TYPES = {np.float32: ir.FloatType(), np.float64: ir.DoubleType()}
UNARY = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos", "sqrt")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep this module's kernels out of the user's cache directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JITORCH_CACHE_DIR", str(tmp_path_factory.mktemp("jitorch-cache")))
        yield


# ---------------------------------------------------------------------------------------------------------
# Test-only kernel: out[i] = name(in0[i] [, in1[i]]) for i < n


def kernel_ir(name: str, dtype: type, arity: int = 1) -> str:
    """The IR text of `void kernel(T* in0, [T* in1,] T* out, i64 n)` applying mathlib's `name`."""
    ty, i64, ptr = TYPES[dtype], ir.IntType(64), ir.PointerType()
    module = ir.Module(name=f"test_{name}")
    kernel = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (arity + 1) + [i64]), "kernel")
    for argument in kernel.args[:-1]:
        argument.add_attribute("noalias")
    *inputs, out, n = kernel.args
    entry, loop, done = (kernel.append_basic_block(label) for label in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    builder.cbranch(builder.icmp_signed(">", n, i64(0)), loop, done)
    builder.position_at_end(loop)
    index = builder.phi(i64)
    index.add_incoming(i64(0), entry)
    values = [builder.load(builder.gep(pointer, [index], inbounds=True, source_etype=ty), typ=ty)
              for pointer in inputs]
    result = builder.call(get_function(module, name, ty), values)
    builder.store(result, builder.gep(out, [index], inbounds=True, source_etype=ty))
    following = builder.add(index, i64(1))
    index.add_incoming(following, loop)
    builder.cbranch(builder.icmp_signed("<", following, n), loop, done)
    builder.position_at_end(done)
    builder.ret_void()
    return str(module)


@dataclass(frozen=True)
class Kernel:
    """A compiled test kernel, called on numpy arrays."""

    module: CompiledModule
    function: Callable[..., None]
    dtype: type

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        arrays = tuple(np.ascontiguousarray(array, dtype=self.dtype) for array in arrays)
        out = np.empty_like(arrays[0])
        self.function(*[array.ctypes.data for array in arrays], out.ctypes.data, out.size)
        return out


def compiled(name: str, dtype: type, jit: JIT | None = None) -> Kernel:
    """mathlib's `name` for `dtype`, compiled into a loop kernel by `jit` (default: the process's)."""
    arity = 2 if name == "pow" else 1
    module = (jit or get_jit()).compile(kernel_ir(name, dtype, arity), ["kernel"])
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (arity + 1), ctypes.c_int64)
    return Kernel(module, signature(module.address("kernel")), dtype)


# ---------------------------------------------------------------------------------------------------------
# References and ulp distances


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float64 (numpy has none): a Taylor series near 0, math.erf up to 6.5, ±1 beyond."""
    out = np.sign(x) * 1.0
    small = np.abs(x) < 2.0**-8
    z = x[small] ** 2  # Taylor series, the first omitted term below 2^-80 relative
    series = 1 + z * (-1 / 3 + z * (1 / 10 + z * (-1 / 42 + z / 216)))
    out[small] = x[small] * (2 / math.sqrt(math.pi)) * series
    middle = ~small & (np.abs(x) < 6.5)
    out[middle] = np.fromiter(map(math.erf, x[middle].tolist()), dtype=np.float64, count=int(middle.sum()))
    return np.where(np.isnan(x), x, out)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


REFERENCES = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh, "sigmoid": _sigmoid,
    "erf": _erf, "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt, "pow": np.power,
}


def reference(name: str, dtype: type, *arrays: np.ndarray) -> np.ndarray:
    """numpy's answer in float64, rounded to `dtype`; sigmoid, a composite, in extended precision for
    float64 results, so that the reference itself is correctly rounded."""
    wide = np.longdouble if name == "sigmoid" and dtype is np.float64 else np.float64
    with np.errstate(all="ignore"):
        return REFERENCES[name](*[array.astype(wide) for array in arrays]).astype(dtype)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many representable values apart a and b are (nan vs nan is 0, nan vs a number is huge)."""
    signed = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}[a.dtype]
    lowest = np.iinfo(signed).min
    # Map bit patterns onto a line where neighbouring floats are neighbouring integers (-0 and +0 meet
    # at 0), and every nan onto one point far beyond the infinities.
    ordered = []
    for array in (a, b):
        bits = array.view(signed)
        line = np.where(bits < 0, lowest - bits, bits).astype(np.int64)
        ordered.append(np.where(np.isnan(array), np.int64(np.iinfo(signed).max), line))
    with np.errstate(over="ignore"):
        difference = ordered[0] - ordered[1]
    # Only float64's line can overflow int64: when the operands have opposite signs and the result's
    # sign disagrees with the minuend's.
    overflow = ((ordered[0] ^ ordered[1]) & (ordered[0] ^ difference)) < 0
    return np.where(overflow, np.iinfo(np.int64).max, np.abs(difference))


def assert_within_ulp(name: str, dtype: type, inputs: tuple[np.ndarray, ...], got: np.ndarray,
                      limit: int) -> int:
    """Assert every result is within `limit` ulp of numpy's; returns the largest distance."""
    expected = reference(name, dtype, *inputs)
    differ = np.flatnonzero((got != expected) & ~(np.isnan(got) & np.isnan(expected)))  # few differ
    if differ.size == 0:
        return 0
    distance = ulp_distance(got[differ], expected[differ])
    worst = differ[int(np.argmax(distance))]
    largest = int(distance.max())
    assert largest <= limit, (f"{name}.{np.dtype(dtype)}: {largest} ulp at {[x[worst] for x in inputs]}: "
                              f"got {got[worst]!r}, numpy {expected[worst]!r}")
    return largest


# ---------------------------------------------------------------------------------------------------------
# Accuracy


STRIDE = 97  # every 97th of the 2^32 float32 bit patterns: 44 million inputs per function
CHUNK = 1 << 14
SIN_COS_LIMIT = {np.float32: 2.0**21, np.float64: 2.0**47}  # documented: accurate below, bounded above


@functools.cache
def float32_sweep() -> list[np.ndarray]:
    patterns = np.arange(0, 1 << 32, STRIDE, dtype=np.uint64).astype(np.uint32).view(np.float32)
    patterns = patterns[np.isfinite(patterns)]
    return np.array_split(patterns, max(1, patterns.size // CHUNK))


@pytest.mark.parametrize("name", UNARY)
def test_float32_sweep_within_4_ulp(name: str) -> None:
    function = compiled(name, np.float32)

    def check(x: np.ndarray) -> None:
        if name in ("sin", "cos"):
            huge = np.abs(x) >= SIN_COS_LIMIT[np.float32]
            assert np.all(np.abs(function(x[huge])) <= 1), f"{name} of huge arguments left [-1, 1]"
            x = x[~huge]
        assert_within_ulp(name, np.float32, (x,), function(x), 4)

    with ThreadPoolExecutor(2) as pool:  # the kernel and numpy both release the GIL
        list(pool.map(check, float32_sweep()))


def test_exp_of_nonpositive_arguments_within_1_ulp() -> None:
    """exp_nonpositive, exp for arguments known not to be positive (softmax's x - max(x)): every 97th
    non-positive float32, a million float64 from 0 down past the underflow limit, and the specials."""
    negative = [x[np.signbit(x)] for x in float32_sweep()]
    function = compiled("exp_nonpositive", np.float32)
    for x in negative:
        assert_within_ulp("exp", np.float32, (x,), function(x), 1)
    wide = -np.abs(float64_samples("exp"))
    assert_within_ulp("exp", np.float64, (wide,), compiled("exp_nonpositive", np.float64)(wide), 1)
    for dtype in (np.float32, np.float64):
        x = special_values(dtype)
        x = x[np.signbit(x) | np.isnan(x)]
        assert_same_specials("exp", dtype, (x,), compiled("exp_nonpositive", dtype)(x))


def test_float32_pow_within_4_ulp() -> None:
    rng = np.random.default_rng(0)
    size = 1 << 20
    x = rng.integers(0, 0x7F800000, size, dtype=np.uint32).view(np.float32)  # every positive finite
    y = rng.uniform(-30, 30, size).astype(np.float32)
    near_one = (1 + rng.uniform(-0.1, 0.1, size)).astype(np.float32)
    y_wide = rng.uniform(-2000, 2000, size).astype(np.float32)
    negative = -rng.uniform(0, 100, size).astype(np.float32)
    y_integer = rng.integers(-40, 40, size).astype(np.float32)
    function = compiled("pow", np.float32)
    for inputs in ((x, y), (near_one, y_wide), (negative, y_integer), (negative, y)):
        assert_within_ulp("pow", np.float32, inputs, function(*inputs), 4)


def float64_samples(name: str, size: int = 1_000_000) -> np.ndarray:
    """Random float64 inputs over each function's interesting range, tiny and huge magnitudes included."""
    rng = np.random.default_rng(1)
    magnitudes = np.exp2(rng.uniform(-1074, 1024, size // 4))
    ranges = {"exp": 745, "expm1": 720, "sigmoid": 745, "tanh": 25, "erf": 7, "sin": 1e6, "cos": 1e6,
              "log": 1e300, "log1p": 1e300, "sqrt": 1e300}
    bound = ranges[name]
    uniform = rng.uniform(-bound, bound, size // 4)
    near_zero = rng.uniform(-2, 2, size // 4) * np.exp2(rng.uniform(-60, 0, size // 4))
    samples = np.concatenate([uniform, near_zero, magnitudes, -magnitudes])
    if name == "log":
        samples = np.abs(samples)
    if name == "log1p":
        samples = np.concatenate([np.abs(samples), rng.uniform(-1, 0, size // 4)])
    return samples


@pytest.mark.parametrize("name", UNARY)
def test_float64_random_within_4_ulp(name: str) -> None:
    x = float64_samples(name)
    if name in ("sin", "cos"):
        x = x[np.abs(x) < SIN_COS_LIMIT[np.float64]]
    assert_within_ulp(name, np.float64, (x,), compiled(name, np.float64)(x), 4)


def test_float64_pow_within_4_ulp() -> None:
    rng = np.random.default_rng(2)
    size = 1_000_000
    x = np.exp(rng.uniform(-700, 700, size))
    y = rng.uniform(-1, 1, size) * np.exp2(rng.uniform(-20, 3, size))
    near_one = 1 + rng.uniform(-1e-3, 1e-3, size)
    y_wide = rng.uniform(-5e5, 5e5, size)
    negative = -np.exp(rng.uniform(-10, 10, size))
    y_integer = rng.integers(-60, 60, size).astype(np.float64)
    function = compiled("pow", np.float64)
    for inputs in ((x, y), (near_one, y_wide), (negative, y_integer), (negative, y)):
        assert_within_ulp("pow", np.float64, inputs, function(*inputs), 4)


# ---------------------------------------------------------------------------------------------------------
# Special values: exactly numpy's, nan positions and signs of zeros included


def special_values(dtype: type) -> np.ndarray:
    info = np.finfo(dtype)
    base = [0.0, 1.0, 0.5, 2.0, 3.0, 1e-3, 10.0, 88.0, 89.0, 100.0, 104.0, 700.0, 709.78, 710.0, 745.0, 746.0,
            float(info.max), float(info.tiny), float(info.smallest_subnormal), float(info.tiny) / 3, 1e30,
            float("inf"), float("nan"), 0.99999994, 1.0000001, float(np.pi), 3e5, 1e10]
    # Where exp overflows, turns subnormal and underflows to zero, with the floats on either side.
    thresholds = np.array([np.log(float(info.max)), np.log(float(info.tiny)),
                           np.log(float(info.smallest_subnormal)) - np.log(2)], dtype=dtype)
    boundaries = np.concatenate([thresholds, np.nextafter(thresholds, dtype(np.inf)),
                                 np.nextafter(thresholds, dtype(-np.inf))])
    values = np.concatenate([np.array(base, dtype=dtype), boundaries])
    return np.concatenate([values, -values, np.array([-1.0, -1 + info.eps / 2], dtype=dtype)])


def assert_same_specials(name: str, dtype: type, inputs: tuple[np.ndarray, ...], got: np.ndarray) -> None:
    expected = reference(name, dtype, *inputs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{name}: nan positions")
    zero = expected == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(expected[zero]),
                                  err_msg=f"{name}: signs of zeros at {inputs[0][zero]}")
    exact = ~np.isfinite(expected) | zero | (np.abs(expected) == 1)
    np.testing.assert_array_equal(got[exact], expected[exact], err_msg=f"{name}: exact values")
    assert np.all(ulp_distance(got, expected) <= 4), f"{name}: {inputs} -> {got}, numpy {expected}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY)
def test_special_values_match_numpy(name: str, dtype: type) -> None:
    x = special_values(dtype)
    if name in ("sin", "cos"):
        x = x[~(np.isfinite(x) & (np.abs(x) >= SIN_COS_LIMIT[dtype]))]
    assert_same_specials(name, dtype, (x,), compiled(name, dtype)(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_pow_special_values_match_numpy(dtype: type) -> None:
    values = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, 1e-30, 1e30,
                       float("inf"), -float("inf"), float("nan"), float(np.finfo(dtype).smallest_subnormal)],
                      dtype=dtype)
    x, y = (grid.ravel() for grid in np.meshgrid(values, values))
    assert_same_specials("pow", dtype, (x, y), compiled("pow", dtype)(x, y))


# ---------------------------------------------------------------------------------------------------------
# The module-level API and code quality


def test_get_function_defines_each_function_once() -> None:
    module = ir.Module()
    exp = get_function(module, "exp", ir.FloatType())
    assert exp.name == "jitorch.exp.f32" and exp.linkage == "internal"
    assert get_function(module, "exp", ir.FloatType()) is exp
    assert get_function(module, "exp", ir.DoubleType()) is not exp
    with pytest.raises(ValueError, match="no function 'gamma'"):
        get_function(module, "gamma", ir.FloatType())
    with pytest.raises(TypeError, match="only float and double"):
        get_function(module, "exp", ir.IntType(32))


def test_exp_loop_is_vectorized() -> None:
    asm = compiled("exp", np.float32).module.asm
    assert "ymm" in asm or "zmm" in asm, "the exp.f32 loop did not vectorize:\n" + asm[:2000]
    assert "call" not in asm.split("kernel:", 1)[1], "the exp.f32 loop still calls a function"


# ---------------------------------------------------------------------------------------------------------
# The JIT's caches


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory, not yet created, that the JIT uses for this test."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("JITORCH_CACHE_DIR", str(directory))
    monkeypatch.delenv("JITORCH_DISABLE_DISK_CACHE", raising=False)
    return directory


def entry_paths(directory: Path) -> tuple[Path, Path]:
    (metadata,) = directory.glob("*.json")
    return metadata, metadata.with_suffix(".o")


def test_same_text_compiles_once_in_memory(cache: Path) -> None:
    jit, text = JIT(), kernel_ir("exp", np.float32)
    first = jit.compile(text, ["kernel"])
    assert jit.compile(text, ["kernel"]) is first
    assert (jit.compiles, jit.memory_hits) == (1, 1)
    assert set(first.timings) == {"parse", "optimize", "codegen", "load"}
    assert "define" in first.llvm_ir_optimized
    with pytest.raises(KeyError, match="no function 'missing'"):
        jit.compile(text, ["missing"])
    jit.reset()
    assert jit.compile(text, ["kernel"]) is not first  # loaded again, from the disk cache
    assert (jit.compiles, jit.disk_hits) == (1, 1)


def test_disk_cache_entry_is_loaded_by_a_fresh_jit(cache: Path) -> None:
    text = kernel_ir("exp", np.float32)
    original = JIT().compile(text, ["kernel"])
    metadata, code = entry_paths(cache)
    assert json.loads(metadata.read_text())["size"] == code.stat().st_size
    assert cache.stat().st_mode & 0o777 == 0o700
    fresh = JIT()
    function = compiled("exp", np.float32, fresh)
    assert (fresh.disk_hits, fresh.compiles) == (1, 0)
    x = np.linspace(-5, 5, 101, dtype=np.float32)
    assert_within_ulp("exp", np.float32, (x,), function(x), 4)
    # Regenerated on request, identical to what the code was compiled from.
    assert function.module.llvm_ir_optimized == original.llvm_ir_optimized
    assert function.module.asm == original.asm
    assert jit_module.cache_stats()["entries"] == 1
    assert jit_module.cache_clear() == 1
    assert jit_module.cache_stats()["entries"] == 0


def corrupt_flip(metadata: Path, code: Path) -> None:
    data = bytearray(code.read_bytes())
    data[len(data) // 2] ^= 0xFF
    code.write_bytes(bytes(data))


def corrupt_truncate(metadata: Path, code: Path) -> None:
    code.write_bytes(code.read_bytes()[:100])


def corrupt_version(metadata: Path, code: Path) -> None:
    fields = json.loads(metadata.read_text())
    fields["llvmlite"] = "0.0.1"
    metadata.write_text(json.dumps(fields))


def corrupt_json(metadata: Path, code: Path) -> None:
    metadata.write_text("{not json")


Corruption = Callable[[Path, Path], None]


@pytest.mark.parametrize("corrupt", [corrupt_flip, corrupt_truncate, corrupt_version, corrupt_json])
def test_bad_disk_entry_is_recompiled_and_replaced(cache: Path, corrupt: Corruption) -> None:
    text = kernel_ir("exp", np.float32)
    JIT().compile(text, ["kernel"])
    metadata, code = entry_paths(cache)
    good = code.read_bytes()
    corrupt(metadata, code)
    fresh = JIT()
    fresh.compile(text, ["kernel"])
    assert (fresh.disk_hits, fresh.compiles) == (0, 1)
    assert code.read_bytes() == good
    again = JIT()
    again.compile(text, ["kernel"])
    assert (again.disk_hits, again.compiles) == (1, 0)


def test_disable_disk_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITORCH_DISABLE_DISK_CACHE", "1")
    JIT().compile(kernel_ir("exp", np.float32), ["kernel"])
    assert not cache.exists()


def test_another_process_hits_the_disk_cache(cache: Path) -> None:
    text = kernel_ir("exp", np.float32)
    JIT().compile(text, ["kernel"])
    source = cache.parent / "kernel.ll"
    source.write_text(text)
    script = ("import sys; from jitorch.codegen.jit import get_jit; jit = get_jit(); "
              "jit.compile(open(sys.argv[1]).read(), ['kernel']); print(jit.disk_hits, jit.compiles)")
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    output = subprocess.run([sys.executable, "-c", script, str(source)], env=environment, check=True,
                            capture_output=True, text=True).stdout
    assert output.split() == ["1", "0"]


def test_two_threads_compile_the_same_text_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITORCH_DISABLE_DISK_CACHE", "1")
    jit, text = JIT(), kernel_ir("erf", np.float64)
    start = threading.Barrier(2)
    results = []

    def work() -> None:
        start.wait()
        results.append(jit.compile(text, ["kernel"]))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] is results[1]
    assert (jit.compiles, jit.memory_hits) == (1, 1)
