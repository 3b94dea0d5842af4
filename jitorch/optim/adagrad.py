"""Adagrad (with learning-rate decay, weight decay, an initial accumulator and maximize): PyTorch's rule."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jitorch
from jitorch.optim.optimizer import Optimizer, check_nonnegative, check_unsupported, new_step_count


class Adagrad(Optimizer):
    """Adagrad (`torch.optim.Adagrad`).

    `clr = lr / (1 + (t - 1) * lr_decay); s += g * g; p -= clr * g / (sqrt(s) + eps)`, where the sum `s`
    starts at `initial_accumulator_value`.
    """

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        check_nonnegative("lr", lr, "learning rate")
        check_nonnegative("lr_decay", lr_decay)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("initial_accumulator_value", initial_accumulator_value)
        check_nonnegative("eps", eps, "epsilon value")
        check_unsupported(differentiable)
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._state_for(p, group)

    def _state_for(self, p: jitorch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        # PyTorch creates the state in __init__; groups added later get theirs on their first step
        state = self.state[p]
        if not state:
            state["step"] = new_step_count()
            state["sum"] = jitorch.full_like(p, group["initial_accumulator_value"])
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        with jitorch.no_grad():
            for group in self.param_groups:
                lr, lr_decay, eps, weight_decay = group["lr"], group["lr_decay"], group["eps"], group["weight_decay"]
                for p, grad in self._params_with_grad(group):
                    state = self._state_for(p, group)
                    state["step"] += 1
                    step = state["step"].item()
                    if group["maximize"]:
                        grad = -grad
                    if weight_decay != 0:
                        grad = grad.add(p, alpha=weight_decay)
                    clr = lr / (1 + (step - 1) * lr_decay)
                    state_sum = state["sum"]
                    state_sum.addcmul_(grad, grad, value=1)
                    std = state_sum.sqrt().add_(eps)
                    p.addcdiv_(grad, std, value=-clr)
        return loss
