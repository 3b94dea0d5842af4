"""Learning-rate schedulers: lr sequences against closed forms and hand-computed values, state dicts."""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

import jitorch as torch
from jitorch import optim
from jitorch.optim import lr_scheduler as sched

BASES = (1.0, 0.1)
EPOCHS = 40


def _optimizer(cls=optim.SGD, **options):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in BASES]
    return cls(groups, **options)


def _lrs(optimizer, scheduler, epochs=EPOCHS):
    """The lr of every group before each epoch's optimizer step, stepping the scheduler after it."""
    seen = []
    for _ in range(epochs):
        current = [group["lr"] for group in optimizer.param_groups]
        assert scheduler.get_last_lr() == current
        seen.append(current)
        optimizer.step()
        scheduler.step()
    return np.array(seen)


def _expected(fn, epochs=EPOCHS):
    return np.array([[fn(base, e) for base in BASES] for e in range(epochs)])


def _cosine(base, eta_min, t, period):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


def _warm_restarts(base, epoch, t0=3, mult=2, eta_min=0.01):
    t_i, t_cur = t0, epoch
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= mult
    return _cosine(base, eta_min, t_cur, t_i)


# name: (scheduler factory, lr as a function of (base lr, epoch))
CLOSED_FORMS = {
    "StepLR": (lambda o: sched.StepLR(o, step_size=3, gamma=0.5), lambda b, e: b * 0.5 ** (e // 3)),
    "MultiStepLR": (lambda o: sched.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1),
                    lambda b, e: b * 0.1 ** sum(m <= e for m in (2, 5, 5, 9))),
    "ExponentialLR": (lambda o: sched.ExponentialLR(o, gamma=0.9), lambda b, e: b * 0.9 ** e),
    "CosineAnnealingLR": (lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                          lambda b, e: _cosine(b, 0.001, e, 10)),
    "LambdaLR": (lambda o: sched.LambdaLR(o, lambda e: 1 / (1 + e)), lambda b, e: b / (1 + e)),
    "LambdaLR-per-group": (lambda o: sched.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: e % 4 + 1]),
                           lambda b, e: b * (0.95 ** e if b == 1.0 else e % 4 + 1)),
    "MultiplicativeLR": (lambda o: sched.MultiplicativeLR(o, lambda e: 0.9), lambda b, e: b * 0.9 ** e),
    "LinearLR": (lambda o: sched.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=4),
                 lambda b, e: b * (0.25 + 0.5 * min(e, 4) / 4)),
    "ConstantLR": (lambda o: sched.ConstantLR(o, factor=0.5, total_iters=3), lambda b, e: b * (0.5 if e < 3 else 1)),
    "PolynomialLR": (lambda o: sched.PolynomialLR(o, total_iters=6, power=2.0),
                     lambda b, e: b * (1 - min(e, 6) / 6) ** 2),
    "CosineAnnealingWarmRestarts": (lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01),
                                    _warm_restarts),
    "ChainedScheduler": (lambda o: sched.ChainedScheduler([sched.ConstantLR(o, factor=0.1, total_iters=2),
                                                           sched.ExponentialLR(o, gamma=0.9)]),
                         lambda b, e: b * (0.1 if e < 2 else 1) * 0.9 ** e),
    "SequentialLR": (lambda o: sched.SequentialLR(o, [sched.ConstantLR(o, factor=0.1, total_iters=2),
                                                      sched.ExponentialLR(o, gamma=0.9)], milestones=[2]),
                     lambda b, e: b * (0.1 if e < 2 else 0.9 ** (e - 2))),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_lr_sequence_matches_closed_form(name):
    make, formula = CLOSED_FORMS[name]
    optimizer = _optimizer()
    scheduler = make(optimizer)
    assert [g["initial_lr"] for g in optimizer.param_groups] == list(BASES)
    np.testing.assert_allclose(_lrs(optimizer, scheduler), _expected(formula), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
                                  "ConstantLR", "PolynomialLR"])
def test_step_with_epoch_uses_closed_form(name):
    make, formula = CLOSED_FORMS[name]
    optimizer = _optimizer()
    scheduler = make(optimizer)
    optimizer.step()
    for epoch in (7, 3, 12, 0):
        with pytest.warns(UserWarning, match="epoch parameter"):
            scheduler.step(epoch)
        np.testing.assert_allclose(scheduler.get_last_lr(), [formula(b, epoch) for b in BASES], rtol=1e-9, atol=1e-12)


def test_warm_restarts_fractional_epochs():
    optimizer = _optimizer()
    scheduler = sched.CosineAnnealingWarmRestarts(optimizer, T_0=4, T_mult=2, eta_min=0.0)
    for epoch in (0.5, 3.75, 4.0, 9.5, 13.0):
        scheduler.step(epoch)
        t_i, t_cur = 4, epoch
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * 2
        np.testing.assert_allclose(scheduler.get_last_lr(), [_cosine(b, 0.0, t_cur, t_i) for b in BASES],
                                   rtol=1e-9, atol=1e-12)
    assert scheduler.last_epoch == 13


def _one_cycle_reference(step, total, max_lr, pct=0.3, div=25.0, final_div=1e4, three_phase=False, strategy="cos",
                         base_m=0.85, max_m=0.95):
    initial = max_lr / div
    low = initial / final_div
    if three_phase:
        phases = [(pct * total - 1, initial, max_lr, max_m, base_m),
                  (2 * pct * total - 2, max_lr, initial, base_m, max_m),
                  (total - 1, initial, low, max_m, max_m)]
    else:
        phases = [(pct * total - 1, initial, max_lr, max_m, base_m), (total - 1, max_lr, low, base_m, max_m)]
    start = 0.0
    for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct_done = (step - start) / (end - start)
            if strategy == "cos":
                blend = (1 - math.cos(math.pi * pct_done)) / 2
            else:
                blend = pct_done
            return lr0 + (lr1 - lr0) * blend, m0 + (m1 - m0) * blend
        start = end
    raise AssertionError


@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("use_adam", [False, True])
def test_one_cycle(three_phase, strategy, use_adam):
    total = 50
    optimizer = _optimizer(optim.Adam) if use_adam else _optimizer(optim.SGD, momentum=0.9)
    scheduler = sched.OneCycleLR(optimizer, max_lr=[1.0, 0.5], total_steps=total, anneal_strategy=strategy,
                                 three_phase=three_phase)
    for step in range(total):
        for group, max_lr in zip(optimizer.param_groups, (1.0, 0.5)):
            lr, momentum = _one_cycle_reference(step, total, max_lr, three_phase=three_phase, strategy=strategy)
            np.testing.assert_allclose(group["lr"], lr, rtol=1e-9, atol=1e-12)
            actual_momentum = group["betas"][0] if use_adam else group["momentum"]
            np.testing.assert_allclose(actual_momentum, momentum, rtol=1e-9, atol=1e-12)
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(optimizer.param_groups[0]["initial_lr"], 1.0 / 25, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="Tried to step 51 times. The specified number of total steps is 50"):
        scheduler.step()


def test_one_cycle_landmarks_and_epochs_argument():
    optimizer = _optimizer(optim.SGD, momentum=0.9)
    scheduler = sched.OneCycleLR(optimizer, max_lr=0.4, epochs=4, steps_per_epoch=5, pct_start=0.25,
                                 cycle_momentum=False)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose([lrs[0], lrs[4], lrs[19]], [0.4 / 25, 0.4, 0.4 / 25 / 1e4], rtol=1e-9, atol=1e-15)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="You must define either total_steps OR"):
        sched.OneCycleLR(optimizer, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy must be one of 'cos' or 'linear'"):
        sched.OneCycleLR(optimizer, max_lr=0.1, total_steps=10, anneal_strategy="step")
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        sched.OneCycleLR(_optimizer(optim.Adagrad), max_lr=0.1, total_steps=10)


def test_reduce_lr_on_plateau_min_rel_with_cooldown_and_min_lr():
    optimizer = _optimizer()
    scheduler = sched.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1, threshold=0.1, cooldown=1,
                                        min_lr=[0.2, 0.01])
    metrics = [10, 9.5, 9.5, 9.5, 9.5, 8, 8, 8, 8, 8, 8, 8, 8, 8]
    first = [1, 1, .5, .5, .5, .5, .5, .25, .25, .25, .2, .2, .2, .2]
    second = [.1, .1, .05, .05, .05, .05, .05, .025, .025, .025, .0125, .0125, .0125, .01]
    seen = []
    for metric in metrics:
        scheduler.step(metric)
        seen.append(scheduler.get_last_lr())
    np.testing.assert_allclose(seen, np.array([first, second]).T, rtol=1e-12, atol=1e-15)


def test_reduce_lr_on_plateau_max_abs_and_state_dict():
    optimizer = _optimizer()
    scheduler = sched.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=0, threshold=1.0,
                                        threshold_mode="abs")
    seen = []
    for metric in (1.0, 1.5, 3.0):
        scheduler.step(torch.tensor(metric))
        seen.append(scheduler.get_last_lr()[0])
    state = _round_trip(scheduler.state_dict())
    other = sched.ReduceLROnPlateau(optimizer, mode="max")
    other.load_state_dict(state)
    other.step(3.5)
    np.testing.assert_allclose(seen + [optimizer.param_groups[0]["lr"]], [1.0, 0.1, 0.1, 0.01], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        sched.ReduceLROnPlateau(optimizer, factor=1.0)
    with pytest.raises(ValueError, match="mode average is unknown!"):
        sched.ReduceLROnPlateau(optimizer, mode="average")


def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_state_dict_round_trip(name):
    make, _ = CLOSED_FORMS[name]
    optimizer = _optimizer()
    scheduler = make(optimizer)
    _lrs(optimizer, scheduler, epochs=7)
    state = _round_trip({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
    resumed_optimizer = _optimizer()
    resumed = make(resumed_optimizer)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    if hasattr(scheduler, "last_epoch"):
        assert resumed.last_epoch == scheduler.last_epoch
    np.testing.assert_array_equal(_lrs(resumed_optimizer, resumed, 20), _lrs(optimizer, scheduler, 20))


def test_resuming_needs_initial_lr_and_last_epoch_counts():
    optimizer = _optimizer()
    with pytest.raises(KeyError, match="param 'initial_lr' is not specified in param_groups\\[0\\]"):
        sched.StepLR(optimizer, step_size=2, last_epoch=4)
    scheduler = sched.StepLR(optimizer, step_size=2)
    assert scheduler.last_epoch == 0 and scheduler.base_lrs == list(BASES)
    assert isinstance(scheduler, sched._LRScheduler)


def test_warnings_for_misuse():
    optimizer = _optimizer()
    scheduler = sched.StepLR(optimizer, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        scheduler.step()
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        scheduler.get_lr()
    optimizer = _optimizer()
    scheduler = sched.StepLR(optimizer, step_size=2)
    optimizer.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler.step()


def test_argument_errors():
    optimizer = _optimizer()
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        sched.StepLR([], step_size=1)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        sched.LambdaLR(optimizer, [lambda e: 1.0])
    with pytest.raises(ValueError, match="Expected positive integer T_0, but got 0"):
        sched.CosineAnnealingWarmRestarts(optimizer, T_0=0)
    with pytest.raises(ValueError, match="Starting multiplicative factor expected to be greater than 0"):
        sched.LinearLR(optimizer, start_factor=0)
    with pytest.raises(ValueError, match="Sequential Schedulers expects number of schedulers provided to be one more"):
        sched.SequentialLR(optimizer, [sched.StepLR(optimizer, 2)], milestones=[3])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        sched.ChainedScheduler([sched.ReduceLROnPlateau(optimizer)])
