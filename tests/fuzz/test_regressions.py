"""Minimal regression tests for the bugs the fuzzers found, one per bug, shrunk from the failing programs.

A bug in code outside tests/ that is not fixed yet is marked xfail(strict=True): the test turns into an
XPASS failure the day the fix lands, and then the mark (and the bug's entry in known.py) goes; the test stays.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import jitorch

from .differential import llvm_status

def _llvm() -> None:
    available, why = llvm_status()
    if not available:
        pytest.skip(why)


@pytest.mark.parametrize("view", ["transposed", "strided"])
def test_inplace_write_to_a_view_argument_reaches_the_callers_tensor(view: str) -> None:
    # fixed; found by fuzz seeds 61 and 92 (Recorder.inplace bound the view's base as a lifted tensor, so compiled
    # calls wrote into the first call's base): `x.add_(1.5)` on an argument arriving as x.mT or x[::2]
    def f(x: jitorch.Tensor) -> jitorch.Tensor:
        x.add_(1.0)
        return x * 2

    def argument(base: jitorch.Tensor) -> jitorch.Tensor:
        return base.mT if view == "transposed" else base[::2]

    compiled = jitorch.compile(f, backend="interpreter")
    first = jitorch.zeros(4, 3)
    compiled(argument(first))  # traces
    second = jitorch.zeros(4, 3)
    out = compiled(argument(second))  # runs the graph
    want = jitorch.zeros(4, 3)
    f(argument(want))
    np.testing.assert_array_equal(out.numpy(), np.full(tuple(out.shape), 2.0, np.float32))
    np.testing.assert_array_equal(second.numpy(), want.numpy())
    assert compiled.stats["hits"] == 1


def test_backward_after_inplace_write_to_a_view_argument() -> None:
    # fixed; found by fuzz seed 232, the same bug seen from autograd: the compiled backward reached into the graph
    # of the first call's (lifted) base, which that call's backward had already freed. (The traced call is eager:
    # its base then requires grad, hence detach().)
    def f(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return x.add_(w * 2)

    compiled = jitorch.compile(f, backend="interpreter")
    for _ in range(2):
        base, w = jitorch.zeros(4, 3), jitorch.ones(3, requires_grad=True)
        compiled(base[::2], w).sum().backward()
        np.testing.assert_array_equal(w.grad.numpy(), [4.0, 4.0, 4.0])
        np.testing.assert_array_equal(base.detach().numpy()[::2], np.full((2, 3), 2.0, np.float32))


def test_inplace_write_to_an_argument_viewing_another_runs_eagerly() -> None:
    # found while fixing the two above: a graph traced from f(a, a[::2]) would write `v` through `a`, an aliasing
    # that a later call need not repeat, so such a write is not replayed
    def f(a: jitorch.Tensor, v: jitorch.Tensor) -> jitorch.Tensor:
        v.add_(1.0)
        return a * 2

    compiled = jitorch.compile(f, backend="interpreter")
    base = jitorch.zeros(4, 3)
    compiled(base, base[::2])
    a, other = jitorch.zeros(4, 3), jitorch.zeros(2, 3)
    out = compiled(a, other)
    np.testing.assert_array_equal(other.numpy(), np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(out.numpy(), np.zeros((4, 3), np.float32))
    assert compiled.stats["fallbacks"] == 1 and "another input shares" in compiled.fallback_reasons[0]


@pytest.mark.parametrize("case", ["repeat", "stack_grad"])
def test_llvm_compiles_copies_of_zero_size_tensors(case: str) -> None:
    # fixed; found by fuzz seeds 0 and 1253 (ZeroDivisionError in loopnest.divmod_index): x.repeat(3, 1, 2, 2, 1)
    # of a [0, 1, 1, 1] tensor; stack of [2, 0] tensors where one requires grad (the backward graph slices a
    # zero-size gradient)
    _llvm()
    if case == "repeat":
        compiled = jitorch.compile(lambda x: x.repeat(2, 2), backend="llvm")
        args = [jitorch.zeros(0, 1)]
    else:
        compiled = jitorch.compile(lambda a, b: jitorch.stack([a, b], 0), backend="llvm")
        args = [jitorch.zeros(2, 0), jitorch.zeros(2, 0, requires_grad=True)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*backend failed")
        compiled(*args)
        out = compiled(*args)
    assert tuple(out.shape) == ((0, 2) if case == "repeat" else (2, 2, 0))


def test_llvm_float32_sums_are_as_accurate_as_eager() -> None:
    # fixed; found by fuzz seed 80 (sums accumulated sequentially): jitorch.sum over 30,000 float32 values had
    # 16x eager's error against float64
    _llvm()
    compiled = jitorch.compile(lambda t: t.sum(), backend="llvm")
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(3):
        x = rng.uniform(0.0, 1.0, 1 << 22).astype(np.float32)
        exact = float(x.astype(np.float64).sum())
        compiled(jitorch.tensor(x))
        got = compiled(jitorch.tensor(x)).item()
        eager = jitorch.tensor(x).sum().item()
        errors.append((abs(got - exact), abs(eager - exact), float(np.spacing(np.float32(exact)))))
    got_error, eager_error, ulp = np.max(errors, axis=0)
    assert got_error <= 4 * eager_error + 2 * ulp



def test_llvm_float32_sums_of_repeated_values_are_as_accurate_as_eager() -> None:
    # fixed; found by the 10,000-program run, seed 2456: F.cross_entropy(x1, x3.softmax(0), reduction='sum') over
    # 20,000 classes with x3 in quarter steps. Its exps take 17 distinct values, each rounding the same way every
    # time it is added: 128 adds in a row per vector lane (blocks of 4096) gave 12x eager's error in the sum.
    _llvm()
    compiled = jitorch.compile(lambda t: (t - t.amax()).exp().sum(), backend="llvm")
    x = np.random.default_rng(2456).integers(-8, 9, 20000).astype(np.float32) / 4
    exact = np.exp(x.astype(np.float64) - x.max()).sum()
    compiled(jitorch.tensor(x))
    got = compiled(jitorch.tensor(x)).item()
    eager = (jitorch.tensor(x) - 2.0).exp().sum().item()
    assert abs(got - exact) <= 2 * abs(eager - exact) + 2 * np.spacing(np.float32(exact))


def test_llvm_float64_sums_of_long_rows_are_as_accurate_as_numpys() -> None:
    # fixed; found by the 10,000-program run, seed 6098: v0.sum((0, 1)) of a float64[3, 10000] had 3.5 ulp of its
    # result's magnitude of error (148 ulp on other rows: 16 accumulators adding ~1900 values each in a row); now
    # blocked, as float32 sums are
    _llvm()
    compiled = jitorch.compile(lambda t: t.sum((0, 1)), backend="llvm")
    rng = np.random.default_rng(6098)
    for _ in range(4):
        x = rng.uniform(-2, 2, (3, 10000))
        exact = math.fsum(x.ravel())
        compiled(jitorch.tensor(x))
        got = compiled(jitorch.tensor(x)).item()
        assert abs(got - exact) <= 2 * abs(x.sum() - exact) + 8 * np.spacing(abs(exact))  # numpy's, pairwise

# ----------------------------------------------------------------------------------------------------
# found by tests/test_hostile.py


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_compiled_inplace_on_overlapping_memory_raises_eagers_error(backend: str) -> None:
    # fixed; found by test_hostile.py (writing back into an expanded argument raised numpy's ValueError)
    if backend == "llvm":
        _llvm()
    compiled = jitorch.compile(lambda x: x.add_(1.0), backend=backend)
    compiled(jitorch.ones(4, 3))
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        compiled(jitorch.ones(3).expand(4, 3))


@pytest.mark.parametrize("case", ["expand", "repeat"])
def test_impossible_sizes_raise_runtime_error(case: str) -> None:
    # fixed; found by test_hostile.py (sizes past int64 reached numpy, whose ValueError escaped: 'array is too
    # big', 'iterator is too large')
    with pytest.raises((RuntimeError, MemoryError)):
        if case == "expand":
            jitorch.ones(3).expand(2 ** 62, 2 ** 62, 3)
        else:
            jitorch.ones(3).repeat(2 ** 30, 2 ** 30)


def test_eye_refuses_an_impossible_size_before_allocating() -> None:
    # fixed; found by test_hostile.py (eye(2**30) built two 8 GiB aranges and was killed by the OOM killer)
    import subprocess
    import sys
    # capped address space: without the fix the process would otherwise fill the machine's memory
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
            "import jitorch\n"
            "try:\n    jitorch.eye(2 ** 30)\nexcept Exception as error:\n    print(type(error).__name__, error)\n")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.stdout.startswith("RuntimeError cannot allocate"), process.stdout + process.stderr[-500:]


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_compiled_cross_entropy_raises_eagers_error_for_a_bad_target(backend: str) -> None:
    # fixed; found by test_hostile.py (nn.functional._class_nll rewords gather's IndexError in Python, which the
    # graph cannot replay: compiled calls raised gather's message)
    import jitorch.nn.functional as F  # noqa: N812
    if backend == "llvm":
        _llvm()
    compiled = jitorch.compile(F.cross_entropy, backend=backend)
    logits = jitorch.randn(3, 4)
    compiled(logits, jitorch.tensor([0, 1, 3]))
    with pytest.raises(IndexError) as eager:
        F.cross_entropy(logits, jitorch.tensor([0, 1, 4]))
    with pytest.raises(IndexError) as got:
        compiled(logits, jitorch.tensor([0, 1, 4]))
    assert (type(got.value), str(got.value)) == (type(eager.value), str(eager.value))


def test_llvm_float_to_int_cast_of_nan_and_inf_matches_eager() -> None:
    # fixed; found by test_hostile.py (the casts saturated where eager gives INT_MIN)
    _llvm()
    x = jitorch.tensor(np.array([np.nan, np.inf, -np.inf, 3e9, 1.5], dtype=np.float32))
    compiled = jitorch.compile(lambda t: (t.int(), t.long()), backend="llvm")
    compiled(x)
    for got, want in zip(compiled(x), (x.int(), x.long())):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_casting_nan_to_int_is_silent() -> None:
    # fixed; found by test_hostile.py (casting NaN/Inf to an integer dtype emitted numpy's RuntimeWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jitorch.tensor([float("nan"), float("inf")]).int()


def test_index_select_rejects_negative_indices() -> None:
    # fixed; found by test_hostile.py (index_select reused advanced indexing, which accepts negative indices)
    with pytest.raises(IndexError):
        jitorch.randn(3, 4).index_select(0, jitorch.tensor([0, -1]))


# ----------------------------------------------------------------------------------------------------
# found by run_fuzz.py (2000 programs from seed 0)


@pytest.mark.parametrize("write", ["setitem", "ellipsis", "copy_"])
def test_eager_gradient_flows_through_a_whole_tensor_write(write: str) -> None:
    # fixed; found by fuzz seeds 1804 and 1892 (v1 = v0.clone(); v1[..., :] = x3 with x3 a leaf gave v1
    # requires_grad=True but no grad_fn, so x3 got no gradient in eager)
    a = jitorch.tensor([1.0, 2.0, 3.0])
    b = jitorch.tensor([4.0, 5.0, 6.0], requires_grad=True)
    y = a.clone()
    if write == "setitem":
        y[:] = b
    elif write == "ellipsis":
        y[...] = b
    else:
        y.copy_(b)
    (y * jitorch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert b.grad is not None
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0, 3.0])


def test_cumsum_of_a_long_vector_needs_linear_memory() -> None:
    # fixed; found by fuzz seed 1287 (jitorch.cumsum over 30,000 elements multiplied by an n x n triangular
    # matrix, 7.2 GB, and the worker was OOM-killed)
    import subprocess
    import sys
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "import jitorch\n"
            "x = jitorch.ones(30000, dtype=jitorch.float64)\n"
            "print(jitorch.cumsum(x, 0)[-1].item())\n")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.stdout.strip() == "30000.0", process.stderr[-500:]


def test_llvm_matmul_of_a_transposed_operand_is_as_accurate_as_eager() -> None:
    # fixed (kernels get a contiguous twin of a strided input; the matmul gets it as passed); found by fuzz seed
    # 3014: jitorch.matmul(v, m) with v float32[20000] requiring grad and m float32[20000, 3] arriving
    # as a .mT view (22x eager's error there); the forward graph also saves permute(m) for backward, and m is
    # then made contiguous. Averaged over a few longer products, the gap is steady at about 6x.
    _llvm()
    rng = np.random.default_rng(1)
    compiled = jitorch.compile(lambda a, b: jitorch.matmul(a, b), backend="llvm")
    errors = []
    for _ in range(4):
        v = rng.uniform(-2, 0, 100_000).astype(np.float32)
        m = rng.uniform(-1, 1, (100_000, 3)).astype(np.float32)
        exact = v.astype(np.float64) @ m.astype(np.float64)
        vector, matrix = jitorch.tensor(v, requires_grad=True), jitorch.tensor(np.ascontiguousarray(m.T)).mT
        compiled(vector, matrix)
        got = compiled(vector, matrix).detach().numpy()
        eager = jitorch.matmul(vector, matrix).detach().numpy()
        errors.append((np.abs(got - exact).mean(), np.abs(eager - exact).mean()))
    got_error, eager_error = np.mean(errors, axis=0)
    assert got_error <= 4 * eager_error



# ----------------------------------------------------------------------------------------------------
# found by the 10,000-program run (python tests/fuzz/run_fuzz.py --count 10000)


def _survives(code: str) -> None:
    """Run `code` in a fresh interpreter: it must finish within two minutes and print "survived"."""
    import subprocess
    import sys
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0 and process.stdout.strip() == "survived", process.stderr[-2000:]


def test_a_view_stored_for_an_indexed_read_and_returned_as_a_view_does_not_crash() -> None:
    # fixed; found by fuzz seed 8927 (the worker died of SIGSEGV): a.t() is copied whole for the advanced index,
    # and a[:1] returned as a view of it made the same value a numpy view too. Two steps then produced one
    # value, the copy kernel's output slot stayed None, and the kernel wrote through id(None). In a subprocess:
    # the bug kills the process.
    _llvm()
    code = ("import jitorch, numpy as np\n"
            "def f(x, i, j):\n"
            "    a = (x * 2.0).t()\n"
            "    return a[i, j], a[:1]\n"
            "c = jitorch.compile(f, backend='llvm')\n"
            "x, i, j = jitorch.randn(4, 2), jitorch.tensor([[0, 1], [1, 0]]), jitorch.tensor([[0, 3], [2, 1]])\n"
            "c(x, i, j)\n"
            "for got, want in zip(c(x, i, j), f(x, i, j)):\n"
            "    np.testing.assert_array_equal(got.numpy(), want.numpy())\n"
            "print('survived')\n")
    _survives(code)



def test_llvm_optimizes_the_backward_of_amax_over_inner_dims_in_finite_time() -> None:
    # fixed; found by fuzz seed 8534 (the worker hung for 300 s): the backward of x.relu().amax((1, 3)) over a
    # float64[8, 3, 5, 1] has a kernel summing bool-to-float casts per column, on which LLVM 22's SLP vectorizer
    # never returned. jit.optimize now runs without SLP. In a subprocess with a timeout: the bug hangs forever.
    _llvm()
    code = ("import jitorch\n"
            "f = jitorch.compile(lambda x: x.relu().amax((1, 3)), backend='llvm')\n"
            "x = jitorch.randn(8, 3, 5, 1, dtype=jitorch.float64, requires_grad=True)\n"
            "f(x).sum().backward()\n"
            "f(x).sum().backward()\n"
            "print('survived')\n")
    _survives(code)


def test_llvm_sum_over_dims_that_do_not_merge_is_as_accurate_as_eager() -> None:
    # fixed; found by fuzz seed 40384: the mean of a float32[17, 1000] under a mask indexed by the inner dim runs
    # as two loops (they cannot merge), each short enough to sum without blocks, so one float32 accumulator added
    # all 17000 values: 20 ulp off, eager 0.1. Float sums now block by the count of all the stage's loops. The
    # masked -1.27 (not a float32) rounds the same way on every add: the error of a long run piles up.
    _llvm()
    rng = np.random.default_rng(40384)
    x = rng.uniform(-2.0, 2.0, (17, 1000)).astype(np.float32)
    mask = rng.random(1000) < 0.5

    def f(x: jitorch.Tensor, mask: jitorch.Tensor) -> jitorch.Tensor:
        return jitorch.where(mask, -1.27, x).mean((-2, 1))

    compiled = jitorch.compile(f, backend="llvm")
    compiled(jitorch.tensor(x), jitorch.tensor(mask))  # traces (and returns eager's result)
    got = compiled(jitorch.tensor(x), jitorch.tensor(mask)).item()
    eager = f(jitorch.tensor(x), jitorch.tensor(mask)).item()
    exact = np.where(mask, np.float32(-1.27), x.astype(np.float64)).mean()
    ulp = abs(float(np.spacing(np.float32(exact))))
    assert abs(got - exact) <= 2 * abs(eager - exact) + 2 * ulp, (got - exact, eager - exact)


def test_llvm_sum_of_a_short_row_is_as_accurate_as_eager() -> None:
    # fixed; found by fuzz seed 50802: a float32[17, 3] of 48 x 0.4 and three others summed to within 5 ulp,
    # eager 0.1: LLVM unrolled the 51-value loop into adds one after another, each rounding the same way.
    # Float32 sums of at most 128 values now add in float64.
    _llvm()
    values = np.full((17, 3), 0.4, np.float32)
    values[-1] = [0.40782177, -0.61181253, -0.184299]
    compiled = jitorch.compile(lambda v: jitorch.sum(v, (0, -1)), backend="llvm")
    compiled(jitorch.tensor(values))  # traces
    got = compiled(jitorch.tensor(values)).item()
    exact = values.astype(np.float64).sum()
    ulp = abs(float(np.spacing(np.float32(exact))))
    assert abs(got - exact) <= 2 * abs(float(values.sum()) - exact) + ulp, (got - exact, values.sum() - exact)
