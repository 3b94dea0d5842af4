"""Normalization layers: BatchNorm1d/2d, InstanceNorm1d/2d, LayerNorm, GroupNorm.

Parameters (weight = 1, bias = 0), buffers (running_mean, running_var, num_batches_tracked as int64),
the momentum rule (None: cumulative average), eval-mode behaviour and reprs follow PyTorch.
"""
from __future__ import annotations

import warnings
from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.frontend.functional import layer_norm
from jitorch.nn import functional_layers as F
from jitorch.nn import init
from jitorch.nn.modules import Module
from jitorch.nn.parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LayerNorm"]


class InputRankError(RuntimeError, ValueError):
    """An input of the wrong rank for a normalization layer: a RuntimeError like jitorch's other bad-input
    errors and a ValueError like PyTorch's `expected 4D input (got 3D input)`."""


class _NormBase(Module):
    _ranks: tuple[int, ...] = ()  # accepted input ranks
    _unbatched_rank: int | None = None  # the rank of input without a batch dim, where one is accepted

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(jitorch.empty(num_features, dtype=dtype))
            self.bias = Parameter(jitorch.empty(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", jitorch.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", jitorch.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", jitorch.tensor(0, dtype=jitorch.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _check_input(self, input: Tensor) -> None:
        if input.ndim not in self._ranks:
            expected = " or ".join(f"{r}D" for r in self._ranks)
            raise InputRankError(f"{self._describe()}: expected {expected} input, got input of shape "
                                 f"{tuple(input.shape)}")
        channels = input.shape[0 if input.ndim == self._unbatched_rank else 1]
        if channels != self.num_features and (self.affine or self.track_running_stats):
            raise RuntimeError(f"{self._describe()}: expected input with {self.num_features} channels, got input "
                               f"of shape {tuple(input.shape)}")


class _BatchNorm(_NormBase):
    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        factor: Any = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                # a cumulative average; kept as a tensor so a compiled step need not read the count
                factor = 1.0 / self.num_batches_tracked.to(jitorch.float64)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if keep_running else None,
                            self.running_var if keep_running else None, self.weight, self.bias, use_batch_stats,
                            factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L) input, per channel C."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W) input, per channel C."""

    _ranks = (4,)


class _InstanceNorm(_NormBase):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        batched = input.ndim != self._unbatched_rank
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.num_features:
            warnings.warn(f"{self._describe()}: input has {x.shape[1]} channels but num_features is "
                          f"{self.num_features}; they are ignored since affine=False and track_running_stats=False",
                          stacklevel=2)
        out = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                              self.training or not self.track_running_stats,
                              0.0 if self.momentum is None else self.momentum, self.eps)
        return out if batched else out.squeeze(0)


class InstanceNorm1d(_InstanceNorm):
    """Each sample's channels normalized over L: (N, C, L) or (C, L) input."""

    _ranks = (2, 3)
    _unbatched_rank = 2


class InstanceNorm2d(_InstanceNorm):
    """Each sample's channels normalized over H, W: (N, C, H, W) or (C, H, W) input."""

    _ranks = (3, 4)
    _unbatched_rank = 3


class LayerNorm(Module):
    """Normalize over the trailing `normalized_shape` dims, with an elementwise weight and bias."""

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = tuple(int(s) for s in shape), eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(jitorch.ones(*self.normalized_shape, dtype=dtype))
            if bias:
                self.bias = Parameter(jitorch.zeros(*self.normalized_shape, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if tuple(input.shape[input.ndim - n:]) != self.normalized_shape or input.ndim < n:
            raise RuntimeError(f"{type(self).__name__}({self.extra_repr()}): expected input with shape "
                               f"[*, {', '.join(map(str, self.normalized_shape))}], got input of shape "
                               f"{tuple(input.shape)}")
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Normalize each sample over groups of channels (and all spatial positions)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        if affine:
            self.weight = Parameter(jitorch.ones(num_channels, dtype=dtype))
            self.bias = Parameter(jitorch.zeros(num_channels, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim < 2 or input.shape[1] != self.num_channels:
            raise RuntimeError(f"{type(self).__name__}({self.extra_repr()}): expected input with "
                               f"{self.num_channels} channels, got input of shape {tuple(input.shape)}")
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
