"""`jitorch.autograd`: gradients of tensors (backward, grad), grad modes and the gradient checkers."""
from __future__ import annotations

from jitorch.frontend.autograd import (  # noqa: F401
    enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled)
from jitorch.frontend.autograd import Node as Node  # noqa: F401
from jitorch.frontend.autograd_engine import backward, grad  # noqa: F401
from jitorch.frontend.gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: F401
