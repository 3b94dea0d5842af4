"""RMSprop (with momentum, centering, weight decay and maximize): PyTorch's update rule."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jitorch
from jitorch.optim.optimizer import Optimizer, check_nonnegative, check_unsupported, new_step_count


class RMSprop(Optimizer):
    """RMSprop (`torch.optim.RMSprop`).

    `v = alpha * v + (1 - alpha) * g * g; avg = sqrt(v - gavg^2) (centered, gavg = lerp(gavg, g, 1 - alpha))
    or sqrt(v); avg += eps`; then `b = momentum * b + g / avg; p -= lr * b` or, without momentum,
    `p -= lr * g / avg`.
    """

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        check_nonnegative("lr", lr, "learning rate")
        check_nonnegative("eps", eps, "epsilon value")
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("alpha", alpha)
        check_unsupported(differentiable)
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay, "capturable": capturable, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _state_for(self, p: jitorch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = new_step_count()
            state["square_avg"] = jitorch.zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = jitorch.zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = jitorch.zeros_like(p)
        return state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        with jitorch.no_grad():
            for group in self.param_groups:
                lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
                weight_decay, momentum = group["weight_decay"], group["momentum"]
                for p, grad in self._params_with_grad(group):
                    state = self._state_for(p, group)
                    if group["maximize"]:
                        grad = -grad
                    state["step"] += 1
                    if weight_decay != 0:
                        grad = grad.add(p, alpha=weight_decay)
                    square_avg = state["square_avg"]
                    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
                    if group["centered"]:
                        grad_avg = state["grad_avg"]
                        grad_avg.lerp_(grad, 1 - alpha)
                        avg = (square_avg - grad_avg * grad_avg).sqrt_()
                    else:
                        avg = square_avg.sqrt()
                    avg = avg.add_(eps)
                    if momentum > 0:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).addcdiv_(grad, avg)
                        p.add_(buf, alpha=-lr)
                    else:
                        p.addcdiv_(grad, avg, value=-lr)
        return loss
