"""The Transformer modules against the numpy reference with the same weights: the encoder and decoder layers
(post- and pre-norm, relu/gelu/callable activations, masks), the stacks and nn.Transformer (masks, unbatched
sequences, custom encoder); forward in float32 and float64, gradients against finite differences of the
reference, submodule and parameter names, initialization, reprs and errors. Compiled runs are in
test_nn_sequence_compiled.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.nn.functional_attention import scaled_dot_product_attention
from jitorch.nn.transformer import Transformer, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer
from tests.transformer_reference import (
    check_against_reference,
    layer_norm_of,
    params_under,
    randomize,
    reference_decoder_layer,
    reference_encoder_layer,
    reference_transformer,
    sample,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


# -------------------------------------------------------------------------------------------------
# encoder and decoder layers


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_reference(norm_first: bool, activation: str) -> None:
    layer = randomize(TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, activation=activation,
                                               norm_first=norm_first))
    mask = np.triu(np.ones((3, 3), bool), 1)
    padding = np.array([[False, False, True], [False, False, False]])

    def call(m: nn.Module, x: jitorch.Tensor) -> jitorch.Tensor:
        return m(x, src_mask=jitorch.tensor(mask), src_key_padding_mask=jitorch.tensor(padding))

    def reference(x: np.ndarray, p: dict) -> np.ndarray:
        return reference_encoder_layer(x, p, 2, norm_first, activation, mask, padding)

    check_against_reference(layer, call, reference, [sample(3, 2, 4)], gradients=activation == "relu")


def test_encoder_layer_with_callable_activation_and_batch_first() -> None:
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6, activation=nn.Tanh(), batch_first=True)
    assert layer.activation_relu_or_gelu == 0 and "activation" in dict(layer.named_children())
    assert TransformerEncoderLayer(4, 2, activation="gelu").activation_relu_or_gelu == 2
    check_against_reference(layer, lambda m, x: m(x),
                            lambda x, p: reference_encoder_layer(x.transpose(1, 0, 2), p, 2,
                                                                 activation="tanh").transpose(1, 0, 2),
                            [sample(2, 3, 4)], gradients=False)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not swish"):
        TransformerEncoderLayer(4, 2, activation="swish")


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_reference(norm_first: bool) -> None:
    layer = randomize(TransformerDecoderLayer(4, 2, dim_feedforward=6, dropout=0.0, norm_first=norm_first))
    tgt_mask = np.where(np.triu(np.ones((3, 3), bool), 1), -np.inf, 0.0)
    memory_padding = np.array([[False, False, False, True], [False, True, False, False]])

    def call(m: nn.Module, x: jitorch.Tensor, memory: jitorch.Tensor) -> jitorch.Tensor:
        return m(x, memory, tgt_mask=jitorch.tensor(tgt_mask, dtype=x.dtype),
                 memory_key_padding_mask=jitorch.tensor(memory_padding))

    def reference(x: np.ndarray, memory: np.ndarray, p: dict) -> np.ndarray:
        return reference_decoder_layer(x, memory, p, 2, norm_first, tgt_mask=tgt_mask, memory_padding=memory_padding)

    check_against_reference(layer, call, reference, [sample(3, 2, 4), sample(4, 2, 4, seed=2)])


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
    randomize(encoder)
    padding = np.array([[False, True, False], [False, False, False]])

    def reference(x: np.ndarray, p: dict) -> np.ndarray:
        for i in range(2):
            x = reference_encoder_layer(x, params_under(p, f"layers.{i}."), 2, padding=padding)
        return layer_norm_of(p, "norm")(x)

    check_against_reference(encoder, lambda m, x: m(x, src_key_padding_mask=jitorch.tensor(padding)), reference,
                            [sample(3, 2, 4)], gradients=False)


def test_transformer_matches_reference_with_masks() -> None:
    model = randomize(Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                   dim_feedforward=6, dropout=0.0))
    tgt_mask = np.where(np.triu(np.ones((3, 3), bool), 1), -np.inf, 0.0)
    padding = np.array([[False, False, False, True], [False, False, True, True]])

    def call(m: nn.Module, src: jitorch.Tensor, tgt: jitorch.Tensor) -> jitorch.Tensor:
        return m(src, tgt, tgt_mask=Transformer.generate_square_subsequent_mask(3, dtype=src.dtype),
                 src_key_padding_mask=jitorch.tensor(padding), memory_key_padding_mask=jitorch.tensor(padding))

    def reference(src: np.ndarray, tgt: np.ndarray, p: dict) -> np.ndarray:
        return reference_transformer(src, tgt, p, 2, 1, tgt_mask=tgt_mask, src_padding=padding)

    check_against_reference(model, call, reference, [sample(4, 2, 4), sample(3, 2, 4, seed=2)],
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
