"""Eager autograd: grad modes and the tape's nodes; the iterative backward engine is in autograd_engine.py.

Every differentiable op applied to a tensor that requires grad creates an `OpNode` holding what the
op's VJP rule (in the registry) needs. `backward()` walks the nodes in reverse creation order with
dependency counting (no recursion, so chains of any length work), calls each rule, and accumulates
into the leaves' `.grad`. Saved tensors carry version numbers, so a tensor modified in place after
being saved raises PyTorch's error instead of giving a silently wrong gradient.
"""
from __future__ import annotations

import functools
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from jitorch.ir.ops import Op
from jitorch.ir.types import Literal

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor


class _GradMode(threading.local):
    enabled = True
    inference = False


_mode = _GradMode()
_sequence = itertools.count()


def is_grad_enabled() -> bool:
    return _mode.enabled


def is_inference_mode_enabled() -> bool:
    return _mode.inference


class _GradModeContext:
    """Base of the grad-mode context managers; each also works as a decorator, with or without ()."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs and cls is not set_grad_enabled:
            return cls()(args[0])  # bare @no_grad
        return super().__new__(cls)

    def _target(self) -> tuple[bool, bool]:
        raise NotImplementedError

    def __enter__(self) -> None:
        self._saved = (_mode.enabled, _mode.inference)
        _mode.enabled, _mode.inference = self._target()

    def __exit__(self, *exc: object) -> None:
        _mode.enabled, _mode.inference = self._saved

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.__class__(*self._args()):
                return fn(*args, **kwargs)
        return wrapper

    def _args(self) -> tuple:
        return ()

    def clone(self) -> _GradModeContext:
        return self.__class__(*self._args())


class no_grad(_GradModeContext):  # noqa: N801 - PyTorch's name
    def _target(self) -> tuple[bool, bool]:
        return False, _mode.inference


class enable_grad(_GradModeContext):  # noqa: N801
    def _target(self) -> tuple[bool, bool]:
        return True, _mode.inference


class inference_mode(_GradModeContext):  # noqa: N801
    def __init__(self, mode: bool = True) -> None:
        self.mode = mode

    def _target(self) -> tuple[bool, bool]:
        return (False, True) if self.mode else (_mode.enabled, False)

    def _args(self) -> tuple:
        return (self.mode,)


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Sets grad mode at once (as a call) and restores it on exit (as a context manager)."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._previous = (_mode.enabled, _mode.inference)
        _mode.enabled = self.mode

    def __enter__(self) -> None:
        self._saved = self._previous

    def _args(self) -> tuple:
        return (self.mode,)

    def __call__(self, fn: Callable) -> Callable:
        _mode.enabled = self._previous[0]  # used as a decorator: the call itself must not change the mode
        return super().__call__(fn)


# ----------------------------------------------------------------------------------------------------
# nodes


class _Meta:
    """What backward keeps of an input it does not save: shape and dtype, for the VJP rule."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = shape, dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class Node:
    """One step of the tape. `next` holds, per input, the producing Node, a leaf Tensor, or None."""

    __slots__ = ("next", "seq", "pre_hooks", "retained", "freed", "__weakref__")

    def __init__(self, next_edges: Sequence[Any]) -> None:
        self.next = tuple(next_edges)
        self.seq = next(_sequence)
        self.pre_hooks: list[Callable] | None = None
        self.retained: weakref.ref | None = None
        self.freed = False

    def name(self) -> str:
        raise NotImplementedError

    def apply(self, grad: Tensor, create_graph: bool) -> Sequence[Any]:
        """Gradients for the inputs: Tensors, None, or zero-argument callables computed on demand."""
        raise NotImplementedError

    def release(self) -> None:
        self.freed = True

    @property
    def next_functions(self) -> tuple:
        return tuple((AccumulateGrad(e) if e is not None and not isinstance(e, Node) else e, 0) for e in self.next)

    def register_hook(self, fn: Callable) -> None:
        self.register_prehook(fn)

    def register_prehook(self, fn: Callable) -> None:
        self.pre_hooks = (self.pre_hooks or []) + [fn]

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"

    def _check_not_freed(self) -> None:
        if self.freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors after "
                "they have already been freed). Saved intermediate values of the graph are freed when you call "
                ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
                "graph a second time or if you need to access saved tensors after calling backward.")


class AccumulateGrad:
    """How a leaf appears in `grad_fn.next_functions`."""

    def __init__(self, variable: Tensor) -> None:
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


class OpNode(Node):
    """A registry op on the tape: runs the op's VJP rule."""

    __slots__ = ("op", "attrs", "saved", "versions", "out_data", "out_dtype", "out_counter", "out_version")

    def __init__(self, op: Op, attrs: dict, operands: Sequence[Any], out: Tensor, next_edges: Sequence[Any]) -> None:
        super().__init__(next_edges)
        self.op, self.attrs = op, attrs
        keep_inputs = op.saves in ("inputs", "both")
        saved, versions = [], []
        for value in operands:
            if isinstance(value, Literal):
                saved.append(value.value)
                versions.append(None)
            elif keep_inputs:
                saved.append(value)
                versions.append(value._version.value)
            else:
                saved.append(_Meta(tuple(value.shape), value.dtype))
                versions.append(None)
        self.saved, self.versions = saved, versions
        keep_output = op.saves in ("output", "both")
        self.out_data = out._data if keep_output else None
        self.out_dtype = out.dtype
        self.out_counter = out._version if keep_output else None
        self.out_version = out._version.value if keep_output else 0

    def name(self) -> str:
        return f"{_camel(self.op.name)}Backward0"

    def apply(self, grad: Tensor, create_graph: bool) -> Sequence[Any]:
        from jitorch.frontend.tensor import Tensor

        if self.op.saves != "none":  # as in PyTorch, only a node whose saved values were freed refuses
            self._check_not_freed()
        for value, version in zip(self.saved, self.versions):
            if version is not None and value._version.value != version:
                self._raise_modified(value, value._version.value, version)
        out = None
        if self.out_data is not None:
            if self.out_counter.value != self.out_version:
                self._raise_modified(None, self.out_counter.value, self.out_version)
            out = Tensor._wrap(self.out_data, self.out_dtype)
            if create_graph:
                out._grad_fn, out._requires_grad = self, True
        return self.op.vjp(grad, out, *self.saved, **self.attrs)

    def _raise_modified(self, value: Any, now: int, expected: int) -> None:
        what = f"[{value.type_name()} {list(value.shape)}]" if value is not None else "its output"
        raise RuntimeError(
            f"one of the variables needed for gradient computation has been modified by an inplace operation: "
            f"{what}, which is needed by {self.name()}, is at version {now}; expected version {expected} "
            f"instead. Hint: the backtrace further above shows the operation that failed to compute its "
            f"gradient. Use .clone() before the in-place operation if the original value is still needed.")

    def release(self) -> None:
        super().release()
        self.saved = [v if isinstance(v, (int, float, bool, _Meta)) else None for v in self.saved]
        self.out_data = None


class CopySlices(Node):
    """The new history of a base tensor after an in-place write through one of its views.

    base_new = base_old with the view's region replaced by `src`; the gradient splits accordingly:
    the region's part goes to `src`, the rest to the old base.
    """

    __slots__ = ("view_chain", "base_shape", "base_dtype")

    def __init__(self, base_edge: Any, src_edge: Any, view_chain: tuple, base_shape: tuple, base_dtype: Any) -> None:
        super().__init__((base_edge, src_edge))
        self.view_chain, self.base_shape, self.base_dtype = view_chain, base_shape, base_dtype

    def name(self) -> str:
        return "CopySlices"

    def apply(self, grad: Tensor, create_graph: bool) -> Sequence[Any]:
        from jitorch.frontend.tensor import Tensor, replay_view

        self._check_not_freed()
        region = np.zeros(self.base_shape, dtype=bool)
        replay_view(Tensor._wrap(region, None), self.view_chain)._data[...] = True
        keep = Tensor._wrap(~region, None)
        return keep.if_else(grad, 0.0), replay_view(grad, self.view_chain).contiguous()


class CopyBackwards(Node):
    """The history of a tensor after an in-place copy of a leaf (or of a tensor without history) into it:
    the gradient goes on to that leaf unchanged (or nowhere). It saves nothing, so it never refuses."""

    __slots__ = ()

    def name(self) -> str:
        return "CopyBackwards"

    def apply(self, grad: Tensor, create_graph: bool) -> Sequence[Any]:
        return (grad,)


def copy_node(source: Any) -> Node:
    """The node a tensor takes as its history when an in-place op writes a value into it whose tape edge
    is `source`: that value's node, or else a node leading to the leaf (or to nothing) it copies, so that
    `y[:] = b` or `y.copy_(b)` with b a leaf gives b its gradient."""
    return source if isinstance(source, Node) else CopyBackwards((source,))


class FunctionNode(Node):
    """A node whose backward is a Python function (custom autograd Functions, compiled graphs)."""

    __slots__ = ("backward_fn", "label")

    def __init__(self, label: str, backward_fn: Callable, next_edges: Sequence[Any]) -> None:
        super().__init__(next_edges)
        self.label, self.backward_fn = label, backward_fn

    def name(self) -> str:
        return self.label

    def apply(self, grad: Tensor, create_graph: bool) -> Sequence[Any]:
        self._check_not_freed()
        return self.backward_fn(grad)

    def release(self) -> None:
        super().release()
        self.backward_fn = None  # type: ignore[assignment]


def keep_saved_values(tensor: Tensor, root: Node) -> None:
    """Before an in-place write of `root`'s result into `tensor`: the nodes computing that result which
    saved `tensor` (or a view of its memory) keep a copy of the values it is about to lose.

    `y.mul_(w)` computes `y * w` out of place, saving y, then writes the product into y; the product's
    gradient still needs the old y. Only nodes created since `tensor` got its current values can hold
    them, so the walk stops at older nodes; tensors saved earlier by other ops still raise at backward.
    """
    from jitorch.frontend.tensor import Tensor

    counter = tensor._version
    bound = tensor._grad_fn.seq if tensor._grad_fn is not None else -1
    stack, seen = [root], {id(root)}
    while stack:
        node = stack.pop()
        if isinstance(node, OpNode):
            for i, value in enumerate(node.saved):
                if isinstance(value, Tensor) and value._version is counter and node.versions[i] == counter.value \
                        and value._data is not None:
                    copy = Tensor._wrap(value._data.copy(), value.dtype)
                    copy._grad_fn, copy._requires_grad = value._grad_fn, value._requires_grad
                    node.saved[i], node.versions[i] = copy, 0
        for nxt in node.next:
            if isinstance(nxt, Node) and nxt.seq > bound and id(nxt) not in seen:
                seen.add(id(nxt))
                stack.append(nxt)


def refresh_view(tensor: Tensor) -> None:
    """A view whose memory was written in place since its history was recorded (through its base or a
    sibling view) takes the history of the same view of its base's new value."""
    if tensor._base is None or tensor._view_version == tensor._version.value:
        return
    from jitorch.frontend.tensor import replay_view

    tensor._view_version = tensor._version.value
    base = tensor._base
    if base._requires_grad:
        with set_grad_enabled(True):
            fresh = replay_view(base, tensor._view_chain)
        tensor._grad_fn, tensor._requires_grad = fresh._grad_fn, True


def edge(tensor: Any) -> Any:
    """The tape edge for an operand: its node, itself if a leaf requiring grad, else None."""
    if isinstance(tensor, Literal):
        return None
    refresh_view(tensor)
    if not tensor._requires_grad:
        return None
    return tensor._grad_fn if tensor._grad_fn is not None else tensor

