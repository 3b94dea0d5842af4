"""nn.Module and the containers: registration, traversal, state dicts, hooks, modes, conversions, reprs,
the seed documents' models trained with plain SGD, and nn.utils."""
from __future__ import annotations

import copy
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.nn import modules as nn_modules
from jitorch.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters


class SimpleModel(nn.Module):  # the seed documents' first model
    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(input_dim, 128)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(128, output_dim)

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        return self.layer2(self.relu(self.layer1(x)))


class SimpleNet(nn.Module):  # the seed documents' save/load example
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)
        self.relu = nn.ReLU()

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class WithState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(jitorch.ones(3))
        self.register_buffer("running", jitorch.zeros(3))
        self.register_buffer("scratch", jitorch.zeros(2), persistent=False)
        self.steps = nn.Buffer(jitorch.tensor(0))
        self.inner = nn.Linear(3, 3)

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        return self.inner(x * self.scale + self.running)


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


# -------------------------------------------------------------------------------------------------
# registration and traversal


def test_simple_model_repr_and_parameters() -> None:
    model = SimpleModel(input_dim=784, output_dim=10)
    assert repr(model) == ("SimpleModel(\n"
                           "  (layer1): Linear(in_features=784, out_features=128, bias=True)\n"
                           "  (relu): ReLU()\n"
                           "  (layer2): Linear(in_features=128, out_features=10, bias=True)\n"
                           ")")
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    assert shapes == [("layer1.weight", (128, 784)), ("layer1.bias", (128,)), ("layer2.weight", (10, 128)),
                      ("layer2.bias", (10,))]
    assert tuple(model(jitorch.randn(4, 784)).shape) == (4, 10)


def test_registration_order_and_kinds() -> None:
    model = WithState()
    assert [name for name, _ in model.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    assert [name for name, _ in model.named_buffers()] == ["running", "scratch", "steps"]
    assert [name for name, _ in model.named_children()] == ["inner"]
    assert [name for name, _ in model.named_modules()] == ["", "inner"]
    assert [name for name, _ in model.named_parameters(prefix="model", recurse=False)] == ["model.scale"]
    assert list(model.children()) == [model.inner]
    assert model.get_parameter("inner.bias") is model.inner.bias
    assert model.get_buffer("running") is model.running
    assert model.get_submodule("inner") is model.inner and model.get_submodule("") is model
    assert "running" in dir(model) and "inner" in dir(model) and "scale" in dir(model)


def test_reassigning_and_deleting_attributes() -> None:
    model = WithState()
    model.scale = None
    assert model.scale is None and [n for n, _ in model.named_parameters()] == ["inner.weight", "inner.bias"]
    with pytest.raises(TypeError, match="cannot assign 'jitorch.FloatTensor' as parameter 'scale'"):
        model.scale = jitorch.ones(3)
    model.running = jitorch.ones(3)  # a tensor assigned to a buffer's name replaces the buffer
    assert "running" in dict(model.named_buffers())
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'inner'"):
        model.inner = 3
    model.plain = 5
    model.plain = nn.ReLU()  # a module replaces a plain attribute of the same name
    assert "plain" in dict(model.named_children()) and "plain" not in model.__dict__
    del model.inner, model.running
    assert "inner" not in dict(model.named_children()) and "running" not in dict(model.named_buffers())
    with pytest.raises(AttributeError, match="'WithState' object has no attribute 'inner'"):
        model.inner  # noqa: B018


def test_registration_errors() -> None:
    class NoInit(nn.Module):
        def __init__(self) -> None:
            self.layer = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"cannot assign module before Module.__init__\(\) call"):
        NoInit()
    module = nn.Module()
    with pytest.raises(KeyError, match="contain"):
        module.register_buffer("a.b", jitorch.zeros(1))
    with pytest.raises(KeyError, match="attribute 'training' already exists"):
        module.register_parameter("training", None)
    with pytest.raises(TypeError, match="cannot assign 'jitorch.FloatTensor' object to parameter 'w'"):
        module.register_parameter("w", jitorch.zeros(1))
    with pytest.raises(TypeError, match="is not a Module subclass"):
        module.add_module("x", 3)
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward" function'):
        module(1)


def test_shared_parameters_and_modules_are_listed_once() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(model.modules())) == 3
    assert len(list(model.named_parameters(remove_duplicate=False))) == 4


def test_parameter() -> None:
    data = jitorch.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert isinstance(p, jitorch.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    with jitorch.no_grad():
        p.mul_(3)
    assert data.tolist() == [3.0, 6.0]  # shares memory with the wrapped tensor
    assert not nn.Parameter(jitorch.zeros(2), requires_grad=False).requires_grad
    assert tuple(nn.Parameter().shape) == (0,)
    copied = copy.deepcopy(p)
    assert isinstance(copied, nn.Parameter) and copied.requires_grad and copied.tolist() == [3.0, 6.0]
    restored = pickle.loads(pickle.dumps(p))
    assert isinstance(restored, nn.Parameter) and restored.tolist() == [3.0, 6.0]


# -------------------------------------------------------------------------------------------------
# state dicts


def test_state_dict_contents_and_memory_sharing() -> None:
    model = WithState()
    state = model.state_dict()
    assert isinstance(state, OrderedDict)
    assert list(state) == ["scale", "running", "steps", "inner.weight", "inner.bias"]
    assert not any(t.requires_grad for t in state.values())
    assert not isinstance(state["scale"], nn.Parameter)
    with jitorch.no_grad():
        model.scale.add_(1)
    assert state["scale"].tolist() == [2.0, 2.0, 2.0]
    assert model.state_dict(keep_vars=True)["scale"] is model.scale
    assert next(iter(model.state_dict(prefix="m."))) == "m.scale"


def test_state_dict_round_trip() -> None:
    source, target = SimpleNet(), SimpleNet()
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    x = jitorch.randn(2, 784)
    assert (source(x) - target(x)).abs().max().item() == 0.0
    # copied, not aliased, and without autograd history
    with jitorch.no_grad():
        source.fc1.weight.zero_()
    assert target.fc1.weight.abs().sum().item() > 0 and target.fc1.weight.is_leaf


def test_state_dict_survives_save_and_load(tmp_path: Path) -> None:
    model = SimpleNet()
    assert repr(model) == ("SimpleNet(\n"
                           "  (fc1): Linear(in_features=784, out_features=128, bias=True)\n"
                           "  (fc2): Linear(in_features=128, out_features=10, bias=True)\n"
                           "  (relu): ReLU()\n"
                           ")")
    path = str(tmp_path / "model.pth")
    jitorch.save(model.state_dict(), path)
    restored = SimpleNet()
    restored.load_state_dict(jitorch.load(path))
    x = jitorch.randn(2, 784)
    assert (restored(x) - model(x)).abs().max().item() == 0.0


def test_load_state_dict_error_messages_match_pytorch() -> None:
    model = SimpleNet()
    state = model.state_dict()
    del state["fc1.weight"]
    state["x"] = jitorch.zeros(1)
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    assert str(error.value) == ('Error(s) in loading state_dict for SimpleNet:\n\tMissing key(s) in state_dict: '
                                '"fc1.weight". \n\tUnexpected key(s) in state_dict: "x". ')
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["fc1.weight"] and result.unexpected_keys == ["x"]
    assert repr(result) == "_IncompatibleKeys(missing_keys=['fc1.weight'], unexpected_keys=['x'])"
    bad = SimpleNet().state_dict()
    bad["fc2.bias"] = jitorch.zeros(5)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc2.bias: copying a param with shape "
                                           r"jitorch.Size\(\[5\]\) from checkpoint, the shape in current model is "
                                           r"jitorch.Size\(\[10\]\)."):
        model.load_state_dict(bad)
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        model.load_state_dict([1, 2])


def test_load_state_dict_handles_buffers_and_assign() -> None:
    source, target = WithState(), WithState()
    with jitorch.no_grad():
        source.running.fill_(4.0)
    state = source.state_dict()
    assert "scratch" not in state
    target.load_state_dict(state)
    assert target.running.tolist() == [4.0, 4.0, 4.0]
    target.load_state_dict(state, assign=True)
    assert isinstance(target.scale, nn.Parameter) and target.scale.requires_grad
    assert target.inner.weight.data_ptr() == state["inner.weight"].data_ptr()


def test_extra_state_round_trips() -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def get_extra_state(self) -> dict:
            return {"count": self.count}

        def set_extra_state(self, state: dict) -> None:
            self.count = state["count"]

    source = nn.Sequential(Counter())
    source[0].count = 7
    target = nn.Sequential(Counter())
    assert list(source.state_dict()) == ["0._extra_state"]
    target.load_state_dict(source.state_dict())
    assert target[0].count == 7


# -------------------------------------------------------------------------------------------------
# calling: hooks and call observers


def test_forward_hooks() -> None:
    layer = nn.Linear(2, 2)
    calls = []
    pre = layer.register_forward_pre_hook(lambda module, args: (args[0] * 0,))
    post = layer.register_forward_hook(lambda module, args, output: output + 1)
    layer.register_forward_hook(lambda module, args, output: calls.append(("last", output.shape)))
    layer.register_forward_hook(lambda module, args, output: calls.append(("first",)), prepend=True)
    out = layer(jitorch.randn(3, 2))
    np.testing.assert_allclose(out.detach().numpy(), np.broadcast_to(layer.bias.detach().numpy() + 1, (3, 2)),
                               rtol=1e-6, atol=1e-6)
    assert calls == [("first",), ("last", (3, 2))]
    pre.remove()
    post.remove()
    x = jitorch.randn(3, 2)
    np.testing.assert_allclose(layer(x).detach().numpy(), nn.functional.linear(x, layer.weight, layer.bias).detach()
                               .numpy(), rtol=0, atol=0)


def test_hooks_with_kwargs_always_call_and_handle_context() -> None:
    class Scale(nn.Module):
        def forward(self, x: jitorch.Tensor, factor: float = 1.0) -> jitorch.Tensor:
            if factor < 0:
                raise ValueError("negative factor")
            return x * factor

    module = Scale()
    module.register_forward_pre_hook(lambda m, args, kwargs: (args, {"factor": 3.0}), with_kwargs=True)
    seen = []
    module.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["factor"]), with_kwargs=True)
    assert module(jitorch.tensor([1.0])).tolist() == [3.0] and seen == [3.0]
    failing = Scale()
    called = []
    with failing.register_forward_hook(lambda m, args, out: called.append(out), always_call=True), \
            pytest.raises(ValueError, match="negative factor"):
        failing(jitorch.tensor([1.0]), factor=-1.0)
    assert called == [None]
    assert not failing._forward_hooks  # the with-block removed the hook


def test_call_observers_see_every_module_enter_and_exit() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, str]] = []

        def enter(self, module: nn.Module) -> None:
            self.events.append(("enter", type(module).__name__))

        def exit(self, module: nn.Module) -> None:
            self.events.append(("exit", type(module).__name__))

    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    recorder = Recorder()
    nn_modules._global_call_observers.append(recorder)
    try:
        model(jitorch.randn(1, 2))
        with pytest.raises(RuntimeError):
            model(jitorch.randn(1, 5))
    finally:
        nn_modules._global_call_observers.remove(recorder)
    first_call = [("enter", "Sequential"), ("enter", "Linear"), ("exit", "Linear"), ("enter", "ReLU"),
                  ("exit", "ReLU"), ("exit", "Sequential")]
    assert recorder.events[:6] == first_call
    assert recorder.events[6:] == [("enter", "Sequential"), ("enter", "Linear"), ("exit", "Linear"),
                                   ("exit", "Sequential")]


# -------------------------------------------------------------------------------------------------
# modes, conversions and gradients


def test_train_and_eval_propagate() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    assert model.training and all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        model.train("yes")


def test_to_converts_in_place_and_keeps_parameter_objects() -> None:
    model = WithState()
    weight = model.inner.weight
    model(jitorch.randn(2, 3)).sum().backward()
    assert model.to(jitorch.float64) is model
    assert model.inner.weight is weight and weight.dtype == jitorch.float64 and weight.grad.dtype == jitorch.float64
    assert model.running.dtype == jitorch.float64 and model.steps.dtype == jitorch.int64
    assert model(jitorch.randn(2, 3, dtype=jitorch.float64)).dtype == jitorch.float64
    assert model.float() is model and weight.dtype == jitorch.float32
    assert model.double().inner.bias.dtype == jitorch.float64
    assert model.to("cpu") is model and model.cpu() is model
    assert model.to(jitorch.randn(1)).inner.weight.dtype == jitorch.float32
    with pytest.raises(TypeError, match="only accepts floating point"):
        model.to(jitorch.int64)
    with pytest.raises(TypeError, match="float16"):
        model.half()


def test_to_cuda_raises_the_device_error() -> None:
    model = nn.Linear(2, 2)
    calls = {"cuda": (lambda: model.to("cuda"), lambda: model.cuda(), lambda: model.to("cuda", jitorch.float64)),
             "cuda:0": (lambda: model.to(device="cuda:0"), lambda: model.to(0))}
    for device, attempts in calls.items():
        with pytest.raises(RuntimeError) as expected:
            jitorch.device(device)
        for attempt in attempts:
            with pytest.raises(RuntimeError) as error:
                attempt()
            assert str(error.value) == str(expected.value)
    assert model.weight.dtype == jitorch.float32


def test_zero_grad_and_requires_grad() -> None:
    model = nn.Linear(3, 2)
    model(jitorch.randn(4, 3)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert model.weight.grad is not None and model.weight.grad.abs().sum().item() == 0
    model.zero_grad()
    assert model.weight.grad is None and model.bias.grad is None
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model(jitorch.randn(1, 3)).requires_grad


def test_deepcopy_and_pickle_give_independent_models() -> None:
    model = WithState()
    clone = copy.deepcopy(model)
    with jitorch.no_grad():
        clone.inner.weight.fill_(0.0)
    assert model.inner.weight.abs().sum().item() > 0
    assert isinstance(clone.inner.weight, nn.Parameter) and clone.inner.weight.requires_grad
    restored = pickle.loads(pickle.dumps(model))
    x = jitorch.randn(2, 3)
    np.testing.assert_array_equal(restored(x).detach().numpy(), model(x).detach().numpy())
    assert [n for n, _ in restored.named_buffers()] == ["running", "scratch", "steps"]


# -------------------------------------------------------------------------------------------------
# containers


def test_sequential_indexing_and_editing() -> None:
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    model = nn.Sequential(a, b, c)
    assert model[0] is a and model[-1] is c and len(model) == 3 and list(model) == [a, b, c]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b] and head[1] is b
    with pytest.raises(IndexError, match="index 3 is out of range"):
        model[3]
    d = nn.Tanh()
    model.append(d)
    model.insert(1, nn.Identity())
    assert [type(m).__name__ for m in model] == ["Linear", "Identity", "ReLU", "Linear", "Tanh"]
    assert list(model._modules) == ["0", "1", "2", "3", "4"]
    del model[1]
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear", "Tanh"]
    assert list(model._modules) == ["0", "1", "2", "3"]
    model.extend([nn.Sigmoid()])
    assert model.pop(-1).__class__ is nn.Sigmoid
    model[1] = nn.GELU()
    assert isinstance(model[1], nn.GELU)
    assert len(model + nn.Sequential(nn.ReLU())) == 5
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"] and named.act is named[1]
    assert tuple(model(jitorch.randn(5, 2)).shape) == (5, 1)


def test_module_list() -> None:
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    layers.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in layers] == ["Tanh", "Linear", "Linear", "Linear", "ReLU"]
    assert len(list(layers.parameters())) == 6 and layers[-1].__class__ is nn.ReLU
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert repr(nn.ModuleList([nn.ReLU(), nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)])) == (
        "ModuleList(\n  (0): ReLU()\n  (1-3): 3 x Linear(in_features=2, out_features=2, bias=True)\n)")
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2", "3"]
    with pytest.raises(NotImplementedError):
        layers(jitorch.randn(1))
    with pytest.raises(TypeError, match="should be called with an iterable"):
        layers.extend(nn.ReLU())


def test_module_dict() -> None:
    heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.ReLU()})
    heads.update([("c", nn.Tanh())])
    heads["d"] = nn.Identity()
    assert list(heads) == ["a", "b", "c", "d"] and "c" in heads and len(heads) == 4
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias"]
    assert isinstance(heads.pop("b"), nn.ReLU) and list(heads.keys()) == ["a", "c", "d"]
    with pytest.raises(ValueError, match="has length 1; 2 is required"):
        heads.update([("x",)])


def test_parameter_list_and_dict() -> None:
    params = nn.ParameterList([jitorch.ones(2), nn.Parameter(jitorch.zeros(3))])
    params.append(jitorch.ones(1, 4))
    assert all(isinstance(p, nn.Parameter) for p in params) and len(params) == 3
    assert [n for n, _ in params.named_parameters()] == ["0", "1", "2"]
    assert repr(params) == ("ParameterList(\n"
                            "    (0): Parameter containing: [jitorch.float32 of size 2]\n"
                            "    (1): Parameter containing: [jitorch.float32 of size 3]\n"
                            "    (2): Parameter containing: [jitorch.float32 of size 1x4]\n)")
    table = nn.ParameterDict({"w": jitorch.ones(2, 2)})
    table["b"] = jitorch.zeros(2)
    assert list(table) == ["w", "b"] and isinstance(table["b"], nn.Parameter)
    assert [n for n, _ in table.named_parameters()] == ["w", "b"]
    assert repr(table) == ("ParameterDict(\n"
                           "    (w): Parameter containing: [jitorch.FloatTensor of size 2x2]\n"
                           "    (b): Parameter containing: [jitorch.FloatTensor of size 2]\n)")
    del table["w"]
    assert list(table.keys()) == ["b"] and [n for n, _ in table.named_parameters()] == ["b"]
    with pytest.raises(TypeError, match="not a string"):
        table[1]


# -------------------------------------------------------------------------------------------------
# the seed models train


def _sgd_steps(model: nn.Module, loss_fn: nn.Module, x: jitorch.Tensor, y: jitorch.Tensor, steps: int,
               lr: float) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        model.zero_grad()
        loss.backward()
        with jitorch.no_grad():
            for p in model.parameters():
                p.sub_(p.grad * lr)
        losses.append(loss.item())
    return losses


def test_seed_models_train_with_plain_sgd() -> None:
    x = jitorch.randn(32, 784)
    labels = jitorch.randint(0, 10, (32,))
    for model in (SimpleModel(784, 10), SimpleNet()):
        losses = _sgd_steps(model, nn.CrossEntropyLoss(), x, labels, steps=15, lr=0.1)
        assert losses[-1] < 0.5 * losses[0], losses
    mlp = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
    assert repr(mlp).startswith("Sequential(\n  (0): Linear(in_features=10, out_features=64, bias=True)")
    inputs = jitorch.randn(64, 10)
    targets = inputs.sum(1, keepdim=True)
    losses = _sgd_steps(mlp, nn.MSELoss(), inputs, targets, steps=30, lr=0.05)
    assert losses[-1] < 0.5 * losses[0], losses


# -------------------------------------------------------------------------------------------------
# nn.utils


def test_clip_grad_norm() -> None:
    a, b = nn.Parameter(jitorch.zeros(2)), nn.Parameter(jitorch.zeros(3))
    a.grad, b.grad = jitorch.tensor([3.0, 0.0]), jitorch.tensor([0.0, 4.0, 0.0])
    total = clip_grad_norm_([a, b], max_norm=1.0)
    assert math.isclose(total.item(), 5.0, rel_tol=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), [3 / (5 + 1e-6), 0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(b.grad.numpy(), [0, 4 / (5 + 1e-6), 0], rtol=1e-6, atol=0)
    total = clip_grad_norm_(iter([a, b]), max_norm=10.0, norm_type=math.inf)
    assert math.isclose(total.item(), 0.8, rel_tol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0, 0.8, 0], rtol=1e-5, atol=0)  # unchanged below max_norm
    a.grad = jitorch.tensor([math.inf, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(a, 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_([nn.Parameter(jitorch.zeros(1))], 1.0).item() == 0.0


def test_clip_grad_value_and_vector_conversion() -> None:
    model = nn.Linear(3, 2)
    model(jitorch.randn(5, 3) * 10).sum().backward()
    clip_grad_value_(model.parameters(), 0.5)
    assert max(p.grad.abs().max().item() for p in model.parameters()) <= 0.5
    vector = parameters_to_vector(model.parameters())
    assert tuple(vector.shape) == (8,)
    np.testing.assert_array_equal(vector.detach().numpy()[:6], model.weight.detach().numpy().reshape(-1))
    vector_to_parameters(jitorch.arange(8.0), model.parameters())
    assert model.weight.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and model.bias.tolist() == [6.0, 7.0]
    with pytest.raises(TypeError, match="expected torch.Tensor"):
        vector_to_parameters([1.0], model.parameters())
