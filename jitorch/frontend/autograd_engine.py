"""The backward engine: `backward()`, `autograd.grad()` and `run_backward`, the walk both share.

`run_backward` walks the tape's nodes (autograd.py) in reverse creation order with dependency counting
(no recursion, so chains of any length work), calls each node's VJP rule, runs tensor hooks, and either
accumulates into the leaves' `.grad` or captures the gradients of the tensors asked for.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from jitorch.frontend.autograd import Node, OpNode, refresh_view, set_grad_enabled

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor


def _exclusive(grad: Tensor, used: set[int]) -> Tensor:
    """A gradient safe to store in `.grad`: writable, owning its memory, not shared with another leaf, and
    contiguous (a linear layer's weight gradient arrives as a transposed view; kept so, every optimizer pass
    over it would stride across memory)."""
    arr = grad._data
    if id(grad) in used or not (arr.flags.owndata and arr.flags.writeable and arr.flags.c_contiguous):
        grad = grad._wrap(np.array(arr, copy=True, order="C"), grad.dtype)
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
