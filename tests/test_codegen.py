"""The LLVM backend against the reference interpreter: every registry op, every dtype it supports, edge
shapes (0-size, size-1, 0-d), non-contiguous inputs, reductions over every axis combination, errors
raised like eager, 8-wide vector code, and thread-count independence.

Each test builds one graph holding many ops (one LLVM module: compile time dominates these tests)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from jitorch.codegen import runtime
from jitorch.codegen.backend import llvm_backend
from jitorch.ir import dtypes, interpreter
from jitorch.ir.graph import Graph, GraphBuilder
from jitorch.ir.ops import ELEMENTWISE, OPS
from jitorch.ir.types import Literal, TensorType

FLOATS = (dtypes.float32, dtypes.float64)
ALL = (dtypes.bool_, dtypes.int32, dtypes.int64, dtypes.float32, dtypes.float64)
# mathlib is within 4 ulp of numpy; sums are reassociated
TOLERANCE = {"float32": (3e-6, 1e-6), "float64": (1e-13, 1e-14)}


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JITORCH_CACHE_DIR", str(tmp_path_factory.mktemp("jitorch-cache")))
        yield


def compare(graph: Graph, inputs: list[np.ndarray], exact: bool = False) -> list[np.ndarray]:
    """Run `graph` compiled and interpreted; assert equal outputs (types, shapes, values)."""
    got = llvm_backend(graph, {})(inputs)
    want = interpreter.run(graph, inputs)
    for value, g, w in zip(graph.outputs, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, f"%{value.name}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        node = value.producer
        what = f"%{value.name} = {node}" if node is not None else value.name
        if exact or not value.dtype.is_floating_point:
            np.testing.assert_array_equal(g, w, err_msg=what)
        else:
            rtol, atol = TOLERANCE[value.dtype.name]
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=what)
    return got


def sample(dtype: dtypes.DType, shape: tuple[int, ...], rng: np.random.Generator, role: str = "x") -> np.ndarray:
    """Test data: `x` includes special values; `y` is a nonzero divisor; `e` a small exponent."""
    n = int(np.prod(shape))
    if dtype.is_bool:
        return rng.random(shape) < 0.5
    if dtype.is_integer:
        info = np.iinfo(dtype.numpy)
        if role == "e":
            data = rng.integers(0, 6, n)
        elif role == "y":
            data = rng.choice([-7, -3, -2, -1, 1, 2, 5, 9], n)
        else:
            data = rng.integers(-50, 50, n)
            data[:2] = [info.min, info.max][:n]
        return data.astype(dtype.numpy).reshape(shape)
    data = rng.normal(0.0, 3.0, n)
    if role == "x":
        special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, 2.5, -1.5, 1e-30]
        data[:len(special)] = special[:n]
    elif role == "y":
        data[:3] = [0.0, -2.0, 0.5][:n]
    elif role == "e":
        data = rng.integers(-3, 4, n) + (rng.random(n) < 0.5) * 0.5
    return data.astype(dtype.numpy).reshape(shape)


def _supported(op: str, *operands: object, **attrs: object) -> bool:
    try:
        OPS[op].infer(*operands, **attrs)
    except (TypeError, RuntimeError):
        return False
    return True


def elementwise_graph(dtype: dtypes.DType, shape: tuple[int, ...], only: tuple[str, ...] | None = None) -> Graph:
    """One graph applying every elementwise op (or those in `only`) that supports `dtype`, with tensor
    and literal operands."""
    builder = GraphBuilder(f"elementwise_{dtype.short}")
    t = TensorType(shape, dtype)
    x, y, e = (builder.add_input(name, t) for name in ("x", "y", "e"))
    finite = builder.add_input("finite", TensorType(shape, dtype))
    condition = builder.add_input("c", TensorType(shape, dtypes.bool_))
    outputs = []
    literal = Literal(2.5 if dtype.is_floating_point else True if dtype.is_bool else 3, dtype)
    for name, op in OPS.items():
        if op.kind != ELEMENTWISE or (only is not None and name not in only):
            continue
        if name == "cast":
            outputs += [builder.emit("cast", finite, dtype=target) for target in ALL if target is not dtype]
        elif name == "where":
            outputs += [builder.emit("where", condition, x, y), builder.emit("where", condition, x, literal)]
        elif _supported(name, t):
            if name != "sign" or not dtype.is_bool:  # numpy has no sign for bool
                outputs.append(builder.emit(name, x))
        elif _supported(name, t, t):
            second = e if name == "pow" else y
            outputs.append(builder.emit(name, x, second))
            if name not in ("floordiv", "mod") or dtype.is_floating_point:
                outputs.append(builder.emit(name, literal if name != "pow" else x, second if name == "pow"
                                            else x))
    builder.set_outputs(outputs)
    return builder.build()


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_elementwise_ops(dtype: dtypes.DType) -> None:
    rng = np.random.default_rng(0)
    graph = elementwise_graph(dtype, (4, 9))
    shape = (4, 9)
    inputs = [sample(dtype, shape, rng, role) for role in ("x", "y", "e")]
    finite = sample(dtype, shape, rng, "y") if not dtype.is_floating_point else \
        (rng.normal(0, 100, shape)).astype(dtype.numpy)
    compare(graph, inputs + [finite, rng.random(shape) < 0.5])


# one op per kind of scalar rule: the loops around them are what edge shapes exercise
EDGE_OPS = ("exp", "add", "floordiv", "maximum", "lt", "where", "cast", "relu")


@pytest.mark.parametrize("shape", [(0, 3), (1, 5), (), (1, 1, 7)], ids=str)
def test_elementwise_edge_shapes(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    for dtype in (dtypes.float32, dtypes.int64):
        graph = elementwise_graph(dtype, shape, EDGE_OPS)
        inputs = [sample(dtype, shape, rng, role) for role in ("x", "y", "e", "y")]
        compare(graph, inputs + [rng.random(shape) < 0.5])


def test_non_contiguous_inputs() -> None:
    builder = GraphBuilder("strided")
    x = builder.add_input("x", TensorType((6, 4), dtypes.float32))
    y = builder.add_input("y", TensorType((6, 4), dtypes.float32))
    builder.set_outputs([(x * y).exp(), x.sum_axes((1,))])
    graph = builder.build()
    rng = np.random.default_rng(2)
    base = rng.normal(size=(4, 12)).astype(np.float32)
    x_strided = base.T[::2]  # transposed and stepped: neither C- nor F-contiguous
    y_strided = rng.normal(size=(12, 8)).astype(np.float32)[::2, ::2]
    assert not x_strided.flags.c_contiguous and not y_strided.flags.c_contiguous
    compare(graph, [x_strided, y_strided])


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_reductions_every_axis_combination(dtype: dtypes.DType) -> None:
    builder = GraphBuilder(f"reduce_{dtype.short}")
    shape = (3, 4, 5)
    x = builder.add_input("x", TensorType(shape, dtype))
    outputs = []
    for count in (1, 2, 3):
        for axes in itertools.combinations(range(3), count):
            for op in ("sum", "prod", "amax", "amin"):
                if _supported(op, x, axes=axes):
                    outputs.append(builder.emit(op, x, axes=axes))
            if count == 1:
                outputs += [builder.emit(op, x, axes=axes) for op in ("argmax", "argmin")]
    builder.set_outputs(outputs)
    rng = np.random.default_rng(3)
    data = sample(dtype, shape, rng, "y") if dtype.is_integer else sample(dtype, shape, rng, "x")
    if dtype.is_floating_point:
        data = rng.normal(size=shape).astype(dtype.numpy)
        data[0, 1, 2] = data[0, 1, 3]  # ties: first index wins
    compare(builder.build(), [data])


def test_reductions_nan_and_empty() -> None:
    builder = GraphBuilder("reduce_special")
    x = builder.add_input("x", TensorType((3, 5), dtypes.float64))
    empty = builder.add_input("empty", TensorType((0, 4), dtypes.float32))
    outputs = [builder.emit(op, x, axes=(1,)) for op in ("amax", "amin", "argmax", "argmin", "sum")]
    outputs += [builder.emit(op, x, axes=(0,)) for op in ("amax", "amin")]
    outputs += [builder.emit(op, empty, axes=(0,)) for op in ("sum", "prod")]
    builder.set_outputs(outputs)
    data = np.arange(15.0).reshape(3, 5)
    data[0, 2] = np.nan
    data[1, 4] = np.nan
    data[1, 1] = np.nan
    compare(builder.build(), [data, np.zeros((0, 4), np.float32)])


def test_row_kernels_softmax_layer_norm() -> None:
    builder = GraphBuilder("rows")
    x = builder.add_input("x", TensorType((6, 33), dtypes.float32))
    peak = builder.emit("amax", x, axes=(1,))
    e = (x - peak.expand(6, 33)).exp()
    softmax = e / e.sum_axes((1,)).expand(6, 33)
    mean = x.sum_axes((1,)) / 33.0
    centered = x - mean.expand(6, 33)
    variance = (centered * centered).sum_axes((1,)) / 33.0
    norm = centered * (variance + 1e-5).sqrt().reciprocal().expand(6, 33)
    builder.set_outputs([softmax, norm, variance])
    rng = np.random.default_rng(4)
    compare(builder.build(), [rng.normal(size=(6, 33)).astype(np.float32)])


@pytest.mark.parametrize("dtype", (dtypes.float32, dtypes.int64, dtypes.bool_), ids=lambda d: d.name)
def test_movement_ops(dtype: dtypes.DType) -> None:
    builder = GraphBuilder(f"movement_{dtype.short}")
    x = builder.add_input("x", TensorType((4, 6), dtype))
    y = builder.add_input("y", TensorType((4, 3), dtype))
    changed = builder.emit("bitwise_not", x) if dtype.is_bool else x * 2
    outputs = [
        changed.permute(1, 0),
        builder.emit("slice", changed, starts=(1, 0), stops=(4, 6), steps=(2, 3)),
        builder.emit("flip", changed, axes=(0, 1)),
        builder.emit("maximum", x.reshape(2, 12), x.reshape(2, 12)).reshape(8, 3),
        builder.emit("minimum", x.reshape(3, 8).permute(1, 0).reshape(2, 12), changed.reshape(2, 12)),
        builder.emit("cat", x, y, axis=1),
        builder.emit("cat", x.permute(1, 0), y.permute(1, 0), axis=0),
        builder.emit("slice_scatter", x, y, starts=(0, 1), stops=(4, 6), steps=(1, 2)),
        x.permute(1, 0),  # an output view of an input: copied
        changed.reshape(6, 4),  # an output view of a kernel's output
        y.reshape(4, 3, 1).expand(4, 3, 5),  # a broadcast output: materialized
    ]
    builder.set_outputs(outputs)
    rng = np.random.default_rng(5)
    compare(builder.build(), [sample(dtype, (4, 6), rng), sample(dtype, (4, 3), rng)])


@pytest.mark.parametrize("dtype", (dtypes.float32, dtypes.int64), ids=lambda d: d.name)
def test_matmul_and_its_epilogue(dtype: dtypes.DType) -> None:
    builder = GraphBuilder(f"matmul_{dtype.short}")
    a = builder.add_input("a", TensorType((2, 5, 7), dtype))
    b = builder.add_input("b", TensorType((2, 7, 3), dtype))
    bias = builder.add_input("bias", TensorType((3,), dtype))
    product = a.matmul(b)
    builder.set_outputs([builder.emit("relu", product + bias.reshape(1, 1, 3).expand(2, 5, 3)),
                         a.permute(0, 2, 1).matmul(a), product])
    rng = np.random.default_rng(9)
    compare(builder.build(), [sample(dtype, s, rng, "y") for s in ((2, 5, 7), (2, 7, 3), (3,))])


def test_sources_and_random() -> None:
    builder = GraphBuilder("sources")
    seed = builder.add_input("seed", TensorType((), dtypes.int64))
    x = builder.add_input("x", TensorType((5, 7), dtypes.float64))
    outputs = [
        builder.emit("full", shape=(3, 2), value=1.5, dtype=dtypes.float32),
        builder.emit("arange", start=2, step=3, size=9, dtype=dtypes.int32),
        builder.emit("arange", start=0.5, step=0.25, size=9, dtype=dtypes.float32),
        x + builder.emit("arange", start=0, step=1, size=7, dtype=dtypes.float64).reshape(1, 7).expand(5, 7),
        builder.emit("rand_uniform", seed, shape=(5, 7), dtype=dtypes.float32),
        builder.emit("rand_uniform", seed, shape=(300,), dtype=dtypes.float64),
        builder.emit("rand_normal", seed, shape=(5, 7), dtype=dtypes.float64) * x,
        builder.emit("rand_normal", seed, shape=(4, 4), dtype=dtypes.float32),
    ]
    builder.set_outputs(outputs)
    inputs = [np.array(-12345, np.int64), np.random.default_rng(6).normal(size=(5, 7))]
    compare(builder.build(), inputs)


def test_uniform_random_bit_exact() -> None:
    builder = GraphBuilder("uniform")
    seed = builder.add_input("seed", TensorType((), dtypes.int64))
    builder.set_outputs([builder.emit("rand_uniform", seed, shape=(64, 33), dtype=d) for d in FLOATS])
    compare(builder.build(), [np.array(2**40 + 7, np.int64)], exact=True)


def test_index_ops_and_errors() -> None:
    builder = GraphBuilder("index")
    x = builder.add_input("x", TensorType((5, 4), dtypes.float32))
    index = builder.add_input("index", TensorType((5, 2), dtypes.int64))
    rows = builder.add_input("rows", TensorType((3,), dtypes.int64))
    gathered = builder.emit("gather", x * 2.0, index, axis=1)
    picked = builder.emit("index", x, rows)
    scattered = builder.emit("scatter_add", x, index, gathered + 1.0, axis=1)
    put = builder.emit("index_put", x, rows, picked * 3.0, accumulate=True)
    transposed = builder.emit("gather", x.permute(1, 0), rows.reshape(1, 3).expand(4, 3) + 1, axis=1)
    # one view, read by an eager step as a numpy view and by a kernel as a contiguous copy
    x_t = x.permute(1, 0)
    overwritten = builder.emit("index_put", x_t, index, builder.emit("index", x_t, index) * 2.0, accumulate=False)
    builder.set_outputs([gathered.exp(), picked, scattered, put, transposed, overwritten])
    graph = builder.build()
    good = [np.random.default_rng(7).normal(size=(5, 4)).astype(np.float32),
            np.array([[0, 3], [1, 1], [2, 0], [3, 3], [0, 2]], np.int64), np.array([3, -1, 0], np.int64)]
    compare(graph, good)
    assert llvm_backend(graph, {}).eager_count == 3  # scatter_add and index_put run with numpy
    bad = [good[0], good[1].copy(), good[2]]
    bad[1][2, 1] = 4
    run = llvm_backend(graph, {})
    with pytest.raises(IndexError) as compiled_error:
        run(bad)
    with pytest.raises(IndexError) as eager_error:
        interpreter.run(graph, bad)
    assert str(compiled_error.value) == str(eager_error.value)


@pytest.mark.parametrize("op", ("floordiv", "mod"))
def test_integer_division_by_zero_raises_like_eager(op: str) -> None:
    builder = GraphBuilder("divide")
    a = builder.add_input("a", TensorType((2, 50), dtypes.int32))
    b = builder.add_input("b", TensorType((2, 50), dtypes.int32))
    builder.set_outputs([builder.emit(op, a + 1, b)])
    graph = builder.build()
    run = llvm_backend(graph, {})
    numerator = np.arange(100, dtype=np.int32).reshape(2, 50)
    divisor = np.full((2, 50), 3, np.int32)
    np.testing.assert_array_equal(run([numerator, divisor])[0], interpreter.run(graph, [numerator, divisor])[0])
    divisor[1, 17] = 0
    with pytest.raises(ZeroDivisionError, match="integer division by zero"):
        run([numerator, divisor])


def test_negative_integer_power_raises_like_eager() -> None:
    builder = GraphBuilder("power")
    a = builder.add_input("a", TensorType((8,), dtypes.int64))
    b = builder.add_input("b", TensorType((8,), dtypes.int64))
    builder.set_outputs([builder.emit("pow", a, b)])
    run = llvm_backend(builder.build(), {})
    with pytest.raises(RuntimeError, match="negative integer powers"):
        run([np.arange(8, dtype=np.int64), np.array([1, 2, 3, -1, 0, 1, 2, 3], np.int64)])


def test_elementwise_kernel_uses_8_wide_vectors() -> None:
    from jitorch.codegen.backend import lower_plan
    from jitorch.codegen.jit import get_jit
    from jitorch.codegen.llvm import build_module
    from jitorch.passes.fusion import fuse

    builder = GraphBuilder("gelu")
    x = builder.add_input("x", TensorType((1024,), dtypes.float32))
    inner = (x + x * x * x * 0.044715) * 0.7978845608
    builder.set_outputs([x * 0.5 * (inner.tanh() + 1.0)])
    kernels = list(lower_plan(fuse(builder.build())).values())
    module = get_jit().compile(build_module("gelu", kernels), [k.name for k in kernels])
    vector_ops = [line for line in module.asm.splitlines() if "mulps" in line and ("ymm" in line or "zmm" in line)]
    assert vector_ops, "no 8-wide (ymm) or 16-wide (zmm) float multiplies in the GELU kernel"


def test_innermost_loops_interleave_four_vector_iterations() -> None:
    """Long math bodies (sigmoid's exp) get four independent vector iterations per loop trip: the hint is
    on innermost loops only, and LLVM's vectorizer follows it."""
    from jitorch.codegen.backend import lower_plan
    from jitorch.codegen.jit import get_jit
    from jitorch.codegen.llvm import INTERLEAVE, build_module
    from jitorch.passes.fusion import fuse

    builder = GraphBuilder("rows")
    x = builder.add_input("x", TensorType((64, 1024), dtypes.float32))
    builder.set_outputs([x * (x * 1.6).sigmoid()])
    kernels = list(lower_plan(fuse(builder.build())).values())
    text = build_module("rows", kernels)
    loops = [line for line in text.splitlines() if "!llvm.loop" in line]
    hints = [line for line in text.splitlines() if "llvm.loop.interleave.count" in line]
    assert len(loops) == len(kernels) and len(hints) == 1, text  # one innermost loop per kernel, one shared option
    module = get_jit().compile(text, [k.name for k in kernels])
    body = module.llvm_ir_optimized
    assert "llvm.loop.isvectorized" in body
    assert len([line for line in module.asm.splitlines() if "vdivps" in line]) >= INTERLEAVE


def test_exp_of_x_minus_its_row_max_uses_the_nonpositive_exp() -> None:
    """softmax's exp(x - max(x)) never sees a positive argument, so it gets mathlib's cheaper exp;
    exp(x - mean(x)) and exp(x - max(y)) do not. Results equal eager's on rows with -inf, inf and nan."""
    from jitorch.codegen.backend import lower_plan
    from jitorch.codegen.llvm import build_module
    from jitorch.passes.fusion import fuse

    builder = GraphBuilder("rows")
    x = builder.add_input("x", TensorType((6, 5), dtypes.float32))
    y = builder.add_input("y", TensorType((6, 5), dtypes.float32))
    peak = builder.emit("amax", x, axes=(1,)).expand(6, 5)
    e = (x - peak).exp()
    other = (x - builder.emit("amax", y, axes=(1,)).expand(6, 5)).exp()
    centered = (x - (x.sum_axes((1,)) * 0.2).expand(6, 5)).exp()
    builder.set_outputs([e / e.sum_axes((1,)).expand(6, 5), other, centered])
    graph = builder.build()
    kernels = list(lower_plan(fuse(graph)).values())
    text = build_module("rows", kernels)
    assert text.count("call float @\"jitorch.exp_nonpositive.f32\"") == 1
    assert text.count("call float @\"jitorch.exp.f32\"") == 2
    inf, nan = float("inf"), float("nan")
    data = np.array([[0.5, -1.0, 2.0, 3.0, -4.0], [-inf, 0.0, 1.0, -inf, 2.0], [-inf] * 5, [inf, 1.0, 0.0, 2.0, 3.0],
                     [nan, 1.0, 2.0, 3.0, 4.0], [-90.0, -100.0, 0.0, -103.0, -120.0]], np.float32)
    inputs = [data, data[::-1].copy()]
    got = llvm_backend(graph, {})(inputs)
    for a, b in zip(got, interpreter.run(graph, inputs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-45, equal_nan=True)


def test_results_independent_of_thread_count() -> None:
    builder = GraphBuilder("threads")
    x = builder.add_input("x", TensorType((512, 1024), dtypes.float32))
    softmax_input = x * 1.5
    peak = builder.emit("amax", softmax_input, axes=(1,))
    e = (softmax_input - peak.expand(512, 1024)).exp()
    builder.set_outputs([(x.tanh() * 3.0 + 1.0), e / e.sum_axes((1,)).expand(512, 1024), x.sum_axes((0,))])
    graph = builder.build()
    data = np.random.default_rng(8).normal(size=(512, 1024)).astype(np.float32)
    previous = runtime.get_num_threads()
    try:
        runtime.set_num_threads(1)
        single = llvm_backend(graph, {})([data])
        runtime.set_num_threads(2)
        run = llvm_backend(graph, {})
        kernels = [step for step in run.steps if isinstance(step, runtime._KernelStep)]
        assert len(kernels) == 3 and all(step.extent > 1 for step in kernels)
        for step in kernels:
            step.parallel = True  # split across the pool whatever the timing would decide
        parallel = run([data])
    finally:
        runtime.set_num_threads(previous)
    for a, b in zip(single, parallel):
        np.testing.assert_array_equal(a, b)


def test_kernels_decide_again_after_set_num_threads() -> None:
    """A kernel that settled on one thread (the pool had one) measures again once the pool grows."""
    builder = GraphBuilder("regrow")
    x = builder.add_input("x", TensorType((1 << 16,), dtypes.float32))
    builder.set_outputs([x.tanh()])
    data = np.linspace(-3, 3, 1 << 16, dtype=np.float32)
    previous = runtime.get_num_threads()
    try:
        runtime.set_num_threads(1)
        run = llvm_backend(builder.build(), {})
        (step,) = [s for s in run.steps if isinstance(s, runtime._KernelStep)]
        for _ in range(4):
            run([data])
        assert step.parallel is False
        runtime.set_num_threads(2)
        np.testing.assert_allclose(run([data])[0], np.tanh(data), rtol=1e-6, atol=1e-7)
        assert step.parallel is None and step.threads == 2 and len(step.single) == 1
    finally:
        runtime.set_num_threads(previous)


@pytest.mark.parametrize("length", [5, 40, 64, 100, 128, 129, 300, 1000, 1023])
def test_float32_sums_of_any_length_are_about_as_accurate_as_numpy(length: int) -> None:
    """Equal values round the same way on every add, so an error piles up wherever values are added one
    after another: in short sums, which LLVM unrolls instead of vectorizing (64 values were 8 ulp off, numpy's
    pairwise sum 1), and in the leftover of a vectorized loop, added to the row's total (1023: 6 ulp, numpy 2)."""
    builder = GraphBuilder("sum")
    x = builder.add_input("x", TensorType((length,), dtypes.float32))
    builder.set_outputs([x.sum_axes((0,)), (x * 3.0).reshape((1, length)).sum_axes((1,))])
    data = np.full(length, 0.4, np.float32)
    got = llvm_backend(builder.build(), {})([data])
    for result, values in zip(got, [data, data * np.float32(3.0)]):
        exact = values.astype(np.float64).sum()
        ulp = float(np.spacing(np.float32(exact)))
        assert abs(float(result.reshape(())) - exact) <= 2 * abs(float(values.sum()) - exact) + 2 * ulp


def test_long_float32_sums_are_as_accurate_as_numpy() -> None:
    """Rows longer than a block sum per block in float32 and add blocks in float64 (9001: a partial block)."""
    builder = GraphBuilder("long_sums")
    x = builder.add_input("x", TensorType((3, 9001), dtypes.float32))
    builder.set_outputs([x.sum_axes((1,)), x.sum_axes((0, 1)), (x * 2.0).sum_axes((1,))])
    data = np.random.default_rng(10).uniform(0.0, 1.0, (3, 9001)).astype(np.float32)
    got = llvm_backend(builder.build(), {})([data])
    exact = [data.astype(np.float64).sum(1, keepdims=True), data.astype(np.float64).sum(keepdims=True),
             2 * data.astype(np.float64).sum(1, keepdims=True)]
    eager = [data.sum(1, keepdims=True), data.sum(keepdims=True), (data * 2).sum(1, keepdims=True)]
    for g, e, want in zip(got, eager, exact):
        ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(g - want) <= 2 * np.abs(e - want) + 2 * ulp)
