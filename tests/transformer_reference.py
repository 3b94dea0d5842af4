"""The numpy reference the attention and Transformer tests compare against, and their harness.

The references are written from PyTorch's documented formulas, in float64, independently of jitorch:
multi-head attention (masks of every kind, bias_kv, zero attention), layer norm, the feed-forward block,
the encoder and decoder layers (post- and pre-norm) and nn.Transformer. `check_against_reference` runs a
module with the reference's weights and compares forward (float32 and float64) and gradients (against
finite differences of the reference).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

import jitorch
from jitorch import nn
from tests.nn_reference import numeric_gradients

_erf = np.vectorize(math.erf, otypes=[np.float64])


def sample(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -------------------------------------------------------------------------------------------------
# the numpy reference


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def additive(mask: np.ndarray | None) -> np.ndarray | None:
    """A bool mask (True = masked) as the float mask PyTorch adds to the scores."""
    if mask is None or mask.dtype != np.bool_:
        return mask
    return np.where(mask, -np.inf, 0.0)


def params_under(params: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def reference_mha(q: np.ndarray, k: np.ndarray, v: np.ndarray, p: dict[str, np.ndarray], heads: int,
                  attn_mask: np.ndarray | None = None, key_padding_mask: np.ndarray | None = None,
                  add_zero_attn: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sequence-first q (L, N, E), k (S, N, Ek), v (S, N, Ev): (output (L, N, E), weights (N, heads, L, S))."""
    if "in_proj_weight" in p:
        wq, wk, wv = np.split(p["in_proj_weight"], 3)
    else:
        wq, wk, wv = p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"]
    bq, bk, bv = np.split(p["in_proj_bias"], 3) if "in_proj_bias" in p else (0.0, 0.0, 0.0)
    big_q, big_k, big_v = q @ wq.T + bq, k @ wk.T + bk, v @ wv.T + bv
    length, batch, embed = big_q.shape
    attn_mask, key_padding_mask = additive(attn_mask), additive(key_padding_mask)
    extra = []
    if "bias_k" in p:
        big_k = np.concatenate([big_k, np.broadcast_to(p["bias_k"], (1, batch, embed))])
        big_v = np.concatenate([big_v, np.broadcast_to(p["bias_v"], (1, batch, embed))])
        extra.append(1)
    head_dim = embed // heads

    def split(x: np.ndarray) -> np.ndarray:  # (T, N, E) -> (N, heads, T, head_dim)
        return x.reshape(x.shape[0], batch, heads, head_dim).transpose(1, 2, 0, 3)

    qh, kh, vh = split(big_q), split(big_k), split(big_v)
    if add_zero_attn:
        zeros = np.zeros((batch, heads, 1, head_dim))
        kh, vh = np.concatenate([kh, zeros], axis=2), np.concatenate([vh, zeros], axis=2)
        extra.append(1)
    scores = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(head_dim)
    pad = [(0, 0)] * (scores.ndim - 1) + [(0, sum(extra))]
    if attn_mask is not None:
        mask = attn_mask if attn_mask.ndim == 2 else attn_mask.reshape(batch, heads, *attn_mask.shape[1:])
        scores = scores + np.pad(np.broadcast_to(mask, scores.shape[:-1] + (mask.shape[-1],)), pad)
    if key_padding_mask is not None:
        scores = scores + np.pad(np.broadcast_to(key_padding_mask[:, None, None, :],
                                                 scores.shape[:-1] + (key_padding_mask.shape[-1],)), pad)
    weights = softmax(scores)
    out = (weights @ vh).transpose(2, 0, 1, 3).reshape(length, batch, embed)
    out = out @ p["out_proj.weight"].T + p.get("out_proj.bias", 0.0)
    return out, weights


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float = 1e-5) -> np.ndarray:
    centered = x - x.mean(axis=-1, keepdims=True)
    out = centered / np.sqrt((centered ** 2).mean(axis=-1, keepdims=True) + eps) * weight
    return out if bias is None else out + bias


ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "gelu": lambda x: x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0))),
               "tanh": np.tanh}


def feed_forward(x: np.ndarray, p: dict[str, np.ndarray], activation: str) -> np.ndarray:
    hidden = ACTIVATIONS[activation](x @ p["linear1.weight"].T + p["linear1.bias"])
    return hidden @ p["linear2.weight"].T + p["linear2.bias"]


def layer_norm_of(p: dict[str, np.ndarray], name: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: layer_norm(x, p[f"{name}.weight"], p.get(f"{name}.bias"))


def reference_encoder_layer(x: np.ndarray, p: dict[str, np.ndarray], heads: int, norm_first: bool = False,
                            activation: str = "relu", mask: np.ndarray | None = None,
                            padding: np.ndarray | None = None) -> np.ndarray:
    def attend(y: np.ndarray) -> np.ndarray:
        return reference_mha(y, y, y, params_under(p, "self_attn."), heads, mask, padding)[0]

    norm1, norm2 = layer_norm_of(p, "norm1"), layer_norm_of(p, "norm2")
    if norm_first:
        x = x + attend(norm1(x))
        return x + feed_forward(norm2(x), p, activation)
    x = norm1(x + attend(x))
    return norm2(x + feed_forward(x, p, activation))


def reference_decoder_layer(x: np.ndarray, memory: np.ndarray, p: dict[str, np.ndarray], heads: int,
                            norm_first: bool = False, activation: str = "relu", tgt_mask: np.ndarray | None = None,
                            memory_mask: np.ndarray | None = None, tgt_padding: np.ndarray | None = None,
                            memory_padding: np.ndarray | None = None) -> np.ndarray:
    def attend(y: np.ndarray) -> np.ndarray:
        return reference_mha(y, y, y, params_under(p, "self_attn."), heads, tgt_mask, tgt_padding)[0]

    def cross(y: np.ndarray) -> np.ndarray:
        attention = params_under(p, "multihead_attn.")
        return reference_mha(y, memory, memory, attention, heads, memory_mask, memory_padding)[0]

    norm1, norm2, norm3 = layer_norm_of(p, "norm1"), layer_norm_of(p, "norm2"), layer_norm_of(p, "norm3")
    if norm_first:
        x = x + attend(norm1(x))
        x = x + cross(norm2(x))
        return x + feed_forward(norm3(x), p, activation)
    x = norm1(x + attend(x))
    x = norm2(x + cross(x))
    return norm3(x + feed_forward(x, p, activation))


def reference_transformer(src: np.ndarray, tgt: np.ndarray, p: dict[str, np.ndarray], heads: int, layers: int,
                          tgt_mask: np.ndarray | None = None, src_padding: np.ndarray | None = None) -> np.ndarray:
    memory = src
    for i in range(layers):
        memory = reference_encoder_layer(memory, params_under(p, f"encoder.layers.{i}."), heads, padding=src_padding)
    memory = layer_norm_of(p, "encoder.norm")(memory)
    out = tgt
    for i in range(layers):
        out = reference_decoder_layer(out, memory, params_under(p, f"decoder.layers.{i}."), heads, tgt_mask=tgt_mask,
                                      memory_padding=src_padding)
    return layer_norm_of(p, "decoder.norm")(out)


# -------------------------------------------------------------------------------------------------
# the harness


def check_against_reference(module: nn.Module, call: Callable, reference: Callable, inputs: list[np.ndarray],
                            gradients: bool = True, rtol32: float = 1e-5, atol32: float = 1e-5) -> None:
    """call(module, *tensors) -> tensor against reference(*arrays, params) with the module's weights: float32
    forward, float64 forward, and float64 gradients of inputs and parameters against finite differences."""
    module.eval()
    names = [name for name, _ in module.named_parameters()]

    def ref(*arrays: np.ndarray) -> np.ndarray:
        return np.asarray(reference(*arrays[:len(inputs)], dict(zip(names, arrays[len(inputs):]))), np.float64)

    out32 = call(module, *[jitorch.tensor(a, dtype=jitorch.float32) for a in inputs])
    weights32 = [p.detach().numpy().astype(np.float64) for p in module.parameters()]
    arrays32 = [a.astype(np.float32).astype(np.float64) for a in inputs]
    np.testing.assert_allclose(out32.numpy(force=True), ref(*arrays32, *weights32), rtol=rtol32, atol=atol32,
                               err_msg="float32 forward")
    module.double()
    leaves = [jitorch.tensor(a, dtype=jitorch.float64, requires_grad=True) for a in inputs]
    params = list(module.parameters())
    out = call(module, *leaves)
    arrays = [np.array(a, np.float64) for a in inputs] + [p.detach().numpy().copy() for p in params]
    np.testing.assert_allclose(out.detach().numpy(), ref(*arrays), rtol=1e-10, atol=1e-12, err_msg="float64 forward")
    if not gradients:
        return
    projection = np.random.default_rng(5).standard_normal(tuple(out.shape))
    (out * jitorch.tensor(projection)).sum().backward()
    numeric = numeric_gradients(lambda *xs: float((ref(*xs) * projection).sum()), arrays)
    for label, leaf, expected in zip([f"input {i}" for i in range(len(inputs))] + names, leaves + params, numeric):
        assert leaf.grad is not None, f"no gradient reached {label}"
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=f"gradient of {label}")


def randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Non-zero biases and non-trivial norm weights, so every parameter's gradient is tested."""
    generator = np.random.default_rng(11)
    with jitorch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(jitorch.tensor(generator.standard_normal(tuple(p.shape)) * scale, dtype=p.dtype))
    return module

