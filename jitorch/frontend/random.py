"""Random numbers: seeded generators and the random creation functions.

Random tensors come from the registry's counter-based ops (`rand_uniform`, `rand_normal`): each call
draws one 64-bit seed from a generator, and element i depends only on (seed, i). So a traced graph
can take the seed as an input and produce, compiled, exactly what eager mode produces.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jitorch.frontend import tracing
from jitorch.frontend.device import _check_device
from jitorch.frontend.tensor import Tensor, dispatch
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.vocabulary_base import shape_args


class Generator:
    """`torch.Generator`: a seeded stream of random numbers."""

    def __init__(self, device: Any = "cpu") -> None:
        _check_device(device)
        self.device = "cpu"
        self.manual_seed(67280421310721)

    def manual_seed(self, seed: int) -> Generator:
        self._initial = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._initial & _MASK64))
        return self

    def seed(self) -> int:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._initial

    def get_state(self) -> Tensor:
        """The generator's state as an int64 tensor: the seed, then PCG64's 128-bit words in 64-bit halves."""
        state = self._rng.bit_generator.state
        words = [self._initial]
        for big in (state["state"]["state"], state["state"]["inc"]):
            words += [big >> 64, big & _MASK64]
        words += [state["has_uint32"], state["uinteger"]]
        return Tensor._wrap(np.array(words, dtype=np.uint64).view(np.int64), dtypes.int64)

    def set_state(self, state: Tensor) -> Generator:
        words = [int(w) for w in np.asarray(state._data, dtype=np.int64).view(np.uint64)]
        if len(words) != 7:
            raise RuntimeError(f"set_state: expected a state of 7 words from get_state(), got {len(words)}")
        self._initial = words[0]
        self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": (words[1] << 64) | words[2], "inc": (words[3] << 64) | words[4]},
            "has_uint32": words[5], "uinteger": words[6]}
        return self

    def next_seed(self) -> int:
        return int(self._rng.integers(0, 2 ** 63 - 1))

    @property
    def numpy(self) -> np.random.Generator:
        """The underlying numpy generator, for host-side shuffles and permutations."""
        return self._rng


_MASK64 = (1 << 64) - 1
default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(state: Tensor) -> None:
    default_generator.set_state(state)


def _seed_tensor(generator: Generator | None) -> Tensor:
    """The seed operand of a random op; inside a trace it becomes a graph input drawn on every call."""
    gen = generator or default_generator
    value = Tensor._wrap(np.array(gen.next_seed(), dtype=np.int64), dtypes.int64)
    tracing.random_seed(value, gen)
    return value


def _random(op: str, size: tuple, dtype: DType | None, generator: Generator | None, requires_grad: bool,
            device: Any) -> Tensor:
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f"{'rand' if op == 'rand_uniform' else 'randn'}: expected a floating-point dtype, "
                        f"got {dtype.name}")
    shape = shape_args(size)
    if _check_device(device):
        return Tensor._symbolic(shape, dtype)
    out = dispatch(op, (_seed_tensor(generator),), {"shape": shape, "dtype": dtype})
    out._requires_grad = requires_grad
    return out


def rand(*size: Any, generator: Generator | None = None, dtype: DType | None = None, device: Any = None,
         requires_grad: bool = False, out: Any = None) -> Tensor:
    return _random("rand_uniform", size, dtype, generator, requires_grad, device)


def randn(*size: Any, generator: Generator | None = None, dtype: DType | None = None, device: Any = None,
          requires_grad: bool = False, out: Any = None) -> Tensor:
    return _random("rand_normal", size, dtype, generator, requires_grad, device)


def rand_like(t: Tensor, *, dtype: DType | None = None, generator: Generator | None = None,
              requires_grad: bool = False, device: Any = None) -> Tensor:
    return rand(*t.shape, dtype=dtype or (t.dtype if t.dtype.is_floating_point else None), generator=generator,
                requires_grad=requires_grad)


def randn_like(t: Tensor, *, dtype: DType | None = None, generator: Generator | None = None,
               requires_grad: bool = False, device: Any = None) -> Tensor:
    return randn(*t.shape, dtype=dtype or (t.dtype if t.dtype.is_floating_point else None), generator=generator,
                 requires_grad=requires_grad)


def randint(low: int, high: int | None = None, size: Any = None, *, generator: Generator | None = None,
            dtype: DType | None = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size), as PyTorch allows
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64
    uniform = rand(*shape_args((size,)), generator=generator, dtype=dtypes.float64, device=device)
    return ((uniform * (high - low)).floor().clamp(max=high - low - 1) + low).to(dtype)


def randint_like(t: Tensor, low: int, high: int | None = None, **kwargs: Any) -> Tensor:
    return randint(low, high, tuple(t.shape), dtype=kwargs.pop("dtype", t.dtype), **kwargs)


def randperm(n: int, *, generator: Generator | None = None, dtype: DType | None = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    _check_device(device)
    tracing.untraceable("randperm")
    gen = generator or default_generator
    return Tensor._wrap(gen.numpy.permutation(n).astype((dtype or dtypes.int64).numpy), dtype or dtypes.int64)


def normal(mean: Any, std: Any = 1.0, size: Any = None, *, generator: Generator | None = None) -> Tensor:
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        like = mean if isinstance(mean, Tensor) else std
        return randn_like(like, generator=generator) * std + mean
    return randn(*shape_args((size,)), generator=generator) * std + mean


def bernoulli(p: Tensor, *, generator: Generator | None = None) -> Tensor:
    return (rand_like(p, generator=generator) < p).to(p.dtype)


def multinomial(probs: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    tracing.untraceable("multinomial")
    gen = generator or default_generator
    weights = np.atleast_2d(probs._need_data("multinomial()")).astype(np.float64)
    rows = [gen.numpy.choice(weights.shape[1], size=num_samples, replace=replacement, p=w / w.sum()) for w in weights]
    out = np.stack(rows).astype(np.int64)
    return Tensor._wrap(out if probs.ndim == 2 else out[0], dtypes.int64)
