"""The recording context: while a trace is active, every dispatched op is appended to a graph.

A `Recorder` maps each tensor it has seen (by identity) to its IR value. Tensors it meets that are
not arguments (parameters, buffers, globals, constants) become graph inputs read at call time.
In-place writes rebind the tensor to its new value, update the base of a view through the registry's
`unview` rules, and mark lifted tensors as mutated (the compiled call writes them back). Value reads
(`.item()`, `bool()`, ...) and host-side operations are noted as reasons the trace cannot be replayed.
The dispatch door and the few places that read values or mutate memory call the hooks below; with no
active recorder each hook is one attribute test.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from typing import TYPE_CHECKING, Any

from jitorch.ir.ops import OPS
from jitorch.ir.types import Literal, TensorType

if TYPE_CHECKING:
    from jitorch.ir.graph import Value

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _State(threading.local):
    recorder: Any = None


STATE = _State()


def value_read(tensor: Any, what: str) -> None:
    """A tensor's value reaches Python (`.item()`, `bool()`, ...): a trace cannot be replayed past this."""
    if STATE.recorder is not None:
        STATE.recorder.not_replayable(f"{what} reads a tensor's value into Python")


def untraceable(what: str) -> None:
    """An operation computed on the host with no graph form (e.g. randperm) ran during the trace."""
    if STATE.recorder is not None:
        STATE.recorder.not_replayable(f"{what} has no compiled form")


def inplace(tensor: Any, result: Any) -> None:
    """`tensor` now holds `result`'s values (an in-place op)."""
    if STATE.recorder is not None:
        STATE.recorder.inplace(tensor, result)


def random_seed(seed: Any, generator: Any) -> None:
    """`seed` was drawn from `generator` for a random op: a traced graph draws it anew on every call."""
    if STATE.recorder is not None:
        STATE.recorder.random_seed(seed, generator)


def user_location() -> str:
    """`file.py:line` of the innermost frame outside jitorch: where the user's code called in."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_PACKAGE_DIR):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""


class Recorder:
    """Records one call of a function into a graph."""

    def __init__(self, name: str) -> None:
        from jitorch.ir.graph import GraphBuilder

        self.builder = GraphBuilder(name)
        self.values: dict[int, Value] = {}
        self.keep: list[Any] = []  # tensors seen stay alive so their ids are not reused during the trace
        self.arguments: list[tuple[Any, Value]] = []
        self.lifted: list[tuple[Any, Value]] = []
        self.seeds: list[tuple[Value, Any]] = []
        self.mutated: dict[int, Any] = {}  # id -> argument or lifted tensor written in place
        self.views: dict[int, list[Any]] = {}  # id(base) -> views of it seen in the trace
        self.reasons: list[str] = []
        self.names: dict[int, str] = {}  # id(tensor) -> parameter/buffer path, from the modules that ran
        self.sources: dict[int, tuple[Any, str]] = {}  # id(tensor) -> (module, attribute) holding it
        self.scopes: list[str] = []
        self.module_paths: dict[int, str] = {}
        self.modules: list[Any] = []  # modules that ran, in order, each once

    # ---------------------------------------------------------------------------------------------
    # activation

    def __enter__(self) -> Recorder:
        if STATE.recorder is not None:
            raise RuntimeError("jitorch.compile: a function cannot be traced while another trace is recording")
        STATE.recorder = self
        observers = _module_observers()
        if observers is not None:
            observers.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        STATE.recorder = None
        observers = _module_observers()
        if observers is not None and self in observers:
            observers.remove(self)

    # ---------------------------------------------------------------------------------------------
    # nn.Module observer protocol: scopes for the IR comments, names for lifted parameters

    def name_modules(self, root: Any, prefix: str = "") -> None:
        for path, module in root.named_modules(prefix=prefix):
            self.module_paths.setdefault(id(module), path)
            owned = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
            for name, tensor in owned:
                self.names.setdefault(id(tensor), f"{path}.{name}" if path else name)
                self.sources.setdefault(id(tensor), (module, name))

    def enter(self, module: Any) -> None:
        if id(module) not in self.module_paths:
            self.name_modules(module, prefix=type(module).__name__.lower())
        if all(m is not module for m in self.modules):
            self.modules.append(module)
        self.scopes.append(self.module_paths[id(module)])

    def exit(self, module: Any) -> None:
        if self.scopes:
            self.scopes.pop()

    # ---------------------------------------------------------------------------------------------
    # values

    def input_tensors(self) -> list[Any]:
        """The tensors behind the graph's tensor inputs, in their order: arguments, then lifted tensors."""
        return [t for t, _ in self.arguments] + [t for t, _ in self.lifted]

    def add_argument(self, tensor: Any, name: str) -> Value:
        value = self.builder.add_input(self._unique(name), TensorType(tuple(tensor.shape), tensor.dtype))
        self._bind(tensor, value)
        self.arguments.append((tensor, value))
        return value

    def _bind(self, tensor: Any, value: Value) -> None:
        self.values[id(tensor)] = value
        self.keep.append(tensor)

    def _unique(self, name: str) -> str:
        """A valid, unused input name: unprintable characters become `_`, numbers get a prefix."""
        name = re.sub(r'[\s,()\[\]{}=:%#"]', "_", name) or "input"
        if name.isdigit():
            name = f"p{name}"
        taken = {v.name for v in self.builder.inputs} | {n.output.name for n in self.builder.nodes}
        if name not in taken:
            return name
        i = 1
        while f"{name}_{i}" in taken:
            i += 1
        return f"{name}_{i}"

    def value_of(self, tensor: Any) -> Value:
        value = self.values.get(id(tensor))
        if value is not None:
            return value
        if tensor._base is not None and id(tensor._base) in self.values and tensor._view_chain is not None:
            # a view of a recorded tensor made outside dispatch (e.g. `.data`): replay its chain
            value = self._replay_chain(self.values[id(tensor._base)], tensor._view_chain)
            self._bind(tensor, value)
            return value
        name = self.names.get(id(tensor), f"lifted{len(self.lifted)}")
        value = self.builder.add_input(self._unique(name), TensorType(tuple(tensor.shape), tensor.dtype))
        self._bind(tensor, value)
        self.lifted.append((tensor, value))
        return value

    def _replay_chain(self, value: Value, chain: tuple) -> Value:
        for op, attrs in chain:
            value = self.builder.emit(op, value, **dict(attrs))
        return value

    def record(self, name: str, operands: tuple, attrs: dict, out: Any) -> None:
        inputs = [o if type(o) is Literal else self.value_of(o) for o in operands]
        self.builder.scope = self.scopes[-1] if self.scopes else ""
        self.builder.location = user_location()
        self._bind(out, self.builder.emit(name, *inputs, **attrs))
        if OPS[name].view:
            base = out._base
            self.views.setdefault(id(base), []).append(out)

    def random_seed(self, seed: Any, generator: Any) -> None:
        value = self.builder.add_input(self._unique(f"seed{len(self.seeds)}"), TensorType((), seed.dtype))
        self._bind(seed, value)
        self.seeds.append((value, generator))

    def not_replayable(self, why: str) -> None:
        location = user_location()
        self.reasons.append(f"{why} ({location})" if location else why)

    def inplace(self, tensor: Any, result: Any) -> None:
        new = self.value_of(result)
        target = self._write_target(tensor)
        if target is None:
            return
        root, chain = target
        if not chain:
            self.value_of(root)  # a tensor first seen here is read (lifted) before it is written
            self._bind(root, new)
        else:
            updated = self._unview(self.value_of(root), chain, new)
            if updated is None:
                return
            self._bind(root, updated)
            self._bind(tensor, new)
        # every other view of the written memory now sees new values: recompute them from the root
        base = root._base if root._base is not None else root
        prefix = root._view_chain or ()
        for view in self.views.get(id(base), []):
            if view is not tensor and view is not root and view._view_chain[:len(prefix)] == prefix:
                self._bind(view, self._replay_chain(self.values[id(root)], view._view_chain[len(prefix):]))
        if any(t is root for t, _ in self.arguments) or any(t is root for t, _ in self.lifted):
            self.mutated[id(root)] = root

    def _write_target(self, tensor: Any) -> tuple[Any, tuple] | None:
        """Where an in-place write to `tensor` lands in the graph: (root, `tensor`'s view chain from the root), or
        None when the write cannot be replayed.

        The root is the view's base (lifted if the trace has not read it yet), unless `tensor` is, or is a view
        of, an argument arriving as a view (`x.mT`, `x[::2]`): that argument is the root, so every call writes
        into the view it is given, not into the traced call's base.
        """
        base = tensor._base
        if base is None:
            return tensor, ()
        chain = tensor._view_chain
        inputs = [t for t, _ in self.arguments] + [t for t, _ in self.lifted]
        ancestor = None  # the argument nearest to `tensor` on its chain of views
        for candidate, _ in self.arguments:
            prefix = candidate._view_chain
            if candidate._base is base and chain[:len(prefix)] == prefix and (
                    ancestor is None or len(prefix) > len(ancestor._view_chain)):
                ancestor = candidate
        if ancestor is None:  # a view of tensors that are the same on every call (or made in the trace)
            return base, chain
        # the graph would have to assume that the argument aliases another input (views of one base), which a
        # later call need not repeat
        if id(base) in self.values or any(t is not ancestor and t._base is base for t in inputs):
            self.not_replayable("an in-place write to an argument whose memory another input shares")
            return None
        return ancestor, chain[len(ancestor._view_chain):]

    def _unview(self, base_value: Value, chain: tuple, new: Value) -> Value | None:
        """The base after writing `new` through the view `chain` of it, via each op's `unview` rule."""
        steps = [base_value]
        for op, attrs in chain[:-1]:
            steps.append(self.builder.emit(op, steps[-1], **dict(attrs)))
        current = new
        for (op, attrs), before in zip(reversed(chain), reversed(steps)):
            rule = OPS[op].unview
            if rule is None:
                self.not_replayable(f"an in-place write through a `{op}` view")
                return None
            current = rule(before, current, **dict(attrs))
        return current


def _module_observers() -> list | None:
    modules = sys.modules.get("jitorch.nn.modules")
    return getattr(modules, "_global_call_observers", None) if modules is not None else None
