"""`jitorch.nn.functional`: linear maps, distances and losses as functions, and the re-exported functional
forms of the activations (`nn.activation`) and of the other layers (`nn.functional_conv`,
`nn.functional_pooling`, `nn.functional_layers`, `nn.functional_attention`).

Everything is written with Tensor operations (registry primitives and the composites of
`jitorch.frontend.functional`), so each function runs eagerly and traces into the IR unchanged; class
indices are used through `gather` and comparisons, never read into Python. As in the activations,
piecewise losses choose their formula per element with one condition and keep the unused branch finite.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.frontend import functional as core
from jitorch.frontend.functional import layer_norm  # noqa: F401 - re-exported as F.layer_norm
from jitorch.nn.activation import (  # noqa: F401 - the activation functions, re-exported
    _log1p_exp,
    celu,
    elu,
    elu_,
    gelu,
    glu,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    hardtanh_,
    leaky_relu,
    leaky_relu_,
    log_softmax,
    logsigmoid,
    mish,
    prelu,
    relu,
    relu6,
    relu_,
    selu,
    sigmoid,
    silu,
    softmax,
    softmin,
    softplus,
    softshrink,
    softsign,
    tanh,
    tanhshrink,
    threshold,
)
from jitorch.nn.functional_attention import (  # noqa: F401 - re-exported
    multi_head_attention_forward,
    scaled_dot_product_attention,
)
from jitorch.nn.functional_conv import (  # noqa: F401 - the convolution functions, re-exported
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
    fold,
    pad,
    unfold,
)
from jitorch.nn.functional_layers import (  # noqa: F401 - normalization, dropout, embedding, re-exported
    batch_norm,
    dropout,
    dropout1d,
    dropout2d,
    dropout3d,
    embedding,
    group_norm,
    instance_norm,
)
from jitorch.nn.functional_pooling import (  # noqa: F401 - the pooling functions, re-exported
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    interpolate,
    max_pool1d,
    max_pool2d,
)

# -------------------------------------------------------------------------------------------------
# linear maps


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return core.linear(input, weight, bias)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y[..., o] = sum_ij input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o], as one matmul."""
    out_features, in1, in2 = weight.shape
    if input1.ndim == 0 or input1.shape[-1] != in1 or input2.ndim == 0 or input2.shape[-1] != in2 \
            or tuple(input1.shape[:-1]) != tuple(input2.shape[:-1]):
        raise RuntimeError(f"bilinear(): expected inputs of shapes (*, {in1}) and (*, {in2}) with the same leading "
                           f"dimensions, got {tuple(input1.shape)} and {tuple(input2.shape)}")
    lead = tuple(input1.shape[:-1])
    projected = input1.reshape(-1, in1).matmul(weight.permute(1, 0, 2).reshape(in1, out_features * in2))
    out = (projected.reshape(-1, out_features, in2) * input2.reshape(-1, 1, in2)).sum(-1)
    if bias is not None:
        out = out + bias
    return out.reshape(*lead, out_features)


# -------------------------------------------------------------------------------------------------
# norms and distances


def _vector_norm(x: Tensor, ord: float = 2.0, dim: Any = None, keepdim: bool = False) -> Tensor:
    """The p-norm over `dim`; its gradient at a zero vector is 0 (not NaN), as PyTorch's is."""
    if ord == math.inf:
        return x.abs().amax(() if dim is None else dim, keepdim)
    if ord == -math.inf:
        return x.abs().amin(() if dim is None else dim, keepdim)
    if ord == 0:
        return (x != 0).to(x.dtype).sum(dim, keepdim)
    if ord == 1:
        return x.abs().sum(dim, keepdim)
    powered = (x * x) if ord == 2 else x.abs() ** ord
    total = powered.sum(dim, keepdim)
    nonzero = total > 0
    safe = nonzero.if_else(total, 1.0)
    return nonzero.if_else(safe.sqrt() if ord == 2 else safe ** (1.0 / ord), 0.0)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> Tensor:
    return input / _vector_norm(input, p, dim, keepdim=True).clamp(min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    x1, x2 = jitorch.broadcast_tensors(x1, x2)
    norm1, norm2 = _vector_norm(x1, 2, dim, keepdim=True), _vector_norm(x2, 2, dim, keepdim=True)
    # PyTorch clamps the norms in place under no_grad: clamped values, gradients as if unclamped
    norm1 = norm1 + (norm1.clamp(min=eps) - norm1).detach()
    norm2 = norm2 + (norm2.clamp(min=eps) - norm2).detach()
    return ((x1 / norm1) * (x2 / norm2)).sum(dim)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    dim = max(x1.ndim, x2.ndim) - 1
    return _vector_norm(x1 - x2 + eps, p, max(dim, 0), keepdim)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors along a new last dim; built with scatter_add, which range-checks the classes."""
    if tensor.dtype.is_floating_point or tensor.dtype is jitorch.bool:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        if tensor.numel() == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(tensor.max().item()) + 1
    index = tensor.to(jitorch.int64).unsqueeze(-1)
    zeros = jitorch.zeros(*tensor.shape, num_classes, dtype=jitorch.int64)
    try:
        return zeros.scatter_add(-1, index, jitorch.ones(*index.shape, dtype=jitorch.int64))
    except IndexError:
        negative = any(v < 0 for v in index.reshape(-1).tolist())
        raise RuntimeError("Class values must be non-negative." if negative else
                           "Class values must be smaller than num_classes.") from None


# -------------------------------------------------------------------------------------------------
# loss helpers


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str, extra: tuple = ()) -> str:
    """The reduction, from the legacy (size_average, reduce) flags when either is given."""
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce args will be deprecated, please use reduction='...' instead.",
                      stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        return "mean" if size_average and reduce else "sum" if reduce else "none"
    if reduction not in ("none", "mean", "sum", *extra):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _broadcast_pair(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      f"This will likely lead to incorrect results due to broadcasting. Please ensure they have "
                      f"the same size.", stacklevel=3)
    return jitorch.broadcast_tensors(input, target)


# -------------------------------------------------------------------------------------------------
# regression losses


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
            reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    input, target = _broadcast_pair(input, target)
    return _reduce((input - target).abs(), reduction)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
             reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    input, target = _broadcast_pair(input, target)
    difference = input - target
    return _reduce(difference * difference, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    input, target = _broadcast_pair(input, target)
    distance = (input - target).abs()
    if beta == 0:
        return _reduce(distance, reduction)
    return _reduce((distance < beta).if_else(distance * distance * (0.5 / beta), distance - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    reduction = _reduction(None, None, reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    input, target = _broadcast_pair(input, target)
    distance = (input - target).abs()
    return _reduce((distance < delta).if_else(distance * distance * 0.5, (distance - 0.5 * delta) * delta), reduction)


# -------------------------------------------------------------------------------------------------
# classification losses


def _class_nll(name: str, log_probs: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
               reduction: str, label_smoothing: float = 0.0) -> Tensor:
    """Negative log-likelihood of class indices: input (C) or (N, C, d1, ...), target () or (N, d1, ...).

    'mean' is PyTorch's weighted mean: the sum of weight[target] * loss over targets that are not
    `ignore_index`, divided by the sum of those weights.
    """
    if log_probs.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {log_probs.ndim})")
    if target.dtype.is_floating_point or target.dtype is jitorch.bool:
        raise RuntimeError(f"{name}: expected target class indices of an integer dtype (int64), got {target.dtype}")
    batched = log_probs.ndim > 1
    expected = (log_probs.shape[0], *log_probs.shape[2:]) if batched else ()
    if batched and target.ndim and target.shape[0] != log_probs.shape[0]:
        raise ValueError(f"Expected input batch_size ({log_probs.shape[0]}) to match target batch_size "
                         f"({target.shape[0]}).")
    if tuple(target.shape) != expected:
        raise RuntimeError(f"{name}: expected target size {list(expected)} for input of size "
                           f"{list(log_probs.shape)}, got {list(target.shape)}")
    classes = log_probs.shape[1 if batched else 0]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != classes):
        raise RuntimeError(f"{name}: weight tensor should be defined either for all {classes} classes or no classes "
                           f"but got weight tensor of shape: {list(weight.shape)}")
    if not batched:
        log_probs, target = log_probs.unsqueeze(0), target.reshape(1)
    ignored = target == ignore_index
    safe = ignored.if_else(0, target)
    try:
        picked = log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    except IndexError:
        bad = next(v for v in safe.reshape(-1).tolist() if not 0 <= v < classes)
        raise IndexError(f"{name}: target {bad} is out of bounds for {classes} classes") from None
    if weight is None:
        weights = ignored.logical_not().to(log_probs.dtype)
    else:
        weights = ignored.if_else(0.0, weight.gather(0, safe.reshape(-1)).reshape(*safe.shape))

    total_weight = weights.sum() if reduction == "mean" else None

    def reduce(losses: Tensor) -> Tensor:
        if reduction == "none":
            return losses if batched else losses.reshape(())
        return losses.sum() if total_weight is None else losses.sum() / total_weight

    out = reduce(-(picked * weights))
    if label_smoothing > 0:
        scaled = log_probs if weight is None else log_probs * weight.reshape(classes, *([1] * (log_probs.ndim - 2)))
        smooth = reduce(ignored.if_else(0.0, -scaled.sum(1)))
        out = out * (1.0 - label_smoothing) + smooth * (label_smoothing / classes)
    return out


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    return _class_nll("nll_loss", input, target, weight, ignore_index, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy of logits `input` (C) or (N, C, d1, ...) with class indices or class probabilities."""
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    class_dim = 0 if input.ndim == 1 else 1
    log_probs = core.log_softmax(input, class_dim)
    if tuple(target.shape) != tuple(input.shape):
        return _class_nll("cross_entropy", log_probs, target, weight, ignore_index, reduction, label_smoothing)
    if not target.dtype.is_floating_point:
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got {target.dtype}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    classes = input.shape[class_dim]
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + label_smoothing / classes
    terms = log_probs * target
    if weight is not None:
        terms = terms * weight.reshape(classes, *([1] * (input.ndim - class_dim - 1)))
    if reduction == "none":
        return -terms.sum(class_dim)
    if reduction == "sum":
        return -terms.sum()
    return -terms.sum() / (input.numel() / classes)


def _check_same_size(input: Tensor, target: Tensor, message: str) -> None:
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(message.format(target=target.shape, input=input.shape))


def _clamped_log(x: Tensor) -> Tensor:
    """log(x) clamped below at -100 as PyTorch's BCE does, with no NaN gradient where x is 0."""
    positive = x > 0
    return positive.if_else(positive.if_else(x, 1.0).log(), -100.0).clamp(min=-100.0)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "Using a target size ({target}) that is different to the input size ({input}) "
                                    "is deprecated. Please ensure they have the same size.")
    loss = -(target * _clamped_log(input) + (1.0 - target) * _clamped_log(1.0 - input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """-[p t log(sigmoid(x)) + (1 - t) log(1 - sigmoid(x))], from log(1 + exp(-x)) computed without overflow."""
    reduction = _reduction(size_average, reduce, reduction)
    _check_same_size(input, target, "Target size ({target}) must be the same as input size ({input})")
    neg_log_sigmoid = _log1p_exp(-input)
    if pos_weight is not None:
        loss = (1.0 - target) * input + ((pos_weight - 1.0) * target + 1.0) * neg_log_sigmoid
    else:
        loss = (1.0 - target) * input + neg_log_sigmoid
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _xlogy(x: Tensor, y: Tensor) -> Tensor:
    """x * log(y), 0 where x is 0."""
    zero = x == 0
    return zero.if_else(0.0, x * zero.if_else(1.0, y).log())


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL(target || input) pointwise, with `input` given as log-probabilities."""
    reduction = _reduction(size_average, reduce, reduction, extra=("batchmean",))
    if reduction == "mean" and size_average is None and reduce is None:
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    loss = target.exp() * (target - input) if log_target else _xlogy(target, target) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: bool | None = None, eps: float = 1e-8, reduce: bool | None = None,
                     reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        safe = (target > 1).if_else(target, 2.0)
        stirling = safe * safe.log() - safe + (safe * (2 * math.pi)).log() * 0.5
        loss = loss + (target > 1).if_else(stirling, 0.0)
    return _reduce(loss, reduction)


# -------------------------------------------------------------------------------------------------
# embedding and margin losses


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: bool | None = None, reduce: bool | None = None,
                          reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if input1.ndim not in (1, 2) or tuple(input1.shape) != tuple(input2.shape):
        raise RuntimeError(f"cosine_embedding_loss: expected two 1D or 2D inputs of the same shape, got "
                           f"{tuple(input1.shape)} and {tuple(input2.shape)}")
    dim = input1.ndim - 1
    epsilon = 1e-12
    products = (input1 * input2).sum(dim)
    magnitudes = ((input1 * input1).sum(dim) + epsilon) * ((input2 * input2).sum(dim) + epsilon)
    cosine = products / magnitudes.sqrt()
    loss = (target == 1).if_else(1.0 - cosine, 0.0) + (target == -1).if_else((cosine - margin).clamp(min=0.0), 0.0)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if not input1.ndim == input2.ndim == target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
                           f"input1: {input1.shape}, input2: {input2.shape}, target: {target.shape} ")
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0.0), reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average: bool | None = None,
                         reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    loss = (target != 1).if_else((margin - input).clamp(min=0.0), 0.0) + (target != -1).if_else(input, 0.0)
    return _reduce(loss, reduction)


def soft_margin_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,
                     reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    return _reduce(_log1p_exp(-target * input), reduction)


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average: bool | None = None, reduce: bool | None = None,
                                reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    loss = -(target * logsigmoid(input) + (1.0 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    class_dim = input.ndim - 1
    return _reduce(loss.sum(class_dim) / input.shape[class_dim], reduction)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average: bool | None = None,
                        reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same number of "
                           f"dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative "
                           f"{negative.ndim}D inputs")
    to_positive = pairwise_distance(anchor, positive, p, eps)
    to_negative = pairwise_distance(anchor, negative, p, eps)
    if swap:
        to_negative = to_negative.minimum(pairwise_distance(positive, negative, p, eps))
    return _reduce((to_positive - to_negative + margin).clamp(min=0.0), reduction)
