"""Every nn layer and loss under jitorch.compile: same outputs and gradients as eager, and no fallback."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import jitorch
from jitorch import nn
from jitorch.frontend.compile import default_backend

RNG = np.random.default_rng(0)


def randn(*shape: int) -> jitorch.Tensor:
    return jitorch.tensor(RNG.standard_normal(shape).astype(np.float32))


# (name, module factory, input factory); inputs are float unless the factory says otherwise
LAYERS: list[tuple[str, Callable[[], nn.Module], Callable[[], tuple]]] = [
    ("Linear", lambda: nn.Linear(5, 3), lambda: (randn(4, 5),)),
    ("Bilinear", lambda: nn.Bilinear(3, 4, 2), lambda: (randn(5, 3), randn(5, 4))),
    ("Conv1d", lambda: nn.Conv1d(2, 3, 3, padding=1), lambda: (randn(2, 2, 7),)),
    ("Conv2d", lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1), lambda: (randn(2, 2, 7, 7),)),
    ("Conv2d_groups_dilation", lambda: nn.Conv2d(4, 4, 3, dilation=2, groups=2, padding="same"),
     lambda: (randn(1, 4, 6, 6),)),
    ("ConvTranspose2d", lambda: nn.ConvTranspose2d(2, 3, 3, stride=2), lambda: (randn(1, 2, 4, 4),)),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), lambda: (randn(2, 3, 6, 6),)),
    ("AvgPool2d", lambda: nn.AvgPool2d(3, stride=2, padding=1), lambda: (randn(2, 3, 7, 7),)),
    ("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: (randn(2, 3, 5, 7),)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(4), lambda: (randn(6, 4),)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), lambda: (randn(4, 3, 5, 5),)),
    ("LayerNorm", lambda: nn.LayerNorm(6), lambda: (randn(3, 4, 6),)),
    ("GroupNorm", lambda: nn.GroupNorm(2, 4), lambda: (randn(3, 4, 5),)),
    ("Dropout", lambda: nn.Dropout(0.3), lambda: (randn(8, 9),)),
    ("Embedding", lambda: nn.Embedding(10, 4, padding_idx=0),
     lambda: (jitorch.tensor([[1, 0, 9], [3, 3, 2]]),)),
    ("Flatten", lambda: nn.Flatten(), lambda: (randn(2, 3, 4),)),
    ("Sequential_MLP", lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), lambda: (randn(5, 6),)),
] + [
    (name, (lambda n=name, a=args: getattr(nn, n)(*a)), lambda: (randn(4, 7),))
    for name, args in [("ReLU", ()), ("LeakyReLU", (0.1,)), ("ELU", ()), ("GELU", ()), ("GELU", ("tanh",)),
                       ("SiLU", ()), ("Sigmoid", ()), ("Tanh", ()), ("Softmax", (-1,)), ("LogSoftmax", (1,)),
                       ("Softplus", ()), ("Hardtanh", ())]
]

LOSSES: list[tuple[str, Callable[[], nn.Module], Callable[[], tuple]]] = [
    ("MSELoss", nn.MSELoss, lambda: (randn(4, 5), randn(4, 5))),
    ("L1Loss", nn.L1Loss, lambda: (randn(4, 5), randn(4, 5))),
    ("SmoothL1Loss", nn.SmoothL1Loss, lambda: (randn(4, 5), randn(4, 5))),
    ("HuberLoss", nn.HuberLoss, lambda: (randn(4, 5), randn(4, 5))),
    ("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(label_smoothing=0.1), lambda: (randn(6, 4),
                                                                                   jitorch.tensor([0, 3, 1, 2, 2, 0]))),
    ("CrossEntropyLoss_probs", nn.CrossEntropyLoss, lambda: (randn(3, 4), randn(3, 4).softmax(-1))),
    ("NLLLoss", nn.NLLLoss, lambda: (randn(5, 3).log_softmax(-1), jitorch.tensor([0, 2, 1, 1, 0]))),
    ("BCELoss", nn.BCELoss, lambda: (randn(6).sigmoid(), (randn(6) > 0).float())),
    ("BCEWithLogitsLoss", lambda: nn.BCEWithLogitsLoss(pos_weight=jitorch.tensor([2.0])),
     lambda: (randn(6), (randn(6) > 0).float())),
    ("KLDivLoss", lambda: nn.KLDivLoss(reduction="batchmean"),
     lambda: (randn(3, 4).log_softmax(-1), randn(3, 4).softmax(-1))),
]


def _run(module: nn.Module, inputs: tuple, compiled: bool) -> tuple[np.ndarray, list]:
    """Output and gradients (of the float inputs and the parameters) of one forward + backward."""
    leaves = [x.detach().requires_grad_() if x.dtype.is_floating_point else x for x in inputs]
    for p in module.parameters():
        p.grad = None
    fn = jitorch.compile(module) if compiled else module
    jitorch.manual_seed(1)
    out = fn(*leaves)
    if compiled:  # the first call records eagerly; the second runs the compiled graph
        jitorch.manual_seed(1)
        out = fn(*leaves)
        assert fn.stats["fallbacks"] == 0, fn._compiled.fallback_reasons
        assert fn.stats["hits"] == 1, fn.stats
    weights = jitorch.tensor(np.linspace(-1, 1, out.numel(), dtype=np.float32).reshape(tuple(out.shape)))
    (out * weights).sum().backward()
    grads = [x.grad.numpy().copy() for x in leaves if x.requires_grad] + \
        [p.grad.numpy().copy() for p in module.parameters() if p.grad is not None]
    return out.detach().numpy().copy(), grads


@pytest.mark.parametrize("name, make, inputs", LAYERS + LOSSES, ids=[c[0] for c in LAYERS + LOSSES])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_compiled_matches_eager(name: str, make: Callable, inputs: Callable, mode: str) -> None:
    jitorch.manual_seed(0)
    module = make()
    module.train(mode == "train")
    args = inputs()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    want, want_grads = _run(module, args, compiled=False)
    module.load_state_dict(state)
    got, got_grads = _run(module, args, compiled=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{name} ({default_backend()})")
    assert len(got_grads) == len(want_grads)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"{name} gradient")
