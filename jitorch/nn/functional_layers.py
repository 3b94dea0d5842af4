"""Layer functions without sliding windows: normalization, dropout and embedding.

Each is a composite of registry primitives (reductions, elementwise ops, `gather`), so it runs eagerly
and traces into the IR unchanged. The sliding-window layers live in `functional_conv` (padding,
convolution, unfold, fold) and `functional_pooling` (pooling, interpolate). `jitorch.nn.functional`
re-exports the names in `__all__`, and theirs.
"""
from __future__ import annotations

import jitorch
from jitorch import Tensor

__all__ = [
    "batch_norm", "dropout", "dropout1d", "dropout2d", "dropout3d", "embedding", "group_norm", "instance_norm",
]


# ----------------------------------------------------------------------------------------------------
# normalization


def _stat_axes(x: Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (x.shape[1], *(1,) * (x.ndim - 2))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize over the batch (and spatial dims) per channel. Training uses the batch statistics and
    moves the running ones toward them in place (the variance unbiased, as PyTorch); eval uses the running ones."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected 2D or more input, got {input.ndim}D input")
    axes, shape = _stat_axes(input), _channel_shape(input)
    for what, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.numel() != input.shape[1]:
            raise RuntimeError(f"batch_norm: {what} should contain {input.shape[1]} elements not {t.numel()}")
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{list(input.shape)}")
        mean = input.mean(axes, keepdim=True)
        centered = input - mean
        variance = (centered * centered).mean(axes, keepdim=True)
        if running_mean is not None:
            with jitorch.no_grad():
                running_mean.copy_(running_mean * (1 - momentum) + mean.detach().reshape(-1) * momentum)
        if running_var is not None:
            with jitorch.no_grad():
                unbiased = variance.detach().reshape(-1) * (count / (count - 1))
                running_var.copy_(running_var * (1 - momentum) + unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be given when training=False")
        centered = input - running_mean.reshape(shape).to(input.dtype)
        variance = running_var.reshape(shape).to(input.dtype)
    out = centered * (variance + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch norm of each sample on its own: (N, C, ...) seen as (1, N*C, ...); running stats are averaged over N."""
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected 3D or more input, got {input.ndim}D input")
    n, c = input.shape[:2]
    folded_mean = running_mean.repeat(n) if running_mean is not None else None
    folded_var = running_var.repeat(n) if running_var is not None else None
    out = batch_norm(input.reshape(1, n * c, *input.shape[2:]), folded_mean, folded_var, None, None,
                     use_input_stats, momentum, eps).reshape(*input.shape)
    if use_input_stats:
        with jitorch.no_grad():
            for running, folded in ((running_mean, folded_mean), (running_var, folded_var)):
                if running is not None:
                    running.copy_(folded.reshape(n, c).mean(0))
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(f"group_norm: expected input with a channel count divisible by num_groups={num_groups}, "
                           f"got input of shape {list(input.shape)}")
    n = input.shape[0]
    grouped = input.reshape(n, num_groups, -1)
    mean = grouped.mean(2, keepdim=True)
    centered = grouped - mean
    variance = (centered * centered).mean(2, keepdim=True)
    out = (centered * (variance + eps).rsqrt()).reshape(*input.shape)
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


# ----------------------------------------------------------------------------------------------------
# dropout


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout(input: Tensor, p: float, training: bool, inplace: bool, mask_shape: tuple[int, ...]) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        keep = jitorch.rand(*mask_shape, dtype=input.dtype if input.dtype.is_floating_point else None) >= p
        out = keep.if_else(input * (1.0 / (1.0 - p)), 0.0)
    return input.copy_(out) if inplace else out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); the identity when not training."""
    return _dropout(input, p, training, inplace, tuple(input.shape))


def _feature_dropout(name: str, nd: int, input: Tensor, p: float, training: bool, inplace: bool) -> Tensor:
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected {nd + 1}D or {nd + 2}D input, got {input.ndim}D input")
    channels = input.ndim - nd
    return _dropout(input, p, training, inplace, (*input.shape[:channels], *(1,) * nd))


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout("dropout1d", 1, input, p, training, inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels: one mask value per (sample, channel)."""
    if input.ndim == 3:
        # PyTorch's historical behaviour: 3-D input is (N, C, L), dropped per channel
        _check_p(p)
        return _dropout(input, p, training, inplace, (*input.shape[:2], 1))
    return _feature_dropout("dropout2d", 2, input, p, training, inplace)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout("dropout3d", 3, input, p, training, inplace)


# ----------------------------------------------------------------------------------------------------
# embedding


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise AssertionError(f"Padding_idx must be within num_embeddings, got {padding_idx} for {num_embeddings}")
    return padding_idx % num_embeddings


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` picked by the integer `input`; an index outside [0, num_embeddings) raises IndexError."""
    if input.dtype.is_floating_point or input.dtype.is_bool:
        raise RuntimeError(f"embedding: expected an integer index tensor, got {input.dtype.name}")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D, got weight of shape {list(weight.shape)}")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    flat = input.reshape(-1, 1).to(jitorch.int64)
    columns = flat.expand(flat.shape[0], weight.shape[1])
    if max_norm is not None:
        with jitorch.no_grad():
            rows = weight.gather(0, columns)
            norms = (rows.abs() ** norm_type).sum(1, keepdim=True) ** (1.0 / norm_type)
            scale = (norms > max_norm).if_else(max_norm / (norms + 1e-7), 1.0)
            weight.copy_(weight.index_put((flat.reshape(-1),), rows * scale))
    # gather, unlike index, refuses negative indices, as PyTorch's embedding does
    out = weight.gather(0, columns)
    if padding_idx is not None:
        keep = (flat != padding_idx).expand(*columns.shape)
        out = keep.if_else(out, out.detach())
    return out.reshape(*input.shape, weight.shape[1])
