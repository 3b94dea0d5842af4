"""The `jitorch bench` suite: the workloads timed eager against compiled, with numpy yardsticks.

    jitorch bench                      # every workload, full sizes
    jitorch bench --quick              # smaller sizes and fewer repetitions (well under a minute)
    jitorch bench --only softmax       # workloads whose name contains "softmax"

Each `Workload.setup(quick)` builds its inputs and returns `(fn, args)`; `jitorch bench` times `fn(*args)`
eagerly and `jitorch.compile(fn)(*args)`, and, where a workload has one, a numpy baseline: a copy of
the same bytes (`np.copyto` into an existing array) for memory-bound kernels, whose target is a
compiled time within a small factor of that copy, and the same matmuls in bare numpy for the MLP.
`bytes` counts what a kernel must read and write at least; `flops` counts the matmuls' 2*m*n*k.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import jitorch as torch
from jitorch import nn
from jitorch.benchmarking import Target, Workload
from jitorch.nn import functional as F

FLOAT_BYTES = 4


def _vector_size(quick: bool) -> int:
    return 1 << (20 if quick else 22)


def _rows(quick: bool) -> int:
    return 1024 if quick else 4096


def _bytes(shape: Callable[[bool], tuple[int, ...]], passes: int) -> Callable[[bool], int]:
    """`passes` float32 arrays of `shape(quick)`: 2 for reading x and writing y."""
    return lambda quick: passes * FLOAT_BYTES * math.prod(shape(quick))


def _vector_shape(quick: bool) -> tuple[int, ...]:
    return (_vector_size(quick),)


def _matrix_shape(quick: bool) -> tuple[int, ...]:
    return (_rows(quick), 1024)


def _copy_baseline(shape: Callable[[bool], tuple[int, ...]]) -> Callable[[bool], Callable[[], Any]]:
    """`np.copyto` of an array of `shape(quick)` float32 into an existing one: the memory-bound floor."""
    def make(quick: bool) -> Callable[[], Any]:
        source = np.random.default_rng(0).standard_normal(shape(quick), dtype=np.float32)
        destination = np.empty_like(source)
        return lambda: np.copyto(destination, source)
    return make


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------------------------------
# memory-bound kernels


def _elementwise_chain(x: torch.Tensor) -> torch.Tensor:
    return ((x * 2.0 + 1.0).relu() - 0.5).exp()


def elementwise_chain(quick: bool) -> tuple[Callable, tuple]:
    return _elementwise_chain, (_randn(_vector_size(quick)),)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def gelu_tanh(quick: bool) -> tuple[Callable, tuple]:
    return _gelu_tanh, (_randn(_vector_size(quick)),)


def _softmax_rows(x: torch.Tensor) -> torch.Tensor:
    return F.softmax(x, dim=-1)


def softmax(quick: bool) -> tuple[Callable, tuple]:
    return _softmax_rows, (_randn(_rows(quick), 1024),)


def layer_norm(quick: bool) -> tuple[Callable, tuple]:
    weight, bias = _randn(1024), _randn(1024)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (1024,), weight, bias)
    return normalize, (_randn(_rows(quick), 1024),)


def cross_entropy(quick: bool) -> tuple[Callable, tuple]:
    rows = _rows(quick)
    targets = torch.randint(0, 1000, (rows,), generator=torch.Generator().manual_seed(1))
    return F.cross_entropy, (_randn(rows, 1000), targets)


# ----------------------------------------------------------------------------------------------------
# models

MLP_SIZES = (784, 512, 512, 10)


def _mlp_batch(quick: bool) -> int:
    return 64 if quick else 256


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def _mlp_flops(quick: bool) -> int:
    return sum(2 * _mlp_batch(quick) * m * n for m, n in zip(MLP_SIZES, MLP_SIZES[1:]))


def _mlp_step_flops(quick: bool) -> int:
    """Forward, then the backward's weight gradients (every layer) and input gradients (all but the first,
    whose input needs none)."""
    layers = [2 * _mlp_batch(quick) * m * n for m, n in zip(MLP_SIZES, MLP_SIZES[1:])]
    return 2 * sum(layers) + sum(layers[1:])


def mlp_forward(quick: bool) -> tuple[Callable, tuple]:
    model = _mlp()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, (_randn(_mlp_batch(quick), 784),)


def _mlp_numpy(quick: bool) -> Callable[[], Any]:
    """The same three matmuls in bare numpy: the floor a compiled MLP (bias and ReLU fused around them)
    is measured against."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((m, n), dtype=np.float32) / math.sqrt(m) for m, n in zip(MLP_SIZES, MLP_SIZES[1:])]
    x = rng.standard_normal((_mlp_batch(quick), 784), dtype=np.float32)
    w1, w2, w3 = weights
    return lambda: ((x @ w1) @ w2) @ w3


def mlp_train_step(quick: bool) -> tuple[Callable, tuple]:
    """The loss of the model is what gets compiled; the benchmark runs its backward too (`backward=True`)."""
    model = _mlp()
    batch = _mlp_batch(quick)
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))

    def loss(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), targets)
    return loss, (_randn(batch, 784), labels)


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with ReLU and 2x2 max-pooling, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


def _cnn_batch(quick: bool) -> int:
    return 8 if quick else 32


def _cnn_flops(quick: bool) -> int:
    pixels = _cnn_batch(quick) * 32 * 32
    return 2 * pixels * (3 * 9 * 16) + 2 * (pixels // 4) * (16 * 9 * 32) + 2 * _cnn_batch(quick) * 2048 * 10


def cnn_forward(quick: bool) -> tuple[Callable, tuple]:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, (_randn(_cnn_batch(quick), 3, 32, 32),)


def _encoder_shape(quick: bool) -> tuple[int, int]:
    return (4, 64) if quick else (16, 128)  # batch, sequence


def _encoder_flops(quick: bool) -> int:
    batch, sequence = _encoder_shape(quick)
    tokens, d_model, feedforward = batch * sequence, 256, 1024
    projections = 2 * tokens * d_model * (4 * d_model + 2 * feedforward)
    attention = 2 * 2 * batch * sequence * sequence * d_model
    return projections + attention


def transformer_encoder(quick: bool) -> tuple[Callable, tuple]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=256, nhead=4, dim_feedforward=1024, batch_first=True).eval()
    for parameter in layer.parameters():
        parameter.requires_grad_(False)
    batch, sequence = _encoder_shape(quick)
    return layer, (_randn(batch, sequence, 256),)


# ----------------------------------------------------------------------------------------------------
# overhead: a tiny function, where the cost is the call itself


def _tiny(x: torch.Tensor) -> torch.Tensor:
    return (x * 2.0 + 1.0).relu().exp()


def cache_hit(quick: bool) -> tuple[Callable, tuple]:
    return _tiny, (_randn(16),)


def _tiny_numpy(quick: bool) -> Callable[[], Any]:
    x = np.random.default_rng(0).standard_normal(16, dtype=np.float32)
    return lambda: np.exp(np.maximum(x * np.float32(2.0) + np.float32(1.0), np.float32(0.0)))


COPY_TARGET = (Target("compiled/numpy", 2.0),)  # within 2x of copying the same bytes

WORKLOADS: list[Workload] = [
    Workload("elementwise chain 5 ops (2^22)", elementwise_chain, bytes=_bytes(_vector_shape, 2),
             numpy=_copy_baseline(_vector_shape)),
    Workload("gelu tanh (2^22)", gelu_tanh, bytes=_bytes(_vector_shape, 2), numpy=_copy_baseline(_vector_shape),
             targets=(Target("compiled/numpy", 1.5), Target("speedup", 5.0, at_least=True))),
    Workload("softmax rows (4096,1024)", softmax, bytes=_bytes(_matrix_shape, 2),
             numpy=_copy_baseline(_matrix_shape), targets=COPY_TARGET),
    Workload("layer_norm (4096,1024)", layer_norm, bytes=_bytes(_matrix_shape, 2),
             numpy=_copy_baseline(_matrix_shape), targets=COPY_TARGET),
    Workload("cross_entropy (4096,1000)", cross_entropy,
             bytes=lambda quick: FLOAT_BYTES * _rows(quick) * 1000 + 8 * _rows(quick),
             numpy=_copy_baseline(lambda quick: (_rows(quick), 1000))),
    Workload("mlp forward 256x784-512-512-10", mlp_forward, flops=_mlp_flops, numpy=_mlp_numpy,
             targets=(Target("compiled/numpy", 1.1),)),
    Workload("mlp train step (fwd+loss+bwd)", mlp_train_step, flops=_mlp_step_flops, backward=True,
             targets=(Target("speedup", 1.0, at_least=True),), first_call=True),
    Workload("cnn forward 32x3x32x32", cnn_forward, flops=_cnn_flops),
    Workload("transformer encoder layer 16x128x256", transformer_encoder, flops=_encoder_flops),
    Workload("cache hit 16 elements 4 ops", cache_hit, numpy=_tiny_numpy, targets=(Target("compiled", 15e-6),)),
]
