"""jitorch: a PyTorch-style deep learning framework for the CPU with an LLVM JIT compiler.

`import jitorch as torch` runs ordinary PyTorch code: tensors, autograd, `nn`, `optim`,
`utils.data`, `save`/`load`; `jitorch.compile` makes the hot parts fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

from jitorch import cuda  # noqa: E402
from jitorch.frontend import functional as _functional  # noqa: E402
from jitorch.frontend.autograd import (  # noqa: E402
    enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad, set_grad_enabled)
from jitorch.frontend.creation import (  # noqa: E402
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, logspace, ones, ones_like,
    tensor, zeros, zeros_like)
from jitorch.frontend.random import (  # noqa: E402
    Generator, bernoulli, default_generator, get_rng_state, initial_seed, manual_seed, multinomial, normal, rand,
    rand_like, randint, randint_like, randn, randn_like, randperm, seed, set_rng_state)
from jitorch.frontend.device import device  # noqa: E402
from jitorch.frontend.tensor import Size, Tensor  # noqa: E402
from jitorch.ir.dtypes import (  # noqa: E402
    DType as dtype, bool_ as bool, float32, float64, get_default_dtype, int32, int64, promote_types,
    set_default_dtype)
from jitorch.ir.ops import IndexOutOfRange  # noqa: E402
from jitorch.ir.types import ShapeError  # noqa: E402
from jitorch.frontend.api import *  # noqa: E402,F401,F403

float = float32  # noqa: A001 - PyTorch's aliases
double = float64
long = int64
int = int32  # noqa: A001

# subpackages and heavier entry points load on first use, keeping `import jitorch` fast
_LAZY = {
    "nn": ("jitorch.nn", None), "optim": ("jitorch.optim", None), "utils": ("jitorch.utils", None),
    "autograd": ("jitorch.autograd", None), "compiler": ("jitorch.compiler", None),
    "save": ("jitorch.serialization", "save"), "load": ("jitorch.serialization", "load"),
    "compile": ("jitorch.frontend.compile", "compile"), "explain": ("jitorch.frontend.compile", "explain"),
    "benchmark": ("jitorch.benchmarking", "benchmark"),
    "set_num_threads": ("jitorch.codegen.runtime", "set_num_threads"),
    "get_num_threads": ("jitorch.codegen.runtime", "get_num_threads"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'jitorch' has no attribute '{name}'")
    import importlib
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
