"""compile(): what a trace records, the forms of compile(), guards and the cache, eager fallback with
reasons, check mode, errors, reset() and explain(). Every compiled result is compared with eager."""
from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from compile_helpers import BACKEND, MLP, Buffer, Linear, Module, Parameter, assert_same, tensor

import jitorch
import jitorch.compiler
from jitorch.frontend import backends
from jitorch.frontend.compile import CompileError


@pytest.fixture(autouse=True)
def seeded() -> None:
    jitorch.manual_seed(0)


def compiled(fn: Any, **options: Any) -> Any:
    return jitorch.compile(fn, backend=BACKEND, **options)


def line_of(fn: Callable, offset: int = 1) -> str:
    """`test_compile.py:N` for the line `offset` lines below `fn`'s `def`."""
    return f"test_compile.py:{fn.__code__.co_firstlineno + offset}"


def traced_graph(fn: Any, *args: Any) -> Any:
    return jitorch.explain(fn, *args).graphs[0]["traced"]


def plus_one_backend(graph: Any, timings: dict[str, float]) -> Any:
    """A deliberately broken backend: the interpreter's results plus one."""
    run = backends.interpreter(graph, timings)
    return lambda inputs: [out + 1 for out in run(inputs)]


@pytest.fixture
def broken_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(backends.BACKENDS, "plus_one", plus_one_backend)
    return "plus_one"


# ----------------------------------------------------------------------------------------------------
# recording


def test_recorded_graph_prints_types_attributes_module_paths_and_source_lines() -> None:
    jitorch.manual_seed(0)
    fast = compiled(MLP())
    x = jitorch.randn(2, 4)
    line = Linear.forward.__code__.co_firstlineno
    relu = MLP.forward.__code__.co_firstlineno + 1
    expected = f"""\
graph MLP(%x: f32[2,4], %l1.weight: f32[8,4], %l1.bias: f32[8], %l2.weight: f32[3,8], %l2.bias: f32[3]) -> f32[2,3] {{
  %0  : f32[4,8] = permute(%l1.weight, perm=(1,0))  # l1  compile_helpers.py:{line + 1}
  %1  : f32[2,8] = matmul(%x, %0)                   # l1  compile_helpers.py:{line + 1}
  %2  : f32[2,8] = mul(%1, 1.0:f32)                 # l1  compile_helpers.py:{line + 1}
  %3  : f32[1,8] = reshape(%l1.bias, shape=(1,8))   # l1  compile_helpers.py:{line + 2}
  %4  : f32[2,8] = expand(%3, shape=(2,8))          # l1  compile_helpers.py:{line + 2}
  %5  : f32[2,8] = add(%2, %4)                      # l1  compile_helpers.py:{line + 2}
  %6  : f32[2,8] = relu(%5)                         # -   compile_helpers.py:{relu}
  %7  : f32[8,3] = permute(%l2.weight, perm=(1,0))  # l2  compile_helpers.py:{line + 1}
  %8  : f32[2,3] = matmul(%6, %7)                   # l2  compile_helpers.py:{line + 1}
  %9  : f32[2,3] = mul(%8, 1.0:f32)                 # l2  compile_helpers.py:{line + 1}
  %10 : f32[1,3] = reshape(%l2.bias, shape=(1,3))   # l2  compile_helpers.py:{line + 2}
  %11 : f32[2,3] = expand(%10, shape=(2,3))         # l2  compile_helpers.py:{line + 2}
  %12 : f32[2,3] = add(%9, %11)                     # l2  compile_helpers.py:{line + 2}
  return %12
}}"""
    with jitorch.no_grad():
        first = str(traced_graph(fast, x))
        second = str(traced_graph(fast, x))
    assert first == expected
    assert second == first  # byte-stable (across processes: test_cli.py)


def test_module_called_from_a_function_is_scoped_under_its_class_name() -> None:
    jitorch.manual_seed(0)
    model = MLP()

    def loss(x: jitorch.Tensor) -> jitorch.Tensor:
        return model(x).sum()

    graph = traced_graph(compiled(loss), jitorch.randn(2, 4))
    assert [v.name for v in graph.inputs] == ["x", "mlp.l1.weight", "mlp.l1.bias", "mlp.l2.weight",
                                              "mlp.l2.bias"]
    assert [node.scope for node in graph.nodes if node.op == "matmul"] == ["mlp.l1", "mlp.l2"]
    assert graph.nodes[-1].location == line_of(loss)


SHIFT = jitorch.zeros(3)  # a global tensor the function below reads: lifted into the graph


def shifted(x: jitorch.Tensor) -> jitorch.Tensor:
    return (x + SHIFT).exp()


def test_global_tensor_becomes_an_input_read_at_call_time() -> None:
    fast = compiled(shifted)
    x = jitorch.randn(2, 3)
    graph = traced_graph(fast, x)
    assert [str(v.type) for v in graph.inputs] == ["f32[2,3]", "f32[3]"]
    assert_same(fast(x), shifted(x))
    for _ in range(3):
        SHIFT.add_(0.5)  # in place: no recompile, the next call reads the new values
        assert_same(fast(x), shifted(x))
    assert fast.stats == {"calls": 4, "hits": 3, "compiles": 1, "fallbacks": 0, "recompiles": 0}
    SHIFT.zero_()


def test_closure_tensor_becomes_an_input_read_at_call_time() -> None:
    weight = jitorch.randn(3, 2)

    def project(x: jitorch.Tensor) -> jitorch.Tensor:
        return x @ weight

    fast = compiled(project)
    x = jitorch.randn(4, 3)
    fast(x)
    with jitorch.no_grad():
        weight.mul_(-2.0)
    assert_same(fast(x), project(x))
    assert fast.stats["compiles"] == 1 and fast.stats["hits"] == 1


def test_symbolic_tensors_record_without_computing() -> None:
    def f(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return (x @ w).relu().sum(1)

    fast = compiled(f)
    # computing these would take minutes and gigabytes: recording only needs shapes
    x, w = jitorch.empty(20000, 30000, device="meta"), jitorch.empty(30000, 20000, device="meta")
    for _ in range(2):  # the trace, then a cache hit: both propagate shapes only
        out = fast(x, w)
        assert out.is_symbolic and out.device.type == "meta"
        assert tuple(out.shape) == (20000,) and out.dtype is jitorch.float32
    graph = traced_graph(fast, x, w)
    assert [node.op for node in graph.nodes] == ["matmul", "relu", "sum", "reshape"]
    assert str(graph.nodes[0].output.type) == "f32[20000,20000]"
    real = (jitorch.randn(2, 3), jitorch.randn(3, 4))  # real tensors are another guard key
    fast(*real)
    assert_same(fast(*real), f(*real))


# ----------------------------------------------------------------------------------------------------
# the forms of compile()


def double_relu(x: jitorch.Tensor) -> jitorch.Tensor:
    return (x * 2.0).relu() - 1.0


def test_compile_as_bare_decorator_with_options_and_as_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITORCH_BACKEND", BACKEND)

    @jitorch.compile
    def bare(x: jitorch.Tensor) -> jitorch.Tensor:
        return double_relu(x)

    @jitorch.compile(backend=BACKEND, recompile_limit=4)
    def configured(x: jitorch.Tensor) -> jitorch.Tensor:
        return double_relu(x)

    called = jitorch.compile(double_relu, backend=BACKEND)
    x = jitorch.randn(3, 4)
    for fast in (bare, configured, called):
        assert fast.backend == BACKEND
        for _ in range(2):
            assert_same(fast(x), double_relu(x))
        assert (fast.stats["compiles"], fast.stats["hits"]) == (1, 1)
    assert configured.recompile_limit == 4
    assert called.__name__ == "double_relu" and called.__wrapped__ is double_relu


def test_compile_module_compiles_its_forward_and_forwards_attributes() -> None:
    jitorch.manual_seed(0)
    model = MLP()
    fast = compiled(model)
    x = jitorch.randn(5, 4)
    for _ in range(2):
        assert_same(fast(x), model(x))
    assert fast.stats["compiles"] == 1 and fast.stats["hits"] == 1
    assert fast.l1 is model.l1 and fast.training is True
    fast.eval()
    assert model.training is False


class Scaled(Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = Parameter(jitorch.randn(size))
        self.offset = 0.5

    @jitorch.compile(backend=BACKEND)
    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        y = x * self.weight + self.offset
        return y.tanh() if self.training else y


def test_compiled_method_is_compiled_per_instance() -> None:
    jitorch.manual_seed(0)
    first, second = Scaled(3), Scaled(3)
    x = jitorch.randn(2, 3)
    for _ in range(2):
        for model in (first, second):
            assert_same(model(x), Scaled.forward.fn(model, x))
    assert first.forward is not second.forward
    expected = {"calls": 2, "hits": 1, "compiles": 1, "fallbacks": 0, "recompiles": 0}
    assert first.forward.stats == second.forward.stats == expected
    # the root module's own flags and attributes are guarded too, though its __call__ began before the trace
    first.eval()
    first.offset = -1.0
    assert_same(first(x), Scaled.forward.fn(first, x))
    assert first.forward.stats["compiles"] == 2
    assert_same(second(x), Scaled.forward.fn(second, x))


def test_first_call_returns_the_eager_result_and_later_calls_run_the_graph(broken_backend: str) -> None:
    x = jitorch.randn(3, 4, requires_grad=True)
    fast = jitorch.compile(double_relu, backend=broken_backend)
    first = fast(x)
    assert_same(first, double_relu(x))
    assert first.grad_fn.name() != "CompiledFunctionBackward"  # eager autograd recorded this one
    second = fast(x)  # a cache hit: the (broken) backend's result
    np.testing.assert_allclose(second.detach().numpy(), double_relu(x).detach().numpy() + 1, rtol=1e-6,
                               atol=1e-6)
    assert second.grad_fn.name() == "CompiledFunctionBackward"
    assert fast.stats == {"calls": 2, "hits": 1, "compiles": 1, "fallbacks": 0, "recompiles": 0}


def test_new_shape_recompiles_and_old_shapes_still_hit() -> None:
    fast = compiled(double_relu)
    small, big = jitorch.randn(2, 3), jitorch.randn(4, 3)
    for x in (small, small, big, big, small):
        assert_same(fast(x), double_relu(x))
    assert fast.stats == {"calls": 5, "hits": 3, "compiles": 2, "fallbacks": 0, "recompiles": 1}
    assert fast.recompile_reasons == ["argument 'x' dim 0 changed 2 → 4"]


def test_recompile_limit_warns_once_naming_the_changing_guard_then_runs_eagerly() -> None:
    fast = compiled(double_relu, recompile_limit=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rows in (7, 8, 9, 10, 9, 7):
            x = jitorch.randn(rows, 3)
            assert_same(fast(x), double_relu(x))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message
    assert "recompile limit (2)" in message and "argument 'x' dim 0 changed 8 → 9" in message
    assert caught[0].filename == __file__  # points at the caller
    assert fast.stats == {"calls": 6, "hits": 1, "compiles": 2, "fallbacks": 3, "recompiles": 1}


# ----------------------------------------------------------------------------------------------------
# eager fallback


def reads_bool(x: jitorch.Tensor) -> jitorch.Tensor:
    if x.sum() > 0:
        return x * 2.0
    return x * 3.0


def reads_item(x: jitorch.Tensor) -> jitorch.Tensor:
    return x * x.sum().item()


def reads_tolist(x: jitorch.Tensor) -> jitorch.Tensor:
    return x * x.tolist()[0][0]


def reads_numpy(x: jitorch.Tensor) -> jitorch.Tensor:
    return x * float(x.numpy().max())


def reads_int(x: jitorch.Tensor) -> jitorch.Tensor:
    return x * int(x.sum())


def shuffles(x: jitorch.Tensor) -> jitorch.Tensor:
    return x[jitorch.randperm(x.shape[0])] * 2.0


FALLBACKS = [(reads_bool, "reads a tensor's value"), (reads_item, "item() reads a tensor's value"),
             (reads_tolist, "tolist() reads a tensor's value"),
             (reads_numpy, "numpy() reads a tensor's value"), (reads_int, "reads a tensor's value"),
             (shuffles, "randperm has no compiled form")]


@pytest.mark.parametrize("fn,why", FALLBACKS, ids=[fn.__name__ for fn, _ in FALLBACKS])
def test_untraceable_function_falls_back_to_eager_with_reason_and_line(fn: Callable, why: str) -> None:
    fast = compiled(fn)
    for sign in (1.0, -1.0, 2.0):  # the values change what the function does: every call must follow
        x = tensor(np.arange(1.0, 7.0, dtype=np.float32).reshape(3, 2) * sign)
        jitorch.manual_seed(1)
        got = fast(x)
        jitorch.manual_seed(1)
        assert_same(got, fn(x))
    assert fast.stats == {"calls": 3, "hits": 0, "compiles": 0, "fallbacks": 1, "recompiles": 0}
    (reason,) = fast.fallback_reasons
    assert why in reason and f"({line_of(fn)})" in reason
    assert f"fallback: {reason}" in str(jitorch.explain(fast, x))
    strict = compiled(fn, fullgraph=True)
    with pytest.raises(CompileError, match=f"cannot be compiled: .*{re.escape(why)}"):
        strict(x)


def test_unhashable_argument_runs_eagerly_with_reason() -> None:
    def scale(x: jitorch.Tensor, factors: Any) -> jitorch.Tensor:
        return x * float(factors[0])

    fast = compiled(scale)
    x = jitorch.randn(3)
    for factor in (2.0, 3.0):
        assert_same(fast(x, np.array([factor])), scale(x, np.array([factor])))
    assert fast.fallback_reasons == ["argument 'factors' is of an unhashable type and cannot be guarded"]


# ----------------------------------------------------------------------------------------------------
# check mode, backends, reset, explain


def test_check_mode_compares_with_eager_and_catches_a_broken_backend(broken_backend: str) -> None:
    x = jitorch.randn(4, 3)
    good = compiled(double_relu, check=True)
    for _ in range(3):
        assert_same(good(x), double_relu(x))
    assert good.stats["hits"] == 2
    bad = jitorch.compile(double_relu, backend=broken_backend, check=True)
    bad(x)  # the recording call is eager
    with pytest.raises(CompileError, match="double_relu output differs from eager"):
        bad(x)


def test_jitorch_check_environment_variable_turns_check_mode_on(broken_backend: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITORCH_CHECK", "1")
    bad = jitorch.compile(double_relu, backend=broken_backend)
    x = jitorch.randn(4, 3)
    bad(x)
    with pytest.raises(CompileError, match="differs from eager"):
        bad(x)


def test_check_mode_compares_in_place_writes(broken_backend: str) -> None:
    def accumulate(total: jitorch.Tensor, x: jitorch.Tensor) -> jitorch.Tensor:
        total.add_(x)
        return x.sum()

    bad = jitorch.compile(accumulate, backend=broken_backend, check=True)
    total, x = jitorch.zeros(3), jitorch.ones(3)
    bad(total, x)
    with pytest.raises(CompileError, match="differs from eager"):
        bad(total, x)


def test_eager_backend_runs_the_function_through_the_same_entry_point() -> None:
    calls = []

    def traced(x: jitorch.Tensor) -> jitorch.Tensor:
        calls.append(1)  # a Python side effect: with a compiled graph it happens on the recording call only
        return x.exp() if x.sum() > 0 else x

    x = jitorch.ones(3, requires_grad=True)
    eager = jitorch.compile(traced, backend="eager")
    for _ in range(3):
        assert_same(eager(x), traced(x))
    assert eager.stats == {"calls": 3, "hits": 0, "compiles": 0, "fallbacks": 0, "recompiles": 0}
    assert len(calls) == 6

    side_effects = []

    def pure(x: jitorch.Tensor) -> jitorch.Tensor:
        side_effects.append(1)
        return x.exp()

    fast = compiled(pure)
    for _ in range(3):
        fast(x)
    assert len(side_effects) == 1


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        jitorch.compile(double_relu, backend="gpu")


def test_reset_forgets_compiled_graphs_of_functions_and_methods() -> None:
    fast = compiled(double_relu)
    model = Scaled(3)
    x = jitorch.randn(2, 3)
    for _ in range(2):
        fast(x)
        model(x)
    for round_ in (1, 2):  # reset() keeps working: compiled functions stay registered
        jitorch.compiler.reset()
        assert fast.entries() == [] and model.forward.entries() == []
        assert_same(fast(x), double_relu(x))
        assert_same(model(x), Scaled.forward.fn(model, x))
        assert fast.stats["compiles"] == 1 + round_ and model.forward.stats["compiles"] == 1 + round_


def test_explain_reports_graphs_ops_timings_and_reasons() -> None:
    def f(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return (x @ w).relu().sum()

    fast = compiled(f)
    x, w = jitorch.randn(2, 3), jitorch.randn(3, 4, requires_grad=True)
    explanation = jitorch.explain(fast, x, w)
    text = str(explanation)
    assert text.startswith("explain(f): 1 graph(s), ")
    assert "matmul x2" in text and "relu x1" in text  # the forward's matmul and the backward's
    assert "compile time: trace " in text and "autodiff " in text
    for stage in ("traced", "forward", "backward"):
        assert f"--- graph 0 {stage} ---" in text
    assert "graph f(%x: f32[2,3], %w: f32[3,4]) -> f32[] {" in text
    assert fast.stats["calls"] == 0  # explain compiles afresh, leaving the function's own cache alone
    fallback = str(jitorch.explain(compiled(reads_item), x))
    assert fallback.startswith("explain(reads_item): 0 graph(s), 0 ops")
    assert f"fallback: item() reads a tensor's value into Python ({line_of(reads_item)})" in fallback


# ----------------------------------------------------------------------------------------------------
# guards: change each guarded property, and the result is recompiled or eager, never stale


def run_both(fast: Any, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    got = fast(*args, **kwargs)
    assert_same(got, fn(*args, **kwargs))
    return got


def affine(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
    return (x @ w).tanh() + x.sum(1, keepdim=True)


def test_guard_each_dim_of_each_input() -> None:
    fast = compiled(affine, recompile_limit=16)
    shapes = [((2, 3), (3, 4)), ((5, 3), (3, 4)), ((2, 3), (3, 4)), ((2, 6), (6, 4)), ((2, 3), (3, 7))]
    for x_shape, w_shape in shapes:
        run_both(fast, affine, jitorch.randn(*x_shape), jitorch.randn(*w_shape))
    assert fast.stats["compiles"] == 4 and fast.stats["hits"] == 1
    assert fast.recompile_reasons == ["argument 'x' dim 0 changed 2 → 5",
                                      "argument 'x' dim 0 changed 5 → 2",
                                      "argument 'x' dim 1 changed 6 → 3"]


def test_guard_rank_and_dtype() -> None:
    def f(x: jitorch.Tensor) -> jitorch.Tensor:
        return x * 3 + 1

    fast = compiled(f)
    for x in (jitorch.ones(2, 3), jitorch.ones(6), jitorch.ones(2, 3, dtype=jitorch.float64),
              jitorch.ones(2, 3, dtype=jitorch.int64), jitorch.ones(2, 3, dtype=jitorch.float64)):
        run_both(fast, f, x)
    assert fast.stats["compiles"] == 4 and fast.stats["hits"] == 1
    assert fast.recompile_reasons[:2] == ["argument 'x' rank changed 2 → 1",
                                          "argument 'x' rank changed 1 → 2"]
    assert "argument 'x' dtype changed float64 → int64" in fast.recompile_reasons


def test_guard_requires_grad_and_grad_mode() -> None:
    fast = compiled(affine)
    x = jitorch.randn(2, 3)
    w = jitorch.randn(3, 4)
    w_grad = jitorch.randn(3, 4, requires_grad=True)
    run_both(fast, affine, x, w)
    out = run_both(fast, affine, x, w_grad)
    out.sum().backward()
    expected = jitorch.autograd.grad(affine(x, w_grad).sum(), w_grad)[0]
    np.testing.assert_allclose(w_grad.grad.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    with jitorch.no_grad():
        assert not run_both(fast, affine, x, w_grad).requires_grad
        with jitorch.enable_grad():
            assert run_both(fast, affine, x, w_grad).requires_grad
    assert fast.stats["compiles"] == 3 and fast.stats["hits"] == 1
    assert "argument 'w' requires_grad changed False → True" in fast.recompile_reasons
    assert "grad mode changed True → False" in fast.recompile_reasons


def test_a_repeated_call_skips_its_key_yet_every_guard_still_holds() -> None:
    """Tensor-only calls like the last hit check its guards directly (no key, no lookup); any change of
    shape, dtype, requires_grad, grad mode or argument count takes the full path and recompiles."""
    fast = compiled(affine)
    x, w = jitorch.randn(2, 3), jitorch.randn(3, 4)
    run_both(fast, affine, x, w)
    run_both(fast, affine, x, w)
    assert fast._last_hit is not None and fast.stats["hits"] == 1
    run_both(fast, affine, jitorch.randn(2, 3), jitorch.randn(3, 4))  # other tensors, same guards: a hit
    assert fast.stats["hits"] == 2 and fast.stats["compiles"] == 1
    for changed in [(jitorch.randn(5, 3), w), (x.double(), w.double()), (x, jitorch.randn(3, 4, requires_grad=True))]:
        run_both(fast, affine, *changed)
    with jitorch.no_grad():
        run_both(fast, affine, x, w)
    assert fast.stats["compiles"] == 5 and fast.stats["hits"] == 2
    with pytest.raises(TypeError):
        fast(x)
    jitorch.compiler.reset()
    assert fast._last_hit is None


def test_a_repeated_module_call_skips_its_key_yet_checks_the_module() -> None:
    """A compiled module's repeated calls take the same short path; its lifted parameters and module
    attributes are still checked on every call, so a replaced weight, a frozen one or eval() take effect."""
    model = MLP()
    fast = jitorch.compile(model, backend=BACKEND, recompile_limit=8)
    x = jitorch.randn(5, 4)
    for _ in range(2):
        assert_same(fast(x), model(x))
    assert fast._compiled._last_hit is not None and not fast._compiled._last_hit[2].direct
    assert fast.stats["hits"] == 1
    model.l1.weight = Parameter(jitorch.randn(*model.l1.weight.shape))  # same guards, other values
    assert_same(fast(x), model(x))
    assert fast.stats["hits"] == 2 and fast.stats["compiles"] == 1
    model.l1.weight.requires_grad_(False)
    assert_same(fast(x), model(x))
    model.eval()
    assert_same(fast(x), model(x))
    assert fast.stats["compiles"] == 3 and fast.stats["hits"] == 2


def test_guard_hashable_python_arguments() -> None:
    def f(x: jitorch.Tensor, value: Any, negate: bool, mode: str, power: int) -> jitorch.Tensor:
        y = (x.abs() * value) ** power
        y = y.sum() if mode == "sum" else y.mean(0)
        return -y if negate else y

    fast = compiled(f, recompile_limit=16)
    x = tensor([[1.0, -2.0], [0.5, 3.0]]).to(jitorch.float32)
    calls = [(2.0, False, "sum", 1), (3.0, False, "sum", 1), (2.0, False, "sum", 1), (2, False, "sum", 1),
             (2.0, True, "sum", 1), (2.0, False, "mean", 1), (2.0, False, "sum", 3), (-0.0, False, "mean", 1),
             (0.0, False, "mean", 1), (math.nan, False, "mean", 1), (math.nan, False, "mean", 1)]
    for args in calls:
        run_both(fast, f, x, *args)  # assert_same also compares the signs of zeros
    assert fast.stats["compiles"] == 9 and fast.stats["hits"] == 2  # the repeated 2.0 and the repeated nan
    # each names the first guard that differs from the previous compile's
    assert fast.recompile_reasons == [
        "argument 'value' changed 2.0 → 3.0", "argument 'value' changed 3.0 → 2",
        "argument 'value' changed 2 → 2.0", "argument 'negate' changed True → False",
        "argument 'mode' changed 'mean' → 'sum'",
        "argument 'value' changed 2.0 → -0.0", "argument 'value' changed -0.0 → 0.0",
        "argument 'value' changed 0.0 → nan"]


def test_guard_slice_arguments() -> None:
    def window(x: jitorch.Tensor, where: slice) -> jitorch.Tensor:
        return x[where] * 2.0

    fast = compiled(window)
    x = jitorch.randn(6, 2)
    for where in (slice(1, 3), slice(1, 3), slice(0, 5, 2)):
        run_both(fast, window, x, where)
    assert fast.stats["compiles"] == 2 and fast.stats["hits"] == 1


class Dropoutish(Module):
    """Dropout written with a `self.training` branch."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        if self.training:
            return x * (jitorch.rand_like(x) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * 1.0


def test_guard_module_training_flag_and_plain_attributes_with_dropout() -> None:
    model = Dropoutish(0.5)
    fast = compiled(model)
    x = jitorch.randn(8, 8)
    for training, p in ((True, 0.5), (True, 0.5), (False, 0.5), (True, 0.5), (True, 0.25), (False, 0.25)):
        model.train(training)
        model.p = p
        jitorch.manual_seed(7)
        got = fast(x)
        jitorch.manual_seed(7)
        assert_same(got, model(x))
    assert fast.stats["compiles"] == 4 and fast.stats["hits"] == 2
    # in training mode each call draws new randomness: the seed is a graph input, not a constant
    model.train(True)
    assert not np.array_equal(fast(x).numpy(), fast(x).numpy())


def test_guard_non_tensor_module_attributes_read_during_the_trace() -> None:
    jitorch.manual_seed(0)
    model = MLP()
    fast = compiled(model)
    x = jitorch.randn(3, 4)
    with jitorch.no_grad():
        for scale, use_bias in ((1.0, True), (2.5, True), (2.5, False), (1.0, True)):
            model.l1.scale = scale
            model.l2.use_bias = use_bias
            run_both(fast, model, x)
    assert fast.stats["compiles"] == 3 and fast.stats["hits"] == 1


class RunningMean(Module):
    """Batch-norm-like: normalizes with batch statistics in training, updating a running-mean buffer in
    place; uses the buffer in eval mode."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = Parameter(jitorch.ones(features))
        self.running_mean = Buffer(jitorch.zeros(features))
        self.momentum = 0.1

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        if self.training:
            mean = x.mean(0)
            with jitorch.no_grad():
                self.running_mean.mul_(1.0 - self.momentum).add_(mean * self.momentum)
        else:
            mean = self.running_mean
        return (x - mean) * self.weight


def test_buffer_written_in_place_is_written_back_after_each_compiled_call() -> None:
    model, twin = RunningMean(3), RunningMean(3)
    fast = compiled(model)
    jitorch.manual_seed(0)
    for step in range(6):
        x = jitorch.randn(5, 3) + step
        model.train(step != 3)
        twin.train(step != 3)
        got, want = fast(x), twin(x)
        assert_same(got, want)
        np.testing.assert_allclose(model.running_mean.numpy(), twin.running_mean.numpy(), rtol=1e-6,
                                   atol=1e-6)
    assert fast.stats["compiles"] == 2 and fast.stats["hits"] == 4


def test_argument_written_in_place_is_written_back_to_this_calls_argument() -> None:
    def accumulate(total: jitorch.Tensor, x: jitorch.Tensor) -> jitorch.Tensor:
        total.add_(x)
        total[0] = -1.0  # through a view, too
        return total * 2.0

    fast = compiled(accumulate)
    x = jitorch.randn(4)
    for start in (0.0, 1.0, 2.0):
        total, twin = jitorch.full((4,), start), jitorch.full((4,), start)
        assert_same(fast(total, x), accumulate(twin, x))
        np.testing.assert_array_equal(total.numpy(), twin.numpy())
    assert fast.stats["hits"] == 2


def test_replaced_parameters_and_data_are_read_at_call_time() -> None:
    jitorch.manual_seed(0)
    model = Linear(4, 3)
    fast = compiled(model)
    x = jitorch.randn(2, 4)
    with jitorch.no_grad():
        run_both(fast, model, x)
        model.weight = Parameter(jitorch.randn(3, 4))  # a new tensor of the same type: no recompile
        run_both(fast, model, x)
        assert fast.stats["compiles"] == 1
        model.bias = Parameter(jitorch.randn(1))  # another shape (broadcast): a recompile
        run_both(fast, model, x)
        model.weight.data = jitorch.randn(3, 4).to(jitorch.float64).to(jitorch.float32)
        run_both(fast, model, x)
        model.bias.data = jitorch.randn(3)  # `.data` of another shape: the guard sees it
        run_both(fast, model, x)
    assert fast.stats["compiles"] == 2 and fast.stats["hits"] == 3


def test_parameters_updated_in_place_are_seen_without_recompiling() -> None:
    jitorch.manual_seed(0)
    model = MLP()
    fast = compiled(model)
    x, target = jitorch.randn(6, 4), jitorch.randn(6, 3)
    for _ in range(4):
        loss = ((run_both(fast, model, x) - target) ** 2).mean()
        loss.backward()
        with jitorch.no_grad():
            for p in model.parameters():
                p.sub_(p.grad * 0.1)
                p.grad = None
    assert fast.stats["compiles"] == 1 and fast.stats["hits"] == 3


def test_non_contiguous_inputs_give_correct_results() -> None:
    fast = compiled(affine)
    base, w = jitorch.randn(3, 2), jitorch.randn(3, 4)
    run_both(fast, affine, base.T.contiguous(), w)
    run_both(fast, affine, base.T, w)  # a transposed view: same guard key, strided data
    run_both(fast, affine, jitorch.randn(4, 3)[::2], w)
    assert fast.stats["hits"] == 2


def test_the_same_tensor_passed_twice_is_guarded() -> None:
    def f(a: jitorch.Tensor, b: jitorch.Tensor) -> jitorch.Tensor:
        return a * 2.0 + b

    fast = compiled(f)
    t, a, b = jitorch.randn(3), jitorch.randn(3), jitorch.randn(3)
    for args in ((t, t), (t, t), (a, b), (a, b), (b, b)):
        run_both(fast, f, *args)
    assert fast.stats["compiles"] == 2 and fast.stats["hits"] == 3


def test_a_function_returning_its_argument_returns_it_compiled_too() -> None:
    """`x.add_(1); return x` gives back x itself, eagerly and compiled; an argument that requires grad is
    returned through the graph, which carries its gradient."""
    def bump(x: jitorch.Tensor) -> tuple[jitorch.Tensor, jitorch.Tensor]:
        x.add_(1.0)
        return x, x * 2.0

    fast = compiled(bump)
    for _ in range(3):
        t = jitorch.zeros(3)
        same, doubled = fast(t)
        assert same is t
        assert_same(t, jitorch.ones(3))
        assert_same(doubled, jitorch.full((3,), 2.0))
    assert fast.stats["hits"] == 2

    passthrough = compiled(lambda a, w: (a, a * w))
    w = jitorch.ones(3, requires_grad=True)
    total = jitorch.zeros(3)
    for _ in range(3):
        a = jitorch.randn(3)
        out, product = passthrough(a, w)
        assert out is a
        product.sum().backward()
        total = total + a
    assert_same(w.grad, total)
    for _ in range(2):  # the first call traces (eager's result); the second runs the graph
        grad_in = jitorch.randn(3, requires_grad=True)
        returned, _ = passthrough(grad_in, w)
        returned.sum().backward()
        assert returned.requires_grad
        assert_same(grad_in.grad, jitorch.ones(3))
    assert returned is not grad_in


def test_an_argument_written_in_place_and_overlapping_another_runs_eagerly() -> None:
    """A graph takes its inputs as separate memory: traced with separate tensors, a call passing one tensor
    twice, or overlapping views, where one is written in place, must not read the other's old values."""
    def f(a: jitorch.Tensor, b: jitorch.Tensor) -> jitorch.Tensor:
        a.add_(1.0)
        return a + b

    def fresh(*shape: int) -> jitorch.Tensor:
        return jitorch.arange(float(math.prod(shape))).reshape(*shape)

    fast = compiled(f)
    for _ in range(2):
        fast(fresh(4), fresh(4))
    hits = fast.stats["hits"]
    t, t_eager = fresh(4), fresh(4)
    assert_same(fast(t, t), f(t_eager, t_eager))
    assert_same(t, t_eager)
    u, u_eager = fresh(8), fresh(8)
    assert_same(fast(u[:4], u[2:6]), f(u_eager[:4], u_eager[2:6]))
    assert_same(u, u_eager)
    assert fast.stats["compiles"] == 1 and fast.stats["hits"] == hits  # those two ran eagerly
    a, b = fresh(4), fresh(4)
    assert_same(fast(a, b), f(fresh(4), fresh(4)))  # separate memory: the graph again
    assert fast._cache and all(e.exclusive == [(0, 1)] for entries in fast._cache.values() for e in entries)
    # a module's buffer written in place, with the buffer itself (as rows of a batch) passed in
    model, twin = Accumulator(), Accumulator()
    modeled = compiled(model)
    for _ in range(2):
        assert_same(modeled(jitorch.ones(2, 3)), twin(jitorch.ones(2, 3)))
    assert_same(modeled(model.total.expand(2, 3)), twin(twin.total.expand(2, 3)))
    assert_same(model.total, twin.total)


class Accumulator(Module):
    def __init__(self) -> None:
        super().__init__()
        self.total = Buffer(jitorch.zeros(3))

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        self.total.add_(x.sum(0))
        return x + self.total


# ----------------------------------------------------------------------------------------------------
# bad input raises what eager raises


def raised(fn: Callable, *args: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        fn(*args)
    return type(info.value), str(info.value)


def gather_rows(x: jitorch.Tensor, index: jitorch.Tensor) -> jitorch.Tensor:
    return x.gather(1, index) * 2.0


def matmul(a: jitorch.Tensor, b: jitorch.Tensor) -> jitorch.Tensor:
    return (a @ b).relu()


def zero_where(x: jitorch.Tensor, mask: jitorch.Tensor) -> jitorch.Tensor:
    return x.masked_fill(mask, 0.0) + 1.0


ERRORS = [
    (matmul, (jitorch.randn(2, 3), jitorch.randn(3, 4)), (jitorch.randn(2, 3), jitorch.randn(5, 4))),
    (zero_where, (jitorch.randn(3), jitorch.tensor([True, False, True])),
     (jitorch.randn(3), jitorch.ones(3))),
    (gather_rows, (jitorch.randn(3, 4), jitorch.tensor([[0], [1], [2]])),
     (jitorch.randn(3, 4), jitorch.tensor([[0.0], [1.0], [2.0]]))),
    # same shapes and dtypes as the compiled call: the graph itself must raise what eager raises
    (gather_rows, (jitorch.randn(3, 4), jitorch.tensor([[0], [1], [2]])),
     (jitorch.randn(3, 4), jitorch.tensor([[0], [9], [2]]))),
]


@pytest.mark.parametrize("fn,good,bad", ERRORS,
                         ids=["matmul-shape", "mask-dtype", "gather-dtype", "gather-range"])
def test_bad_input_raises_the_eager_exception(fn: Callable, good: tuple, bad: tuple) -> None:
    fast = compiled(fn)
    fast(*good)
    fast(*good)
    assert raised(fast, *bad) == raised(fn, *bad)
    assert_same(fast(*good), fn(*good))  # and the function still works afterwards
    assert fast.stats["compiles"] == 1
