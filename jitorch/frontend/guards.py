"""Guards of compiled functions: the cache key of a call's arguments, the message naming the guard that
changed between two keys, and the guard on a module's plain attributes."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

from jitorch.frontend.tensor import Tensor
from jitorch.ir.dtypes import DType

_SIMPLE = (bool, int, float, str, type(None), tuple, DType)


def leaf_key(leaf: Any) -> Any:
    """The guard on one flattened argument: a tensor's shape, dtype and requires_grad; any other value itself."""
    if isinstance(leaf, Tensor):
        return (leaf.shape, leaf.dtype, leaf._requires_grad, leaf._data is None)
    if type(leaf) is float:
        # by bits: -0.0 == 0.0 would reuse a graph with the other zero baked in, and nan != nan never hits
        return (float, leaf.hex())
    if type(leaf) is slice:  # unhashable before Python 3.12: `f(x, slice(1, 3))` would always run eagerly
        leaf = (leaf.start, leaf.stop, leaf.step)
        return (slice, leaf) if all(type(v) in (int, type(None)) for v in leaf) else Unhashable("slice")
    try:
        hash(leaf)
    except TypeError:
        return Unhashable(type(leaf).__name__)
    return (type(leaf), leaf)


@dataclass(frozen=True)
class Unhashable:
    type_name: str


def describe_change(paths: list[str], old: tuple, new: tuple) -> str:
    """Name the first guard that differs between two keys ("argument 'x' dim 0 changed 8 → 9")."""
    old_leaves, new_leaves = old[1], new[1]
    if old[0] != new[0]:
        return "the structure of the arguments changed"
    if old[2] != new[2]:
        return f"grad mode changed {old[2]} → {new[2]}"
    for path, a, b in zip(paths, old_leaves, new_leaves):
        if a == b:
            continue
        if isinstance(a, tuple) and len(a) == 4 and isinstance(b, tuple) and len(b) == 4 and isinstance(a[0], tuple):
            if len(a[0]) != len(b[0]):
                return f"argument '{path}' rank changed {len(a[0])} → {len(b[0])}"
            for dim, (x, y) in enumerate(zip(a[0], b[0])):
                if x != y:
                    return f"argument '{path}' dim {dim} changed {x} → {y}"
            if a[1] is not b[1]:
                return f"argument '{path}' dtype changed {a[1].name} → {b[1].name}"
            return f"argument '{path}' requires_grad changed {a[2]} → {b[2]}"
        if isinstance(a, tuple) and isinstance(b, tuple):
            return f"argument '{path}' changed {_plain(a)!r} → {_plain(b)!r}"
        return f"argument '{path}' changed"
    return "a module flag or lifted tensor changed"


def _plain(key: tuple) -> Any:
    """The argument value a non-tensor leaf key stands for."""
    return float.fromhex(key[1]) if key[0] is float else key[1]


def module_guard(module: Any) -> tuple[Any, Callable, Any]:
    """Guard a module's plain (non-tensor, non-module) attributes: `training`, a `scale` float, flags."""
    keys = sorted(k for k, v in module.__dict__.items() if isinstance(v, _SIMPLE) and not k.startswith("__jitorch"))
    getter = operator.itemgetter(*keys) if keys else (lambda d: ())
    return module, getter, getter(module.__dict__)
