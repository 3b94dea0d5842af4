"""`jitorch.compile`: the cache of compiled graphs by guard key (the keys are built in guards.py) and eager
fallback with reasons; the cache entries, and running one (with the autograd node for compiled calls), are
in compile_entry.py.

The first call for a guard key runs the function eagerly while recording (and returns that result),
then optimizes the graph and compiles it with the backend. Later calls with the same key run the
compiled graph. A key whose trace cannot be replayed (a value read into Python, a host-side op, an
in-place write through an unsupported view) runs eagerly from then on, with the reason kept for
`explain()`. Threads wanting one function's new key wait for a single trace and compile; a compiled function
called by a function being traced runs inline, recorded into that trace. See the README's "compile() contract".
"""
from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import warnings
import weakref
from typing import Any, Callable

import numpy as np

from jitorch import debug
from jitorch.frontend import autograd, tracing
from jitorch.frontend.compile_entry import (OVERLAP, EagerEntry, Entry, Traced, exclusive_pairs, lifted_source,
                                            run_entry)
from jitorch.frontend.guards import Unhashable, describe_change, leaf_key, module_guard
from jitorch.frontend.pytree import flatten
from jitorch.frontend.tensor import Tensor
from jitorch.frontend.tracing import Recorder


class CompileError(RuntimeError):
    """Raised with fullgraph=True where the function cannot be compiled whole, and by check=True."""


def _backends() -> dict[str, Callable]:
    from jitorch.frontend import backends
    return backends.BACKENDS


# read once (os.environ.get costs about a microsecond, a tenth of a cache hit); `jitorch run --eager` and
# tests switch it with set_compile_disabled
_DISABLED = [os.environ.get("JITORCH_DISABLE_COMPILE", "") not in ("", "0")]


def set_compile_disabled(disabled: bool) -> None:
    """Make every compiled function run eagerly (True), or compile again (False)."""
    _DISABLED[0] = disabled


class CompiledFunction:
    """What `jitorch.compile(fn)` returns: call it like `fn`."""

    def __init__(self, fn: Callable, *, backend: str = "interpreter", fullgraph: bool = False, check: bool = False,
                 recompile_limit: int = 8, module: Any = None) -> None:
        if backend not in _backends() and backend != "eager":
            raise ValueError(f"jitorch.compile: unknown backend {backend!r}; "
                             f"choose from {sorted([*_backends(), 'eager'])}")
        self.fn, self.backend, self.fullgraph, self.recompile_limit = fn, backend, fullgraph, recompile_limit
        self.check = check or os.environ.get("JITORCH_CHECK", "") not in ("", "0")
        self.module = module
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self._cache: dict[tuple, list[Any]] = {}
        self._lock = threading.RLock()
        self._last_key: tuple | None = None
        self._last_paths: list[str] = []
        self._warned = False
        self.fallback_reasons: list[str] = []
        self.recompile_reasons: list[str] = []
        self.stats = {"calls": 0, "hits": 0, "compiles": 0, "fallbacks": 0, "recompiles": 0}
        self._parameters = _positional_names(fn)
        self._plain_calls: dict[int, tuple[Any, list[str]]] = {}  # per count of tensor-only arguments
        # (grad mode, per argument (shape, dtype, requires_grad), entry) of the last tensor-only call that hit an
        # entry: the next such call checks those and the entry's own guards, and runs it (see _repeats)
        self._last_hit: tuple[bool, tuple, Entry] | None = None
        functools.update_wrapper(self, fn, updated=())
        _registry.append(weakref.ref(self))  # every one, including those bound per instance by __get__

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """Decorating a method compiles it per instance, with `self` bound."""
        if instance is None:
            return self
        bound = instance.__dict__.get(f"__jitorch_compiled_{self.name}")
        if bound is None:
            bound = CompiledFunction(self.fn.__get__(instance, owner), backend=self.backend, fullgraph=self.fullgraph,
                                     check=self.check, recompile_limit=self.recompile_limit,
                                     module=instance if _is_module(instance) else None)
            instance.__dict__[f"__jitorch_compiled_{self.name}"] = bound
        return bound

    # ---------------------------------------------------------------------------------------------
    # calls

    def _flatten(self, args: tuple, kwargs: dict) -> tuple[Any, list[Any], list[str]]:
        """(spec, leaves, paths) of a call's arguments; paths (for messages) must not be changed."""
        if not kwargs:
            for arg in args:
                if type(arg) is not Tensor:
                    break
            else:  # tensors only, the usual call: its spec and paths depend on the count alone
                plain = self._plain_calls.get(len(args))
                if plain is None:
                    spec, _, paths = self._flatten_tree(args, kwargs)
                    plain = self._plain_calls[len(args)] = (spec, paths)
                return plain[0], list(args), plain[1]
        return self._flatten_tree(args, kwargs)

    def _flatten_tree(self, args: tuple, kwargs: dict) -> tuple[Any, list[Any], list[str]]:
        leaves: list[Any] = []
        paths: list[str] = []
        specs = []
        for i, arg in enumerate(args):
            name = self._parameters[i] if i < len(self._parameters) else f"args[{i}]"
            specs.append(flatten(arg, name, leaves, paths))
        for key in kwargs:
            specs.append(flatten(kwargs[key], key, leaves, paths))
        return (len(args), tuple(kwargs), tuple(specs)), leaves, paths

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.stats["calls"] += 1
        if self.backend == "eager" or _DISABLED[0]:
            return self.fn(*args, **kwargs)
        if tracing.STATE.recorder is not None:
            # called by a function this thread is tracing: run inline, so that trace records these ops (a
            # graph run here would reach it as a constant, and waiting here for a compile could deadlock)
            return self.fn(*args, **kwargs)
        last = self._last_hit
        if last is not None and not kwargs and self._repeats(last, args):
            entry = last[2]
            tensors = list(args) if entry.direct else entry.inputs(list(args))
            if tensors is not None and tensors is not OVERLAP:
                self.stats["hits"] += 1
                return run_entry(entry, tensors, self.fn, self.name, args, kwargs)
        spec, leaves, paths = self._flatten(args, kwargs)
        key = (spec, tuple(map(leaf_key, leaves)), autograd._mode.enabled)
        found = self._lookup(key, leaves)
        if found is None:
            # one thread traces and compiles a key; another wanting it meanwhile waits here, then uses it
            with self._lock:
                found = self._lookup(key, leaves) or self._miss(key, spec, leaves, paths, args, kwargs)
            if isinstance(found, Traced):
                return found.result
        entry, tensors = found
        if tensors is None:  # this key runs eagerly
            return self.fn(*args, **kwargs)
        self.stats["hits"] += 1
        if entry.symbolic:  # no data to run a graph on: shapes propagate eagerly, recording nothing
            return self.fn(*args, **kwargs)
        if self.check:
            return self._run_checked(entry, tensors, args, kwargs)
        if not kwargs and all(type(arg) is Tensor for arg in args):
            self._last_hit = (key[2], tuple(leaf[:3] for leaf in key[1]), entry)
        return run_entry(entry, tensors, self.fn, self.name, args, kwargs)

    @staticmethod
    def _repeats(last: tuple[bool, tuple, Entry], args: tuple) -> bool:
        """Whether a call's positional arguments pass the guards of the last hit: tensors (with data) of its
        shapes, dtypes and requires_grad flags, in its grad mode. Such a call skips building its key."""
        grad_mode, guards, _ = last
        if len(args) != len(guards) or autograd._mode.enabled != grad_mode:
            return False
        for arg, (shape, dtype, requires_grad) in zip(args, guards):
            if (type(arg) is not Tensor or arg.shape != shape or arg.dtype is not dtype
                    or arg._requires_grad != requires_grad or arg._data is None):
                return False
        return True

    def _lookup(self, key: tuple, leaves: list[Any]) -> tuple[Any, list[Tensor] | None] | None:
        """(entry, the tensors it is fed) for a cached key whose guards hold; (the entry, None) for a call to run
        eagerly (an EagerEntry's key, or inputs the entry writes overlapping others); or None."""
        for entry in self._cache.get(key, ()):
            if isinstance(entry, EagerEntry):
                return entry, None
            tensors = entry.inputs(leaves)
            if tensors is OVERLAP:
                return entry, None
            if tensors is not None:
                return entry, tensors
        return None

    def _miss(self, key: tuple, spec: Any, leaves: list[Any], paths: list[str], args: tuple,
              kwargs: dict) -> tuple[Any, None] | Traced:
        """Trace and compile a new key (the caller holds the lock): the trace's result, or (entry, None) for a
        call to run eagerly, which the caller does once it has released the lock."""
        if any(isinstance(k, Unhashable) for k in key[1]):
            bad = next(p for p, k in zip(paths, key[1]) if isinstance(k, Unhashable))
            return self._fall_back(key, [f"argument '{bad}' is of an unhashable type and cannot be guarded"])
        compiled = sum(1 for entries in self._cache.values() for e in entries if isinstance(e, Entry))
        if compiled >= self.recompile_limit:
            if not self._warned:  # once: a loop over ever new shapes must not grow a list per call
                change = describe_change(paths, self._last_key, key) if self._last_key else "a guard changed"
                warnings.warn(f"jitorch.compile: {self.name} hit the recompile limit ({self.recompile_limit}): "
                              f"{change}; running eagerly from now on", stacklevel=3)
                self._warned = True
                self.recompile_reasons.append(change)
            self.stats["fallbacks"] += 1
            return None, None
        change = describe_change(paths, self._last_key, key) if self._last_key is not None else None
        result, entry = self._trace_and_compile(spec, leaves, paths, args, kwargs)
        if change is not None:  # counted once the trace succeeded: bad input raises and compiles nothing
            self.stats["recompiles"] += 1
            self.recompile_reasons.append(change)
        self._last_key = key
        self._cache.setdefault(key, []).append(entry)
        if isinstance(entry, EagerEntry):
            self.stats["fallbacks"] += 1
            self.fallback_reasons.extend(entry.reasons)
        return Traced(result)

    def _fall_back(self, key: tuple, reasons: list[str]) -> tuple[EagerEntry, None]:
        if self.fullgraph:
            raise CompileError(f"jitorch.compile(fullgraph=True): {self.name} cannot be compiled: {reasons[0]}")
        entry = EagerEntry(reasons)
        self._cache.setdefault(key, []).append(entry)
        self.fallback_reasons.extend(reasons)
        self.stats["fallbacks"] += 1
        return entry, None

    # ---------------------------------------------------------------------------------------------
    # tracing and compiling

    def _trace_and_compile(self, spec: Any, leaves: list[Any], paths: list[str], args: tuple,
                           kwargs: dict) -> tuple[Any, Any]:
        recorder = Recorder(self.name)
        if self.module is not None:
            recorder.name_modules(self.module)
            # guard the root's flags even when its __call__ began before the trace (a compiled `forward`)
            recorder.modules.append(self.module)
        arg_positions, aliases, first_position = [], [], {}
        for position, (leaf, path) in enumerate(zip(leaves, paths)):
            if isinstance(leaf, Tensor):
                recorder.add_argument(leaf, _input_name(path))
                arg_positions.append(position)
                if id(leaf) in first_position:  # f(t, t): the graph reads both through one input
                    aliases.append((first_position[id(leaf)], position))
                first_position.setdefault(id(leaf), position)
        start = time.perf_counter()
        with recorder:
            result = self.fn(*args, **kwargs)
        trace_seconds = time.perf_counter() - start
        out_leaves: list[Any] = []
        out_paths: list[str] = []
        output_spec = flatten(result, "output", out_leaves, out_paths)
        if recorder.reasons:
            if self.fullgraph:
                raise CompileError(f"jitorch.compile(fullgraph=True): {self.name} cannot be compiled: "
                                   f"{recorder.reasons[0]}")
            return result, EagerEntry(recorder.reasons)
        builder = recorder.builder
        output_values, output_leaves, output_tensors = [], [], []
        traced_inputs = recorder.input_tensors()
        for leaf in out_leaves:
            if not isinstance(leaf, Tensor):
                output_leaves.append(("const", leaf))
                continue
            given = next((i for i, t in enumerate(traced_inputs) if t is leaf), None)
            if given is not None and not leaf._requires_grad:
                # the function returns an input itself (`x.add_(1); return x`): so does each compiled call
                # (one that requires grad still goes through the graph, which carries its gradient)
                output_leaves.append(("input", given))
                continue
            output_leaves.append(("tensor", len(output_values)))
            output_values.append(recorder.value_of(leaf))
            output_tensors.append(leaf)
        mutated = list(recorder.mutated.values())
        builder.set_outputs(output_values + [recorder.values[id(t)] for t in mutated])
        # the calling convention: arguments, then lifted tensors, then random seeds (creation order interleaves them)
        builder.inputs[:] = ([v for _, v in recorder.arguments] + [v for _, v in recorder.lifted]
                             + [v for v, _ in recorder.seeds])
        graph = builder.build()
        timings = {"trace": trace_seconds}
        entry = self._build_entry(graph, recorder, arg_positions, aliases, output_spec, output_leaves, output_tensors,
                                  mutated, len(output_values), timings)
        self.stats["compiles"] += 1
        return result, entry

    def _build_entry(self, graph: Any, recorder: Recorder, arg_positions: list[int], aliases: list[tuple[int, int]],
                     output_spec: Any, output_leaves: list[Any], out_tensors: list[Any], mutated: list[Tensor],
                     n_outputs: int, timings: dict[str, float]) -> Entry:
        from jitorch.ir.printer import format_graph
        from jitorch.passes import pipeline
        from jitorch.passes.autodiff import differentiate

        if debug.enabled("graph"):
            debug.dump("graph", graph.name, "traced", format_graph(graph), timings["trace"])
        graphs = {"traced": graph}
        input_tensors = recorder.input_tensors()
        graph = pipeline.run_passes(graph, pipeline.before_autodiff(), timings)
        wrt = [i for i, t in enumerate(input_tensors) if t._requires_grad] if autograd.is_grad_enabled() else []
        tensor_outputs = [leaf for leaf in out_tensors if isinstance(leaf, Tensor)]
        differentiated = [i for i, t in enumerate(tensor_outputs) if t._requires_grad and t.dtype.is_floating_point]
        symbolic = any(t._data is None for t in input_tensors)
        # a trace of symbolic tensors gets no code: its sizes may be huge, and later calls propagate shapes
        # eagerly (see __call__); its graphs are still optimized, for explain() and the dumps
        backend = _backends()[self.backend] if not symbolic else lambda graph, timings: None
        backward = None
        if wrt and differentiated:
            start = time.perf_counter()
            split = differentiate(graph, wrt, differentiated)
            timings["autodiff"] = time.perf_counter() - start
            forward = pipeline.run_passes(split.forward, pipeline.after_autodiff(), timings)
            backward_graph = pipeline.run_passes(split.backward, pipeline.after_autodiff(), timings)
            if debug.enabled("autodiff"):
                debug.dump("autodiff", graph.name, "forward", format_graph(forward), timings["autodiff"])
                debug.dump("autodiff", graph.name, "backward", format_graph(backward_graph), timings["autodiff"])
            graphs.update(forward=forward, backward=backward_graph)
            run_forward = backend(forward, timings)
            backward = (backend(backward_graph, timings), split)
        else:
            graph = pipeline.run_passes(graph, pipeline.after_autodiff(), timings)
            graphs["optimized"] = graph
            run_forward = backend(graph, timings)
        lifted = [t for t, _ in recorder.lifted]
        module_guards = [module_guard(m) for m in recorder.modules]
        # written-back tensors by input index: this call's arguments, not the traced ones, get the writes
        mutated_inputs = [next(i for i, t in enumerate(input_tensors) if t is root) for root in mutated]
        exclusive = exclusive_pairs(input_tensors, mutated_inputs, len(recorder.arguments))
        return Entry(arg_positions, aliases, lifted, [lifted_source(recorder.sources.get(id(t))) for t in lifted],
                      [(t.shape, t.dtype, t._requires_grad) for t in lifted], [gen for _, gen in recorder.seeds],
                      module_guards, output_spec, output_leaves, mutated_inputs, run_forward, n_outputs, backward,
                      symbolic, timings, graphs, exclusive)

    # ---------------------------------------------------------------------------------------------
    # running an entry (run_entry, in compile_entry.py, runs it plainly)

    def _run_checked(self, entry: Entry, tensors: list[Tensor], args: tuple, kwargs: dict) -> Any:
        """check=True: run compiled and eager from the same state and compare everything they produce."""
        from jitorch.frontend.random import default_generator
        states = [(gen, gen.get_state()) for gen in {id(g): g for g in [*entry.seeds, default_generator]}.values()]
        mutated = [tensors[i] for i in entry.mutated]
        before = [t._data.copy() for t in mutated]
        compiled = run_entry(entry, tensors, self.fn, self.name, args, kwargs)
        after = [t._data.copy() for t in mutated]
        for tensor, data in zip(mutated, before):
            np.copyto(tensor._data, data)
        for gen, state in states:
            gen.set_state(state)
        expected = self.fn(*args, **kwargs)
        got_leaves, want_leaves = [], []
        flatten(compiled, "output", got_leaves, [])
        paths: list[str] = []
        flatten(expected, "output", want_leaves, paths)
        pairs = list(zip(paths, got_leaves, want_leaves)) + [
            (f"mutated input {i}", a, t._data) for i, (a, t) in enumerate(zip(after, mutated))]
        for path, got, want in pairs:
            got_arr = got._data if isinstance(got, Tensor) else got
            want_arr = want._data if isinstance(want, Tensor) else want
            if isinstance(got_arr, np.ndarray) and not np.allclose(got_arr, want_arr, rtol=1e-4, atol=1e-5,
                                                                   equal_nan=True):
                worst = float(np.max(np.abs(got_arr.astype(np.float64) - want_arr)))
                raise CompileError(f"jitorch.compile(check=True): {self.name} {path} differs from eager "
                                   f"(max abs difference {worst:.3g})")
        return compiled

    # ---------------------------------------------------------------------------------------------
    # introspection

    def entries(self) -> list[Any]:
        return [e for entries in self._cache.values() for e in entries]

    def reset(self) -> None:
        with self._lock:
            self._cache.clear()
            self._last_hit = None
            self._last_key = None
            self._warned = False


def _positional_names(fn: Callable) -> list[str]:
    """Names of `fn`'s positional parameters before any `*args`: how guard messages and graph inputs
    name positional arguments."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    names = []
    for parameter in parameters:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    return names


def _input_name(path: str) -> str:
    return path.replace("[", ".").replace("]", "").replace("'", "")


def _is_module(obj: Any) -> bool:
    # where Module is defined (as tracing._module_observers does): `jitorch.nn` itself may be loaded
    # without it, e.g. as a bare namespace while only its submodules are imported
    modules = __import__("sys").modules.get("jitorch.nn.modules")
    module_class = getattr(modules, "Module", None)
    return module_class is not None and isinstance(obj, module_class)


_registry: list[Any] = []  # weak references to every compiled function, for compiler.reset()


def compile(fn: Callable | None = None, *, backend: str | None = None, fullgraph: bool = False,  # noqa: A001
            check: bool = False, recompile_limit: int = 8, **options: Any) -> Any:
    """Compile a function, a method or a module's forward. Works as `@compile`, `@compile(...)`,
    `compile(fn)` and `compile(module)`."""
    if fn is None:
        return lambda f: compile(f, backend=backend, fullgraph=fullgraph, check=check, recompile_limit=recompile_limit)
    chosen = backend or os.environ.get("JITORCH_BACKEND") or default_backend()
    if _is_module(fn):
        module = fn
        compiled = CompiledFunction(module.__call__, backend=chosen, fullgraph=fullgraph, check=check,
                                    recompile_limit=recompile_limit, module=module)
        compiled.name = type(module).__name__
        compiled._parameters = _positional_names(module.forward)  # not __call__'s (*args, **kwargs)
        return _CompiledModule(module, compiled)
    return CompiledFunction(fn, backend=chosen, fullgraph=fullgraph, check=check, recompile_limit=recompile_limit)


def default_backend() -> str:
    return "llvm" if "llvm" in _backends() else "interpreter"


class _CompiledModule:
    """`compile(model)`: calls go through the compiled forward; everything else reaches the module."""

    def __init__(self, module: Any, compiled: CompiledFunction) -> None:
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_compiled", compiled)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._compiled(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._orig_mod, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._orig_mod, name, value)

    @property
    def stats(self) -> dict[str, int]:
        return self._compiled.stats

    def __repr__(self) -> str:
        return f"Compiled{self._orig_mod!r}"


def reset() -> None:
    """Forget every compiled graph, releasing compiled code. The compiled functions stay usable (and
    registered, so a later reset() reaches them again): their next call compiles afresh."""
    _registry[:] = [ref for ref in _registry if ref() is not None]
    for ref in _registry:
        compiled = ref()
        if compiled is not None:
            compiled.reset()


def explain(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Compile `fn` afresh for these arguments and report what happened (graphs, ops, fallbacks, timings)."""
    from jitorch.frontend.explain import Explanation

    if isinstance(fn, _CompiledModule):
        fn = fn._compiled
    if isinstance(fn, CompiledFunction):
        fresh = CompiledFunction(fn.fn, backend=fn.backend, module=fn.module)
        fresh.name, fresh._parameters = fn.name, fn._parameters
    elif _is_module(fn):
        fresh = CompiledFunction(fn.__call__, backend=default_backend(), module=fn)
        fresh.name, fresh._parameters = type(fn).__name__, _positional_names(fn.forward)
    else:
        fresh = CompiledFunction(fn, backend=default_backend())
    fresh(*args, **kwargs)
    return Explanation(fresh)
