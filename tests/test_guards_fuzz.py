"""Guard fuzzing: compiled functions and modules called many times while one guarded property changes per call.

Every property the guards cover (each dim of each input, dtype, requires_grad, grad mode, train/eval, a Python
scalar argument, a module attribute, a parameter replaced by one of another shape or requires_grad, two
arguments being one tensor) and one they must not care about (strides: transposed, sliced with steps,
expanded inputs) changes at random. Each call's results and gradients are checked against eager on the same
values: a recompile or a fallback is fine, a stale or wrong result is a failure.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pytest

import jitorch
import jitorch.nn as nn
import jitorch.nn.functional as F  # noqa: N812

BACKENDS = ["interpreter", "llvm"]


def _backend(name: str) -> str:
    if name == "llvm":
        from jitorch.frontend import backends
        if "llvm" not in backends.BACKENDS:
            pytest.skip("the llvm backend is not registered")
    return name


def _tolerance(dtype: jitorch.dtype) -> dict[str, float]:
    return {"rtol": 1e-4, "atol": 1e-5} if dtype is jitorch.float32 else {"rtol": 1e-10, "atol": 1e-12}


def _assert_same(got: Any, want: Any, where: str) -> None:
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    assert len(got) == len(want), where
    for k, (g, w) in enumerate(zip(got, want)):
        at = f"{where}: output {k}"
        assert (g.dtype, tuple(g.shape), g.requires_grad) == (w.dtype, tuple(w.shape), w.requires_grad), \
            f"{at}: {g.dtype}{list(g.shape)} requires_grad={g.requires_grad}, eager " \
            f"{w.dtype}{list(w.shape)} requires_grad={w.requires_grad}"
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), err_msg=at, **_tolerance(w.dtype))


def _backward(outputs: Any, seed: int) -> None:
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    rng = np.random.default_rng(seed)
    total = None
    for out in outputs:
        if out.requires_grad:
            term = (out * jitorch.tensor(rng.standard_normal(tuple(out.shape))).to(out.dtype)).sum()
            total = term if total is None else total + term
    if total is not None:
        total.backward()


# ----------------------------------------------------------------------------------------------------
# functions: tensor arguments, a scalar, a string, grad mode


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str = "float32"
    requires_grad: bool = False
    layout: str = "contiguous"  # contiguous | transposed | strided | expanded

    def make(self, values: np.ndarray) -> tuple[jitorch.Tensor, jitorch.Tensor]:
        """(argument, leaf): the argument in this layout, made from a leaf that may require grad."""
        values = values.astype(self.dtype)
        if self.layout == "transposed" and len(self.shape) >= 2:
            leaf = jitorch.tensor(np.ascontiguousarray(np.swapaxes(values, -1, -2)), requires_grad=self.requires_grad)
            return leaf.mT, leaf
        if self.layout == "strided" and self.shape:
            leaf = jitorch.tensor(np.repeat(values, 2, axis=0), requires_grad=self.requires_grad)
            return leaf[::2], leaf
        if self.layout == "expanded" and self.shape:
            row = values[:1]  # stride 0 along dim 0: every row is row 0
            leaf = jitorch.tensor(row, requires_grad=self.requires_grad)
            return leaf.expand(*self.shape), leaf
        leaf = jitorch.tensor(values, requires_grad=self.requires_grad)
        return leaf, leaf


@dataclass(frozen=True)
class Call:
    x: TensorSpec
    y: TensorSpec
    scale: Any = 1.5
    mode: str = "sum"
    grad: bool = True
    alias: bool = False  # f(x, x)


def fuzz_function(x: jitorch.Tensor, y: jitorch.Tensor, scale: Any, mode: str) -> tuple:
    z = (x * scale).tanh()
    reduced = z.sum(-1) if mode == "sum" else z.amax(-1) if mode == "max" else F.softmax(z, -1)[..., 0]
    return reduced * y.mean() + 1.0, (y * 2.0 - z.mean()).exp()


SCALARS = [1.5, -0.0, 0.0, 2, True, -3.25, float("inf"), 0.5]


def _mutate(call: Call, rng: np.random.Generator) -> Call:
    """`call` with one guarded (or, for layouts, unguarded) property changed."""
    which = rng.choice(["x_dim", "y_dim", "x_rank", "dtype", "requires_grad", "grad", "scale", "mode", "layout",
                        "alias"])
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    target = "x" if rng.random() < 0.5 else "y"
    spec: TensorSpec = getattr(call, target)
    if which in ("x_dim", "y_dim"):
        spec = call.x if which == "x_dim" else call.y
        if spec.shape:
            dim = int(rng.integers(len(spec.shape)))
            shape = spec.shape[:dim] + (pick([1, 2, 3, 5]),) + spec.shape[dim + 1:]
            return replace(call, **{which[0]: replace(spec, shape=shape)})
        return call
    if which == "x_rank":
        return replace(call, x=replace(call.x, shape=pick([(3,), (2, 3), (1, 3), (2, 2, 4)])))
    if which == "dtype":
        return replace(call, **{target: replace(spec, dtype=pick(["float32", "float64"]))})
    if which == "requires_grad":
        return replace(call, **{target: replace(spec, requires_grad=not spec.requires_grad)})
    if which == "grad":
        return replace(call, grad=not call.grad)
    if which == "scale":
        return replace(call, scale=pick(SCALARS))
    if which == "mode":
        return replace(call, mode=pick(["sum", "max", "softmax"]))
    if which == "layout":
        return replace(call, **{target: replace(spec, layout=pick(["contiguous", "transposed", "strided",
                                                                     "expanded"]))})
    return replace(call, alias=not call.alias)


def _run_function(fn: Callable, call: Call, values: tuple[np.ndarray, np.ndarray], seed: int) -> tuple:
    x, x_leaf = call.x.make(values[0])
    y, y_leaf = (x, x_leaf) if call.alias else call.y.make(values[1])
    with jitorch.set_grad_enabled(call.grad):
        out = fn(x, y, call.scale, call.mode)
    _backward(out, seed)
    grads = [None if leaf.grad is None else leaf.grad.numpy().copy() for leaf in (x_leaf, y_leaf)]
    return out, grads


@pytest.mark.parametrize(("backend", "seed"), [("interpreter", 0), ("interpreter", 1), ("llvm", 2)])
def test_function_guards_random_walk(backend: str, seed: int) -> None:
    compiled = jitorch.compile(fuzz_function, backend=_backend(backend), recompile_limit=40)
    rng = np.random.default_rng(seed)
    call = Call(TensorSpec((2, 3)), TensorSpec((3,), requires_grad=True))
    history = [call]
    for step in range(60):
        # often one property away from a key seen before: where a missing guard would reuse a wrong graph
        base = history[int(rng.integers(len(history)))] if rng.random() < 0.5 else call
        call = _mutate(base, rng)
        history.append(call)
        where = f"call {step} ({call}), changed from {base}"
        values = (np.round(rng.uniform(-2, 2, call.x.shape), 3), np.round(rng.uniform(-2, 2, call.y.shape), 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the recompile limit's warning
            want, want_grads = _run_function(fuzz_function, call, values, step)
            got, got_grads = _run_function(compiled, call, values, step)
        _assert_same(got, want, where)
        for name, g, w in zip("xy", got_grads, want_grads):
            if w is None:
                assert g is None or not np.any(g), f"{where}: gradient of {name} where eager has none"
            else:
                assert g is not None, f"{where}: no gradient of {name}"
                np.testing.assert_allclose(g, w, err_msg=f"{where}: gradient of {name}", rtol=1e-4, atol=1e-5)
    stats = compiled.stats
    assert stats["calls"] == 60 and stats["compiles"] >= 5, stats


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_key_with_other_strides_gives_fresh_results(backend: str) -> None:
    """Strides are not guarded: one compiled graph must serve every layout of the same shape and dtype."""
    compiled = jitorch.compile(lambda x, y: (x * y + x.sum(0)).relu(), backend=_backend(backend))
    rng = np.random.default_rng(3)
    for step, layout in enumerate(["contiguous", "transposed", "strided", "expanded", "transposed", "contiguous",
                                   "expanded", "strided"]):
        values = rng.uniform(-2, 2, (4, 4))
        x, _ = TensorSpec((4, 4), layout=layout).make(values)
        y, _ = TensorSpec((4, 4), layout="transposed" if step % 2 else "contiguous").make(values[::-1].copy())
        _assert_same(compiled(x, y), (x * y + x.sum(0)).relu(), f"layout {layout}")
    assert compiled.stats["compiles"] == 1, compiled.stats


# ----------------------------------------------------------------------------------------------------
# modules: train/eval, attributes, replaced parameters, parameters updated in place


class Block(nn.Module):
    def __init__(self, features: int = 4, hidden: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(features, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(hidden, 3)
        self.scale = 1.0
        self.use_norm = True

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        h = self.fc(x) * self.scale
        if self.use_norm:
            h = self.norm(h)
        return self.out(self.drop(F.gelu(h)))


def _apply_to_both(models: list[Block], change: str, rng: np.random.Generator) -> str:
    """Make the same change to the eager model and the compiled one; describe it."""
    if change == "train":
        mode = bool(rng.random() < 0.5)
        for m in models:
            m.train(mode)
        return f"train({mode})"
    if change == "scale":
        value = float(rng.choice([1.0, 0.5, -2.0]))
        for m in models:
            m.scale = value
        return f"scale = {value}"
    if change == "use_norm":
        for m in models:
            m.use_norm = not m.use_norm
        return f"use_norm = {models[0].use_norm}"
    if change == "replace_fc":  # a lifted parameter replaced by one of another shape: the input width changes
        features = int(rng.choice([2, 4, 5]))
        weight = rng.uniform(-0.5, 0.5, (models[0].fc.out_features, features)).astype(np.float32)
        for m in models:
            m.fc.weight = nn.Parameter(jitorch.tensor(weight))
            m.fc.in_features = features
        return f"fc.weight replaced, {features} input features"
    if change == "freeze":
        flag = not models[0].out.weight.requires_grad
        for m in models:
            m.out.weight.requires_grad_(flag)
        return f"out.weight.requires_grad = {flag}"
    # an optimizer-like update: values change, guards do not
    delta = rng.uniform(-0.1, 0.1, tuple(models[0].out.bias.shape)).astype(np.float32)
    with jitorch.no_grad():
        for m in models:
            m.out.bias.add_(jitorch.tensor(delta))
    return "out.bias updated in place"


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_guards_random_walk(backend: str) -> None:
    jitorch.manual_seed(0)
    model = Block()
    eager = copy.deepcopy(model)
    compiled = jitorch.compile(model, backend=_backend(backend), recompile_limit=32)
    rng = np.random.default_rng(5)
    batch, grad, log = 5, True, []
    for step in range(30):
        change = rng.choice(["train", "scale", "use_norm", "replace_fc", "freeze", "update", "batch", "grad"])
        if change == "batch":
            batch = int(rng.choice([2, 3, 5]))
            log.append(f"batch {batch}")
        elif change == "grad":
            grad = not grad
            log.append(f"grad mode {grad}")
        else:
            log.append(_apply_to_both([model, eager], change, rng))
        where = f"call {step}, after: {log[-5:]}"
        x_values = rng.uniform(-2, 2, (batch, model.fc.in_features)).astype(np.float32)
        results = []
        for fn, m in ((eager, eager), (compiled, model)):
            x = jitorch.tensor(x_values, requires_grad=True)
            m.zero_grad()
            jitorch.manual_seed(100 + step)  # dropout draws the same mask in both
            with jitorch.set_grad_enabled(grad):
                out = fn(x)
            _backward(out, step)
            grads = [None if p.grad is None else p.grad.numpy().copy() for p in m.parameters()]
            buffers = [b.numpy().copy() for b in m.buffers()]
            results.append((out, x.grad, grads, buffers))
        (want, want_x, want_grads, want_buffers), (got, got_x, got_grads, got_buffers) = results
        _assert_same(got, want, where)
        if want_x is not None:
            np.testing.assert_allclose(got_x.numpy(), want_x.numpy(), rtol=1e-4, atol=1e-5, err_msg=where)
        for k, (g, w) in enumerate(zip(got_grads, want_grads)):
            if w is None:
                assert g is None or not np.any(g), f"{where}: parameter {k} got a gradient eager does not give"
            else:
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{where}: parameter {k} gradient")
        for k, (g, w) in enumerate(zip(got_buffers, want_buffers)):  # running statistics of the batch norm
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{where}: buffer {k}")
    assert compiled.stats["compiles"] >= 4, compiled.stats


def test_scalar_arguments_are_guarded_by_value_type_and_bits() -> None:
    """-0.0 and 0.0, 1 and 1.0 and True, inf and nan: each its own key, none served another's graph."""
    compiled = jitorch.compile(lambda x, s: (x / s, x * s), backend="interpreter", recompile_limit=64)
    x = jitorch.tensor([[1.0, -2.0], [0.0, 3.0]])
    for s in [0.0, -0.0, 1, 1.0, True, float("inf"), float("nan"), -0.0, 0.0, 2, 2.0, False, float("nan")]:
        with np.errstate(all="ignore"):
            want = (x / s, x * s)
        got = compiled(x, s)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype, s
            np.testing.assert_array_equal(g.numpy(), w.numpy(), err_msg=repr(s))
            np.testing.assert_array_equal(np.signbit(g.numpy()), np.signbit(w.numpy()), err_msg=repr(s))
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] <= 11


def test_recompile_limit_falls_back_to_correct_eager_results() -> None:
    compiled = jitorch.compile(lambda x: x.exp().sum(0), backend="interpreter", recompile_limit=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 9):
            x = jitorch.arange(n * 2, dtype=jitorch.float32).reshape(n, 2) / 10
            np.testing.assert_allclose(compiled(x).numpy(), x.exp().sum(0).numpy(), rtol=1e-6)
    assert compiled.stats["compiles"] == 3 and compiled.stats["fallbacks"] == 5
    assert sum("recompile limit" in str(w.message) for w in caught) == 1
    assert math.isfinite(compiled(jitorch.ones(2, 2)).sum().item())  # a known key still runs its graph
