"""Eager autograd: grad modes, the tape's nodes, and the iterative backward engine.

Every differentiable op applied to a tensor that requires grad creates an `OpNode` holding what the
op's VJP rule (in the registry) needs. `backward()` walks the nodes in reverse creation order with
dependency counting (no recursion, so chains of any length work), calls each rule, and accumulates
into the leaves' `.grad`. Saved tensors carry version numbers, so a tensor modified in place after
being saved raises PyTorch's error instead of giving a silently wrong gradient.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

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


# ----------------------------------------------------------------------------------------------------
# the engine


def _exclusive(grad: Tensor, used: set[int]) -> Tensor:
    """A gradient safe to store in `.grad`: writable, owning its memory, not shared with another leaf."""
    arr = grad._data
    if id(grad) in used or not (arr.flags.owndata and arr.flags.writeable and arr.flags.c_contiguous):
        grad = grad._wrap(np.array(arr, copy=True), grad.dtype)
    used.add(id(grad))
    return grad


def _run_hooks(hooks: list[Callable] | None, grad: Tensor) -> Tensor:
    for hook in hooks or ():
        result = hook(grad)
        if result is not None:
            grad = result
    return grad


def run_backward(roots: Sequence[tuple[Tensor, Tensor]], retain_graph: bool, create_graph: bool,
                 capture: Sequence[Tensor] | None = None) -> list[Tensor | None] | None:
    """Propagate `roots` (tensor, gradient) pairs back through the tape.

    Without `capture`, gradients accumulate into the leaves' `.grad` (backward()). With `capture`, the
    gradients reaching those tensors are returned instead and no `.grad` is touched (grad()).
    """
    captured: dict[int, Tensor] = {}
    capture_ids = {id(t): t for t in capture} if capture is not None else None
    capture_nodes = {id(t._grad_fn): t for t in capture if t._grad_fn is not None} if capture else {}
    used: set[int] = set()

    def deliver_leaf(leaf: Tensor, grad: Tensor) -> None:
        grad = _run_hooks(leaf._hooks, grad)
        if capture_ids is not None:
            if id(leaf) in capture_ids:
                captured[id(leaf)] = grad if id(leaf) not in captured else captured[id(leaf)] + grad
            return
        if not create_graph:
            grad = grad.detach()
        if leaf._grad is None:
            leaf._grad = _exclusive(grad, used) if not create_graph else grad
        else:
            leaf._grad = leaf._grad + grad

    # count, for each node, the edges reaching it from the part of the tape the roots reach
    pending: dict[Node, int] = {}
    stack = [t._grad_fn for t, _ in roots if t._grad_fn is not None]
    seen = set(map(id, stack))
    while stack:
        node = stack.pop()
        for nxt in node.next:
            if isinstance(nxt, Node):
                pending[nxt] = pending.get(nxt, 0) + 1
                if id(nxt) not in seen:
                    seen.add(id(nxt))
                    stack.append(nxt)

    buffers: dict[Node, Tensor] = {}
    ready: list[tuple[int, int, Node]] = []
    owned: set[int] = set()  # id(node or leaf) whose gradient buffer add_slice() copied: written in place

    def add_slice(node: Node, grad: Tensor) -> bool:
        """Add a slice's gradient into its input's gradient, in place. The VJP rule fills input-sized zeros
        per slice, which would make the gradients of T slices of one tensor (chunked gates, the steps x[:, t]
        of a sequence) cost O(T x size): so the first slice's gradient comes from the rule, as any other op's
        does, and the next ones are added into a copy of the sum that this call owns, in the same order."""
        target = node.next[0]
        if create_graph or target is None or not isinstance(node, OpNode) or node.op.name != "slice":
            return False
        leaf = not isinstance(target, Node)
        if leaf and target._hooks:
            return False  # hooks see each gradient reaching the leaf
        if leaf and capture_ids is not None and id(target) not in capture_ids:
            return True  # not asked for
        held = (captured.get(id(target)) if capture_ids is not None else target._grad) if leaf else \
            buffers.get(target)
        if held is None or held.dtype is not grad.dtype:
            return False
        if id(target) not in owned:
            held = grad._wrap(np.array(held._data), held.dtype)
            owned.add(id(target))
        held._data[tuple(map(slice, node.attrs["starts"], node.attrs["stops"], node.attrs["steps"]))] += grad._data
        if not leaf:
            buffers[target] = held
        elif capture_ids is not None:
            captured[id(target)] = held
        else:
            target._grad = held
        return True

    for tensor, grad in roots:
        used.add(id(grad))
        node = tensor._grad_fn
        if node is None:
            if tensor._requires_grad:
                deliver_leaf(tensor, grad)
            continue
        buffers[node] = grad if node not in buffers else buffers[node] + grad
    for node in {id(n): n for n in buffers}.values():
        if pending.get(node, 0) == 0:
            heapq.heappush(ready, (-node.seq, id(node), node))

    with set_grad_enabled(create_graph):
        while ready:
            _, _, node = heapq.heappop(ready)
            grad = buffers.pop(node, None)
            owned.discard(id(node))
            grads: Sequence[Any] = ()
            if grad is not None:
                grad = _run_hooks(node.pre_hooks, grad)
                if node.retained is not None and (kept := node.retained()) is not None:
                    kept._grad = grad if create_graph else grad.detach()
                if id(node) in capture_nodes:
                    target = capture_nodes[id(node)]
                    captured[id(target)] = grad
                if not add_slice(node, grad):
                    grads = node.apply(grad, create_graph)
                if not retain_graph:
                    node.release()
            for i, nxt in enumerate(node.next):
                if nxt is None:
                    continue
                g = grads[i] if i < len(grads) else None
                if callable(g) and not hasattr(g, "_data"):
                    g = g()
                if isinstance(nxt, Node):
                    if g is not None:
                        buffers[nxt] = g if nxt not in buffers else buffers[nxt] + g
                        owned.discard(id(nxt))
                    pending[nxt] -= 1
                    if pending[nxt] == 0:
                        heapq.heappush(ready, (-nxt.seq, id(nxt), nxt))
                elif g is not None:
                    deliver_leaf(nxt, g)
    if capture is None:
        return None
    return [captured.get(id(t)) for t in capture]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _seed_grads(outputs: list[Tensor], grad_outputs: list[Any]) -> list[tuple[Tensor, Tensor]]:
    from jitorch.frontend.tensor import Tensor

    roots = []
    for i, out in enumerate(outputs):
        refresh_view(out)
        if not out._requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        grad = grad_outputs[i] if i < len(grad_outputs) else None
        if grad is None:
            if out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            grad = Tensor._wrap(np.ones(out.shape, dtype=out.dtype.numpy), out.dtype)
        elif not isinstance(grad, Tensor):
            grad = Tensor._wrap(np.array(grad, dtype=out.dtype.numpy), out.dtype)
        if tuple(grad.shape) != tuple(out.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {tuple(grad.shape)} and "
                               f"output[{i}] has a shape of {tuple(out.shape)}.")
        roots.append((out, grad))
    return roots


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """`torch.autograd.backward`: accumulate gradients of `tensors` into the leaves' `.grad`."""
    outputs = _as_list(tensors)
    roots = _seed_grads(outputs, _as_list(grad_tensors))
    retain = create_graph if retain_graph is None else retain_graph
    if inputs is not None:
        targets = _as_list(inputs)
        grads = run_backward(roots, retain, create_graph, capture=targets)
        for target, grad in zip(targets, grads or ()):
            if grad is not None:
                target._grad = grad if target._grad is None else target._grad + grad
        return
    run_backward(roots, retain, create_graph)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None, materialize_grads: bool = False) -> tuple:
    """`torch.autograd.grad`: the gradients of `outputs` with respect to `inputs`, without touching `.grad`."""
    outs = _as_list(outputs)
    targets = _as_list(inputs)
    for t in targets:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _seed_grads(outs, _as_list(grad_outputs))
    retain = create_graph if retain_graph is None else retain_graph
    grads = run_backward(roots, retain, create_graph, capture=targets) or []
    result = []
    for target, g in zip(targets, grads):
        if g is None:
            if materialize_grads:
                g = target.new_zeros(*target.shape)
            elif not (allow_unused or materialize_grads):
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the "
                                   "graph. Set allow_unused=True if this is the desired behavior.")
        result.append(g)
    return tuple(result)


def iter_graph(root: Node) -> Iterable[Node]:
    """Every node reachable from `root`, each once (for debugging and tests)."""
    stack, seen = [root], {id(root)}
    while stack:
        node = stack.pop()
        yield node
        for nxt in node.next:
            if isinstance(nxt, Node) and id(nxt) not in seen:
                seen.add(id(nxt))
                stack.append(nxt)
