"""nn losses against numpy references, in every reduction: values, gradients against finite differences,
PyTorch's weighting and ignore_index semantics, numerical stability, and errors for bad targets."""
from __future__ import annotations

import numpy as np
import pytest

import jitorch
import jitorch.nn.functional as F
from jitorch import nn
from tests import nn_reference as ref

REDUCTIONS = ("none", "mean", "sum")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _logits(*shape: int, seed: int = 0) -> np.ndarray:
    return _rng(seed).standard_normal(shape) * 2


def _classes(high: int, *shape: int, seed: int = 1) -> np.ndarray:
    return _rng(seed).integers(0, high, shape)


# -------------------------------------------------------------------------------------------------
# regression losses


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses_match_reference(reduction: str) -> None:
    x, y = _logits(3, 4), ref.away_from(_logits(3, 4, seed=1), ())
    # keep |x - y| off the kinks at 0, beta and delta
    y = x - ref.away_from(x - y, (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5))
    cases = [
        (nn.MSELoss(reduction=reduction), lambda a, b: ref.reduce((a - b) ** 2, reduction)),
        (nn.L1Loss(reduction=reduction), lambda a, b: ref.reduce(np.abs(a - b), reduction)),
        (nn.SmoothL1Loss(reduction=reduction), lambda a, b: ref.smooth_l1(a, b, reduction)),
        (nn.SmoothL1Loss(reduction=reduction, beta=0.5), lambda a, b: ref.smooth_l1(a, b, reduction, 0.5)),
        (nn.HuberLoss(reduction=reduction, delta=1.5), lambda a, b: ref.huber(a, b, reduction, 1.5)),
    ]
    for loss, reference in cases:
        ref.check_function(loss, reference, [x], [y])
        # the target may require grad too
        ref.check_function(loss, reference, [x, y])


def test_mse_matches_the_seed_formula() -> None:
    x = jitorch.randn(3, 5, requires_grad=True)
    y = jitorch.randn(3, 5)
    nn.MSELoss()(x, y).backward()
    expected = 2 * (x.detach().numpy() - y.numpy()) / 15
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_mse_warns_when_the_target_broadcasts() -> None:
    with pytest.warns(UserWarning, match="Using a target size"):
        out = F.mse_loss(jitorch.ones(3, 1), jitorch.zeros(3))
    assert out.item() == 1.0


def test_smooth_l1_with_beta_zero_is_l1() -> None:
    x, y = jitorch.randn(4), jitorch.randn(4)
    np.testing.assert_allclose(F.smooth_l1_loss(x, y, beta=0.0).item(), F.l1_loss(x, y).item(), rtol=1e-6, atol=0)


def test_invalid_reduction_is_reported_on_call() -> None:
    loss = nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        loss(jitorch.randn(2), jitorch.randn(2))


def test_legacy_size_average_and_reduce_flags() -> None:
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        assert nn.L1Loss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert nn.L1Loss(reduce=False).reduction == "none"


# -------------------------------------------------------------------------------------------------
# cross entropy and NLL


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices(reduction: str) -> None:
    logits, target = _logits(5, 4), _classes(4, 5)
    ref.check_function(lambda x, t: F.cross_entropy(x, t, reduction=reduction),
                       lambda x, t: ref.cross_entropy(x, t, reduction=reduction), [logits], [target])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_weights_ignore_index_and_label_smoothing(reduction: str) -> None:
    logits, target = _logits(6, 3), _classes(3, 6)
    target[[1, 4]] = -100
    weight = np.array([0.2, 1.0, 3.0])
    for smoothing in (0.0, 0.3):
        loss = nn.CrossEntropyLoss(weight=jitorch.tensor(weight), reduction=reduction, label_smoothing=smoothing)
        ref.check_function(loss, lambda x, t, s=smoothing: ref.cross_entropy(x, t, weight, -100, reduction, s),
                           [logits], [target])
    target[2] = 1
    loss = nn.CrossEntropyLoss(ignore_index=1, reduction=reduction, label_smoothing=0.1)
    ref.check_function(loss, lambda x, t: ref.cross_entropy(x, np.where(t == -100, 0, t), None, 1, reduction, 0.1),
                       [logits], [np.where(target == -100, 0, target)])


def test_cross_entropy_weighted_mean_is_pytorchs() -> None:
    # mean = sum_i w[t_i] * loss_i / sum_i w[t_i], not a plain mean
    logits = jitorch.tensor([[0.0, 0.0], [0.0, 0.0]])
    out = F.cross_entropy(logits, jitorch.tensor([0, 1]), weight=jitorch.tensor([1.0, 3.0]))
    np.testing.assert_allclose(out.item(), np.log(2), rtol=1e-6, atol=0)
    all_ignored = F.cross_entropy(logits, jitorch.tensor([-100, -100]))
    assert np.isnan(all_ignored.item())


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_spatial_targets(reduction: str) -> None:
    logits, target = _logits(2, 3, 2, 2), _classes(3, 2, 2, 2)
    target[0, 1, 0] = -100
    ref.check_function(lambda x, t: F.cross_entropy(x, t, weight=jitorch.tensor([1.0, 2.0, 0.5]), reduction=reduction),
                       lambda x, t: ref.cross_entropy(x, t, np.array([1.0, 2.0, 0.5]), reduction=reduction),
                       [logits], [target])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_probabilities(reduction: str) -> None:
    probs = ref.softmax(_logits(4, 3, seed=3), 1)
    for weight, smoothing in ((None, 0.0), (np.array([0.5, 1.0, 2.0]), 0.2)):
        w = None if weight is None else jitorch.tensor(weight)
        ref.check_function(
            lambda x, t, w=w, s=smoothing: F.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=s),
            lambda x, t, wt=weight, s=smoothing: ref.cross_entropy(x, t, wt, reduction=reduction, label_smoothing=s),
            [_logits(4, 3)], [probs])


def test_cross_entropy_unbatched_input() -> None:
    ref.check_function(lambda x, t: F.cross_entropy(x, t), lambda x, t: ref.cross_entropy(x, t),
                       [_logits(5)], [np.array(3)])
    assert F.cross_entropy(jitorch.randn(5), jitorch.tensor(2), reduction="none").shape == ()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(reduction: str) -> None:
    log_probs = ref.log_softmax(_logits(5, 4), 1)
    target = _classes(4, 5)
    target[0] = -100
    ref.check_function(lambda x, t: nn.NLLLoss(weight=jitorch.tensor([1.0, 0.5, 2.0, 1.0]), reduction=reduction)(x, t),
                       lambda x, t: ref.nll(x, t, np.array([1.0, 0.5, 2.0, 1.0]), reduction=reduction),
                       [log_probs], [target])


def test_class_index_errors_name_the_loss() -> None:
    logits = jitorch.randn(3, 4)
    with pytest.raises(IndexError, match="cross_entropy: target 4 is out of bounds for 4 classes"):
        F.cross_entropy(logits, jitorch.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match="nll_loss: target -1 is out of bounds"):
        nn.NLLLoss()(logits, jitorch.tensor([0, -1, 1]))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(3\) to match target batch_size \(2\)"):
        nn.CrossEntropyLoss()(logits, jitorch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="integer dtype"):
        F.nll_loss(logits, jitorch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 4 classes"):
        F.cross_entropy(logits, jitorch.tensor([0, 1, 2]), weight=jitorch.ones(3))
    with pytest.raises(RuntimeError, match=r"expected target size \[2, 5\]"):
        F.cross_entropy(jitorch.randn(2, 3, 5), jitorch.tensor([[0, 1, 2, 0], [0, 1, 2, 0]]))
    with pytest.raises(RuntimeError, match="Expected floating point type for target with class probabilities"):
        F.cross_entropy(jitorch.randn(2, 3), jitorch.tensor([[0, 1, 0], [1, 0, 0]]))
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(logits, jitorch.tensor([0, 1, 2]), label_smoothing=1.5)


# -------------------------------------------------------------------------------------------------
# binary and divergence losses


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce(reduction: str) -> None:
    p = _rng(2).uniform(0.05, 0.95, (3, 4))
    t = _rng(3).uniform(0.0, 1.0, (3, 4))
    weight = _rng(4).uniform(0.5, 2.0, (4,))
    ref.check_function(nn.BCELoss(reduction=reduction), lambda a, b: ref.bce(a, b, reduction=reduction), [p], [t])
    ref.check_function(nn.BCELoss(weight=jitorch.tensor(weight), reduction=reduction),
                       lambda a, b: ref.bce(a, b, weight, reduction), [p], [t])


def test_bce_clamps_its_log_at_minus_100() -> None:
    p = jitorch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    t = jitorch.tensor([1.0, 0.0, 1.0])
    out = F.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), [100.0, 100.0, np.log(2)], rtol=1e-6, atol=0)
    out.sum().backward()
    assert np.isfinite(p.grad.numpy()).all()
    with pytest.raises(ValueError, match="Using a target size"):
        F.binary_cross_entropy(jitorch.rand(4), jitorch.rand(4, 1))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(reduction: str) -> None:
    x, t = _logits(3, 4), _rng(5).uniform(0.0, 1.0, (3, 4))
    pos_weight, weight = np.array([0.5, 1.0, 2.0, 3.0]), _rng(6).uniform(0.5, 2.0, (3, 4))
    ref.check_function(nn.BCEWithLogitsLoss(reduction=reduction),
                       lambda a, b: ref.bce_with_logits(a, b, reduction=reduction), [x], [t])
    loss = nn.BCEWithLogitsLoss(weight=jitorch.tensor(weight), pos_weight=jitorch.tensor(pos_weight),
                                reduction=reduction)
    ref.check_function(loss, lambda a, b: ref.bce_with_logits(a, b, weight, reduction, pos_weight), [x], [t])


def test_bce_with_logits_is_stable_for_large_logits_and_exact_at_zero() -> None:
    x = jitorch.tensor([-200.0, 200.0, 0.0], requires_grad=True)
    t = jitorch.tensor([1.0, 0.0, 1.0])
    out = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), [200.0, 200.0, np.log(2)], rtol=1e-6, atol=0)
    out.sum().backward()
    # d/dx = sigmoid(x) - t, also at x == 0 (a zero-initialized output layer)
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 1.0, -0.5], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="must be the same as input size"):
        F.binary_cross_entropy_with_logits(jitorch.randn(4), jitorch.rand(4, 1))


@pytest.mark.parametrize("reduction", (*REDUCTIONS, "batchmean"))
def test_kl_div(reduction: str) -> None:
    x = ref.log_softmax(_logits(3, 4), 1)
    t = ref.softmax(_logits(3, 4, seed=7), 1)
    t[0, 1] = 0.0  # 0 * log 0 counts as 0
    for log_target in (False, True):
        target = np.log(np.where(t > 0, t, 1e-3)) if log_target else t
        loss = nn.KLDivLoss(reduction=reduction, log_target=log_target)
        if reduction == "mean":
            with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
                ref.check_function(loss, lambda a, b, lt=log_target: ref.kl_div(a, b, reduction, lt), [x], [target])
        else:
            ref.check_function(loss, lambda a, b, lt=log_target: ref.kl_div(a, b, reduction, lt), [x], [target])


# -------------------------------------------------------------------------------------------------
# embedding and margin losses


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_embedding_and_margin_losses(reduction: str) -> None:
    a, b, c = _logits(4, 3), _logits(4, 3, seed=8), _logits(4, 3, seed=9)
    y = np.array([1, -1, 1, -1])
    ref.check_function(nn.CosineEmbeddingLoss(margin=-0.9, reduction=reduction),
                       lambda u, v, t: ref.cosine_embedding(u, v, t, -0.9, reduction), [a, b], [y])
    ranking_y = np.array([1.0, -1.0, 1.0, -1.0])
    ref.check_function(nn.MarginRankingLoss(margin=0.1, reduction=reduction),
                       lambda u, v, t: ref.reduce(np.maximum(-t * (u - v) + 0.1, 0), reduction),
                       [a[:, 0], b[:, 0]], [ranking_y])
    ref.check_function(nn.HingeEmbeddingLoss(margin=2.0, reduction=reduction),
                       lambda u, t: ref.reduce(np.where(t == 1, u, np.maximum(0, 2.0 - u)), reduction),
                       [a[:, 0]], [ranking_y])
    ref.check_function(nn.SoftMarginLoss(reduction=reduction),
                       lambda u, t: ref.reduce(np.logaddexp(0, -t * u), reduction), [a[:, 0]], [ranking_y])
    ref.check_function(nn.TripletMarginLoss(margin=3.0, reduction=reduction),
                       lambda p, q, r: ref.triplet_margin(p, q, r, 3.0, reduction), [a, b, c])
    labels = (_rng(10).uniform(size=(4, 3)) > 0.5).astype(np.float64)
    ref.check_function(nn.MultiLabelSoftMarginLoss(reduction=reduction),
                       lambda u, t: ref.reduce(-(t * -np.logaddexp(0, -u) + (1 - t) * -np.logaddexp(0, u)).mean(1),
                                               reduction), [a], [labels])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_nll_loss(reduction: str) -> None:
    x, t = _logits(3, 4) * 0.5, _rng(11).poisson(2.0, (3, 4)).astype(np.float64)

    def reference(u: np.ndarray, y: np.ndarray, full: bool) -> np.ndarray:
        loss = np.exp(u) - y * u
        if full:
            safe = np.where(y > 1, y, 2.0)
            loss = loss + np.where(y > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0.0)
        return ref.reduce(loss, reduction)

    for full in (False, True):
        ref.check_function(nn.PoissonNLLLoss(full=full, reduction=reduction),
                           lambda u, y, f=full: reference(u, y, f), [x], [t])


def test_loss_reprs_and_weight_buffers() -> None:
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.MSELoss()) == "MSELoss()"
    loss = nn.CrossEntropyLoss(weight=jitorch.tensor([1.0, 2.0]))
    assert list(loss.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    assert [name for name, _ in nn.BCEWithLogitsLoss(pos_weight=jitorch.ones(3)).named_buffers()] == ["pos_weight"]
    assert nn.CrossEntropyLoss().to(jitorch.float64).reduction == "mean"
