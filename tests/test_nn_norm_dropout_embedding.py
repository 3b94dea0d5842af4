"""Normalization (batch, instance, group, layer), dropout and embedding: functions and modules against
numpy references, gradients against float64 finite differences, running statistics, train/eval modes,
seeded randomness, PyTorch's parameters, buffers, initialization, reprs and errors."""
from __future__ import annotations

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.nn import functional_layers as F
from tests.nn_reference import close, gradcheck, t

RNG = np.random.default_rng(1)




def ref_normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


# ----------------------------------------------------------------------------------------------------
# batch norm


def test_batch_norm2d_module_matches_reference_over_several_steps():
    bn = nn.BatchNorm2d(3, momentum=0.2)
    bn.weight.data = t(RNG.standard_normal(3).astype(np.float32))
    bn.bias.data = t(RNG.standard_normal(3).astype(np.float32))
    weight, bias = bn.weight.detach().numpy().copy(), bn.bias.detach().numpy().copy()
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(4):
        x = (RNG.standard_normal((4, 3, 5, 6)) * (step + 1) + step).astype(np.float32)
        out = bn(t(x))
        expected = ref_normalize(x, (0, 2, 3), 1e-5) * weight.reshape(1, 3, 1, 1) + bias.reshape(1, 3, 1, 1)
        close(out, expected, rtol=1e-4, atol=1e-4)
        running_mean = 0.8 * running_mean + 0.2 * x.mean(axis=(0, 2, 3))
        running_var = 0.8 * running_var + 0.2 * x.var(axis=(0, 2, 3), ddof=1)
        close(bn.running_mean, running_mean, rtol=1e-5, atol=1e-5)
        close(bn.running_var, running_var, rtol=1e-5, atol=1e-5)
    assert bn.num_batches_tracked.dtype is jitorch.int64 and bn.num_batches_tracked.item() == 4
    bn.eval()
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    expected = ((x - running_mean.reshape(1, 3, 1, 1)) / np.sqrt(running_var.reshape(1, 3, 1, 1) + 1e-5)
                * weight.reshape(1, 3, 1, 1) + bias.reshape(1, 3, 1, 1))
    close(bn(t(x)), expected, rtol=1e-4, atol=1e-4)
    close(bn.running_mean, running_mean)
    assert bn.num_batches_tracked.item() == 4


def test_batch_norm_cumulative_average_when_momentum_is_none():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [RNG.standard_normal((5, 2)).astype(np.float32) + i for i in range(3)]
    for x in batches:
        bn(t(x))
    close(bn.running_mean, np.mean([x.mean(0) for x in batches], axis=0))
    close(bn.running_var, np.mean([x.var(0, ddof=1) for x in batches], axis=0))


def test_batch_norm1d_accepts_2d_and_3d_input():
    bn = nn.BatchNorm1d(4, affine=False)
    x2, x3 = RNG.standard_normal((6, 4)), RNG.standard_normal((3, 4, 5))
    close(bn(t(x2)), ref_normalize(x2, (0,), 1e-5))
    close(bn(t(x3)), ref_normalize(x3, (0, 2), 1e-5))
    assert bn.weight is None and [name for name, _ in bn.named_parameters()] == []


def test_batch_norm_without_running_stats_uses_batch_statistics_in_eval():
    bn = nn.BatchNorm2d(2, track_running_stats=False).eval()
    assert bn.running_mean is None and [name for name, _ in bn.named_buffers()] == []
    x = RNG.standard_normal((3, 2, 2, 2))
    close(bn(t(x)), ref_normalize(x, (0, 2, 3), 1e-5))


def test_batch_norm_gradients():
    x, w, b = RNG.standard_normal((3, 2, 2, 2)), RNG.standard_normal(2), RNG.standard_normal(2)
    gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b])
    mean, var = RNG.standard_normal(2), RNG.uniform(0.5, 2.0, 2)
    gradcheck(lambda x, w: F.batch_norm(x, t(mean), t(var), w, None, training=False), [x, w])


def test_batch_norm_parameters_buffers_and_repr():
    bn = nn.BatchNorm2d(4)
    assert repr(bn) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert bn.weight.tolist() == [1.0] * 4 and bn.bias.tolist() == [0.0] * 4
    assert bn.running_var.tolist() == [1.0] * 4 and bn.num_batches_tracked.ndim == 0
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def test_batch_norm_errors_name_the_layer():
    bn = nn.BatchNorm2d(4)
    with pytest.raises(RuntimeError, match=r"BatchNorm2d\(4, .*\): expected 4D input, got input of shape \(2, 4, 3\)"):
        bn(jitorch.randn(2, 4, 3))
    with pytest.raises(ValueError):  # PyTorch raises ValueError for the wrong rank
        bn(jitorch.randn(2, 4, 3))
    with pytest.raises(RuntimeError, match=r"expected input with 4 channels, got input of shape \(2, 3, 5, 5\)"):
        bn(jitorch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(jitorch.randn(1, 3))


# ----------------------------------------------------------------------------------------------------
# instance, group and layer norm


def test_instance_norm_matches_reference_and_tracks_running_stats():
    x = RNG.standard_normal((3, 2, 4, 5)).astype(np.float32)
    norm = nn.InstanceNorm2d(2, affine=True, track_running_stats=True)
    close(norm(t(x)), ref_normalize(x, (2, 3), 1e-5), rtol=1e-4, atol=1e-4)
    close(norm.running_mean, 0.1 * x.mean(axis=(2, 3)).mean(0))
    close(norm.running_var, 0.9 + 0.1 * x.var(axis=(2, 3), ddof=1).mean(0))
    assert repr(nn.InstanceNorm2d(3)) == "InstanceNorm2d(3, eps=1e-05, momentum=0.1, affine=False, " \
                                         "track_running_stats=False)"
    unbatched = nn.InstanceNorm1d(2)(t(x[0, :, 0]))
    close(unbatched, ref_normalize(x[0, :, 0], (1,), 1e-5), rtol=1e-4, atol=1e-4)


def test_group_norm_matches_reference_and_gradients():
    x = RNG.standard_normal((2, 6, 3, 2)).astype(np.float32)
    gn = nn.GroupNorm(3, 6)
    gn.weight.data = t(RNG.standard_normal(6).astype(np.float32))
    expected = ref_normalize(x.reshape(2, 3, -1), (2,), 1e-5).reshape(x.shape) * gn.weight.numpy(force=True).reshape(
        1, 6, 1, 1)
    close(gn(t(x)), expected, rtol=1e-4, atol=1e-4)
    assert repr(gn) == "GroupNorm(3, 6, eps=1e-05, affine=True)"
    gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), [RNG.standard_normal((2, 4, 3)), RNG.standard_normal(4),
                                                         RNG.standard_normal(4)])
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(RuntimeError, match=r"GroupNorm\(3, 6.*expected input with 6 channels"):
        gn(jitorch.randn(2, 4, 3))


def test_layer_norm_module():
    ln = nn.LayerNorm([3, 4])
    assert repr(ln) == "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)"
    assert tuple(ln.weight.shape) == (3, 4) and tuple(ln.bias.shape) == (3, 4)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    close(ln(t(x)), ref_normalize(x, (1, 2), 1e-5), rtol=1e-4, atol=1e-4)
    assert nn.LayerNorm(4, bias=False).bias is None
    assert [n for n, _ in nn.LayerNorm(4, elementwise_affine=False).named_parameters()] == []
    with pytest.raises(RuntimeError, match=r"LayerNorm\(\(3, 4\).*got input of shape \(2, 4, 3\)"):
        ln(jitorch.randn(2, 4, 3))


# ----------------------------------------------------------------------------------------------------
# dropout


def test_dropout_train_eval_scaling_and_rate():
    x = jitorch.ones(200, 100)
    drop = nn.Dropout(0.3)
    assert repr(drop) == "Dropout(p=0.3, inplace=False)"
    jitorch.manual_seed(0)
    out = drop(x).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6, atol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02
    drop.eval()
    assert drop(x) is x


def test_dropout_p_edges_and_bad_p():
    x = t(RNG.standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    close(F.dropout(x, 0.0), x.detach().numpy(), rtol=0, atol=0)
    zeros = F.dropout(x, 1.0)
    close(zeros, np.zeros((4, 5)), rtol=0, atol=0)
    zeros.sum().backward()
    close(x.grad, np.zeros((4, 5)), rtol=0, atol=0)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            F.dropout(x, p)
        with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
            nn.Dropout(p)


def test_dropout_is_reproducible_with_manual_seed_and_gradient_is_the_mask():
    x = t(RNG.standard_normal((6, 7)), requires_grad=True)
    jitorch.manual_seed(123)
    first = F.dropout(x, 0.4)
    jitorch.manual_seed(123)
    second = F.dropout(x, 0.4)
    close(first, second.detach().numpy(), rtol=0, atol=0)
    third = F.dropout(x, 0.4)
    assert not np.array_equal(third.detach().numpy(), first.detach().numpy())
    first.sum().backward()
    mask = first.detach().numpy() != 0
    close(x.grad, mask / 0.6, rtol=1e-12, atol=1e-12)


def test_dropout_inplace_writes_the_input():
    x = jitorch.ones(50, 20)
    out = F.dropout(x, 0.5, inplace=True)
    assert out is x and set(np.unique(x.numpy())) <= {0.0, 2.0}


def test_dropout2d_zeroes_whole_channels():
    x = jitorch.ones(8, 16, 3, 3)
    jitorch.manual_seed(5)
    out = nn.Dropout2d(0.5)(x).numpy()
    per_channel = out.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))
    assert 0 < (per_channel == 0).all(-1).mean() < 1
    assert repr(nn.Dropout2d()) == "Dropout2d(p=0.5, inplace=False)"
    unbatched = F.dropout1d(jitorch.ones(6, 10), 0.5).numpy()
    assert np.all((unbatched == 0).all(-1) | (unbatched == 2).all(-1))


# ----------------------------------------------------------------------------------------------------
# embedding


def test_embedding_forward_init_and_repr():
    jitorch.manual_seed(0)
    emb = nn.Embedding(1000, 8, padding_idx=-1)
    assert emb.padding_idx == 999 and repr(emb) == "Embedding(1000, 8, padding_idx=999)"
    weight = emb.weight.detach().numpy()
    assert np.all(weight[999] == 0)
    assert abs(weight[:999].mean()) < 0.05 and abs(weight[:999].std() - 1) < 0.05
    index = np.array([[3, 999, 0], [7, 3, 998]])
    close(emb(t(index)), weight[index], rtol=0, atol=0)
    assert repr(nn.Embedding(5, 2)) == "Embedding(5, 2)"


def test_embedding_padding_row_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=1)
    with jitorch.no_grad():
        emb.weight[1].fill_(2.0)  # a non-zero padding row is still looked up but never trained
    index = t(np.array([1, 2, 1, 4, 2]))
    out = emb(index)
    close(out[0], np.full(3, 2.0), rtol=0, atol=0)
    (out * t(np.arange(15, dtype=np.float32).reshape(5, 3))).sum().backward()
    grad = emb.weight.grad.numpy()
    np.testing.assert_array_equal(grad[1], 0)
    np.testing.assert_allclose(grad[2], np.arange(3, 6) + np.arange(12, 15), rtol=0, atol=0)
    np.testing.assert_array_equal(grad[[0, 3]], 0)


def test_embedding_bad_indices_raise_index_error():
    emb = nn.Embedding(4, 2)
    for bad in ([0, 4], [-1, 2]):
        with pytest.raises(IndexError):
            emb(t(np.array(bad)))
    with pytest.raises(RuntimeError, match="integer"):
        emb(t(np.array([0.0, 1.0])))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(4, 2, padding_idx=4)


def test_embedding_from_pretrained_and_max_norm():
    table = t(np.array([[3.0, 4.0], [0.3, 0.4], [1.0, 0.0]], dtype=np.float32))
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad and tuple(emb.weight.shape) == (3, 2)
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    capped = nn.Embedding.from_pretrained(t(table.numpy().copy()), max_norm=1.0)
    out = capped(t(np.array([0, 1])))
    close(out, [[0.6, 0.8], [0.3, 0.4]], rtol=1e-5, atol=1e-6)
    close(capped.weight, [[0.6, 0.8], [0.3, 0.4], [1.0, 0.0]], rtol=1e-5, atol=1e-6)


def test_embedding_gradient_matches_finite_differences():
    index = t(np.array([[0, 2], [2, 3]]))
    gradcheck(lambda w: F.embedding(index, w), [RNG.standard_normal((4, 3))])
