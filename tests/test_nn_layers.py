"""nn layers and activations against numpy references: forward with the same weights, gradients of inputs
and parameters against finite differences, reprs, and errors for bad input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import jitorch
import jitorch.nn.functional as F
from jitorch import nn
from tests import nn_reference as ref


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


def _sample(*shape: int, seed: int = 1, scale: float = 2.0, kinks: tuple[float, ...] = ()) -> np.ndarray:
    return ref.away_from(np.random.default_rng(seed).standard_normal(shape) * scale, kinks)


# -------------------------------------------------------------------------------------------------
# linear layers


def test_linear_matches_reference_with_its_own_weights() -> None:
    layer = nn.Linear(5, 3)
    ref.check_module(layer, ref.linear, [_sample(4, 5)])


def test_linear_without_bias_and_with_batch_dims() -> None:
    layer = nn.Linear(4, 2, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    ref.check_module(layer, ref.linear, [_sample(2, 3, 4)])


def test_linear_parameter_shapes_and_default_init_range() -> None:
    layer = nn.Linear(400, 50)
    assert tuple(layer.weight.shape) == (50, 400) and tuple(layer.bias.shape) == (50,)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight, layer.bias):
        values = p.detach().numpy()
        assert p.requires_grad and p.is_leaf and p.dtype == jitorch.float32
        assert values.min() >= -bound and values.max() <= bound
    weights = layer.weight.detach().numpy()
    # U(-b, b) has std b / sqrt(3); 20000 samples pin it to about 1%
    np.testing.assert_allclose(weights.std(), bound / math.sqrt(3), rtol=0.03, atol=0)
    np.testing.assert_allclose(weights.mean(), 0.0, rtol=0, atol=0.05 * bound)


def test_linear_init_is_reproducible_with_manual_seed() -> None:
    jitorch.manual_seed(42)
    first = nn.Linear(6, 3).weight.detach().numpy().copy()
    jitorch.manual_seed(42)
    second = nn.Linear(6, 3).weight.detach().numpy()
    np.testing.assert_array_equal(first, second)


def test_linear_dtype_argument() -> None:
    layer = nn.Linear(3, 2, dtype=jitorch.float64)
    assert layer.weight.dtype == jitorch.float64 and layer.bias.dtype == jitorch.float64


def test_linear_rejects_wrong_feature_count_naming_the_layer() -> None:
    layer = nn.Linear(784, 10)
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=784, out_features=10, bias=True\): expected input "
                                           r"with last dimension 784, got shape \(4, 100\)"):
        layer(jitorch.randn(4, 100))
    with pytest.raises(RuntimeError, match="got shape"):
        layer(jitorch.tensor(1.0))


def test_linear_rejects_a_different_dtype_like_pytorch() -> None:
    with pytest.raises(RuntimeError, match="expected input of dtype jitorch.float32"):
        nn.Linear(3, 2)(jitorch.randn(2, 3, dtype=jitorch.float64))


def test_bilinear_matches_reference() -> None:
    layer = nn.Bilinear(3, 4, 2)
    assert tuple(layer.weight.shape) == (2, 3, 4) and tuple(layer.bias.shape) == (2,)
    bound = 1 / math.sqrt(3)
    assert np.abs(layer.weight.detach().numpy()).max() <= bound
    ref.check_module(layer, ref.bilinear, [_sample(5, 3), _sample(5, 4, seed=2)])
    assert repr(layer) == "Bilinear(in1_features=3, in2_features=4, out_features=2, bias=True)"


def test_bilinear_rejects_mismatched_inputs() -> None:
    with pytest.raises(RuntimeError, match="Bilinear"):
        nn.Bilinear(3, 4, 2)(jitorch.randn(5, 3), jitorch.randn(5, 3))


def test_identity_flatten_unflatten() -> None:
    x = jitorch.randn(2, 3, 4, 5)
    assert nn.Identity(54, unused="x")(x) is x
    assert tuple(nn.Flatten()(x).shape) == (2, 60)
    assert tuple(nn.Flatten(0, 2)(x).shape) == (24, 5)
    assert tuple(nn.Unflatten(1, (3, 1))(jitorch.randn(2, 3, 4)).shape) == (2, 3, 1, 4)
    assert tuple(nn.Unflatten(-1, (2, -1))(jitorch.randn(2, 6)).shape) == (2, 2, 3)
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    assert repr(nn.Unflatten(1, (2, 5))) == "Unflatten(dim=1, unflattened_size=(2, 5))"
    with pytest.raises(TypeError, match="tuple of ints"):
        nn.Unflatten(1, (2, 5.0))
    with pytest.raises(RuntimeError, match="don't multiply up"):
        nn.Unflatten(1, (2, 2))(jitorch.randn(2, 6))


# -------------------------------------------------------------------------------------------------
# activations


@pytest.mark.parametrize("name", sorted(ref.ACTIVATIONS))
def test_activation_matches_reference(name: str) -> None:
    make, reference, kinks = ref.ACTIVATIONS[name]
    ref.check_module(make(), reference, [_sample(3, 4, kinks=kinks)])


def test_prelu_per_channel_and_shared() -> None:
    shared = nn.PReLU()
    assert tuple(shared.weight.shape) == (1,) and shared.weight.detach().numpy().tolist() == [0.25]
    ref.check_module(shared, ref.prelu, [_sample(2, 3, 4, kinks=(0.0,))])
    channels = nn.PReLU(num_parameters=3, init=0.1)
    with jitorch.no_grad():
        channels.weight.copy_(jitorch.tensor([0.1, -0.3, 0.7]))
    ref.check_module(channels, ref.prelu, [_sample(2, 3, 4, kinks=(0.0,))])
    assert repr(channels) == "PReLU(num_parameters=3)"
    with pytest.raises(RuntimeError, match="Mismatch of parameter numbers and input channel size"):
        channels(jitorch.randn(2, 4))


def test_activations_stay_finite_far_out() -> None:
    x = jitorch.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], requires_grad=True)
    for fn in (F.softplus, F.logsigmoid, F.mish, F.elu, F.selu, F.celu, F.silu, F.sigmoid):
        x.grad = None
        out = fn(x)
        out.sum().backward()
        assert np.isfinite(out.detach().numpy()).all(), fn.__name__
        assert np.isfinite(x.grad.numpy()).all(), fn.__name__


def test_gradients_at_kinks_follow_pytorch() -> None:
    x = jitorch.tensor([-3.0, -1.0, 0.0, 3.0, 6.0], dtype=jitorch.float64, requires_grad=True)
    cases = {  # PyTorch's backward formulas at exactly these points
        F.relu: [0, 0, 0, 1, 1], F.relu6: [0, 0, 0, 1, 0], F.hardtanh: [0, 0, 1, 0, 0],
        F.hardsigmoid: [0, 1 / 6, 1 / 6, 0, 0], F.hardswish: [-0.5, 1 / 6, 0.5, 1.5, 1],
        F.elu: [math.exp(-3), math.exp(-1), 1, 1, 1],
        F.logsigmoid: [1 / (1 + math.exp(v)) for v in (-3.0, -1.0, 0.0, 3.0, 6.0)],
    }
    for fn, expected in cases.items():
        x.grad = None
        fn(x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12, err_msg=fn.__name__)


def test_activation_reprs_match_pytorch() -> None:
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(nn.LeakyReLU(0.2, inplace=True)) == "LeakyReLU(negative_slope=0.2, inplace=True)"
    assert repr(nn.ELU()) == "ELU(alpha=1.0)"
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.Softmax(dim=-1)) == "Softmax(dim=-1)"
    assert repr(nn.LogSoftmax(1)) == "LogSoftmax(dim=1)"
    assert repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"
    assert repr(nn.Hardtanh()) == "Hardtanh(min_val=-1.0, max_val=1.0)"
    assert repr(nn.ReLU6()) == "ReLU6()"
    assert repr(nn.SiLU()) == "SiLU()" and repr(nn.Sigmoid()) == "Sigmoid()" and repr(nn.Tanh()) == "Tanh()"
    assert repr(nn.Hardswish()) == "Hardswish()" and repr(nn.Mish(inplace=True)) == "Mish(inplace=True)"
    assert repr(nn.Threshold(0.1, 20)) == "Threshold(threshold=0.1, value=20)"
    assert repr(nn.Hardshrink()) == "Hardshrink(0.5)"


def test_inplace_activations_write_into_their_input() -> None:
    x = jitorch.tensor([-1.0, 2.0])
    out = nn.ReLU(inplace=True)(x)
    assert out is x and x.tolist() == [0.0, 2.0]
    y = jitorch.tensor([-1.0, 0.5])
    assert F.leaky_relu(y, 0.5, inplace=True) is y and y.tolist() == [-0.5, 0.5]
    z = jitorch.tensor([-5.0, 5.0])
    assert F.hardtanh_(z) is z and z.tolist() == [-1.0, 1.0]


def test_softmax_without_dim_warns_and_uses_pytorchs_choice() -> None:
    x = jitorch.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = F.softmax(x)
    np.testing.assert_allclose(out.numpy(), ref.softmax(x.numpy(), 1), rtol=1e-6, atol=1e-7)


def test_gelu_rejects_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")(jitorch.randn(2))


def test_glu_needs_an_even_dimension() -> None:
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(jitorch.randn(2, 3))


# -------------------------------------------------------------------------------------------------
# functional: one_hot, normalize and distances


def test_one_hot() -> None:
    out = F.one_hot(jitorch.tensor([[0, 2], [1, 0]]), 3)
    assert out.dtype == jitorch.int64 and tuple(out.shape) == (2, 2, 3)
    assert out.tolist() == [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0]]]
    assert tuple(F.one_hot(jitorch.tensor([3, 1])).shape) == (2, 4)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(jitorch.tensor([0, 3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(jitorch.tensor([0, -1]), 3)
    with pytest.raises(RuntimeError, match="LongTensor"):
        F.one_hot(jitorch.tensor([0.0]), 3)


def test_normalize_and_its_gradient_at_zero() -> None:
    def reference(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.sqrt((x ** 2).sum(1, keepdims=True)), 1e-12)

    ref.check_function(lambda x: F.normalize(x), reference, [_sample(3, 4)])
    ref.check_function(lambda x: F.normalize(x, p=1, dim=0),
                       lambda x: x / np.abs(x).sum(0, keepdims=True), [_sample(3, 4, kinks=(0.0,))])
    zero = jitorch.zeros(2, 3, requires_grad=True)
    F.normalize(zero).sum().backward()
    assert np.isfinite(zero.grad.numpy()).all()


def test_cosine_similarity_and_pairwise_distance() -> None:
    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    ref.check_function(F.cosine_similarity, cosine, [_sample(4, 5), _sample(4, 5, seed=2)])
    ref.check_function(lambda a, b: F.pairwise_distance(a, b, p=3.0),
                       lambda a, b: (np.abs(a - b + 1e-6) ** 3).sum(-1) ** (1 / 3),
                       [_sample(4, 5), _sample(4, 5, seed=2)])
    out = F.cosine_similarity(jitorch.zeros(2, 3), jitorch.ones(2, 3))
    assert out.tolist() == [0.0, 0.0]


def test_functional_reexports_the_layer_functions() -> None:
    for name in ("conv2d", "max_pool2d", "avg_pool2d", "dropout", "embedding", "batch_norm", "layer_norm", "pad",
                 "interpolate"):
        assert callable(getattr(F, name)), name


def test_layers_warn_nothing_on_ordinary_use() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3), nn.LogSoftmax(dim=1))
        model(jitorch.randn(2, 4)).sum().backward()
