"""Recurrent layers and cells against a numpy reference with the same weights: forward in float32 and float64,
gradients of inputs, initial states and every parameter against finite differences of the reference,
the options (batch_first, bidirectional, num_layers, bias, proj_size, dropout, unbatched input), parameter
names, shapes, initialization and reprs, errors, and compiled against eager."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.frontend.compile import default_backend
from jitorch.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from tests.nn_reference import numeric_gradients


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


def _sample(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -------------------------------------------------------------------------------------------------
# the numpy reference, written from PyTorch's documented equations


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_cell(mode: str, x: np.ndarray, h: np.ndarray, c: np.ndarray | None, w_ih: np.ndarray,
                   w_hh: np.ndarray, b_ih: np.ndarray | None, b_hh: np.ndarray | None,
                   w_hr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One step of mode (tanh, relu, LSTM, GRU) on x (N, in), h (N, H): (h', c')."""
    b_ih = 0.0 if b_ih is None else b_ih
    b_hh = 0.0 if b_hh is None else b_hh
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if mode == "tanh":
        return np.tanh(gi + gh), None
    if mode == "relu":
        return np.maximum(gi + gh, 0.0), None
    if mode == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return (h if w_hr is None else h @ w_hr.T), c
    ir, iz, i_n = np.split(gi, 3, axis=1)
    hr, hz, h_n = np.split(gh, 3, axis=1)
    r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None


def reference_rnn(mode: str, x: np.ndarray, params: dict[str, np.ndarray], num_layers: int, bidirectional: bool,
                  h0: np.ndarray, c0: np.ndarray | None = None,
                  layer_inputs_zeroed: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Time-major x (L, N, in) through the layers: (output, h_n, c_n). `layer_inputs_zeroed`: dropout p=1
    between layers."""
    directions = 2 if bidirectional else 1
    h_n, c_n = [], []
    layer_input = x
    for layer in range(num_layers):
        outputs = []
        for d in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            weights = [params.get(kind + suffix) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                              "weight_hr")]
            index = layer * directions + d
            h, c = h0[index], (c0[index] if c0 is not None else None)
            out = [None] * layer_input.shape[0]
            for t in (reversed(range(len(out))) if d else range(len(out))):
                h, c = reference_cell(mode, layer_input[t], h, c, *weights)
                out[t] = h
            outputs.append(np.stack(out))
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=2)
        if layer_inputs_zeroed and layer < num_layers - 1:
            layer_input = layer_input * 0.0
    return layer_input, np.stack(h_n), (np.stack(c_n) if c0 is not None else None)


# -------------------------------------------------------------------------------------------------
# the harness


MODES = {"tanh": lambda **kw: RNN(nonlinearity="tanh", **kw), "relu": lambda **kw: RNN(nonlinearity="relu", **kw),
         "LSTM": lambda **kw: LSTM(**kw), "GRU": lambda **kw: GRU(**kw)}


def _flat(*tensors: jitorch.Tensor) -> jitorch.Tensor:
    return jitorch.cat([t.reshape(-1) for t in tensors])


def _run_module(module: nn.Module, mode: str, x: jitorch.Tensor, h0: jitorch.Tensor,
                c0: jitorch.Tensor | None) -> jitorch.Tensor:
    if mode == "LSTM":
        out, (h, c) = module(x, (h0, c0))
        return _flat(out, h, c)
    out, h = module(x, h0)
    return _flat(out, h)


def _run_reference(mode: str, module: nn.Module, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None,
                   params: dict[str, np.ndarray], zeroed: bool = False) -> np.ndarray:
    batched = x.ndim == 3
    if not batched:
        x, h0 = x[:, None], h0[:, None]
        c0 = c0[:, None] if c0 is not None else None
    elif module.batch_first:
        x = x.transpose(1, 0, 2)
    out, h, c = reference_rnn(mode, x, params, module.num_layers, module.bidirectional, h0, c0, zeroed)
    if not batched:
        out, h = out[:, 0], h[:, 0]
        c = c[:, 0] if c is not None else None
    elif module.batch_first:
        out = out.transpose(1, 0, 2)
    return np.concatenate([a.reshape(-1) for a in (out, h, c) if a is not None])


def check_recurrent(module: nn.Module, mode: str, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None = None,
                    gradients: bool = True) -> None:
    """The module's (output, states) against the reference, in float32 and float64, and its gradients with
    respect to x, the initial states and every parameter against finite differences of the reference."""
    names = [name for name, _ in module.named_parameters()]
    states = [s for s in (h0, c0) if s is not None]

    def tensors(dtype: jitorch.dtype, grad: bool) -> list[jitorch.Tensor]:
        return [jitorch.tensor(a, dtype=dtype, requires_grad=grad) for a in (x, *states)]

    def reference(*arrays: np.ndarray) -> np.ndarray:
        xs, rest = arrays[0], arrays[1:]
        h, c = rest[0], (rest[1] if c0 is not None else None)
        params = dict(zip(names, rest[len(states):]))
        return _run_reference(mode, module, xs, h, c, params)

    inputs32 = tensors(jitorch.float32, False)
    out32 = _run_module(module, mode, *inputs32, *([None] if c0 is None else []))
    weights32 = [p.detach().numpy().astype(np.float64) for p in module.parameters()]
    arrays32 = [a.astype(np.float32).astype(np.float64) for a in (x, *states)]
    np.testing.assert_allclose(out32.numpy(force=True), reference(*arrays32, *weights32), rtol=1e-5, atol=1e-6,
                               err_msg="float32 forward")

    module.double()
    leaves = tensors(jitorch.float64, True)
    params = list(module.parameters())
    out = _run_module(module, mode, *leaves, *([None] if c0 is None else []))
    arrays = [np.array(a, dtype=np.float64) for a in (x, *states)] + [p.detach().numpy().copy() for p in params]
    np.testing.assert_allclose(out.detach().numpy(), reference(*arrays), rtol=1e-10, atol=1e-12,
                               err_msg="float64 forward")
    if not gradients:
        return
    projection = np.random.default_rng(7).standard_normal(tuple(out.shape))
    (out * jitorch.tensor(projection)).sum().backward()
    numeric = numeric_gradients(lambda *xs: float((reference(*xs) * projection).sum()), arrays)
    labels = ["input"] + ["h0", "c0"][:len(states)] + names
    for label, leaf, expected in zip(labels, leaves + params, numeric):
        assert leaf.grad is not None, f"no gradient reached {label}"
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=f"gradient of {label}")


def _states(module: nn.Module, mode: str, batch: int | None, seed: int = 2) -> tuple[np.ndarray, np.ndarray | None]:
    layers = module.num_layers * (2 if module.bidirectional else 1)
    lead = (layers,) if batch is None else (layers, batch)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    h0 = _sample(*lead, h_size, seed=seed) * 0.5
    c0 = _sample(*lead, module.hidden_size, seed=seed + 1) * 0.5 if mode == "LSTM" else None
    return h0, c0


# -------------------------------------------------------------------------------------------------
# forward and gradients against the reference


@pytest.mark.parametrize("mode", ["tanh", "relu", "LSTM", "GRU"])
def test_single_layer_matches_reference_with_initial_state(mode: str) -> None:
    module = MODES[mode](input_size=3, hidden_size=4)
    h0, c0 = _states(module, mode, batch=2)
    check_recurrent(module, mode, _sample(5, 2, 3), h0, c0)


@pytest.mark.parametrize("mode", ["tanh", "LSTM", "GRU"])
def test_two_layers_bidirectional_batch_first_match_reference(mode: str) -> None:
    module = MODES[mode](input_size=3, hidden_size=2, num_layers=2, bidirectional=True, batch_first=True)
    h0, c0 = _states(module, mode, batch=2)
    check_recurrent(module, mode, _sample(2, 4, 3), h0, c0)


def test_lstm_with_projection_matches_reference() -> None:
    module = LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    assert tuple(module.weight_hr_l0.shape) == (2, 4) and tuple(module.weight_hh_l0.shape) == (16, 2)
    assert tuple(module.weight_ih_l1.shape) == (16, 4)
    h0, c0 = _states(module, "LSTM", batch=2)
    check_recurrent(module, "LSTM", _sample(3, 2, 3), h0, c0)


@pytest.mark.parametrize("mode", ["relu", "LSTM", "GRU"])
def test_without_bias_matches_reference(mode: str) -> None:
    module = MODES[mode](input_size=3, hidden_size=3, num_layers=2, bias=False)
    assert not any("bias" in name for name, _ in module.named_parameters())
    h0, c0 = _states(module, mode, batch=2)
    check_recurrent(module, mode, _sample(4, 2, 3), h0, c0, gradients=mode == "GRU")


@pytest.mark.parametrize("mode", ["tanh", "LSTM", "GRU"])
def test_unbatched_input_matches_reference(mode: str) -> None:
    module = MODES[mode](input_size=3, hidden_size=4, bidirectional=True)
    h0, c0 = _states(module, mode, batch=None)
    check_recurrent(module, mode, _sample(5, 3), h0, c0, gradients=False)
    # and equals the batched call with N = 1
    x = jitorch.tensor(_sample(5, 3))
    single = module(x)
    batched = module(x.unsqueeze(1))
    out, state = single
    out_b, state_b = batched
    np.testing.assert_allclose(out.detach().numpy(), out_b.detach().numpy()[:, 0], rtol=1e-12, atol=1e-12)
    first = state[0] if mode == "LSTM" else state
    first_b = state_b[0] if mode == "LSTM" else state_b
    assert tuple(first.shape) == (2, 4)
    np.testing.assert_allclose(first.detach().numpy(), first_b.detach().numpy()[:, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["tanh", "LSTM", "GRU"])
def test_missing_initial_state_means_zeros(mode: str) -> None:
    module = MODES[mode](input_size=3, hidden_size=4, num_layers=2, batch_first=True)
    x = jitorch.randn(2, 5, 3)
    h_shape = (2, 2, 4)
    zeros = jitorch.zeros(*h_shape)
    implicit = module(x)
    explicit = module(x, (zeros, zeros) if mode == "LSTM" else zeros)
    np.testing.assert_allclose(implicit[0].detach().numpy(), explicit[0].detach().numpy(), rtol=0, atol=0)
    assert tuple(implicit[0].shape) == (2, 5, 4)


def test_outputs_have_pytorch_shapes() -> None:
    out, (h, c) = LSTM(6, 7, num_layers=3, bidirectional=True, proj_size=5)(jitorch.randn(4, 2, 6))
    assert (tuple(out.shape), tuple(h.shape), tuple(c.shape)) == ((4, 2, 10), (6, 2, 5), (6, 2, 7))
    out, h = GRU(6, 7, batch_first=True)(jitorch.randn(2, 4, 6))
    assert (tuple(out.shape), tuple(h.shape)) == ((2, 4, 7), (1, 2, 7))
    out, h = RNN(6, 7, 2)(jitorch.randn(4, 6))
    assert (tuple(out.shape), tuple(h.shape)) == ((4, 7), (2, 7))


# -------------------------------------------------------------------------------------------------
# dropout between layers


def test_dropout_applies_between_layers_in_training_only() -> None:
    module = RNN(3, 4, num_layers=2, dropout=1.0).double()
    x = _sample(3, 2, 3)
    h0, _ = _states(module, "tanh", batch=2)
    params = {name: p.detach().numpy() for name, p in module.named_parameters()}
    trained = _run_module(module, "tanh", jitorch.tensor(x), jitorch.tensor(h0), None).detach().numpy()
    zeroed = _run_reference("tanh", module, x, h0, None, params, zeroed=True)
    np.testing.assert_allclose(trained, zeroed, rtol=1e-12, atol=1e-12)
    module.eval()
    evaluated = _run_module(module, "tanh", jitorch.tensor(x), jitorch.tensor(h0), None).detach().numpy()
    np.testing.assert_allclose(evaluated, _run_reference("tanh", module, x, h0, None, params), rtol=1e-12, atol=1e-12)


def test_dropout_with_one_layer_warns_and_bad_dropout_raises() -> None:
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        LSTM(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        GRU(3, 4, dropout=1.5)


# -------------------------------------------------------------------------------------------------
# parameters, initialization, reprs


def test_parameter_names_and_shapes_follow_pytorch() -> None:
    shapes = {name: tuple(p.shape) for name, p in LSTM(4, 8, num_layers=2, bidirectional=True).named_parameters()}
    assert list(shapes) == [f"{kind}_l{layer}{suffix}" for layer in range(2) for suffix in ("", "_reverse")
                            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert shapes["weight_ih_l0"] == (32, 4) and shapes["weight_hh_l0_reverse"] == (32, 8)
    assert shapes["weight_ih_l1"] == (32, 16) and shapes["bias_hh_l1_reverse"] == (32,)
    gru = dict(GRU(4, 8).named_parameters())
    assert tuple(gru["weight_ih_l0"].shape) == (24, 4)
    rnn = RNN(4, 8, bias=False)
    assert [name for name, _ in rnn.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert len(rnn.all_weights) == 1 and rnn.all_weights[0][0] is rnn.weight_ih_l0
    cell = dict(LSTMCell(4, 8).named_parameters())
    assert {k: tuple(v.shape) for k, v in cell.items()} == {
        "weight_ih": (32, 4), "weight_hh": (32, 8), "bias_ih": (32,), "bias_hh": (32,)}


def test_state_dict_round_trip_gives_the_same_outputs() -> None:
    source, target = GRU(3, 5, num_layers=2), GRU(3, 5, num_layers=2)
    target.load_state_dict(source.state_dict())
    x = jitorch.randn(4, 2, 3)
    np.testing.assert_array_equal(source(x)[0].detach().numpy(), target(x)[0].detach().numpy())


@pytest.mark.parametrize("make", [lambda: LSTM(50, 400), lambda: GRUCell(50, 400)])
def test_initialization_is_uniform_in_one_over_sqrt_hidden(make: object) -> None:
    module = make()
    bound = 1 / math.sqrt(400)
    values = np.concatenate([p.detach().numpy().reshape(-1) for p in module.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    np.testing.assert_allclose(values.std(), bound / math.sqrt(3), rtol=0.02, atol=0)
    np.testing.assert_allclose(values.mean(), 0.0, rtol=0, atol=0.02 * bound)


def test_reprs_match_pytorch() -> None:
    assert repr(RNN(4, 8)) == "RNN(4, 8)"
    assert repr(RNN(4, 8, nonlinearity="relu")) == "RNN(4, 8)"
    assert repr(LSTM(4, 8, num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True,
                     proj_size=3)) == ("LSTM(4, 8, proj_size=3, num_layers=2, bias=False, batch_first=True, "
                                       "dropout=0.5, bidirectional=True)")
    assert repr(GRU(4, 8, 3)) == "GRU(4, 8, num_layers=3)"
    assert repr(RNNCell(4, 8, nonlinearity="relu")) == "RNNCell(4, 8, nonlinearity=relu)"
    assert repr(LSTMCell(4, 8, bias=False)) == "LSTMCell(4, 8, bias=False)"
    assert repr(GRUCell(4, 8)) == "GRUCell(4, 8)"


# -------------------------------------------------------------------------------------------------
# cells


CELLS = {"tanh": lambda **kw: RNNCell(**kw), "relu": lambda **kw: RNNCell(nonlinearity="relu", **kw),
         "LSTM": lambda **kw: LSTMCell(**kw), "GRU": lambda **kw: GRUCell(**kw)}


@pytest.mark.parametrize("mode", ["tanh", "relu", "LSTM", "GRU"])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_match_reference_forward_and_gradients(mode: str, bias: bool) -> None:
    cell = CELLS[mode](input_size=3, hidden_size=4, bias=bias).double()
    names = [name for name, _ in cell.named_parameters()]
    x, h, c = _sample(2, 3), _sample(2, 4, seed=2) * 0.5, _sample(2, 4, seed=3) * 0.5
    arrays = [x, h] + ([c] if mode == "LSTM" else [])

    def reference(*xs: np.ndarray) -> np.ndarray:
        params = dict(zip(names, xs[len(arrays):]))
        h_new, c_new = reference_cell(mode, xs[0], xs[1], xs[2] if mode == "LSTM" else None, params["weight_ih"],
                                      params["weight_hh"], params.get("bias_ih"), params.get("bias_hh"))
        return np.concatenate([h_new.reshape(-1)] + ([c_new.reshape(-1)] if c_new is not None else []))

    leaves = [jitorch.tensor(a, requires_grad=True) for a in arrays]
    result = cell(leaves[0], tuple(leaves[1:]) if mode == "LSTM" else leaves[1])
    out = _flat(*result) if mode == "LSTM" else result.reshape(-1)
    params = list(cell.parameters())
    all_arrays = arrays + [p.detach().numpy().copy() for p in params]
    np.testing.assert_allclose(out.detach().numpy(), reference(*all_arrays), rtol=1e-10, atol=1e-12)
    projection = np.random.default_rng(3).standard_normal(tuple(out.shape))
    (out * jitorch.tensor(projection)).sum().backward()
    numeric = numeric_gradients(lambda *xs: float((reference(*xs) * projection).sum()), all_arrays)
    for leaf, expected in zip(leaves + params, numeric):
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["tanh", "LSTM", "GRU"])
def test_cells_take_unbatched_input_and_default_zero_state(mode: str) -> None:
    cell = CELLS[mode](input_size=3, hidden_size=4)
    x = jitorch.randn(3)
    single = cell(x)
    batched = cell(x.unsqueeze(0), None)
    first = single[0] if mode == "LSTM" else single
    first_b = batched[0] if mode == "LSTM" else batched
    assert tuple(first.shape) == (4,)
    np.testing.assert_allclose(first.detach().numpy(), first_b.detach().numpy()[0], rtol=1e-6, atol=1e-7)


def test_cell_loop_equals_the_layer_with_the_same_weights() -> None:
    layer, cell = LSTM(3, 4), LSTMCell(3, 4)
    cell.load_state_dict({name[:-3]: p for name, p in layer.state_dict().items()})
    x = jitorch.randn(6, 2, 3)
    h, c = jitorch.zeros(2, 4), jitorch.zeros(2, 4)
    steps = []
    for t in range(6):
        h, c = cell(x[t], (h, c))
        steps.append(h)
    out, (_, c_n) = layer(x)
    np.testing.assert_allclose(out.detach().numpy(), jitorch.stack(steps).detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c_n[0].detach().numpy(), c.detach().numpy(), rtol=1e-6, atol=1e-7)


# -------------------------------------------------------------------------------------------------
# errors


def test_bad_inputs_raise_pytorch_errors() -> None:
    lstm = LSTM(3, 4, num_layers=2)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. Expected 3, got 5"):
        lstm(jitorch.randn(2, 2, 5))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        lstm(jitorch.randn(1, 2, 2, 3))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 2, 4\), got \[1, 2, 4\]"):
        lstm(jitorch.randn(5, 2, 3), (jitorch.zeros(1, 2, 4), jitorch.zeros(2, 2, 4)))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[1\] size \(2, 2, 4\), got \[2, 3, 4\]"):
        lstm(jitorch.randn(5, 2, 3), (jitorch.zeros(2, 2, 4), jitorch.zeros(2, 3, 4)))
    with pytest.raises(RuntimeError, match="For batched 3-D input, hx and cx should also be 3-D"):
        lstm(jitorch.randn(5, 2, 3), (jitorch.zeros(2, 4), jitorch.zeros(2, 4)))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \[1, 3, 4\]"):
        GRU(3, 4)(jitorch.randn(5, 2, 3), jitorch.zeros(1, 3, 4))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D"):
        RNN(3, 4)(jitorch.randn(5, 3), jitorch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="input must have the type"):
        RNN(3, 4)(jitorch.randn(5, 2, 3, dtype=jitorch.float64))
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 2 expected 3"):
        GRUCell(3, 4)(jitorch.randn(5, 2))
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        LSTM(3, 4, proj_size=4)


# -------------------------------------------------------------------------------------------------
# compiled against eager, with the reference interpreter and with the default (LLVM when present) backend

BACKENDS = sorted({"interpreter", default_backend()})


class _Tagger(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        return self.head(self.rnn(x)[0])


@pytest.mark.parametrize("make", [lambda: LSTM(3, 5, num_layers=2, bidirectional=True),
                                  lambda: GRU(3, 5, batch_first=True), lambda: RNN(3, 5, nonlinearity="relu")],
                         ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_matches_eager_forward_and_gradients_without_fallback(make: object, backend: str) -> None:
    model = _Tagger(make())
    compiled = jitorch.compile(model, backend=backend)
    for _ in range(3):
        x = jitorch.randn(6, 2, 3)
        got = compiled(x)
        model.zero_grad()
        got.square().sum().backward()
        got_grads = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        want = model(x)
        want.square().sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
        for name, grad, (_, p) in zip(range(99), got_grads, model.named_parameters()):
            np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=f"parameter {name}")
    assert compiled.stats["fallbacks"] == 0
    assert compiled.stats["compiles"] == 1 and compiled.stats["hits"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_recurrent_layer_recompiles_for_a_new_sequence_length(backend: str) -> None:
    model = LSTM(3, 4)
    compiled = jitorch.compile(model, backend=backend)
    with jitorch.no_grad():
        for length in (5, 5, 7, 7):
            x = jitorch.randn(length, 2, 3)
            out, (_, c) = compiled(x)
            want, (_, c_want) = model(x)
            np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(c.numpy(), c_want.numpy(), rtol=1e-5, atol=1e-6)
    assert compiled.stats["compiles"] == 2 and compiled.stats["fallbacks"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_training_with_dropout_between_layers_does_not_fall_back(backend: str) -> None:
    model = GRU(3, 4, num_layers=2, dropout=0.3)
    compiled = jitorch.compile(model, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            out, _ = compiled(jitorch.randn(4, 2, 3))
            out.sum().backward()
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["hits"] == 1
