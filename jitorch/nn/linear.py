"""Linear layers: Identity, Linear, Bilinear, with PyTorch's parameter shapes and default initialization."""
from __future__ import annotations

import math
from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.nn import functional as F
from jitorch.nn import init
from jitorch.nn.modules import Module
from jitorch.nn.parameter import Parameter


def _check_input(layer: Module, input: Tensor, features: int, weight: Tensor) -> None:
    if input.ndim == 0 or input.shape[-1] != features:
        raise RuntimeError(f"{layer}: expected input with last dimension {features}, got shape {tuple(input.shape)}")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"{layer}: expected input of dtype {weight.dtype} (the layer's dtype), got "
                           f"{input.dtype}; convert the input with .to() or the layer with .to(dtype)")


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features).

    >>> jitorch.nn.Linear(784, 128)
    Linear(in_features=784, out_features=128, bias=True)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(jitorch.empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(jitorch.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        _check_input(self, input, self.in_features, self.weight)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y = x1^T A x2 + b, with A of shape (out_features, in1_features, in2_features)."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        self.weight = Parameter(jitorch.empty(out_features, in1_features, in2_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(jitorch.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        _check_input(self, input1, self.in1_features, self.weight)
        _check_input(self, input2, self.in2_features, self.weight)
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
