"""MultiheadAttention and scaled_dot_product_attention against the numpy reference with the same weights:
masks of every kind (bool and float, 2-D and 3-D, key padding), kdim/vdim, bias_kv, zero attention,
batch_first and unbatched inputs, the causal hint; forward in float32 and float64, gradients against finite
differences of the reference, parameter names, initialization, repr and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.nn.attention import MultiheadAttention
from jitorch.nn.functional_attention import multi_head_attention_forward, scaled_dot_product_attention
from jitorch.nn.transformer import Transformer
from tests.nn_reference import numeric_gradients
from tests.transformer_reference import check_against_reference, randomize, reference_mha, sample, softmax


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


# -------------------------------------------------------------------------------------------------
# MultiheadAttention


@pytest.mark.parametrize("average", [True, False])
def test_mha_self_attention_matches_reference_outputs_weights_and_gradients(average: bool) -> None:
    mha = randomize(MultiheadAttention(4, 2))
    x = sample(3, 2, 4)

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        out, weights = m(t, t, t, average_attn_weights=average)
        return jitorch.cat([out.reshape(-1), weights.reshape(-1)])

    def reference(t: np.ndarray, p: dict) -> np.ndarray:
        out, weights = reference_mha(t, t, t, p, 2)
        return np.concatenate([out.reshape(-1), (weights.mean(axis=1) if average else weights).reshape(-1)])

    check_against_reference(mha, call, reference, [x])


def test_mha_cross_attention_with_kdim_vdim_uses_separate_projections() -> None:
    mha = randomize(MultiheadAttention(4, 2, kdim=3, vdim=5))
    shapes = {name: tuple(p.shape) for name, p in mha.named_parameters()}
    assert shapes == {"q_proj_weight": (4, 4), "k_proj_weight": (4, 3), "v_proj_weight": (4, 5),
                      "in_proj_bias": (12,), "out_proj.weight": (4, 4), "out_proj.bias": (4,)}
    assert mha.in_proj_weight is None and not mha._qkv_same_embed_dim
    q, k, v = sample(3, 2, 4), sample(5, 2, 3, seed=2), sample(5, 2, 5, seed=3)
    check_against_reference(mha, lambda m, *t: m(*t)[0], lambda *a: reference_mha(*a[:3], a[3], 2)[0], [q, k, v])


MASKS = {
    "bool 2-D attn_mask": lambda: {"attn_mask": np.triu(np.ones((3, 4), bool), 1)},
    "float 2-D attn_mask": lambda: {"attn_mask": sample(3, 4, seed=4)},
    "bool 3-D attn_mask": lambda: {"attn_mask": np.random.default_rng(5).random((4, 3, 4)) < 0.4},
    "float 3-D attn_mask": lambda: {"attn_mask": sample(4, 3, 4, seed=6)},
    "bool key_padding_mask": lambda: {"key_padding_mask": np.array([[False, False, True, True],
                                                                    [False, True, False, False]])},
    "float key_padding_mask": lambda: {"key_padding_mask": sample(2, 4, seed=7)},
    "both bool": lambda: {"attn_mask": np.triu(np.ones((3, 4), bool), 2),
                          "key_padding_mask": np.array([[False, False, False, True], [False, True, False, False]])},
}


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("kind", list(MASKS))
def test_mha_masks_match_reference(kind: str, need_weights: bool) -> None:
    masks = MASKS[kind]()
    mha = randomize(MultiheadAttention(4, 2)).double()
    params = {name: p.detach().numpy() for name, p in mha.named_parameters()}
    q, kv = sample(3, 2, 4), sample(4, 2, 4, seed=2)
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
    mha = randomize(MultiheadAttention(4, 2))
    attn_mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        return m(t, t, t, attn_mask=jitorch.tensor(attn_mask), key_padding_mask=jitorch.tensor(padding),
                 need_weights=False)[0]

    check_against_reference(mha, call, lambda t, p: reference_mha(t, t, t, p, 2, attn_mask, padding)[0],
                            [sample(3, 2, 4)])


def test_mha_bias_kv_and_zero_attention_match_reference() -> None:
    mha = randomize(MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True))
    assert tuple(mha.bias_k.shape) == (1, 1, 4) and tuple(mha.bias_v.shape) == (1, 1, 4)
    mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, t: jitorch.Tensor) -> jitorch.Tensor:
        out, weights = m(t, t, t, attn_mask=jitorch.tensor(mask), key_padding_mask=jitorch.tensor(padding))
        assert tuple(weights.shape) == (2, 3, 5)
        return out

    def reference(t: np.ndarray, p: dict) -> np.ndarray:
        return reference_mha(t, t, t, p, 2, mask, padding, add_zero_attn=True)[0]

    check_against_reference(mha, call, reference, [sample(3, 2, 4)])


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
    return softmax(scores) @ v


@pytest.mark.parametrize("options", [{}, {"causal": True}, {"scale": 0.3}, {"mask": "bool"}, {"mask": "float"}],
                         ids=["plain", "causal", "scale", "bool-mask", "float-mask"])
def test_sdpa_matches_reference_forward_and_gradients(options: dict) -> None:
    q, k, v = sample(2, 3, 4, 5), sample(2, 3, 6, 5, seed=2), sample(2, 3, 6, 2, seed=3)
    masks = {"bool": np.random.default_rng(4).random((4, 6)) < 0.6, "float": sample(3, 4, 6, seed=5)}
    mask = masks.get(options.get("mask"))
    if mask is not None and mask.dtype == np.bool_:
        mask[:, 0] = True  # every query keeps one key: no all-masked rows
    causal, scale = options.get("causal", False), options.get("scale")
    leaves = [jitorch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = scaled_dot_product_attention(*leaves, attn_mask=None if mask is None else jitorch.tensor(mask),
                                       is_causal=causal, scale=scale)
    np.testing.assert_allclose(out.detach().numpy(), _reference_sdpa(q, k, v, mask, causal, scale), rtol=1e-10,
                               atol=1e-12)
    projection = sample(*out.shape, seed=9)
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
