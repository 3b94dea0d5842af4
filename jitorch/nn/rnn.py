"""Recurrent layers: RNN (tanh or relu), LSTM (with optional projection), GRU, and their one-step cells.

Parameter names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n) and initialization (every parameter
U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))) are PyTorch's, so state dicts load across.

The time loop is Python over tensor ops: per layer and direction, one matmul projects the inputs of all
timesteps at once (with both biases folded in where the math allows), then each step does one matmul with
the hidden state and the gate arithmetic. So a compiled recurrent model traces, for a given sequence
length, into one straight-line graph: the length is part of the input shapes, hence of the guard key.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.nn import init
from jitorch.nn.functional_layers import dropout as _dropout
from jitorch.nn.modules import Module
from jitorch.nn.parameter import Parameter

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ----------------------------------------------------------------------------------------------------
# one step of each cell, on input gates already projected (x W_ih^T + b_ih, plus b_hh except for GRU)


def _rnn_step(gates: Tensor, h: Tensor, w_hh_t: Tensor, relu: bool) -> Tensor:
    pre = gates + h.matmul(w_hh_t)
    return pre.relu() if relu else pre.tanh()


def _lstm_step(gates: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor, w_hr_t: Tensor | None) -> tuple[Tensor, Tensor]:
    i, f, g, o = (gates + h.matmul(w_hh_t)).chunk(4, 1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    return (h if w_hr_t is None else h.matmul(w_hr_t)), c


def _gru_step(gates: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor | None) -> Tensor:
    hidden = h.matmul(w_hh_t)
    if b_hh is not None:
        hidden = hidden + b_hh
    size = h.shape[-1]
    reset, update = (gates.narrow(1, 0, 2 * size) + hidden.narrow(1, 0, 2 * size)).sigmoid().chunk(2, 1)
    new = (gates.narrow(1, 2 * size, size) + reset * hidden.narrow(1, 2 * size, size)).tanh()
    return new + update * (h - new)


def _input_gates(mode: str, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """x W_ih^T plus the biases that add outside any gate product (GRU keeps b_hn inside r * (...)).

    Time and batch are folded into the rows of one matrix product: a (L, N, in) @ (in, G) product would
    broadcast the weight into L products of N rows, and its gradient into L products summed."""
    rows = x.reshape(-1, x.shape[-1]).matmul(w_ih.t())
    gates = rows.reshape(*x.shape[:-1], w_ih.shape[0])
    if b_ih is None:
        return gates
    return gates + b_ih if mode == "GRU" else gates + (b_ih + b_hh)


def _check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                         "being zeroed")
    return float(dropout)


def _check_size(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero")


# ----------------------------------------------------------------------------------------------------
# multi-layer recurrent modules


class RNNBase(Module):
    """The shared machinery of RNN, LSTM and GRU: parameters per layer and direction, checks, the loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        dropout = _check_dropout(dropout)
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=3)
        _check_size("hidden_size", hidden_size)
        _check_size("num_layers", num_layers)
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input_size = input_size if layer == 0 else real_hidden_size * directions
                shapes = {"weight_ih": (gate_size, layer_input_size), "weight_hh": (gate_size, real_hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                names = []
                for kind, shape in shapes.items():
                    setattr(self, kind + suffix, Parameter(jitorch.empty(*shape, dtype=dtype, device=device)))
                    names.append(kind + suffix)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Nothing to do: parameters are used as they are (PyTorch compacts them for cuDNN)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # ---------------------------------------------------------------------------------------------
    # checks

    def _batch_input(self, input: Tensor) -> tuple[Tensor, bool]:
        """(input with a batch dim, whether it had one), after PyTorch's rank and dtype checks."""
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.ndim}D tensor "
                             f"instead")
        weight = self._flat_weights[0]
        if input.dtype is not weight.dtype:
            raise ValueError(f"input must have the type {weight.dtype}, got type {input.dtype}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{input.shape[-1]}")
        batched = input.ndim == 3
        return (input if batched else input.unsqueeze(0 if self.batch_first else 1)), batched

    def _state_shape(self, input: Tensor, size: int) -> tuple[int, int, int]:
        batch = input.shape[0] if self.batch_first else input.shape[1]
        return (self.num_layers * (2 if self.bidirectional else 1), batch, size)

    @staticmethod
    def _check_state(state: Tensor, expected: tuple[int, ...], message: str) -> None:
        if tuple(state.shape) != expected:
            raise RuntimeError(message.format(expected, list(state.shape)))

    # ---------------------------------------------------------------------------------------------
    # the loop

    def _layer_weights(self, index: int) -> tuple[Tensor | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one (layer, direction), None where absent."""
        params = dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"), [None] * 5))
        for name in self._all_weights[index]:
            params[name.split("_l")[0]] = getattr(self, name)
        return tuple(params.values())

    def _direction(self, x: Tensor, index: int, h: Tensor, c: Tensor | None,
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run one direction of one layer over x (L, N, in): (outputs (L, N, H_out), h_n, c_n)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_weights(index)
        steps = _input_gates(self.mode, x, w_ih, b_ih, b_hh).unbind(0)
        w_hh_t = w_hh.t()
        w_hr_t = w_hr.t() if w_hr is not None else None
        outputs: list[Tensor] = [h] * len(steps)
        for t in (reversed(range(len(steps))) if reverse else range(len(steps))):
            if self.mode == "LSTM":
                h, c = _lstm_step(steps[t], h, c, w_hh_t, w_hr_t)
            elif self.mode == "GRU":
                h = _gru_step(steps[t], h, w_hh_t, b_hh)
            else:
                h = _rnn_step(steps[t], h, w_hh_t, self.mode == "RNN_RELU")
            outputs[t] = h
        return jitorch.stack(outputs), h, c

    def _run(self, x: Tensor, h0: Tensor, c0: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """All layers over time-major x (L, N, in) from states (layers * directions, N, H)."""
        directions = 2 if self.bidirectional else 1
        hs, cs = h0.unbind(0), (c0.unbind(0) if c0 is not None else None)
        h_n: list[Tensor] = []
        c_n: list[Tensor] = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                out, h, c = self._direction(x, index, hs[index], cs[index] if cs is not None else None,
                                            reverse=direction == 1)
                outputs.append(out)
                h_n.append(h)
                if c is not None:
                    c_n.append(c)
            x = jitorch.cat(outputs, dim=2) if directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = _dropout(x, self.dropout, training=True)
        return x, jitorch.stack(h_n), (jitorch.stack(c_n) if c_n else None)

    def _forward(self, input: Tensor, h0: Tensor | None, c0: Tensor | None,
                 batched: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        x = input.transpose(0, 1) if self.batch_first else input
        output, h_n, c_n = self._run(x, h0, c0)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return output, h_n, c_n


class _SingleStateRNN(RNNBase):
    """RNN and GRU: one hidden state `hx` of shape (layers * directions, N, hidden_size)."""

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(output (L, N, D * H) — (N, L, D * H) with batch_first — and h_n (layers * D, N, H))."""
        input, batched = self._batch_input(input)
        if hx is not None:
            if batched and hx.ndim != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.ndim}-D tensor")
            if not batched:
                if hx.ndim != 2:
                    raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.ndim}-D tensor")
                hx = hx.unsqueeze(1)
        expected = self._state_shape(input, self.hidden_size)
        if hx is None:
            hx = jitorch.zeros(expected, dtype=input.dtype)
        self._check_state(hx, expected, "Expected hidden size {}, got {}")
        output, h_n, _ = self._forward(input, hx, None, batched)
        return output, h_n


class RNN(_SingleStateRNN):
    """An Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), over layers and time.

    >>> rnn = RNN(10, 20, 2)
    >>> output, h_n = rnn(jitorch.randn(5, 3, 10))
    >>> tuple(output.shape), tuple(h_n.shape)
    ((5, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(modes[nonlinearity], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class GRU(_SingleStateRNN):
    """A gated recurrent unit: r, z = sigmoid(...), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h.

    >>> output, h_n = GRU(10, 20)(jitorch.randn(5, 3, 10))
    >>> tuple(output.shape), tuple(h_n.shape)
    ((5, 3, 20), (1, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory: gates i, f, g, o; c' = f * c + i * g, h' = o * tanh(c') (times W_hr with proj_size).

    >>> output, (h_n, c_n) = LSTM(10, 20)(jitorch.randn(5, 3, 10))
    >>> tuple(output.shape), tuple(h_n.shape), tuple(c_n.shape)
    ((5, 3, 20), (1, 3, 20), (1, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """(output (L, N, D * H_out), (h_n (layers * D, N, H_out), c_n (layers * D, N, H)))."""
        input, batched = self._batch_input(input)
        if hx is not None:
            h0, c0 = hx
            if batched and (h0.ndim != 3 or c0.ndim != 3):
                raise RuntimeError(f"For batched 3-D input, hx and cx should also be 3-D but got ({h0.ndim}-D, "
                                   f"{c0.ndim}-D) tensors")
            if not batched:
                if h0.ndim != 2 or c0.ndim != 2:
                    raise RuntimeError(f"For unbatched 2-D input, hx and cx should also be 2-D but got ({h0.ndim}-D, "
                                       f"{c0.ndim}-D) tensors")
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        h_shape = self._state_shape(input, self.proj_size or self.hidden_size)
        c_shape = self._state_shape(input, self.hidden_size)
        if hx is None:
            h0, c0 = jitorch.zeros(h_shape, dtype=input.dtype), jitorch.zeros(c_shape, dtype=input.dtype)
        self._check_state(h0, h_shape, "Expected hidden[0] size {}, got {}")
        self._check_state(c0, c_shape, "Expected hidden[1] size {}, got {}")
        output, h_n, c_n = self._forward(input, h0, c0, batched)
        return output, (h_n, c_n)


# ----------------------------------------------------------------------------------------------------
# cells


class RNNCellBase(Module):
    """One step of a recurrent layer: weight_ih (gates * H, in), weight_hh (gates * H, H), bias_ih, bias_hh."""

    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(jitorch.empty(num_chunks * hidden_size, input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(jitorch.empty(num_chunks * hidden_size, hidden_size, dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(jitorch.empty(num_chunks * hidden_size, dtype=dtype, device=device))
            self.bias_hh = Parameter(jitorch.empty(num_chunks * hidden_size, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input: Tensor, states: tuple[Tensor | None, ...]) -> tuple[Tensor, list[Tensor], bool]:
        """Batch the input and states (zeros where None) and check their sizes as PyTorch's kernels do."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        for i, state in enumerate(states):
            if state is not None and state.ndim not in (1, 2):
                which = "hidden" if len(states) == 1 else f"hx[{i}]"
                raise ValueError(f"{name}: Expected {which} to be 1D or 2D, got {state.ndim}D instead")
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} expected {self.input_size}")
        prepared = []
        for i, state in enumerate(states):
            if state is None:
                state = jitorch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype)
            elif not batched:
                state = state.unsqueeze(0)
            if state.shape[0] != input.shape[0]:
                raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match hidden{i} batch size "
                                   f"{state.shape[0]}")
            if state.shape[1] != self.hidden_size:
                raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {state.shape[1]}, expected "
                                   f"{self.hidden_size}")
            prepared.append(state)
        return input, prepared, batched

    def _gates(self, input: Tensor) -> Tensor:
        return _input_gates(self._mode, input, self.weight_ih, self.bias_ih, self.bias_hh)


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu), for (N, in) or (in,) input."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        input, (h,), batched = self._prepare(input, (hx,))
        out = _rnn_step(self._gates(input), h, self.weight_hh.t(), self.nonlinearity == "relu")
        return out if batched else out.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c') for input (N, in) or (in,) and optional states (h, c)."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        input, (h, c), batched = self._prepare(input, (None, None) if hx is None else tuple(hx))
        h, c = _lstm_step(self._gates(input), h, c, self.weight_hh.t(), None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: returns h' for input (N, in) or (in,) and an optional state h."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, (h,), batched = self._prepare(input, (hx,))
        out = _gru_step(self._gates(input), h, self.weight_hh.t(), self.bias_hh)
        return out if batched else out.squeeze(0)
