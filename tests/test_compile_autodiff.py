"""Graph autodiff against eager autograd: gradients of compiled calls for every OpInfo entry (covering every
differentiable primitive), training an MLP compiled and eager, several and non-differentiable outputs,
retain_graph, double backward; and, op by op, the interpreter backend against eager."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from compile_helpers import BACKEND, assert_same, leaves_of
from opinfo import OPINFOS, OpInfo

import jitorch
from jitorch.ir.ops import OPS, RANDOM

GRAD_INFOS = [info for info in OPINFOS if info.differentiable and "float64" in info.dtypes]


@pytest.fixture(autouse=True)
def seeded() -> None:
    jitorch.manual_seed(0)


def compiled(fn: Any, **options: Any) -> Any:
    return jitorch.compile(fn, backend=BACKEND, **options)


def fresh_leaves(leaves: list[jitorch.Tensor]) -> list[jitorch.Tensor]:
    return [jitorch.tensor(leaf.detach().numpy().copy(), requires_grad=True) for leaf in leaves]


def weighted_sum(out: Any, seed: int) -> jitorch.Tensor | None:
    """sum_i <out_i, c_i> over the outputs that require grad, with fixed random cotangents c_i."""
    rng = np.random.default_rng(seed)
    total = None
    for leaf in leaves_of(out):
        if isinstance(leaf, jitorch.Tensor) and leaf.requires_grad:
            cotangent = jitorch.tensor(rng.standard_normal(tuple(leaf.shape))).to(leaf.dtype)
            term = (leaf * cotangent).sum()
            total = term if total is None else total + term
    return total


def gradients(fn: Any, leaves: list[jitorch.Tensor]) -> tuple[Any, list[np.ndarray | None]]:
    out = fn(*leaves)
    total = weighted_sum(out, seed=0)
    if total is not None:
        total.backward()
    return out, [None if leaf.grad is None else leaf.grad.numpy() for leaf in leaves]


# ----------------------------------------------------------------------------------------------------
# every differentiable op


@pytest.mark.parametrize("info", GRAD_INFOS, ids=[info.name for info in GRAD_INFOS])
def test_compiled_gradients_match_eager_autograd(info: OpInfo) -> None:
    for sample in info.sample_list("float64"):
        where = f"{info.name}({sample.describe()})"
        leaves, fn = sample.grad_function(info.op)
        if not leaves:
            continue
        fast = compiled(fn)
        fast(*fresh_leaves(leaves))  # records; later calls, on other leaves, run the compiled graphs
        got, got_grads = gradients(fast, fresh_leaves(leaves))
        want, want_grads = gradients(fn, fresh_leaves(leaves))
        assert_same(got, want, rtol=1e-9, atol=1e-12, where=where)
        if fast.stats["fallbacks"]:  # eager by design: check it is for a documented reason
            assert all("reads a tensor's value" in reason for reason in fast.fallback_reasons), where
        else:
            assert fast.stats["hits"] == 1, where
            backward = [leaf.grad_fn for leaf in leaves_of(got)
                        if isinstance(leaf, jitorch.Tensor) and leaf.grad_fn is not None]
            assert all(node.name() == "CompiledFunctionBackward" for node in backward), where
        for i, (g, w) in enumerate(zip(got_grads, want_grads)):
            if w is None:
                assert g is None or not np.any(g), f"{where}: input {i} got a gradient eager does not give"
            else:
                assert g is not None, f"{where}: input {i} got no gradient"
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12,
                                           err_msg=f"{where}: gradient of input {i}")


def test_every_differentiable_primitive_is_exercised() -> None:
    """The entries above dispatch every registry op with a VJP (test_ops.py checks the claims)."""
    claimed = {name for info in GRAD_INFOS for name in info.primitives}
    missing = [name for name, op in OPS.items() if op.differentiable and name not in claimed]
    assert not missing, f"no differentiable float64 OpInfo entry dispatches {missing}"


# ----------------------------------------------------------------------------------------------------
# whole functions


def init_mlp(seed: int) -> list[jitorch.Tensor]:
    rng = np.random.default_rng(seed)
    shapes = [(6, 16), (16,), (16, 4), (4,)]
    return [jitorch.tensor((rng.standard_normal(s) * 0.5).astype(np.float32), requires_grad=True)
            for s in shapes]


def mlp_loss(x: jitorch.Tensor, labels: jitorch.Tensor, w1: jitorch.Tensor, b1: jitorch.Tensor,
             w2: jitorch.Tensor, b2: jitorch.Tensor) -> jitorch.Tensor:
    logits = (x @ w1 + b1).relu() @ w2 + b2
    return -logits.log_softmax(1).gather(1, labels.unsqueeze(1)).mean()


def test_mlp_with_cross_entropy_trains_identically_compiled_and_eager() -> None:
    rng = np.random.default_rng(0)
    x = jitorch.tensor(rng.standard_normal((32, 6)).astype(np.float32))
    labels = jitorch.tensor(rng.integers(0, 4, 32))
    fast = compiled(mlp_loss)
    runs = {}
    for name, loss_fn in (("compiled", fast), ("eager", mlp_loss)):
        params = init_mlp(1)
        losses = []
        for _ in range(5):
            loss = loss_fn(x, labels, *params)
            loss.backward()
            losses.append(loss.item())
            with jitorch.no_grad():
                for p in params:
                    p.sub_(p.grad * 0.5)
                    p.grad = None
        runs[name] = (losses, [p.detach().numpy() for p in params])
    np.testing.assert_allclose(runs["compiled"][0], runs["eager"][0], rtol=1e-5, atol=1e-6)
    assert runs["eager"][0][-1] < runs["eager"][0][0] * 0.9  # it does learn
    for got, want in zip(runs["compiled"][1], runs["eager"][1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert fast.stats == {"calls": 5, "hits": 4, "compiles": 1, "fallbacks": 0, "recompiles": 0}


def several(x: jitorch.Tensor, w: jitorch.Tensor) -> tuple:
    h = x @ w
    return h.tanh(), {"total": h.exp().sum(), "mask": h > 0, "best": h.argmax(1), "fixed": h.detach() * 2}, 7


def test_several_outputs_some_without_gradients() -> None:
    x, w = jitorch.randn(3, 4), jitorch.randn(4, 2, requires_grad=True)
    fast = compiled(several)
    fast(x, w)
    got, want = fast(x, w), several(x, w)
    assert_same(got, want)
    assert [leaf.requires_grad for leaf in leaves_of(got)[:5]] == [True, True, False, False, False]
    for combine in (lambda out: out[0].sum() * 2 + out[1]["total"], lambda out: out[1]["total"],
                    lambda out: (out[0] * out[0]).sum()):
        w.grad = None
        combine(fast(x, w)).backward()
        compiled_grad = w.grad.numpy().copy()
        w.grad = None
        combine(several(x, w)).backward()
        np.testing.assert_allclose(compiled_grad, w.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_gradients_reach_this_calls_inputs_and_flow_through_eager_ops_around() -> None:
    def f(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return (x * w).sin()

    fast = compiled(f)
    w = jitorch.randn(3, requires_grad=True)
    for _ in range(3):
        x = jitorch.randn(3, requires_grad=True)
        twin = jitorch.tensor(x.detach().numpy().copy(), requires_grad=True)
        (fast(x.exp(), w) * 3.0).sum().backward()  # eager op before and after the compiled call
        w_grad = w.grad.numpy().copy()
        w.grad = None
        (f(twin.exp(), w) * 3.0).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), twin.grad.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(w_grad, w.grad.numpy(), rtol=1e-6, atol=1e-6)
        w.grad = None
    assert fast.stats["hits"] == 2


def test_second_backward_needs_retain_graph() -> None:
    fast = compiled(lambda x: (x.exp() * x).sum())
    x = jitorch.randn(4, requires_grad=True)
    fast(x)
    out = fast(x)
    out.backward(retain_graph=True)
    out.backward()
    expected = 2 * (x.exp() * (x + 1.0)).detach().numpy()  # two backward passes accumulate
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-6)
    out = fast(x)
    out.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()


def test_double_backward_through_a_compiled_function_raises_a_clear_error() -> None:
    fast = compiled(lambda x: (x ** 3).sum())
    x = jitorch.randn(3, requires_grad=True)
    fast(x)
    out = fast(x)
    with pytest.raises(RuntimeError, match="double backward .* not supported; compile with backend='eager'"):
        jitorch.autograd.grad(out, x, create_graph=True)


# ----------------------------------------------------------------------------------------------------
# interpreter against eager, op by op


def _dtypes(info: OpInfo) -> list[str]:
    """One floating and one other dtype per entry: every op's graph runs, within the time budget."""
    floating = [d for d in info.dtypes if d.startswith("float")][:1]
    other = [d for d in info.dtypes if not d.startswith("float")][:1]
    return floating + other


INTERPRETER_CASES = [pytest.param(info, dtype, id=f"{info.name}-{dtype}") for info in OPINFOS
                     for dtype in _dtypes(info)]


def _is_random(info: OpInfo) -> bool:
    return any(OPS[name].kind == RANDOM for name in info.primitives)


@pytest.mark.parametrize("info,dtype", INTERPRETER_CASES)
def test_interpreter_matches_eager(info: OpInfo, dtype: str) -> None:
    for sample in info.sample_list(dtype):
        where = f"{info.name}({sample.describe()})"
        fast = compiled(lambda *args, **kwargs: info.op(*args, **kwargs))
        results = []
        for run in (fast, fast, info.op):  # record, run the graph, then eager on the same inputs
            args, kwargs = sample.tensor_args()  # fresh each run: some ops write into their inputs
            if _is_random(info):
                jitorch.manual_seed(0)
            results.append((run(*args, **kwargs), _inputs(args, kwargs)))
        (got, got_inputs), (want, want_inputs) = results[1], results[2]
        assert_same(got, want, atol=info.atol + 1e-6, where=where)
        assert_same(got_inputs, want_inputs, where=f"{where} inputs after the call")
        if not fast.stats["fallbacks"]:
            assert fast.stats["hits"] == 1, where


def _inputs(args: tuple, kwargs: dict) -> list[Any]:
    return [leaf for leaf in leaves_of((args, kwargs)) if isinstance(leaf, jitorch.Tensor)]


def test_in_place_write_to_what_backward_needs_raises_as_in_eager() -> None:
    def f(x: jitorch.Tensor) -> jitorch.Tensor:
        return x.exp()  # backward multiplies by the output

    fast = compiled(f)
    messages = []
    for run in (fast, fast, f):
        x = jitorch.randn(4, requires_grad=True)
        y = run(x)
        with jitorch.no_grad():
            y.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as info:
            y.sum().backward()
        messages.append(str(info.value))
    assert "needed by CompiledFunctionBackward (f)" in messages[1]
    def g(x: jitorch.Tensor, w: jitorch.Tensor) -> jitorch.Tensor:
        return (x * w).sum()  # backward needs x

    weighted = compiled(g)
    for _ in range(2):
        x, w = jitorch.randn(4), jitorch.randn(4, requires_grad=True)
        out = weighted(x, w)
        x.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.backward()
    x = jitorch.randn(4, requires_grad=True)
    y = fast(x) * 1.0  # a copy may be changed freely
    with jitorch.no_grad():
        y.add_(1.0)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x.exp().detach().numpy(), rtol=1e-6, atol=1e-6)
