"""Attention and Transformer modules against a numpy reference with the same weights: MultiheadAttention
(masks of every kind, kdim/vdim, bias_kv, zero attention, batch_first, unbatched), scaled_dot_product_attention,
the encoder and decoder layers (post- and pre-norm, relu/gelu/callable), the stacks and nn.Transformer;
forward in float32 and float64, gradients against finite differences of the reference, parameter names,
initialization, reprs, errors, and compiled against eager without fallback."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.frontend.compile import default_backend
from jitorch.nn.attention import MultiheadAttention
from jitorch.nn.functional_attention import multi_head_attention_forward, scaled_dot_product_attention
from jitorch.nn.transformer import (
    Transformer,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from tests.nn_reference import numeric_gradients

_erf = np.vectorize(math.erf, otypes=[np.float64])


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


def _sample(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -------------------------------------------------------------------------------------------------
# the numpy reference


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _additive(mask: np.ndarray | None) -> np.ndarray | None:
    """A bool mask (True = masked) as the float mask PyTorch adds to the scores."""
    if mask is None or mask.dtype != np.bool_:
        return mask
    return np.where(mask, -np.inf, 0.0)


def _sub(params: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
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
    attn_mask, key_padding_mask = _additive(attn_mask), _additive(key_padding_mask)
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
    weights = _softmax(scores)
    out = (weights @ vh).transpose(2, 0, 1, 3).reshape(length, batch, embed)
    out = out @ p["out_proj.weight"].T + p.get("out_proj.bias", 0.0)
    return out, weights


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, eps: float = 1e-5) -> np.ndarray:
    centered = x - x.mean(axis=-1, keepdims=True)
    out = centered / np.sqrt((centered ** 2).mean(axis=-1, keepdims=True) + eps) * weight
    return out if bias is None else out + bias


ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "gelu": lambda x: x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0))),
               "tanh": np.tanh}


def _feed_forward(x: np.ndarray, p: dict[str, np.ndarray], activation: str) -> np.ndarray:
    hidden = ACTIVATIONS[activation](x @ p["linear1.weight"].T + p["linear1.bias"])
    return hidden @ p["linear2.weight"].T + p["linear2.bias"]


def _norm(p: dict[str, np.ndarray], name: str) -> callable:
    return lambda x: _layer_norm(x, p[f"{name}.weight"], p.get(f"{name}.bias"))


def reference_encoder_layer(x: np.ndarray, p: dict[str, np.ndarray], heads: int, norm_first: bool = False,
                            activation: str = "relu", mask: np.ndarray | None = None,
                            padding: np.ndarray | None = None) -> np.ndarray:
    def attend(y: np.ndarray) -> np.ndarray:
        return reference_mha(y, y, y, _sub(p, "self_attn."), heads, mask, padding)[0]

    norm1, norm2 = _norm(p, "norm1"), _norm(p, "norm2")
    if norm_first:
        x = x + attend(norm1(x))
        return x + _feed_forward(norm2(x), p, activation)
    x = norm1(x + attend(x))
    return norm2(x + _feed_forward(x, p, activation))


def reference_decoder_layer(x: np.ndarray, memory: np.ndarray, p: dict[str, np.ndarray], heads: int,
                            norm_first: bool = False, activation: str = "relu", tgt_mask: np.ndarray | None = None,
                            memory_mask: np.ndarray | None = None, tgt_padding: np.ndarray | None = None,
                            memory_padding: np.ndarray | None = None) -> np.ndarray:
    def attend(y: np.ndarray) -> np.ndarray:
        return reference_mha(y, y, y, _sub(p, "self_attn."), heads, tgt_mask, tgt_padding)[0]

    def cross(y: np.ndarray) -> np.ndarray:
        return reference_mha(y, memory, memory, _sub(p, "multihead_attn."), heads, memory_mask, memory_padding)[0]

    norm1, norm2, norm3 = _norm(p, "norm1"), _norm(p, "norm2"), _norm(p, "norm3")
    if norm_first:
        x = x + attend(norm1(x))
        x = x + cross(norm2(x))
        return x + _feed_forward(norm3(x), p, activation)
    x = norm1(x + attend(x))
    x = norm2(x + cross(x))
    return norm3(x + _feed_forward(x, p, activation))


def reference_transformer(src: np.ndarray, tgt: np.ndarray, p: dict[str, np.ndarray], heads: int, layers: int,
                          tgt_mask: np.ndarray | None = None, src_padding: np.ndarray | None = None) -> np.ndarray:
    memory = src
    for i in range(layers):
        memory = reference_encoder_layer(memory, _sub(p, f"encoder.layers.{i}."), heads, padding=src_padding)
    memory = _norm(p, "encoder.norm")(memory)
    out = tgt
    for i in range(layers):
        out = reference_decoder_layer(out, memory, _sub(p, f"decoder.layers.{i}."), heads, tgt_mask=tgt_mask,
                                      memory_padding=src_padding)
    return _norm(p, "decoder.norm")(out)


# -------------------------------------------------------------------------------------------------
# the harness


def check_against_reference(module: nn.Module, call: callable, reference: callable, inputs: list[np.ndarray],
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


def _randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Non-zero biases and non-trivial norm weights, so every parameter's gradient is tested."""
    generator = np.random.default_rng(11)
    with jitorch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(jitorch.tensor(generator.standard_normal(tuple(p.shape)) * scale, dtype=p.dtype))
    return module


# -------------------------------------------------------------------------------------------------
# MultiheadAttention


@pytest.mark.parametrize("average", [True, False])
def test_mha_self_attention_matches_reference_outputs_weights_and_gradients(average: bool) -> None:
    mha = _randomize(MultiheadAttention(4, 2))
    x = _sample(3, 2, 4)

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        out, weights = m(t, t, t, average_attn_weights=average)
        return jitorch.cat([out.reshape(-1), weights.reshape(-1)])

    def reference(t: np.ndarray, p: dict) -> np.ndarray:
        out, weights = reference_mha(t, t, t, p, 2)
        return np.concatenate([out.reshape(-1), (weights.mean(axis=1) if average else weights).reshape(-1)])

    check_against_reference(mha, call, reference, [x])


def test_mha_cross_attention_with_kdim_vdim_uses_separate_projections() -> None:
    mha = _randomize(MultiheadAttention(4, 2, kdim=3, vdim=5))
    shapes = {name: tuple(p.shape) for name, p in mha.named_parameters()}
    assert shapes == {"q_proj_weight": (4, 4), "k_proj_weight": (4, 3), "v_proj_weight": (4, 5),
                      "in_proj_bias": (12,), "out_proj.weight": (4, 4), "out_proj.bias": (4,)}
    assert mha.in_proj_weight is None and not mha._qkv_same_embed_dim
    q, k, v = _sample(3, 2, 4), _sample(5, 2, 3, seed=2), _sample(5, 2, 5, seed=3)
    check_against_reference(mha, lambda m, *t: m(*t)[0], lambda *a: reference_mha(*a[:3], a[3], 2)[0], [q, k, v])


MASKS = {
    "bool 2-D attn_mask": lambda: {"attn_mask": np.triu(np.ones((3, 4), bool), 1)},
    "float 2-D attn_mask": lambda: {"attn_mask": _sample(3, 4, seed=4)},
    "bool 3-D attn_mask": lambda: {"attn_mask": np.random.default_rng(5).random((4, 3, 4)) < 0.4},
    "float 3-D attn_mask": lambda: {"attn_mask": _sample(4, 3, 4, seed=6)},
    "bool key_padding_mask": lambda: {"key_padding_mask": np.array([[False, False, True, True],
                                                                    [False, True, False, False]])},
    "float key_padding_mask": lambda: {"key_padding_mask": _sample(2, 4, seed=7)},
    "both bool": lambda: {"attn_mask": np.triu(np.ones((3, 4), bool), 2),
                          "key_padding_mask": np.array([[False, False, False, True], [False, True, False, False]])},
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("kind", list(MASKS))
def test_mha_masks_match_reference(kind: str, need_weights: bool) -> None:
    masks = MASKS[kind]()
    mha = _randomize(MultiheadAttention(4, 2)).double()
    params = {name: p.detach().numpy() for name, p in mha.named_parameters()}
    q, kv = _sample(3, 2, 4), _sample(4, 2, 4, seed=2)
    tensors = {name: jitorch.tensor(m) for name, m in masks.items()}
    out, weights = mha(jitorch.tensor(q), jitorch.tensor(kv), jitorch.tensor(kv), need_weights=need_weights,
                       **tensors)
    expected, expected_weights = reference_mha(q, kv, kv, params, 2, masks.get("attn_mask"),
                                               masks.get("key_padding_mask"))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    if need_weights:
        np.testing.assert_allclose(weights.detach().numpy(), expected_weights.mean(axis=1), rtol=1e-10, atol=1e-12)
    else:
        assert weights is None


def test_mha_gradients_with_masks() -> None:
    mha = _randomize(MultiheadAttention(4, 2))
    attn_mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        return m(t, t, t, attn_mask=jitorch.tensor(attn_mask), key_padding_mask=jitorch.tensor(padding),
                 need_weights=False)[0]

    check_against_reference(mha, call, lambda t, p: reference_mha(t, t, t, p, 2, attn_mask, padding)[0],
                            [_sample(3, 2, 4)])


def test_mha_bias_kv_and_zero_attention_match_reference() -> None:
    mha = _randomize(MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True))
    assert tuple(mha.bias_k.shape) == (1, 1, 4) and tuple(mha.bias_v.shape) == (1, 1, 4)
    mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        out, weights = m(t, t, t, attn_mask=jitorch.tensor(mask), key_padding_mask=jitorch.tensor(padding))
        assert tuple(weights.shape) == (2, 3, 5)
        return out

    def reference(t: np.ndarray, p: dict) -> np.ndarray:
        return reference_mha(t, t, t, p, 2, mask, padding, add_zero_attn=True)[0]

    check_against_reference(mha, call, reference, [_sample(3, 2, 4)])


def test_mha_batch_first_and_unbatched_inputs() -> None:
    mha = MultiheadAttention(8, 2, batch_first=True).eval()
    x = jitorch.randn(3, 5, 8)  # (N, L, E)
    out, weights = mha(x, x, x)
    seq_first = MultiheadAttention(8, 2).eval()
    seq_first.load_state_dict(mha.state_dict())
    want, want_weights = seq_first(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    np.testing.assert_allclose(out.detach().numpy(), want.transpose(0, 1).detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(weights.detach().numpy(), want_weights.detach().numpy(), rtol=1e-6, atol=1e-6)
    single, single_weights = seq_first(x[0], x[0], x[0], key_padding_mask=jitorch.tensor([False] * 4 + [True]))
    assert tuple(single.shape) == (5, 8) and tuple(single_weights.shape) == (5, 5)
    batched, _ = seq_first(x[0:1].transpose(0, 1), x[0:1].transpose(0, 1), x[0:1].transpose(0, 1),
                           key_padding_mask=jitorch.tensor([[False] * 4 + [True]]))
    np.testing.assert_allclose(single.detach().numpy(), batched[:, 0].detach().numpy(), rtol=1e-6, atol=1e-6)
    heads_mask = jitorch.zeros(2, 5, 5)
    out, weights = seq_first(x[0], x[0], x[0], attn_mask=heads_mask, average_attn_weights=False)
    assert tuple(weights.shape) == (2, 5, 5)


def test_mha_is_causal_hint_gives_the_masked_result() -> None:
    mha = MultiheadAttention(4, 2).eval()
    x = jitorch.randn(5, 2, 4)
    mask = Transformer.generate_square_subsequent_mask(5)
    hinted, _ = mha(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)
    plain, _ = mha(x, x, x, attn_mask=mask)
    np.testing.assert_allclose(hinted.detach().numpy(), plain.detach().numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        mha(x, x, x, is_causal=True)


def test_mha_parameters_initialization_and_repr() -> None:
    mha = MultiheadAttention(64, 4)
    assert [name for name, _ in mha.named_parameters()] == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                                            "out_proj.bias"]
    bound = math.sqrt(6.0 / (64 + 192))  # xavier_uniform_ of the (192, 64) packed weight
    weight = mha.in_proj_weight.detach().numpy()
    assert weight.min() >= -bound and weight.max() <= bound and weight.std() > 0.9 * bound / math.sqrt(3)
    assert not mha.in_proj_bias.detach().numpy().any() and not mha.out_proj.bias.detach().numpy().any()
    assert type(mha.out_proj).__name__ == "NonDynamicallyQuantizableLinear" and isinstance(mha.out_proj, nn.Linear)
    assert repr(mha) == ("MultiheadAttention(\n  (out_proj): NonDynamicallyQuantizableLinear(in_features=64, "
                         "out_features=64, bias=True)\n)")
    no_bias = MultiheadAttention(8, 2, bias=False)
    assert [name for name, _ in no_bias.named_parameters()] == ["in_proj_weight", "out_proj.weight"]
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        MultiheadAttention(10, 3)


def test_mha_rejects_bad_masks_and_shapes() -> None:
    mha = MultiheadAttention(4, 2)
    x = jitorch.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match=r"The shape of the 2D attn_mask is \(3, 4\), but should be \(3, 3\)"):
        mha(x, x, x, attn_mask=jitorch.zeros(3, 4))
    with pytest.raises(RuntimeError, match=r"The shape of the 3D attn_mask is \(2, 3, 3\), but should be \(4, 3, 3\)"):
        mha(x, x, x, attn_mask=jitorch.zeros(2, 3, 3))
    with pytest.raises(AssertionError, match="only bool and floating types of attn_mask are supported"):
        mha(x, x, x, attn_mask=jitorch.zeros(3, 3, dtype=jitorch.int64))
    with pytest.raises(AssertionError, match="expected `key` and `value` to be 3-D"):
        mha(x, x[0], x[0])
    with pytest.warns(UserWarning, match="Support for mismatched key_padding_mask and attn_mask is deprecated"):
        mha(x, x, x, attn_mask=jitorch.zeros(3, 3), key_padding_mask=jitorch.zeros(2, 3, dtype=jitorch.bool))


def test_functional_multi_head_attention_forward_matches_the_module() -> None:
    mha = MultiheadAttention(4, 2).eval()
    x = jitorch.randn(3, 2, 4)
    out, weights = multi_head_attention_forward(
        x, x, x, 4, 2, mha.in_proj_weight, mha.in_proj_bias, None, None, False, 0.0, mha.out_proj.weight,
        mha.out_proj.bias, training=False)
    want, want_weights = mha(x, x, x)
    np.testing.assert_allclose(out.detach().numpy(), want.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(weights.detach().numpy(), want_weights.detach().numpy(), rtol=1e-6, atol=1e-7)


# -------------------------------------------------------------------------------------------------
# scaled_dot_product_attention


def _reference_sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None,
                    causal: bool = False, scale: float | None = None) -> np.ndarray:
    scores = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        scores = np.where(np.triu(np.ones(scores.shape[-2:], bool), 1), -np.inf, scores)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + mask
    return _softmax(scores) @ v


@pytest.mark.parametrize("options", [{}, {"causal": True}, {"scale": 0.3}, {"mask": "bool"}, {"mask": "float"}],
                         ids=["plain", "causal", "scale", "bool-mask", "float-mask"])
def test_sdpa_matches_reference_forward_and_gradients(options: dict) -> None:
    q, k, v = _sample(2, 3, 4, 5), _sample(2, 3, 6, 5, seed=2), _sample(2, 3, 6, 2, seed=3)
    masks = {"bool": np.random.default_rng(4).random((4, 6)) < 0.6, "float": _sample(3, 4, 6, seed=5)}
    mask = masks.get(options.get("mask"))
    if mask is not None and mask.dtype == np.bool_:
        mask[:, 0] = True  # every query keeps one key: no all-masked rows
    causal, scale = options.get("causal", False), options.get("scale")
    leaves = [jitorch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = scaled_dot_product_attention(*leaves, attn_mask=None if mask is None else jitorch.tensor(mask),
                                       is_causal=causal, scale=scale)
    np.testing.assert_allclose(out.detach().numpy(), _reference_sdpa(q, k, v, mask, causal, scale), rtol=1e-10,
                               atol=1e-12)
    projection = _sample(*out.shape, seed=9)
    (out * jitorch.tensor(projection)).sum().backward()
    numeric = numeric_gradients(lambda *xs: float((_reference_sdpa(*xs, mask, causal, scale) * projection).sum()),
                                [q, k, v])
    for leaf, expected in zip(leaves, numeric):
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_sdpa_dropout_and_causal_with_mask() -> None:
    q = jitorch.randn(2, 4, 3)
    assert not scaled_dot_product_attention(q, q, q, dropout_p=1.0).detach().numpy().any()
    with pytest.raises(RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        scaled_dot_product_attention(q, q, q, attn_mask=jitorch.zeros(4, 4), is_causal=True)
    grouped = scaled_dot_product_attention(jitorch.randn(1, 4, 3, 2), q.reshape(1, 2, 4, 3)[..., :2],
                                           q.reshape(1, 2, 4, 3)[..., :2], enable_gqa=True)
    assert tuple(grouped.shape) == (1, 4, 3, 2)


# -------------------------------------------------------------------------------------------------
# encoder and decoder layers


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_reference(norm_first: bool, activation: str) -> None:
    layer = _randomize(TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, activation=activation,
                                               norm_first=norm_first))
    mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, x: jitorch.Tensor) -> jitorch.Tensor:
        return m(x, src_mask=jitorch.tensor(mask), src_key_padding_mask=jitorch.tensor(padding))

    def reference(x: np.ndarray, p: dict) -> np.ndarray:
        return reference_encoder_layer(x, p, 2, norm_first, activation, mask, padding)

    check_against_reference(layer, call, reference, [_sample(3, 2, 4)], gradients=activation == "relu")


def test_encoder_layer_with_callable_activation_and_batch_first() -> None:
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6, activation=nn.Tanh(), batch_first=True)
    assert layer.activation_relu_or_gelu == 0 and "activation" in dict(layer.named_children())
    assert TransformerEncoderLayer(4, 2, activation="gelu").activation_relu_or_gelu == 2
    check_against_reference(layer, lambda m, x: m(x),
                            lambda x, p: reference_encoder_layer(x.transpose(1, 0, 2), p, 2,
                                                                 activation="tanh").transpose(1, 0, 2),
                            [_sample(2, 3, 4)], gradients=False)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not swish"):
        TransformerEncoderLayer(4, 2, activation="swish")


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_reference(norm_first: bool) -> None:
    layer = _randomize(TransformerDecoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=norm_first))
    tgt_mask = np.where(np.triu(np.ones((3, 3), bool), 1), -np.inf, 0.0)
    memory_padding = np.array([[False, False, False, True], [False, True, False, False]])

    def call(m: nn.Module, x: jitorch.Tensor, memory: jitorch.Tensor) -> jitorch.Tensor:
        return m(x, memory, tgt_mask=jitorch.tensor(tgt_mask, dtype=x.dtype),
                 memory_key_padding_mask=jitorch.tensor(memory_padding))

    def reference(x: np.ndarray, memory: np.ndarray, p: dict) -> np.ndarray:
        return reference_decoder_layer(x, memory, p, 2, norm_first, tgt_mask=tgt_mask, memory_padding=memory_padding)

    check_against_reference(layer, call, reference, [_sample(3, 2, 4), _sample(4, 2, 4, seed=2)])


def test_layer_submodules_and_repr_follow_pytorch() -> None:
    layer = TransformerEncoderLayer(d_model=16, nhead=4)
    assert [name for name, _ in layer.named_children()] == ["self_attn", "linear1", "dropout", "linear2", "norm1",
                                                            "norm2", "dropout1", "dropout2"]
    assert repr(layer) == """TransformerEncoderLayer(
  (self_attn): MultiheadAttention(
    (out_proj): NonDynamicallyQuantizableLinear(in_features=16, out_features=16, bias=True)
  )
  (linear1): Linear(in_features=16, out_features=2048, bias=True)
  (dropout): Dropout(p=0.1, inplace=False)
  (linear2): Linear(in_features=2048, out_features=16, bias=True)
  (norm1): LayerNorm((16,), eps=1e-05, elementwise_affine=True)
  (norm2): LayerNorm((16,), eps=1e-05, elementwise_affine=True)
  (dropout1): Dropout(p=0.1, inplace=False)
  (dropout2): Dropout(p=0.1, inplace=False)
)"""
    decoder_layer = TransformerDecoderLayer(d_model=6, nhead=2, bias=False)
    assert [name for name, _ in decoder_layer.named_children()] == [
        "self_attn", "multihead_attn", "linear1", "dropout", "linear2", "norm1", "norm2", "norm3", "dropout1",
        "dropout2", "dropout3"]
    assert not any("bias" in name for name, _ in decoder_layer.named_parameters())


# -------------------------------------------------------------------------------------------------
# stacks and nn.Transformer


def test_encoder_stack_holds_independent_copies_and_applies_the_norm() -> None:
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0)
    encoder = TransformerEncoder(layer, num_layers=2, norm=nn.LayerNorm(4))
    assert isinstance(encoder.layers, nn.ModuleList) and len(encoder.layers) == 2
    first, second = encoder.layers
    assert first is not layer and first.linear1.weight is not second.linear1.weight
    np.testing.assert_array_equal(first.linear1.weight.detach().numpy(), layer.linear1.weight.detach().numpy())
    names = [name for name, _ in encoder.named_parameters()]
    assert names[0] == "layers.0.self_attn.in_proj_weight" and "layers.1.norm2.bias" in names
    assert names[-2:] == ["norm.weight", "norm.bias"]
    _randomize(encoder)
    padding = np.array([[False, True, False], [False, False, False]])

    def reference(x: np.ndarray, p: dict) -> np.ndarray:
        for i in range(2):
            x = reference_encoder_layer(x, _sub(p, f"layers.{i}."), 2, padding=padding)
        return _norm(p, "norm")(x)

    check_against_reference(encoder, lambda m, x: m(x, src_key_padding_mask=jitorch.tensor(padding)), reference,
                            [_sample(3, 2, 4)], gradients=False)


def test_transformer_matches_reference_with_masks() -> None:
    model = _randomize(Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                   dim_feedforward=6, dropout=0.0))
    tgt_mask = np.where(np.triu(np.ones((3, 3), bool), 1), -np.inf, 0.0)
    padding = np.array([[False, False, False, True], [False, False, True, True]])

    def call(m: nn.Module, src: jitorch.Tensor, tgt: jitorch.Tensor) -> jitorch.Tensor:
        return m(src, tgt, tgt_mask=Transformer.generate_square_subsequent_mask(3, dtype=src.dtype),
                 src_key_padding_mask=jitorch.tensor(padding), memory_key_padding_mask=jitorch.tensor(padding))

    def reference(src: np.ndarray, tgt: np.ndarray, p: dict) -> np.ndarray:
        return reference_transformer(src, tgt, p, 2, 1, tgt_mask=tgt_mask, src_padding=padding)

    check_against_reference(model, call, reference, [_sample(4, 2, 4), _sample(3, 2, 4, seed=2)],
                            gradients=False)


def test_transformer_takes_unbatched_sequences() -> None:
    model = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16).eval()
    src, tgt = jitorch.randn(5, 8), jitorch.randn(4, 8)
    mask = Transformer.generate_square_subsequent_mask(4)
    single = model(src, tgt, tgt_mask=mask, src_key_padding_mask=jitorch.tensor([False] * 4 + [True]))
    batched = model(src.unsqueeze(1), tgt.unsqueeze(1), tgt_mask=mask,
                    src_key_padding_mask=jitorch.tensor([[False] * 4 + [True]]))
    assert tuple(single.shape) == (4, 8)
    np.testing.assert_allclose(single.detach().numpy(), batched[:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_transformer_parameters_init_mask_and_errors() -> None:
    model = Transformer(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16)
    params = dict(model.named_parameters())
    assert "encoder.layers.1.self_attn.out_proj.weight" in params and "decoder.layers.0.multihead_attn.in_proj_bias" \
        in params and "decoder.layers.0.norm3.weight" in params and "encoder.norm.bias" in params
    for name, p in params.items():
        values = p.detach().numpy()
        if p.ndim > 1:  # xavier_uniform_ over every matrix, as Transformer._reset_parameters does
            bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            assert np.abs(values).max() <= bound and np.abs(values).max() > 0.5 * bound, name
    mask = Transformer.generate_square_subsequent_mask(4).numpy()
    np.testing.assert_array_equal(mask, np.triu(np.full((4, 4), -np.inf), 1))
    assert mask.dtype == np.float32 and (np.tril(mask) == 0).all()
    x = jitorch.randn(5, 2, 8)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(x, jitorch.randn(5, 3, 8))
    with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal to d_model"):
        model(x, jitorch.randn(5, 2, 6))
    custom = Transformer(d_model=8, nhead=2, custom_encoder=_PassThrough(), num_decoder_layers=1, dim_feedforward=16)
    assert isinstance(custom.encoder, _PassThrough) and tuple(custom(x, x).shape) == (5, 2, 8)


class _PassThrough(nn.Module):
    """A custom encoder: returns the source unchanged, so the decoder attends to the raw embeddings."""

    def forward(self, src: jitorch.Tensor, mask: object = None, src_key_padding_mask: object = None,
                is_causal: object = None) -> jitorch.Tensor:
        return src


def test_seed_example_constructions_run() -> None:
    layers = [nn.TransformerEncoderLayer(d_model=16, nhead=4), nn.RNN(4, 8), nn.LSTM(4, 8)]
    assert all(isinstance(layer, nn.Module) for layer in layers)
    seq = jitorch.randn(2, 5, 6)
    out, _ = nn.RNN(6, 7)(seq)
    out, (h, c) = nn.LSTM(6, 7)(seq)
    assert tuple(h.shape) == tuple(c.shape) == (1, 5, 7)
    assert tuple(out.shape) == (2, 5, 7)
    layer = nn.TransformerEncoderLayer(d_model=6, nhead=2, dim_feedforward=12)
    assert tuple(nn.TransformerEncoder(layer, num_layers=2)(seq).shape) == (2, 5, 6)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(d_model=6, nhead=2), num_layers=1)
    assert tuple(decoder(seq, seq).shape) == (2, 5, 6)
    assert tuple(nn.Transformer(d_model=6, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                dim_feedforward=12)(seq, seq).shape) == (2, 5, 6)
    assert nn.functional.scaled_dot_product_attention is scaled_dot_product_attention


# -------------------------------------------------------------------------------------------------
# compiled against eager, with the reference interpreter and with the default (LLVM when present) backend

BACKENDS = sorted({"interpreter", default_backend()})


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_transformer_with_masks_matches_eager_forward_and_gradients(backend: str) -> None:
    model = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                        dropout=0.0, batch_first=True)
    compiled = jitorch.compile(model, backend=backend)
    tgt_mask = Transformer.generate_square_subsequent_mask(4)
    for step in range(3):
        src, tgt = jitorch.randn(2, 5, 8), jitorch.randn(2, 4, 8)
        padding = jitorch.rand(2, 5) < 0.3
        padding[:, 0] = False
        kwargs = {"tgt_mask": tgt_mask, "src_key_padding_mask": padding, "memory_key_padding_mask": padding}
        got = compiled(src, tgt, **kwargs)
        model.zero_grad()
        got.square().sum().backward()
        got_grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
        model.zero_grad()
        want = model(src, tgt, **kwargs)
        want.square().sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
        for name, p in model.named_parameters():
            np.testing.assert_allclose(got_grads[name], p.grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=name)
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_encoder_in_training_with_dropout_and_in_eval_does_not_fall_back(backend: str) -> None:
    encoder = TransformerEncoder(TransformerEncoderLayer(8, 2, dim_feedforward=16, activation="gelu"), 2)
    compiled = jitorch.compile(encoder, backend=backend)
    mask = Transformer.generate_square_subsequent_mask(5)
    for _ in range(2):
        compiled(jitorch.randn(5, 2, 8), mask=mask, is_causal=True).sum().backward()
    encoder.eval()
    with jitorch.no_grad():
        x = jitorch.randn(5, 2, 8)
        for _ in range(2):
            np.testing.assert_allclose(compiled(x, mask=mask).numpy(), encoder(x, mask=mask).numpy(), rtol=1e-5,
                                       atol=1e-5)
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] == 2
