"""Attention as functions: `scaled_dot_product_attention` and `multi_head_attention_forward`.

Both are written with Tensor operations only (matmul, masked_fill/where with -inf, the frontend
softmax), so they trace into primitives. Masks stay tensors throughout: a bool mask becomes an additive
float mask (`-inf` where masked), masks of different kinds are added, and nothing is read into Python,
so a compiled model with masks replays without falling back.

Mask conventions are PyTorch's and differ between the two functions: in `scaled_dot_product_attention`
a bool `attn_mask` is True where attention is *allowed*; in `multi_head_attention_forward` (and
`nn.MultiheadAttention`, the Transformer layers) a bool mask is True where attention is *masked out*.
A float mask is added to the attention scores in both. Rows that mask out every key give NaN, as in
PyTorch's reference formula.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import jitorch
from jitorch import Tensor
from jitorch.frontend.functional import linear, softmax
from jitorch.nn.functional_layers import dropout

__all__ = ["multi_head_attention_forward", "scaled_dot_product_attention"]

_NEG_INF = float("-inf")


def _none_or_dtype(value: Tensor | None) -> Any:
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.dtype
    raise RuntimeError("input to _none_or_dtype() must be None or torch.Tensor")


def _canonical_mask(mask: Tensor | None, mask_name: str, other_type: Any, other_name: str, target_type: Any,
                    check_other: bool = True) -> Tensor | None:
    """A bool mask (True = masked) as an additive float mask of `target_type`; a float mask as is."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{mask_name} must be a Tensor or None, got {type(mask).__name__}")
    if mask.dtype is not jitorch.bool and not mask.dtype.is_floating_point:
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if check_other and other_type is not None and mask.dtype is not other_type:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. Use same type for "
                      f"both instead.", stacklevel=3)
    if mask.dtype is jitorch.bool:
        return jitorch.zeros(tuple(mask.shape), dtype=target_type).masked_fill(mask, _NEG_INF)
    return mask.to(target_type)


def _causal_mask(rows: int, cols: int) -> Tensor:
    """Bool (rows, cols), True above the diagonal: the positions a causal query may not see."""
    return jitorch.arange(cols).reshape(1, cols) > jitorch.arange(rows).reshape(rows, 1)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q K^T * scale + mask) V over the last two dims, (..., L, E) x (..., S, E) x (..., S, Ev).

    `attn_mask` is bool (True = may attend) or float (added to the scores), broadcastable to (..., L, S);
    `is_causal` masks keys after each query and excludes `attn_mask`. `dropout_p` applies dropout to the
    attention weights whenever it is positive, as PyTorch's function does (pass 0.0 in eval mode).

    >>> q = jitorch.randn(2, 3, 4); scaled_dot_product_attention(q, q, q).shape
    jitorch.Size([2, 3, 4])
    """
    length, source = query.shape[-2], key.shape[-2]
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        key, value = (_repeat_heads(t, query.shape[-3]) for t in (key, value))
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query.matmul(key.transpose(-2, -1)) * scale_factor
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        scores = scores.masked_fill(_causal_mask(length, source), _NEG_INF)
    if attn_mask is not None:
        if attn_mask.dtype is jitorch.bool:
            scores = scores.masked_fill(attn_mask.logical_not(), _NEG_INF)
        else:
            scores = scores + attn_mask.to(scores.dtype)
    weights = softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return weights.matmul(value)


def _repeat_heads(t: Tensor, heads: int) -> Tensor:
    """(..., Hk, S, E) -> (..., heads, S, E), each key head shared by heads // Hk query heads."""
    groups = t.shape[-3]
    if heads % groups:
        raise RuntimeError(f"scaled_dot_product_attention: number of heads in key/value ({groups}) must divide "
                           f"number of heads in query ({heads})")
    lead, rest = tuple(t.shape[:-3]), tuple(t.shape[-2:])
    expanded = t.reshape(*lead, groups, 1, *rest).expand(*lead, groups, heads // groups, *rest)
    return expanded.reshape(*lead, heads, *rest)


def _shape_check(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None,
                 attn_mask: Tensor | None, num_heads: int) -> bool:
    """Whether the inputs are batched (3-D) or one unbatched sequence (2-D), with PyTorch's checks."""
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise AssertionError(f"For batched (3-D) `query`, expected `key` and `value` to be 3-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise AssertionError(f"For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D but "
                                 f"found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise AssertionError(f"For batched (3-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but "
                                 f"found {attn_mask.ndim}-D tensor instead")
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise AssertionError(f"For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise AssertionError(f"For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or 1-D "
                                 f"but found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise AssertionError(f"For unbatched (2-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D "
                                     f"but found {attn_mask.ndim}-D tensor instead")
            if attn_mask.ndim == 3:
                expected = (num_heads, query.shape[0], key.shape[0])
                if tuple(attn_mask.shape) != expected:
                    raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got "
                                         f"{tuple(attn_mask.shape)}")
        return False
    raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query "
                         f"tensor")


def _in_projection(query: Tensor, key: Tensor, value: Tensor, embed_dim: int, in_proj_weight: Tensor | None,
                   in_proj_bias: Tensor | None, separate: tuple[Tensor | None, ...] | None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v projections; self-attention (query is key is value) with packed weights is one matmul."""
    biases = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)
    if separate is None:
        if query is key and key is value:
            q, k, v = linear(query, in_proj_weight, in_proj_bias).chunk(3, -1)
            return q, k, v
        weights = in_proj_weight.chunk(3)
    else:
        weights = separate
    return (linear(query, weights[0], biases[0]), linear(key, weights[1], biases[1]),
            linear(value, weights[2], biases[2]))


def multi_head_attention_forward(
        query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None, bias_v: Tensor | None,
        add_zero_attn: bool, dropout_p: float, out_proj_weight: Tensor, out_proj_bias: Tensor | None,
        training: bool = True, key_padding_mask: Tensor | None = None, need_weights: bool = True,
        attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False, q_proj_weight: Tensor | None = None,
        k_proj_weight: Tensor | None = None, v_proj_weight: Tensor | None = None, static_k: Tensor | None = None,
        static_v: Tensor | None = None, average_attn_weights: bool = True, is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Multi-head attention on sequence-first inputs: query (L, N, E), key (S, N, Ek), value (S, N, Ev), or
    unbatched (L, E), (S, Ek), (S, Ev). Returns (output (L, N, E), weights (N, L, S) averaged over heads,
    (N, heads, L, S) otherwise, or None when `need_weights` is False).

    Masks: `attn_mask` (L, S) or (N * heads, L, S), `key_padding_mask` (N, S); bool (True = masked) or float
    (added). `is_causal` is a hint that `attn_mask` is the causal mask; it needs `attn_mask`, and is used
    instead of it only where PyTorch does (no key padding mask, no weights wanted).
    """
    batched = _shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, batch, embed_dim = query.shape
    src_len = key.shape[0]
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", _none_or_dtype(attn_mask), "attn_mask",
                                       query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # the causal hint replaces the mask in the attention below
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype, check_other=False)
        if key_padding_mask is not None:
            is_causal = False
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(f"key's sequence and batch dims {tuple(key.shape[:2])} do not match value's "
                                 f"{tuple(value.shape[:2])}")
        if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is True but q_proj_weight, k_proj_weight or "
                                 "v_proj_weight is None")
        q, k, v = _in_projection(query, key, value, embed_dim, None, in_proj_bias,
                                 (q_proj_weight, k_proj_weight, v_proj_weight))
    else:
        if tuple(key.shape) != tuple(value.shape):
            raise AssertionError(f"key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}")
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        q, k, v = _in_projection(query, key, value, embed_dim, in_proj_weight, in_proj_bias, None)

    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (tgt_len, src_len):
                raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should be "
                                   f"{(tgt_len, src_len)}.")
            attn_mask = attn_mask.unsqueeze(0)
        elif tuple(attn_mask.shape) != (batch * num_heads, tgt_len, src_len):
            raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                               f"{(batch * num_heads, tgt_len, src_len)}.")

    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise AssertionError("bias cannot be added to static key and value.")
        k = jitorch.cat([k, bias_k.expand(1, batch, embed_dim)])
        v = jitorch.cat([v, bias_v.expand(1, batch, embed_dim)])
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    elif bias_k is not None or bias_v is not None:
        raise AssertionError("bias_k and bias_v must both be given or both be None")

    heads = batch * num_heads
    q = q.reshape(tgt_len, heads, head_dim).transpose(0, 1)
    k = _heads_first(k, static_k, heads, head_dim, "key")
    v = _heads_first(v, static_v, heads, head_dim, "value")
    if add_zero_attn:
        zeros = jitorch.zeros(heads, 1, head_dim, dtype=k.dtype)
        k, v = jitorch.cat([k, zeros], dim=1), jitorch.cat([v, zeros], dim=1)
        attn_mask = _pad_last(attn_mask)
        key_padding_mask = _pad_last(key_padding_mask)
    src_len = k.shape[1]

    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (batch, src_len):
            raise AssertionError(f"expecting key_padding_mask shape of {(batch, src_len)}, but got "
                                 f"{tuple(key_padding_mask.shape)}")
        padding = key_padding_mask.reshape(batch, 1, 1, src_len).expand(batch, num_heads, 1, src_len)
        padding = padding.reshape(heads, 1, src_len)
        attn_mask = padding if attn_mask is None else attn_mask + padding
    if not training:
        dropout_p = 0.0

    if need_weights:
        scores = (q * math.sqrt(1.0 / head_dim)).matmul(k.transpose(-2, -1))
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = softmax(scores, -1)
        if dropout_p > 0.0:
            weights = dropout(weights, dropout_p)
        out = weights.matmul(v).transpose(0, 1).reshape(tgt_len * batch, embed_dim)
        out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, batch, embed_dim)
        weights = weights.reshape(batch, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            return out.squeeze(1), weights.squeeze(0)
        return out, weights

    if attn_mask is not None:
        attn_mask = attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1 else \
            attn_mask.reshape(batch, num_heads, -1, src_len)
    q = q.reshape(batch, num_heads, tgt_len, head_dim)
    k = k.reshape(batch, num_heads, src_len, head_dim)
    v = v.reshape(batch, num_heads, src_len, head_dim)
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
    out = out.permute(2, 0, 1, 3).reshape(batch * tgt_len, embed_dim)
    out = linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, batch, embed_dim)
    return (out if batched else out.squeeze(1)), None


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """An additive mask with one more, unmasked, key at the end (for bias_k / add_zero_attn)."""
    if mask is None:
        return None
    return jitorch.cat([mask, jitorch.zeros(*mask.shape[:-1], 1, dtype=mask.dtype)], dim=-1)


def _heads_first(t: Tensor, static: Tensor | None, heads: int, head_dim: int, name: str) -> Tensor:
    """(S, N, E) -> (N * heads, S, head_dim), or the given static keys/values of that shape."""
    if static is None:
        return t.reshape(t.shape[0], heads, head_dim).transpose(0, 1)
    if static.shape[0] != heads or static.shape[2] != head_dim:
        raise AssertionError(f"expecting static_{name} of shape ({heads}, *, {head_dim}), but got "
                             f"{tuple(static.shape)}")
    return static
