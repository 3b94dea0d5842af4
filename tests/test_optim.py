"""Optimizers against hand-written numpy updates, their state dicts, argument checks and a training loop."""
from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytest

import jitorch as torch
from jitorch import optim
from jitorch.utils.data import DataLoader, TensorDataset

RTOL, ATOL = 1e-5, 1e-6
SHAPES = [(3, 4), (5,)]


# ---------------------------------------------------------------------------------------------------
# numpy references: one step for one parameter, written from PyTorch's documented algorithms


def sgd_ref(p, g, state, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    if momentum:
        if "buf" not in state:
            state["buf"] = g.copy()
        else:
            state["buf"] = momentum * state["buf"] + (1 - dampening) * g
        g = g + momentum * state["buf"] if nesterov else state["buf"]
    return p - lr * g


def adam_ref(p, g, state, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
             decoupled=False):
    g = -g if maximize else g
    t = state["t"] = state.get("t", 0) + 1
    m, v = state.get("m", np.zeros_like(p)), state.get("v", np.zeros_like(p))
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1_mix(m, g, betas[0])
    v = betas[1] * v + (1 - betas[1]) * g * g
    state["m"], state["v"] = m, v
    if amsgrad:
        state["vmax"] = np.maximum(state.get("vmax", np.zeros_like(p)), v)
        v = state["vmax"]
    denom = np.sqrt(v) / np.sqrt(1 - betas[1] ** t) + eps
    return p - lr / (1 - betas[0] ** t) * m / denom


def beta1_mix(m, g, beta1):
    return m + (1 - beta1) * (g - m)


def adamw_ref(p, g, state, weight_decay=1e-2, **options):
    return adam_ref(p, g, state, weight_decay=weight_decay, decoupled=True, **options)


def rmsprop_ref(p, g, state, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    g = -g if maximize else g
    g = g + weight_decay * p
    state["v"] = alpha * state.get("v", np.zeros_like(p)) + (1 - alpha) * g * g
    if centered:
        state["gavg"] = alpha * state.get("gavg", np.zeros_like(p)) + (1 - alpha) * g
        avg = np.sqrt(state["v"] - state["gavg"] ** 2) + eps
    else:
        avg = np.sqrt(state["v"]) + eps
    if momentum > 0:
        state["buf"] = momentum * state.get("buf", np.zeros_like(p)) + g / avg
        return p - lr * state["buf"]
    return p - lr * g / avg


def adagrad_ref(p, g, state, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    g = -g if maximize else g
    t = state["t"] = state.get("t", 0) + 1
    g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    state["sum"] = state.get("sum", np.full_like(p, initial_accumulator_value)) + g * g
    return p - clr * g / (np.sqrt(state["sum"]) + eps)


# each case: optimizer, reference, constructor defaults, options of group 0, options of group 1
CASES = {
    "sgd-plain": (optim.SGD, sgd_ref, {"lr": 0.1}, {}, {"lr": 0.03}),
    "sgd-momentum": (optim.SGD, sgd_ref, {"lr": 0.1, "momentum": 0.9},
                     {"dampening": 0.2, "weight_decay": 0.05, "maximize": True}, {"nesterov": True, "lr": 0.05}),
    "adam": (optim.Adam, adam_ref, {"lr": 0.01},
             {"amsgrad": True, "weight_decay": 0.1, "maximize": True}, {"betas": (0.8, 0.9), "eps": 1e-6, "lr": 0.02}),
    "adamw": (optim.AdamW, adamw_ref, {"lr": 0.01},
              {"amsgrad": True}, {"weight_decay": 0.1, "maximize": True, "betas": (0.5, 0.7)}),
    "rmsprop-centered-momentum": (optim.RMSprop, rmsprop_ref, {"lr": 0.01},
                                  {"centered": True, "momentum": 0.9, "weight_decay": 0.01},
                                  {"alpha": 0.9, "maximize": True, "lr": 0.005}),
    "rmsprop-centered": (optim.RMSprop, rmsprop_ref, {}, {"centered": True, "eps": 1e-4}, {"momentum": 0.5}),
    "adagrad": (optim.Adagrad, adagrad_ref, {"lr": 0.1},
                {"lr_decay": 0.1, "initial_accumulator_value": 0.5, "weight_decay": 0.1},
                {"maximize": True, "eps": 1e-6}),
}


def _problem(seed: int, steps: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
    grads = [[rng.standard_normal(shape).astype(np.float32) for shape in SHAPES] for _ in range(steps)]
    return init, grads


def _build(case: str, init: list[np.ndarray]) -> tuple[optim.Optimizer, list[torch.Tensor], torch.Tensor]:
    cls, _, defaults, options0, options1 = CASES[case]
    params = [torch.tensor(a, requires_grad=True) for a in init]
    frozen = torch.ones(2, requires_grad=True)  # never gets a gradient: must be skipped
    groups = [{"params": [params[0], frozen], **options0}, {"params": [params[1]], **options1}]
    return cls(groups, **defaults), params, frozen


def _step(opt: optim.Optimizer, params: list[torch.Tensor], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    opt.step()


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_numpy_reference(case):
    _, reference, defaults, options0, options1 = CASES[case]
    init, grads = _problem(0, steps=6)
    opt, params, frozen = _build(case, init)
    expected = [a.astype(np.float64) for a in init]
    states: list[dict] = [{}, {}]
    for step_grads in grads:
        _step(opt, params, step_grads)
        for i, options in enumerate((options0, options1)):
            expected[i] = reference(expected[i], step_grads[i].astype(np.float64), states[i], **{**defaults, **options})
        for p, e in zip(params, expected):
            np.testing.assert_allclose(p.detach().numpy(), e, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(frozen.detach().numpy(), np.ones(2, np.float32))
    assert frozen not in opt.state or case == "adagrad"  # Adagrad creates its state up front, like PyTorch


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_dict_round_trip_continues_identically(case):
    init, grads = _problem(1, steps=6)
    opt, params, _ = _build(case, init)
    for step_grads in grads[:3]:
        _step(opt, params, step_grads)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    other, other_params, _ = _build(case, [p.detach().numpy().copy() for p in params])
    other.load_state_dict(saved)
    assert other.param_groups[1]["lr"] == opt.param_groups[1]["lr"]
    for step_grads in grads[3:]:
        _step(opt, params, step_grads)
        _step(other, other_params, step_grads)
    for p, q in zip(params, other_params):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_state_dict_layout_is_pytorchs():
    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    opt = optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1, amsgrad=True)
    for p in (a, c):
        p.grad = torch.ones(2)
    opt.step()
    state = opt.state_dict()
    assert sorted(state) == ["param_groups", "state"]
    assert [g["params"] for g in state["param_groups"]] == [[0, 1], [2]]
    assert sorted(state["state"]) == [0, 2]
    assert sorted(state["state"][0]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert state["state"][0]["step"].item() == 1.0 and state["state"][0]["step"].dtype == torch.float32
    assert state["param_groups"][1]["lr"] == 0.5 and state["param_groups"][0]["betas"] == (0.9, 0.999)


def test_load_state_dict_rejects_mismatched_groups():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    saved = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.SGD([a], lr=0.1).load_state_dict(saved)


def test_loaded_state_is_not_shared_with_the_source():
    p = torch.zeros(2, requires_grad=True)
    source = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(2)
    source.step()
    target = optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    target.load_state_dict(source.state_dict())
    buffer = target.state_dict()["state"][0]["momentum_buffer"]
    source.step()
    np.testing.assert_array_equal(buffer.numpy(), np.ones(2, np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: optim.Adam(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: optim.AdamW(p, weight_decay=-0.01), "Invalid weight_decay value: -0.01"),
    (lambda p: optim.RMSprop(p, alpha=-0.9), "Invalid alpha value: -0.9"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), "Invalid lr_decay value: -1"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    (lambda p: optim.SGD([], lr=0.1), "optimizer got an empty parameter list"),
])
def test_invalid_arguments_raise_pytorchs_errors(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make([torch.zeros(2, requires_grad=True)])


def test_param_group_errors():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [p]})
    q = torch.zeros(3, requires_grad=True)
    opt.add_param_group({"params": q, "momentum": 0.9})
    assert opt.param_groups[1]["params"] == [q] and opt.param_groups[1]["lr"] == 0.1
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[0]["momentum"] == 0


def test_zero_grad_and_closure():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.5)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and loss.item() == 5.0
    np.testing.assert_allclose(w.detach().numpy(), [0.0, 0.0], rtol=RTOL, atol=ATOL)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 0.0])
    opt.zero_grad()
    assert w.grad is None


def test_step_updates_parameter_memory_in_place():
    w = torch.ones(3, requires_grad=True)
    view = w.detach()  # shares memory, as compiled functions reading parameters at call time do
    opt = optim.Adam([w], lr=0.1)
    w.grad = torch.ones(3)
    opt.step()
    np.testing.assert_allclose(view.numpy(), np.full(3, 0.9), rtol=RTOL, atol=ATOL)
    assert w.is_leaf and w.requires_grad


def test_step_hooks_and_repr():
    w = torch.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    seen = []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    opt.step()
    handle.remove()
    opt.step()
    assert seen == ["pre", "post", "post"]
    assert repr(opt).startswith("SGD (\nParameter Group 0\n    dampening: 0\n")


# ---------------------------------------------------------------------------------------------------
# the seed documents' training loop and checkpoint, with nn when it is there


def _nn():
    try:
        from jitorch import nn
        nn.Sequential, nn.Linear, nn.ReLU, nn.CrossEntropyLoss  # noqa: B018 - nn may be half-written
        return nn
    except (ImportError, AttributeError):
        return None


class _TinyMLP:
    """A stand-in for nn.Sequential(Linear, ReLU, Linear) when nn is not available."""

    def __init__(self, sizes: tuple[int, int, int]) -> None:
        self.w1 = (torch.randn(sizes[1], sizes[0]) * sizes[0] ** -0.5).requires_grad_()
        self.b1 = torch.zeros(sizes[1], requires_grad=True)
        self.w2 = (torch.randn(sizes[2], sizes[1]) * sizes[1] ** -0.5).requires_grad_()
        self.b2 = torch.zeros(sizes[2], requires_grad=True)
        self.training = True

    def parameters(self):
        return [self.w1, self.b1, self.w2, self.b2]

    def __call__(self, x):
        return (x @ self.w1.t() + self.b1).relu() @ self.w2.t() + self.b2

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def state_dict(self):
        return {name: getattr(self, name).detach() for name in ("w1", "b1", "w2", "b2")}

    def load_state_dict(self, state):
        with torch.no_grad():
            for name, value in state.items():
                getattr(self, name).copy_(value)


def _cross_entropy(logits, labels):
    return -logits.log_softmax(1).gather(1, labels.unsqueeze(1)).mean()


def test_training_loop_with_dataloader_and_checkpoint():
    nn = _nn()
    torch.manual_seed(0)
    data = torch.randn(256, 20)
    labels = (data[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(data, labels), batch_size=32, shuffle=True)
    if nn is not None:
        model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
        criterion = nn.CrossEntropyLoss()
    else:
        model, criterion = _TinyMLP((20, 32, 2)), _cross_entropy
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)

    def run_epoch():
        model.train()
        for batch_x, batch_y in loader:
            loss = criterion(model(batch_x), batch_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        return loss.item()

    for _ in range(4):
        loss = run_epoch()
    assert loss < 0.5
    model.eval()
    with torch.no_grad():
        accuracy = (model(data).argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.9
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "checkpoint.pth")
        torch.save({"epoch": 4, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "loss": loss}, path)
        checkpoint = torch.load(path)
    assert checkpoint["epoch"] == 4 and checkpoint["loss"] == loss
    torch.manual_seed(1)
    restored = (nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2)) if nn is not None
                else _TinyMLP((20, 32, 2)))
    restored.load_state_dict(checkpoint["model_state_dict"])
    restored_optimizer = optim.Adam(restored.parameters(), lr=0.01)
    restored_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    assert restored_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.005
    batch_x, batch_y = data[:32], labels[:32]
    for m, opt in ((model, optimizer), (restored, restored_optimizer)):
        opt.zero_grad()
        criterion(m(batch_x), batch_y).backward()
        opt.step()
    for p, q in zip(model.parameters(), restored.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=RTOL, atol=ATOL)
