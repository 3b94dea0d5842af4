"""A compiled function's cache entries, and running one: what `jitorch.compile` (compile.py) keeps per guard
key (`Entry`: the compiled graphs with the guards only known after tracing; `EagerEntry`: a key that runs
eagerly, with the reasons) and `run_entry`, which feeds an entry this call's tensors, writes in-place
updates back to the arguments and attaches the autograd node for compiled backward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from jitorch.frontend import autograd
from jitorch.frontend.pytree import unflatten
from jitorch.frontend.tensor import Tensor
from jitorch.ir.dtypes import DType


class GradPack:
    """Gradients for several outputs of one compiled call, merged as the autograd engine accumulates them."""

    __slots__ = ("grads",)

    def __init__(self, grads: dict[int, Tensor]) -> None:
        self.grads = grads

    def __add__(self, other: GradPack) -> GradPack:
        merged = dict(self.grads)
        for i, g in other.grads.items():
            merged[i] = merged[i] + g if i in merged else g
        return GradPack(merged)


@dataclass
class Entry:
    """A compiled graph for one guard key, with the guards only known after tracing."""

    arg_positions: list[int]  # flat leaf positions of tensor arguments, in graph input order
    aliases: list[tuple[int, int]]  # leaf positions the trace saw holding one tensor: they must still do
    lifted: list[Tensor]  # tensors reached that are not arguments, as traced
    # (module, name, the module's dict the trace found it in) of parameters and buffers, re-read per call
    lifted_sources: list[tuple[Any, str, dict | None] | None]
    lifted_guards: list[tuple[Any, DType, bool]]
    seeds: list[Any]  # generators, one per seed input
    module_guards: list[tuple[Any, Callable, Any]]  # (module, attribute getter, expected values)
    output_spec: Any
    # per output leaf: ("tensor", graph output index), ("input", index of an input returned as it is) or
    # ("const", value)
    output_leaves: list[Any]
    mutated: list[int]  # input tensors written in place, written back from the outputs after the tensor outputs
    run_forward: Callable[[list[np.ndarray]], list[np.ndarray]]
    n_outputs: int  # tensor outputs of the graph (before mutations and saved values)
    backward: Any = None  # (run_backward, Differentiated) when the call records gradients
    symbolic: bool = False  # traced on symbolic tensors: later calls propagate shapes eagerly
    timings: dict[str, float] = field(default_factory=dict)
    graphs: dict[str, Any] = field(default_factory=dict)
    # (written input, other input) pairs whose memory must not overlap: the graph takes its inputs as separate
    # memory, so `f(t, t)` or `f(u[:4], u[2:6])` writing one of them runs eagerly when the trace had them apart
    exclusive: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # the guard key says all there is to check: no aliases, lifted tensors, module attributes or overlaps
        self.direct = not (self.aliases or self.lifted or self.module_guards or self.exclusive)
        # what run_entry needs beyond the forward graph: seeds, write-backs, a backward node, a tree of outputs
        self.plain = (not (self.seeds or self.mutated) and self.backward is None
                      and self.output_spec == ("leaf",) and self.output_leaves == [("tensor", 0)])

    def inputs(self, leaves: list[Any]) -> list[Tensor] | None:
        """The tensors this call feeds the graph's tensor inputs (arguments, then lifted tensors as they
        are now), None when a guard fails, or OVERLAP when inputs it writes share memory with others."""
        if self.direct:
            return [leaves[i] for i in self.arg_positions]
        for first, second in self.aliases:
            if leaves[first] is not leaves[second]:
                return None
        tensors = [leaves[i] for i in self.arg_positions]
        for tensor, source, (shape, dtype, requires_grad) in zip(self.lifted, self.lifted_sources,
                                                                 self.lifted_guards):
            if source is not None:  # `model.weight = Parameter(...)` replaces what the trace read
                module, name, store = source
                # read from the module's own dict (Module.__getattr__ costs 0.5 µs per tensor), else as Python does
                tensor = store.get(name) if store is not None else None
                if tensor is None:
                    tensor = getattr(module, name, None)
                if not isinstance(tensor, Tensor):
                    return None
            if tensor.shape != shape or tensor.dtype is not dtype or tensor._requires_grad != requires_grad:
                return None
            tensors.append(tensor)
        try:
            for module, getter, expected in self.module_guards:
                if getter(module.__dict__) != expected:
                    return None
        except KeyError:  # an attribute the trace saw is gone
            return None
        for written, other in self.exclusive:
            if np.may_share_memory(tensors[written]._data, tensors[other]._data):
                return OVERLAP
        return tensors


OVERLAP: Any = object()  # Entry.inputs' answer for a call whose written inputs overlap others: it runs eagerly


def exclusive_pairs(tensors: list[Tensor], written: list[int], arguments: int) -> list[tuple[int, int]]:
    """The (written, other) input pairs an entry guards against overlapping: those with a call argument
    (the first `arguments` inputs), but not the ones the trace saw as one tensor, which its graph reads
    through one input (`Entry.aliases` guards them). Two lifted tensors (module state) are checked once,
    here: a pair overlapping now runs eagerly every call; checking every pair of a model's buffers and
    parameters on every call would cost more than it is worth."""
    def overlapping(a: Tensor, b: Tensor) -> bool:
        return a._data is not None and b._data is not None and np.may_share_memory(a._data, b._data)

    return [(w, j) for w in written for j, tensor in enumerate(tensors)
            if j != w and tensor is not tensors[w] and (min(w, j) < arguments or overlapping(tensor, tensors[w]))]


@dataclass
class EagerEntry:
    """A guard key whose trace cannot be replayed: runs the function eagerly."""

    reasons: list[str]


@dataclass
class Traced:
    """A call that traced its key: its result is the eager result of the trace."""

    result: Any


def lifted_source(found: tuple[Any, str] | None) -> tuple[Any, str, dict | None] | None:
    """Where a lifted tensor is re-read from: its module, its name, and the module's dict holding it."""
    if found is None:
        return None
    module, name = found
    stores = [getattr(module, "__dict__", {}).get(store) for store in ("_parameters", "_buffers")]
    return module, name, next((store for store in stores if isinstance(store, dict) and name in store), None)


def run_entry(entry: Entry, tensors: list[Tensor], fn: Callable, name: str, args: tuple, kwargs: dict) -> Any:
    """Run `entry`'s forward graph on this call's tensors: its outputs as tensors in the traced structure,
    in-place writes made to the arguments, a backward node attached when it records gradients. A graph
    that raises runs `fn` eagerly, to raise eager's exception."""
    inputs = [t._data for t in tensors]
    if entry.seeds:
        inputs += [np.array(gen.next_seed(), dtype=np.int64) for gen in entry.seeds]
    try:
        results = entry.run_forward(inputs)
    except Exception:
        # bad input (an index out of range) gets eager's error: the function may word an op's error its own
        # way (cross_entropy names the bad target), which the graph cannot replay. The graph wrote nothing.
        try:
            fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - whatever eager raises is the error to give
            raise error from None
        raise  # eager succeeds where the graph failed: a compiler bug, reported as the graph's error
    if entry.plain:  # one tensor out, nothing else to do
        return Tensor._wrap(results[0], None)
    n, n_mutated = entry.n_outputs, len(entry.mutated)
    if entry.backward is not None:
        # backward needs inputs as they were, not as the write-back below leaves them
        saved_inputs = [inputs[i].copy() if i in entry.mutated else inputs[i]
                        for i in entry.backward[1].saved_inputs]
    if n_mutated:
        with autograd.no_grad():  # eager's own write, with its checks (an expanded argument raises eager's error)
            for i, value in zip(entry.mutated, results[n:n + n_mutated]):
                tensors[i]._inplace(Tensor._wrap(value, None))
    outputs = [Tensor._wrap(results[i], None) for i in range(n)]
    if entry.backward is not None:
        attach_backward(entry, outputs, tensors, saved_inputs + results[n + n_mutated:], name)
    return unflatten(entry.output_spec, iter(
        outputs[ref] if kind == "tensor" else tensors[ref] if kind == "input" else ref
        for kind, ref in entry.output_leaves))


def attach_backward(entry: Entry, outputs: list[Tensor], tensors: list[Tensor], saved_arrays: list[np.ndarray],
                    name: str) -> None:
    """Make the differentiated outputs of a compiled call lead to one autograd node running the backward graph."""
    run_backward, split = entry.backward
    shapes = [(outputs[i].shape, outputs[i].dtype) for i in split.differentiated]
    # backward reads these arrays as they are now: an in-place write before it runs raises, as in eager
    # (inputs the graph itself writes were saved as copies)
    saved_values = saved_arrays[len(split.saved_inputs):]
    watched = [tensors[i] for i in split.saved_inputs if i not in entry.mutated] + [
        out for out in outputs if any(np.may_share_memory(out._data, a) for a in saved_values)]
    versions = [(t, t._version.value) for t in watched]

    def backward(pack: Any) -> list[Tensor]:
        if autograd.is_grad_enabled():
            raise RuntimeError("jitorch.compile: double backward (create_graph=True) through a compiled "
                               "function is not supported; compile with backend='eager' for this")
        for tensor, version in versions:
            if tensor._version.value != version:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{tensor.type_name()} {list(tensor.shape)}], which is needed by "
                    f"CompiledFunctionBackward ({name}), is at version {tensor._version.value}; expected "
                    f"version {version} instead. Use .clone() before the in-place operation if the original "
                    f"value is still needed.")
        grads = pack.grads if isinstance(pack, GradPack) else {0: pack}
        arrays = []
        for k, (shape, dtype) in enumerate(shapes):
            g = grads.get(k)
            arrays.append(np.zeros(shape, dtype.numpy) if g is None else np.require(g._data, requirements="C"))
        return [Tensor._wrap(a, None) for a in run_backward(saved_arrays + arrays)]

    edges = [autograd.edge(tensors[i]) for i in split.wrt]
    node = autograd.FunctionNode("CompiledFunctionBackward", backward, edges)
    if len(split.differentiated) == 1:
        out = outputs[split.differentiated[0]]
        out._grad_fn, out._requires_grad = node, True
        return
    for k, i in enumerate(split.differentiated):
        selector = autograd.FunctionNode("CompiledFunctionBackward", lambda g, _k=k: [GradPack({_k: g})],
                                         [node])
        outputs[i]._grad_fn, outputs[i]._requires_grad = selector, True
