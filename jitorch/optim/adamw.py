"""AdamW: Adam with decoupled weight decay (default 0.01), as in PyTorch."""
from __future__ import annotations

from typing import Any

from jitorch.optim.adam import Adam


class AdamW(Adam):
    """AdamW (`torch.optim.AdamW`): each step first scales parameters by `1 - lr * weight_decay`."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
