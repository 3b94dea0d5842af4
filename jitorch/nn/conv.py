"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, and the im2col layers Unfold, Fold.

Constructor arguments, parameter shapes, default initialization and reprs follow PyTorch: the weight is
kaiming-uniform with a=sqrt(5) (so U(±1/sqrt(fan_in))) and the bias U(±1/sqrt(fan_in)). Errors in the
input name the layer as it prints.
"""
from __future__ import annotations

from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.nn import functional_conv as F
from jitorch.nn import init
from jitorch.nn.modules import Module
from jitorch.nn.parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "Fold", "Unfold"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    _dims = 0
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: F.Pair, stride: F.Pair, padding: Any,
                 dilation: F.Pair, groups: int, bias: bool, padding_mode: str, output_padding: F.Pair = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        nd = self._dims
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {list(_PADDING_MODES)}, "
                             f"but got padding_mode='{padding_mode}'")
        if self.transposed and padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = F._tuple(kernel_size, nd, "kernel_size")
        self.stride = F._tuple(stride, nd, "stride")
        self.dilation = F._tuple(dilation, nd, "dilation")
        self.output_padding = F._tuple(output_padding, nd, "output_padding")
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            pads = F._conv_padding(padding, self.kernel_size, self.dilation, (1,) * nd, type(self).__name__)
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding: Any = padding
        else:
            self.padding = F._tuple(padding, nd, "padding")
            pads = [(p, p) for p in self.padding]
        self._reversed_padding_repeated_twice = F._flat_pad(pads)
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(jitorch.empty(*shape, *self.kernel_size, dtype=dtype))
        if bias:
            self.bias = Parameter(jitorch.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self) -> str:
        nd = self._dims
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * nd:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * nd:
            text += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nd:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _check_input(self, input: Tensor) -> None:
        nd = self._dims
        if input.ndim not in (nd + 1, nd + 2):
            raise RuntimeError(f"{self._describe()}: expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input, "
                               f"got input of shape {tuple(input.shape)}")
        channels = input.shape[input.ndim - nd - 1]
        if channels != self.in_channels:
            raise RuntimeError(f"{self._describe()}: expected input with {self.in_channels} channels, got input of "
                               f"shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return F._conv(self._describe(), self._dims, input, self.weight, self.bias, self.stride, padding,
                       self.dilation, self.groups)


class Conv1d(_ConvNd):
    """1-d convolution over (N, C_in, L) or (C_in, L) input; weight (C_out, C_in/groups, k)."""

    _dims = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: F.Pair, stride: F.Pair = 1,
                 padding: Any = 0, dilation: F.Pair = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)


class Conv2d(_ConvNd):
    """2-d convolution over (N, C_in, H, W) or (C_in, H, W) input; weight (C_out, C_in/groups, kh, kw)."""

    _dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: F.Pair, stride: F.Pair = 1,
                 padding: Any = 0, dilation: F.Pair = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)


class _ConvTransposeNd(_ConvNd):
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: F.Pair, stride: F.Pair = 1,
                 padding: F.Pair = 0, output_padding: F.Pair = 0, groups: int = 1, bias: bool = True,
                 dilation: F.Pair = 1, padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        if isinstance(padding, str):
            raise TypeError(f'padding="{padding}" is not supported for {type(self).__name__}')
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device=device, dtype=dtype)

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple[int, ...]:
        """The output_padding that yields `output_size` (PyTorch's forward(input, output_size))."""
        nd = self._dims
        if output_size is None:
            return self.output_padding
        wanted = [int(s) for s in output_size][-nd:]
        padding = []
        for i, size in enumerate(wanted):
            smallest = ((input.shape[input.ndim - nd + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            if not smallest <= size < smallest + self.stride[i]:
                raise ValueError(f"{self._describe()}: requested an output size of {wanted}, but valid sizes range "
                                 f"from {smallest} to {smallest + self.stride[i] - 1} (for an input of "
                                 f"{list(input.shape)[-nd:]})")
            padding.append(size - smallest)
        return tuple(padding)

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:
        self._check_input(input)
        return F._conv_transpose(self._describe(), self._dims, input, self.weight, self.bias, self.stride,
                                 self.padding, self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-d convolution; weight (C_in, C_out/groups, k)."""

    _dims = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-d convolution (the gradient of Conv2d with respect to its input); weight
    (C_in, C_out/groups, kh, kw)."""

    _dims = 2


class Unfold(Module):
    """im2col as a layer: (N, C, H, W) -> (N, C*kh*kw, L)."""

    def __init__(self, kernel_size: F.Pair, dilation: F.Pair = 1, padding: F.Pair = 0, stride: F.Pair = 1) -> None:
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, input: Tensor) -> Tensor:
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """col2im as a layer: (N, C*kh*kw, L) -> (N, C, *output_size), overlapping patches summed."""

    def __init__(self, output_size: F.Pair, kernel_size: F.Pair, dilation: F.Pair = 1, padding: F.Pair = 0,
                 stride: F.Pair = 1) -> None:
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, input: Tensor) -> Tensor:
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")
