"""numpy reference implementations of the nn layers and losses, and the gradient checkers the nn tests share.

The references are written independently of jitorch, in float64, from PyTorch's documented formulas.
`check_function` and `check_module` compare jitorch's forward with a reference and jitorch's gradients
with central finite differences *of the reference*, so one check covers values and autograd.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import jitorch

_erf = np.vectorize(math.erf, otypes=[np.float64])


def away_from(x: np.ndarray, points: Sequence[float], margin: float = 1e-2) -> np.ndarray:
    """`x` with values near a kink of a piecewise function moved off it, so finite differences are valid."""
    x = np.array(x, dtype=np.float64)
    for point in points:
        near = np.abs(x - point) < margin
        x[near] = point + np.where(x[near] >= point, margin, -margin)
    return x


# -------------------------------------------------------------------------------------------------
# the gradient checkers


def numeric_gradients(fn: Callable[..., float], arrays: list[np.ndarray], eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the scalar fn(*arrays) with respect to every element of every array."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for a in arrays:
        grad = np.zeros_like(a)
        for index in np.ndindex(a.shape):
            original = a[index]
            a[index] = original + eps
            plus = fn(*arrays)
            a[index] = original - eps
            minus = fn(*arrays)
            a[index] = original
            grad[index] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def _compare_gradients(out: jitorch.Tensor, leaves: list[jitorch.Tensor], reference: Callable[..., np.ndarray],
                       arrays: list[np.ndarray], seed: int, rtol: float, atol: float) -> None:
    projection = np.random.default_rng(seed).standard_normal(np.shape(reference(*arrays)))
    (out * jitorch.tensor(projection)).sum().backward()
    numeric = numeric_gradients(lambda *xs: float((reference(*xs) * projection).sum()), arrays)
    for i, (leaf, expected) in enumerate(zip(leaves, numeric)):
        assert leaf.grad is not None, f"no gradient reached differentiable argument {i}"
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of differentiable argument {i}")


def check_function(fn: Callable[..., jitorch.Tensor], reference: Callable[..., np.ndarray],
                   inputs: Sequence[np.ndarray], constants: Sequence[Any] = (), seed: int = 0,
                   rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """fn(*inputs, *constants) against reference(*inputs, *constants) in float64: values, and the gradients
    of the differentiable `inputs` against finite differences of the reference.

    Constants (targets, class indices, weights) are numpy arrays, turned into tensors of their own dtype.
    """
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    leaves = [jitorch.tensor(a, requires_grad=True) for a in arrays]
    fixed = [jitorch.tensor(c) if isinstance(c, np.ndarray) else c for c in constants]
    out = fn(*leaves, *fixed)

    def ref(*xs: np.ndarray) -> np.ndarray:
        return np.asarray(reference(*xs, *constants), dtype=np.float64)

    np.testing.assert_allclose(out.detach().numpy(), ref(*arrays), rtol=rtol, atol=atol, err_msg="forward")
    _compare_gradients(out, leaves, ref, arrays, seed, rtol=1e-5, atol=1e-7)


def check_module(module: jitorch.nn.Module, reference: Callable[..., np.ndarray], inputs: Sequence[np.ndarray],
                 seed: int = 0) -> None:
    """A module against reference(*inputs, **parameters) with the module's own weights.

    First in the module's default float32 (the same weights give the same outputs), then in float64
    for the gradients of the inputs and of every parameter against finite differences of the reference.
    """
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    names = [name for name, _ in module.named_parameters()]

    def ref(*xs: np.ndarray) -> np.ndarray:
        return np.asarray(reference(*xs[:len(arrays)], **dict(zip(names, xs[len(arrays):]))), dtype=np.float64)

    out32 = module(*[jitorch.tensor(a, dtype=jitorch.float32) for a in arrays])
    weights32 = [p.detach().numpy().astype(np.float64) for p in module.parameters()]
    expected32 = ref(*[a.astype(np.float32).astype(np.float64) for a in arrays], *weights32)
    np.testing.assert_allclose(out32.detach().numpy(), expected32, rtol=1e-5, atol=1e-6, err_msg="float32 forward")

    module.double()
    leaves = [jitorch.tensor(a, requires_grad=True) for a in arrays]
    params = list(module.parameters())
    out = module(*leaves)
    all_arrays = arrays + [p.detach().numpy().copy() for p in params]
    np.testing.assert_allclose(out.detach().numpy(), ref(*all_arrays), rtol=1e-10, atol=1e-12, err_msg="forward")
    _compare_gradients(out, leaves + params, ref, all_arrays, seed, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------------------------------
# layers


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    out = x @ weight.T
    return out if bias is None else out + bias


def bilinear(x1: np.ndarray, x2: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    out = np.einsum("...i,oij,...j->...o", x1, weight, x2)
    return out if bias is None else out + bias


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    return np.where(x * beta > threshold, x, np.logaddexp(0.0, beta * x) / beta)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def glu(x: np.ndarray, dim: int = -1) -> np.ndarray:
    first, second = np.split(x, 2, axis=dim)
    return first / (1.0 + np.exp(-second))


def prelu(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    shape = [1] * x.ndim
    if weight.size > 1:
        shape[1 if x.ndim >= 2 else 0] = weight.size
    return np.where(x > 0, x, weight.reshape(shape) * x)


# name -> (module, numpy function, kinks to keep finite-difference samples away from)
ACTIVATIONS: dict[str, tuple[Callable[[], Any], Callable[[np.ndarray], np.ndarray], tuple[float, ...]]] = {
    "ReLU": (lambda: jitorch.nn.ReLU(), lambda x: np.maximum(x, 0.0), (0.0,)),
    "ReLU6": (lambda: jitorch.nn.ReLU6(), lambda x: np.clip(x, 0.0, 6.0), (0.0, 6.0)),
    "LeakyReLU": (lambda: jitorch.nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x), (0.0,)),
    "ELU": (lambda: jitorch.nn.ELU(alpha=1.5), lambda x: elu(x, 1.5), (0.0,)),
    "CELU": (lambda: jitorch.nn.CELU(alpha=2.0), lambda x: np.maximum(x, 0) + np.minimum(0, 2 * np.expm1(x / 2)),
             (0.0,)),
    "SELU": (lambda: jitorch.nn.SELU(), lambda x: SELU_SCALE * elu(x, SELU_ALPHA), (0.0,)),
    "GELU": (lambda: jitorch.nn.GELU(), lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), ()),
    "GELU-tanh": (lambda: jitorch.nn.GELU(approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), ()),
    "SiLU": (lambda: jitorch.nn.SiLU(), lambda x: x / (1 + np.exp(-x)), ()),
    "Mish": (lambda: jitorch.nn.Mish(), lambda x: x * np.tanh(np.logaddexp(0.0, x)), ()),
    "Sigmoid": (lambda: jitorch.nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)), ()),
    "Tanh": (lambda: jitorch.nn.Tanh(), np.tanh, ()),
    "LogSigmoid": (lambda: jitorch.nn.LogSigmoid(), lambda x: -np.logaddexp(0.0, -x), ()),
    "Softplus": (lambda: jitorch.nn.Softplus(beta=2.0, threshold=3.0), lambda x: softplus(x, 2.0, 3.0), (1.5,)),
    "Hardtanh": (lambda: jitorch.nn.Hardtanh(-0.5, 2.0), lambda x: np.clip(x, -0.5, 2.0), (-0.5, 2.0)),
    "Softsign": (lambda: jitorch.nn.Softsign(), lambda x: x / (1 + np.abs(x)), (0.0,)),
    "Tanhshrink": (lambda: jitorch.nn.Tanhshrink(), lambda x: x - np.tanh(x), ()),
    "Hardswish": (lambda: jitorch.nn.Hardswish(), lambda x: x * np.clip(x + 3, 0, 6) / 6, (-3.0, 3.0)),
    "Hardsigmoid": (lambda: jitorch.nn.Hardsigmoid(), lambda x: np.clip(x + 3, 0, 6) / 6, (-3.0, 3.0)),
    "Threshold": (lambda: jitorch.nn.Threshold(0.5, -2.0), lambda x: np.where(x > 0.5, x, -2.0), (0.5,)),
    "Hardshrink": (lambda: jitorch.nn.Hardshrink(0.7), lambda x: np.where(np.abs(x) > 0.7, x, 0.0), (-0.7, 0.7)),
    "Softshrink": (lambda: jitorch.nn.Softshrink(0.7),
                   lambda x: np.where(x > 0.7, x - 0.7, np.where(x < -0.7, x + 0.7, 0.0)), (-0.7, 0.7)),
    "Softmax": (lambda: jitorch.nn.Softmax(dim=1), lambda x: softmax(x, 1), ()),
    "Softmin": (lambda: jitorch.nn.Softmin(dim=-1), lambda x: softmax(-x, -1), ()),
    "LogSoftmax": (lambda: jitorch.nn.LogSoftmax(dim=0), lambda x: log_softmax(x, 0), ()),
    "GLU": (lambda: jitorch.nn.GLU(dim=1), lambda x: glu(x, 1), ()),
}


# -------------------------------------------------------------------------------------------------
# losses


def reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def smooth_l1(x: np.ndarray, y: np.ndarray, reduction: str = "mean", beta: float = 1.0) -> np.ndarray:
    d = np.abs(x - y)
    return reduce(np.where(d < beta, 0.5 * d ** 2 / beta, d - 0.5 * beta), reduction)


def huber(x: np.ndarray, y: np.ndarray, reduction: str = "mean", delta: float = 1.0) -> np.ndarray:
    d = np.abs(x - y)
    return reduce(np.where(d < delta, 0.5 * d ** 2, delta * (d - 0.5 * delta)), reduction)


def nll(log_probs: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, ignore_index: int = -100,
        reduction: str = "mean", label_smoothing: float = 0.0) -> np.ndarray:
    """PyTorch's NLL with class weights, ignore_index and label smoothing; classes on axis 1 (0 if 1-D)."""
    lp = np.moveaxis(log_probs, 1 if log_probs.ndim > 1 else 0, -1)
    classes = lp.shape[-1]
    w = np.ones(classes) if weight is None else np.asarray(weight, dtype=np.float64)
    kept = target != ignore_index
    safe = np.where(kept, target, 0)
    picked = np.take_along_axis(lp, safe[..., None], axis=-1)[..., 0]
    target_weight = w[safe] * kept
    losses = -picked * target_weight
    smooth = -(lp * w).sum(-1) * kept
    if reduction == "none":
        total, smoothed = losses, smooth
    elif reduction == "sum":
        total, smoothed = losses.sum(), smooth.sum()
    else:
        total, smoothed = losses.sum() / target_weight.sum(), smooth.sum() / target_weight.sum()
    return (1 - label_smoothing) * total + label_smoothing / classes * smoothed


def cross_entropy(logits: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0) -> np.ndarray:
    axis = 1 if logits.ndim > 1 else 0
    lp = log_softmax(logits, axis)
    if target.shape != logits.shape:
        return nll(lp, target, weight, ignore_index, reduction, label_smoothing)
    classes = logits.shape[axis]
    target = target * (1 - label_smoothing) + label_smoothing / classes
    shape = [1] * logits.ndim
    shape[axis] = classes
    w = np.ones(shape) if weight is None else np.asarray(weight, dtype=np.float64).reshape(shape)
    per_sample = -(lp * target * w).sum(axis)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.sum() / (logits.size / classes)


def bce(p: np.ndarray, t: np.ndarray, weight: np.ndarray | None = None, reduction: str = "mean") -> np.ndarray:
    with np.errstate(divide="ignore"):
        loss = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    return reduce(loss if weight is None else loss * weight, reduction)


def bce_with_logits(x: np.ndarray, t: np.ndarray, weight: np.ndarray | None = None, reduction: str = "mean",
                    pos_weight: np.ndarray | None = None) -> np.ndarray:
    pw = 1.0 if pos_weight is None else pos_weight
    loss = (1 - t) * x + (1 + (pw - 1) * t) * np.logaddexp(0.0, -x)
    return reduce(loss if weight is None else loss * weight, reduction)


def kl_div(x: np.ndarray, t: np.ndarray, reduction: str = "mean", log_target: bool = False) -> np.ndarray:
    if log_target:
        loss = np.exp(t) * (t - x)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0) - t * x
    return loss.sum() / x.shape[0] if reduction == "batchmean" else reduce(loss, reduction)


def cosine_embedding(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, margin: float = 0.0,
                     reduction: str = "mean") -> np.ndarray:
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1 ** 2).sum(-1) + 1e-12) * ((x2 ** 2).sum(-1) + 1e-12))
    return reduce(np.where(y == 1, 1 - cos, np.maximum(cos - margin, 0.0)), reduction)


def triplet_margin(a: np.ndarray, p: np.ndarray, n: np.ndarray, margin: float = 1.0,
                   reduction: str = "mean") -> np.ndarray:
    d_pos = np.linalg.norm(a - p + 1e-6, axis=-1)
    d_neg = np.linalg.norm(a - n + 1e-6, axis=-1)
    return reduce(np.maximum(d_pos - d_neg + margin, 0.0), reduction)


# helpers shared by the conv/pool and norm/dropout/embedding tests


def t(array: np.ndarray, requires_grad: bool = False) -> jitorch.Tensor:
    return jitorch.tensor(np.asarray(array), requires_grad=requires_grad)


def close(actual: jitorch.Tensor, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=rtol, atol=atol)


def gradcheck(fn, arrays: list[np.ndarray], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Backward of sum(fn(*inputs) * cotangent) against central differences, every input, float64."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    inputs = [t(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    cotangent = np.random.default_rng(0).standard_normal(tuple(out.shape))
    (out * t(cotangent)).sum().backward()

    def loss(values: list[np.ndarray]) -> float:
        with jitorch.no_grad():
            return float((fn(*[t(v) for v in values]).numpy() * cotangent).sum())

    eps = 1e-6
    for i, array in enumerate(arrays):
        numeric = np.zeros_like(array)
        for j in range(array.size):
            plus, minus = [a.copy() for a in arrays], [a.copy() for a in arrays]
            plus[i].flat[j] += eps
            minus[i].flat[j] -= eps
            numeric.flat[j] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(inputs[i].grad.numpy(), numeric, rtol=rtol, atol=atol, err_msg=f"input {i}")
