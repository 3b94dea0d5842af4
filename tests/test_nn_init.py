"""nn.init: gains and fans, and each initializer's distribution checked statistically (tolerances sized for
the sample: the standard error of a mean over n draws is std / sqrt(n))."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.nn import init


def _parameter(*shape: int) -> nn.Parameter:
    return nn.Parameter(jitorch.empty(*shape))


def _values(t: jitorch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


def _check_moments(values: np.ndarray, mean: float, std: float) -> None:
    n = values.size
    np.testing.assert_allclose(values.mean(), mean, rtol=0, atol=5 * std / math.sqrt(n))
    # the sample std of n normal-ish draws has relative standard error about 1 / sqrt(2n)
    np.testing.assert_allclose(values.std(), std, rtol=5 / math.sqrt(2 * n), atol=0)


def test_calculate_gain() -> None:
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == 5.0 / 3
    assert init.calculate_gain("relu") == math.sqrt(2.0)
    assert init.calculate_gain("leaky_relu") == math.sqrt(2.0 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2.0 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity gelu"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "x")


def test_fan_in_and_fan_out() -> None:
    assert init._calculate_fan_in_and_fan_out(jitorch.empty(5, 3)) == (3, 5)
    assert init._calculate_fan_in_and_fan_out(jitorch.empty(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(jitorch.empty(5))


def test_uniform_normal_constant() -> None:
    jitorch.manual_seed(0)
    p = _parameter(100, 100)
    assert init.uniform_(p, -2.0, 3.0) is p
    values = _values(p)
    assert values.min() >= -2.0 and values.max() < 3.0
    _check_moments(values, 0.5, 5 / math.sqrt(12))
    _check_moments(_values(init.normal_(p, 1.5, 0.2)), 1.5, 0.2)
    assert np.all(_values(init.constant_(p, 0.3)) == np.float32(0.3))
    assert np.all(_values(init.zeros_(p)) == 0) and np.all(_values(init.ones_(p)) == 1)
    # initializers run without grad: the parameter stays a leaf with no history
    assert p.is_leaf and p.grad_fn is None and p.requires_grad


def test_xavier() -> None:
    jitorch.manual_seed(1)
    p = _parameter(200, 100)
    std = 2.0 * math.sqrt(2.0 / 300)
    values = _values(init.xavier_uniform_(p, gain=2.0))
    assert np.abs(values).max() <= math.sqrt(3) * std
    _check_moments(values, 0.0, std)
    _check_moments(_values(init.xavier_normal_(p, gain=2.0)), 0.0, std)


def test_kaiming() -> None:
    jitorch.manual_seed(2)
    p = _parameter(64, 32, 3, 3)
    fan_in, fan_out = 32 * 9, 64 * 9
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    values = _values(init.kaiming_uniform_(p, nonlinearity="relu"))
    assert np.abs(values).max() <= math.sqrt(3) * std
    _check_moments(values, 0.0, std)
    _check_moments(_values(init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")), 0.0,
                   math.sqrt(2.0) / math.sqrt(fan_out))
    leaky_std = math.sqrt(2.0 / (1 + 5)) / math.sqrt(fan_in)  # a=sqrt(5): Linear's and Conv's default
    _check_moments(_values(init.kaiming_normal_(p, a=math.sqrt(5))), 0.0, leaky_std)
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(p, mode="fan_avg")


def test_kaiming_on_a_zero_element_tensor_warns_and_does_nothing() -> None:
    p = _parameter(0, 3)
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        assert init.kaiming_uniform_(p) is p


def test_trunc_normal_has_the_truncated_moments() -> None:
    jitorch.manual_seed(3)
    p = _parameter(300, 100)
    mean, std, a, b = 0.5, 2.0, -1.0, 3.0
    values = _values(init.trunc_normal_(p, mean, std, a, b))
    assert values.min() >= a and values.max() <= b

    def pdf(x: float) -> float:
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x: float) -> float:
        return (1 + math.erf(x / math.sqrt(2))) / 2

    alpha, beta = (a - mean) / std, (b - mean) / std
    z = cdf(beta) - cdf(alpha)
    expected_mean = mean + std * (pdf(alpha) - pdf(beta)) / z
    expected_var = std ** 2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - ((pdf(alpha) - pdf(beta)) / z) ** 2)
    _check_moments(values, expected_mean, math.sqrt(expected_var))
    # the default truncation at +-2 std of N(0, 1)
    values = _values(init.trunc_normal_(p))
    assert values.min() >= -2.0 and values.max() <= 2.0 and values.min() < -1.9 and values.max() > 1.9


def test_trunc_normal_quantiles_follow_the_normal_cdf() -> None:
    jitorch.manual_seed(4)
    values = np.sort(_values(init.trunc_normal_(_parameter(20000), a=-10.0, b=10.0)))
    # without effective truncation the draws are N(0, 1): compare empirical and exact CDF at a few points
    for x in (-2.0, -1.0, 0.0, 0.5, 1.5):
        empirical = np.searchsorted(values, x) / values.size
        exact = (1 + math.erf(x / math.sqrt(2))) / 2
        assert abs(empirical - exact) < 0.015, (x, empirical, exact)


def test_orthogonal() -> None:
    jitorch.manual_seed(5)
    tall = _values(init.orthogonal_(_parameter(6, 4), gain=2.0))
    np.testing.assert_allclose(tall.T @ tall, 4.0 * np.eye(4), rtol=0, atol=1e-5)
    wide = _values(init.orthogonal_(_parameter(3, 2, 4)).reshape(3, 8))
    np.testing.assert_allclose(wide @ wide.T, np.eye(3), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(_parameter(4))


def test_eye_and_dirac() -> None:
    assert _values(init.eye_(_parameter(2, 3))).tolist() == [[1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(_parameter(2, 2, 2))
    weight = init.dirac_(_parameter(4, 2, 3, 3), groups=2)
    x = jitorch.randn(1, 4, 5, 5)
    out = jitorch.nn.functional.conv2d(x, weight, padding=1, groups=2)
    np.testing.assert_allclose(out.detach().numpy(), x.numpy(), rtol=1e-6, atol=1e-6)


def test_sparse() -> None:
    jitorch.manual_seed(6)
    values = _values(init.sparse_(_parameter(10, 30), sparsity=0.3, std=0.5))
    assert ((values == 0).sum(axis=0) >= 3).all()


def test_generators_make_draws_reproducible() -> None:
    first = _values(init.kaiming_uniform_(_parameter(5, 5), generator=jitorch.Generator().manual_seed(9)))
    jitorch.manual_seed(123)
    second = _values(init.kaiming_uniform_(_parameter(5, 5), generator=jitorch.Generator().manual_seed(9)))
    np.testing.assert_array_equal(first, second)
    jitorch.manual_seed(7)
    a = _values(init.trunc_normal_(_parameter(4, 4)))
    jitorch.manual_seed(7)
    np.testing.assert_array_equal(a, _values(init.trunc_normal_(_parameter(4, 4))))


def test_module_apply_for_custom_initialization() -> None:
    def initialize(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).apply(initialize)
    assert all(np.all(_values(layer.bias) == 0) for layer in (model[0], model[2]))


def test_erfinv_helper_inverts_erf_up_to_the_endpoints() -> None:
    y = np.linspace(-0.999999, 0.999999, 2001)
    x = init._erfinv(jitorch.tensor(y)).numpy()
    np.testing.assert_allclose([math.erf(v) for v in x], y, rtol=0, atol=1e-15)
    assert init._erfinv(jitorch.tensor([-1.0, 1.0])).tolist() == [-math.inf, math.inf]
