"""`Optimizer`: parameter groups, per-parameter state, `zero_grad`, `step` hooks and state dicts.

Subclasses implement `step(closure=None)`; they update parameters in place under `no_grad`, one
vectorized tensor expression per parameter, so a compiled function that reads the parameters at
call time sees the new values. State dicts use PyTorch's layout: parameters are replaced by their
position across all groups, `{"state": {0: {...}}, "param_groups": [{..., "params": [0, 1]}]}`.
"""
from __future__ import annotations

import functools
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

import jitorch
from jitorch import Tensor


class _RequiredParameter:
    """Marks a default that every parameter group must give (SGD's lr before PyTorch 2.2)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class _HookHandle:
    """What `register_step_*_hook` returns: `.remove()` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: OrderedDict) -> None:
        self.hooks = hooks
        self.id = _HookHandle._next_id
        _HookHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)


def _hooked_step(step: Callable) -> Callable:
    """Wrap a subclass's `step`: run the step hooks and note that the optimizer stepped (for LR schedulers)."""

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_step"):  # a subclass's step calling super().step(): hooks run once
            return step(self, *args, **kwargs)
        self._opt_called = True
        for hook in list(self._step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"optimizer step pre-hook must return None or a tuple of (new_args, "
                                       f"new_kwargs), but got {result}")
                args, kwargs = result
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        for hook in list(self._step_post_hooks.values()):
            hook(self, args, kwargs)
        return out

    wrapper._hooked = True  # type: ignore[attr-defined]
    return wrapper


class Optimizer:
    """Base class of all optimizers (`torch.optim.Optimizer`).

    >>> w = jitorch.zeros(3, requires_grad=True)
    >>> opt = jitorch.optim.SGD([w], lr=0.1)
    >>> (w - 1.0).square().sum().backward(); opt.step(); w.tolist()
    [0.2..., 0.2..., 0.2...]
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _hooked_step(step)  # type: ignore[method-assign]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._step_pre_hooks: OrderedDict = OrderedDict()
        self._step_post_hooks: OrderedDict = OrderedDict()
        if isinstance(params, Tensor):
            raise TypeError(f"params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__module__}.{type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---------------------------------------------------------------------------------------------
    # parameter groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options; missing options take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        for param in param_group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__module__}.{type(param).__name__}")
            if not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        taken = {id(p) for group in self.param_groups for p in group["params"]}
        if any(i in taken for i in ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: to None (the default) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    grad = p.grad
                    if grad.grad_fn is not None:
                        grad.detach_()
                    else:
                        grad.requires_grad_(False)
                    with jitorch.no_grad():
                        grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        """Evaluate the closure (which recomputes the loss and its gradients) with gradients enabled."""
        if closure is None:
            return None
        with jitorch.enable_grad():
            return closure()

    def _params_with_grad(self, group: dict[str, Any]) -> Iterable[tuple[Tensor, Tensor]]:
        """(parameter, gradient) for the group's parameters that have a gradient, in order."""
        for p in group["params"]:
            if p.grad is not None:
                yield p, p.grad

    # ---------------------------------------------------------------------------------------------
    # hooks

    def register_step_pre_hook(self, hook: Callable) -> _HookHandle:
        """`hook(optimizer, args, kwargs)` runs before each step; it may return new (args, kwargs)."""
        handle = _HookHandle(self._step_pre_hooks)
        self._step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook: Callable) -> _HookHandle:
        """`hook(optimizer, args, kwargs)` runs after each step."""
        handle = _HookHandle(self._step_post_hooks)
        self._step_post_hooks[handle.id] = hook
        return handle

    # ---------------------------------------------------------------------------------------------
    # state dicts

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state and options, with parameters replaced by integer ids.

        The state tensors are the optimizer's own (not copies), as in PyTorch; `load_state_dict` copies.
        """
        ids: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            for p in group["params"]:
                ids.setdefault(id(p), len(ids))
            packed["params"] = [ids[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(ids[id(key)] if isinstance(key, Tensor) else key): value for key, value in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state saved by `state_dict()` (of an optimizer over same-shaped groups)."""
        if "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("optimizer state dict must have the keys 'state' and 'param_groups'")
        groups = self.param_groups
        saved_groups = [dict(group) for group in state_dict["param_groups"]]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = {name: _cast_state(param, name, v) for name, v in value.items()}
            else:
                state[key] = value
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            for name, default in self.defaults.items():
                saved.setdefault(name, default)
        self.state = state
        self.param_groups = saved_groups

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_in_step"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_step_pre_hooks", OrderedDict())
        self.__dict__.setdefault("_step_post_hooks", OrderedDict())

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


def _cast_state(param: Tensor, name: str, value: Any) -> Any:
    """A loaded state value made the optimizer's own: tensors copied (floating ones to the parameter's dtype).

    PyTorch aliases the loaded tensors; copying means two optimizers loaded from one state dict never
    update each other's state. `step` counts stay float32 scalars, whatever the parameter's dtype.
    """
    if isinstance(value, Tensor):
        if name == "step":
            return value.detach().to(jitorch.float32).clone()
        dtype = param.dtype if value.is_floating_point() and param.is_floating_point() else value.dtype
        return value.detach().to(dtype).clone()
    if name == "step" and isinstance(value, (int, float)):
        return jitorch.tensor(float(value), dtype=jitorch.float32)
    if isinstance(value, dict):
        return {k: _cast_state(param, k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state(param, name, v) for v in value)
    return value


def check_nonnegative(name: str, value: Any, label: str | None = None) -> None:
    """PyTorch's argument checks: `ValueError: Invalid learning rate: -1`."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {label or name + ' value'}: {value}")


def check_betas(betas: tuple[float, float]) -> None:
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


def check_unsupported(differentiable: bool) -> None:
    if differentiable:
        raise NotImplementedError("differentiable=True (autograd through the optimizer step) is not supported by "
                                  "jitorch optimizers")


def new_step_count() -> Tensor:
    """The `step` entry of per-parameter state: a float32 scalar tensor, as in PyTorch 2.x."""
    return jitorch.tensor(0.0, dtype=jitorch.float32)
