"""The compiled-graph runtime: steps over buffers planned once, a persistent thread pool, an output pool.

A `CompiledGraph` is a list of steps (kernel calls, `np.matmul(a, b, out=buffer)`, numpy views, eager
calls of index ops) over slots holding arrays:

- inputs (made contiguous only when a kernel reads them);
- intermediates, allocated once per compiled graph in blocks that values with disjoint lifetimes share;
- outputs, fresh every call: taken from a pool that hands an array out again only once nothing but
  the pool refers to it (a returned array is never overwritten), since faulting in new pages costs
  about 3 µs per 4 KiB here, more than many kernels;
- eager results and views, made per call.

Kernels receive a table of array object addresses (Python ids; the kernel reads each data pointer from
the object) and the (start, end) of their parallel loop. Whether a kernel splits that loop across the
thread pool (ctypes releases the GIL) is measured: its first calls run on the calling thread and are
timed; if they take longer than a few pool round trips (measured when the pool starts), the next
calls run on the pool and are timed too, and the kernel keeps whichever was faster. Results do not
depend on the number of threads: every output element is computed by exactly one thread.

`set_num_threads(n)` / `get_num_threads()`; the default is `JITORCH_NUM_THREADS` or the usable cores.
"""
from __future__ import annotations

import ctypes
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from jitorch.codegen.loopnest import ARRAY_DATA_OFFSET, ERRORS, Kernel
from jitorch.ir.graph import Graph, Value
from jitorch.ir.ops import OPS
from jitorch.ir.types import ShapeError, TensorType
from jitorch.passes.fusion import EAGER, EXTERN_STEP, KERNEL, VIEW, FusionPlan, Step, view_base

KernelFunction = Callable[[int, int, int], int]
_SIGNATURE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
# The same entry point called with ready-made ctypes arguments, which skips converting them per call
# (0.4 against 0.75 µs): a kernel's call over its whole range always passes the same three values.
_UNCHECKED = ctypes.CFUNCTYPE(ctypes.c_int32)
_ALIGNMENT = 64
_POOLED_BYTES = 1 << 16  # outputs smaller than this come from np.empty: malloc reuses those itself
_POOL_DEPTH = 4  # arrays kept per shape and dtype
_TIMED_CALLS = 3  # calls timed on one thread, then (for long kernels) on the pool, before deciding
# a kernel tries the pool when it takes longer than this many pool round trips (dispatch + join)
_PARALLEL_DISPATCHES = 3


def _check_array_layout() -> None:
    probe = np.arange(3.0)
    if ctypes.c_void_p.from_address(id(probe) + ARRAY_DATA_OFFSET).value != probe.ctypes.data:
        raise ImportError("jitorch's LLVM runtime expects numpy arrays to keep their data pointer at "
                          f"offset {ARRAY_DATA_OFFSET} of the object (64-bit CPython, GIL build)")


_check_array_layout()


# ----------------------------------------------------------------------------------------------------
# threads


def _default_threads() -> int:
    configured = os.environ.get("JITORCH_NUM_THREADS", "")
    if configured:
        return max(1, int(configured))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Pool:
    """Persistent worker threads running kernel chunks; the calling thread runs the first chunk."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.tasks: list[queue.SimpleQueue] = []
        for k in range(size - 1):
            tasks: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(tasks,), name=f"jitorch-worker-{k}", daemon=True).start()
            self.tasks.append(tasks)
        self.dispatch_seconds = self._measure() if size > 1 else 0.0

    def _work(self, tasks: queue.SimpleQueue) -> None:
        while True:
            task = tasks.get()
            if task is None:
                return
            function, table, start, end = task
            try:
                self.done.put(function(table, start, end))
            except BaseException as error:  # noqa: BLE001 - handed to the calling thread
                self.done.put(error)

    def _measure(self) -> float:
        """The cost of one dispatch-and-join round trip through the pool (the median of a few)."""
        samples = []
        for _ in range(15):
            begin = time.perf_counter()
            self.run(lambda table, start, end: 0, 0, 2 * self.size, grain=1)
            samples.append(time.perf_counter() - begin)
        return sorted(samples)[len(samples) // 2]

    def run(self, function: KernelFunction, table: int, extent: int, grain: int) -> int:
        """Run function(table, start, end) over [0, extent) in chunks (multiples of `grain`); the OR of
        the statuses. Falls back to the calling thread when another thread is using the pool."""
        chunks = min(self.size, max(1, extent // grain))
        if chunks == 1 or not self.lock.acquire(blocking=False):
            return function(table, 0, extent)
        try:
            step = -(-extent // chunks // grain) * grain
            bounds = [(k * step, min(extent, (k + 1) * step)) for k in range(chunks)]
            bounds = [(lo, hi) for lo, hi in bounds if lo < hi]
            for tasks, (lo, hi) in zip(self.tasks, bounds[1:]):
                tasks.put((function, table, lo, hi))
            status = function(table, *bounds[0])
            first_error = None
            for _ in bounds[1:]:
                result = self.done.get()
                if isinstance(result, BaseException):
                    first_error = first_error or result
                else:
                    status |= result
            if first_error is not None:
                raise first_error
            return status
        finally:
            self.lock.release()

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)


_pool: _Pool | None = None
_threads = _default_threads()
_pool_lock = threading.Lock()


def set_num_threads(count: int) -> None:
    """Use `count` threads (the calling one included) for large kernels."""
    global _threads, _pool
    if int(count) < 1:
        raise ValueError(f"set_num_threads: the number of threads must be at least 1, got {count}")
    with _pool_lock:
        _threads = int(count)
        if _pool is not None and _pool.size != _threads:
            _pool.close()
            _pool = None


def get_num_threads() -> int:
    return _threads


def pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(_threads)
        return _pool


def _forget_pool_after_fork() -> None:
    """A forked child (a DataLoader worker) has none of the parent's threads: it starts its own pool."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


# ----------------------------------------------------------------------------------------------------
# memory


class OutputPool:
    """Fresh output arrays of at least _POOLED_BYTES (smaller ones malloc reuses itself); an array is handed
    out again only once the pool holds its only reference."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, list[np.ndarray]] = {}
        self.lock = threading.Lock()  # two threads must not both take the same free array

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self.lock:
            kept = self.arrays.setdefault((shape, dtype), [])
            for array in kept:
                # references: the list, `array`, getrefcount's argument
                if sys.getrefcount(array) == 3:
                    return array
            array = np.empty(shape, dtype)
            if len(kept) < _POOL_DEPTH:
                kept.append(array)
            return array


_outputs = OutputPool()


def _aligned(nbytes: int) -> np.ndarray:
    """`nbytes` of 64-byte aligned memory, touched: its pages are faulted in now, not by a kernel."""
    raw = np.zeros(nbytes + _ALIGNMENT, np.uint8)
    raw.fill(0)
    skip = -raw.ctypes.data % _ALIGNMENT
    return raw[skip:skip + nbytes]


def plan_memory(sizes: list[int], lifetimes: list[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Blocks and placements for buffers of `sizes` bytes alive over inclusive step ranges: returns
    (block sizes, (block, offset) per buffer); buffers share a block when their lifetimes are disjoint."""
    order = sorted(range(len(sizes)), key=lambda i: (lifetimes[i][0], -sizes[i], i))
    blocks: list[int] = []
    busy_until: list[int] = []  # per block: the last step its current buffer is used in
    placement: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    for i in order:
        first, _ = lifetimes[i]
        free = [b for b in range(len(blocks)) if busy_until[b] < first and blocks[b] >= sizes[i]]
        if free:
            block = min(free, key=lambda b: (blocks[b], b))
        else:
            grow = [b for b in range(len(blocks)) if busy_until[b] < first]
            if grow:  # the largest free block, enlarged
                block = max(grow, key=lambda b: (blocks[b], -b))
                blocks[block] = sizes[i]
            else:
                blocks.append(sizes[i])
                busy_until.append(-1)
                block = len(blocks) - 1
        busy_until[block] = lifetimes[i][1]
        placement[i] = (block, 0)
    return blocks, placement


# ----------------------------------------------------------------------------------------------------
# steps


class KernelError(RuntimeError):
    """A kernel reported an error that eager execution of the graph did not reproduce."""


@dataclass
class CompiledKernel:
    """A kernel's loop nest and its entry point in a loaded module."""

    kernel: Kernel
    function: KernelFunction


class _KernelStep:
    __slots__ = ("function", "table", "address", "dynamic", "extent", "grain", "parallel", "single", "pooled",
                 "name", "graph", "whole", "whole_arguments", "threads", "splittable")

    def __init__(self, compiled: CompiledKernel, slots: list[int], dynamic: set[int], graph: CompiledGraph) -> None:
        kernel = compiled.kernel
        self.function = compiled.function
        self.table = np.zeros(max(1, len(slots)), np.int64)
        self.address = self.table.ctypes.data
        self.dynamic = tuple((position, slot) for position, slot in enumerate(slots) if slot in dynamic)
        self.extent = kernel.parallel_extent if kernel.parallel is not None else 1
        # elementwise chunks in multiples of 64 elements keep vector loops whole
        self.grain = 64 if not kernel.stages[0].loops and kernel.outer and len(kernel.outer) == 1 else 1
        self.splittable = kernel.parallel is not None
        self._decide()
        self.name = kernel.name
        self.graph = graph
        self.whole = _UNCHECKED(ctypes.cast(compiled.function, ctypes.c_void_p).value)
        self.whole_arguments = (ctypes.c_void_p(self.address), ctypes.c_int64(0), ctypes.c_int64(self.extent))
        for position, slot in enumerate(slots):
            if slot not in dynamic:
                self.table[position] = id(graph.template[slot])

    def _decide(self) -> None:
        """Measure again whether to use the pool: at first, and when set_num_threads changed its size."""
        self.threads = _threads
        self.parallel: bool | None = None if self.splittable else False  # None: measuring
        self.single: list[float] = []  # times of the first calls on the calling thread
        self.pooled: list[float] = []  # then on the pool

    def __call__(self, env: list[Any]) -> None:
        table = self.table
        for position, slot in self.dynamic:
            table[position] = id(env[slot])
        if self.threads != _threads:
            self._decide()
        if self.parallel:
            status = pool().run(self.function, self.address, self.extent, self.grain)
        elif self.parallel is None:
            status = self._measured()
        else:
            status = self.whole(*self.whole_arguments)
        if status:
            self.graph.reproduce_error(self.name, status)

    def _measured(self) -> int:
        threads = pool()
        on_pool = len(self.single) == _TIMED_CALLS
        begin = time.perf_counter()
        if on_pool:
            status = threads.run(self.function, self.address, self.extent, self.grain)
        else:
            status = self.whole(*self.whole_arguments)
        (self.pooled if on_pool else self.single).append(time.perf_counter() - begin)
        if len(self.single) == _TIMED_CALLS and not self.pooled:
            if threads.size == 1 or min(self.single) < _PARALLEL_DISPATCHES * threads.dispatch_seconds:
                self.parallel = False
        elif len(self.pooled) == _TIMED_CALLS:
            self.parallel = min(self.pooled) < min(self.single)
        return status


class CompiledGraph:
    """A graph's steps over planned buffers: `run(inputs) -> outputs` (the backend contract)."""

    def __init__(self, graph: Graph, plan: FusionPlan, kernels: dict[int, CompiledKernel], keep_alive: Any) -> None:
        self.graph = graph
        self.keep_alive = keep_alive  # the loaded machine code
        self.lock = threading.Lock()
        self._inputs: Any = ()  # during a call: its inputs, for re-running a failing graph eagerly
        slots: dict[int, int] = {}
        values: list[Value] = []

        def slot(value: Value) -> int:
            if id(value) not in slots:
                slots[id(value)] = len(values)
                values.append(value)
            return slots[id(value)]

        for value in graph.inputs:
            slot(value)
        steps = plan.steps
        # an in-place kernel's output is the buffer of the input it overwrites (passes/inplace.py)
        overwritten = {id(step.outputs[0]): step.in_place for index, step in enumerate(steps)
                       if step.kind == KERNEL and kernels[index].kernel.in_place}
        for out, value in overwritten.items():
            slots[out] = slot(value)
        producer: dict[int, Step] = {}
        for step in steps:
            for value in step.outputs:
                if id(value) in producer:  # one would fill a buffer the other replaces: refuse, never run it
                    raise RuntimeError(f"{graph.name}: internal compiler error: %{value.name} is produced by two "
                                       f"steps ({producer[id(value)].name} and {step.name})")
                producer[id(value)] = step
        # outputs, and what output views are taken from, are fresh every call
        fresh: set[int] = set()
        for value in plan.outputs:
            value = view_base(value, producer)
            if id(value) in producer and producer[id(value)].kind != EAGER:  # eager results are new anyway
                fresh.add(id(value))
        input_ids = {id(v) for v in graph.inputs}
        kernel_inputs: set[int] = set()
        for step in steps:
            for value in step.inputs + step.outputs:
                slot(value)
            if step.kind == KERNEL:
                kernel_inputs.update(id(v) for v in step.inputs if id(v) in input_ids)
        # kernels index their inputs as contiguous arrays: an input they read gets a twin slot holding a
        # contiguous copy when the argument is not, while matmuls and views still see the argument as given
        # (BLAS handles strides itself, and its summation order then matches eager's)
        twins = {id(v): slot(Value(f"contiguous.{v.name}", v.type)) for v in graph.inputs if id(v) in kernel_inputs}
        self.input_specs = [(v.shape, v.dtype.numpy, twins.get(id(v))) for v in graph.inputs]
        dynamic = {slots[id(v)] for v in graph.inputs} | {slots[i] for i in fresh} | set(twins.values())
        for step in steps:  # eager results, and views of anything made per call, are dynamic too
            if step.kind == EAGER or (step.kind == VIEW and slots[id(step.inputs[0])] in dynamic):
                dynamic.add(slots[id(step.outputs[0])])
        if any(slots[out] in dynamic for out in overwritten):  # inplace.py overwrites planned buffers only
            raise RuntimeError(f"{graph.name}: internal compiler error: a kernel overwrites an input or output")
        scratch = self._scratch(steps, kernels, slot)
        template = self._allocate(steps, values, slots, dynamic, scratch)
        self.template = template
        # per fresh slot: (slot, shape, dtype, pooled); small outputs come straight from np.empty
        self.fresh = [(slots[i], values[slots[i]].shape, values[slots[i]].dtype.numpy,
                       values[slots[i]].type.numel * values[slots[i]].dtype.itemsize >= _POOLED_BYTES)
                      for i in sorted(fresh, key=lambda i: slots[i])]
        self.output_slots = [slots[id(v)] for v in plan.outputs]
        self.steps: list[Callable[[list[Any]], None]] = []
        for index, step in enumerate(steps):
            if step.kind == KERNEL:
                params = [slots[id(v)] for v in step.outputs if id(v) not in overwritten]
                params += [twins.get(id(v), slots[id(v)]) for v in step.inputs]
                params += scratch.get(index, [])
                self.steps.append(_KernelStep(kernels[index], params, dynamic, self))
            elif step.kind == VIEW and self._static_view(step, slots):
                continue  # a view of a planned buffer: made once, in the template
            else:
                of_input = step.kind == VIEW and id(step.inputs[0]) in input_ids
                self.steps.append(_call_step(step, slots, of_input))
        self.kernel_count = sum(1 for step in steps if step.kind == KERNEL)
        self.eager_count = sum(1 for step in steps if step.kind == EAGER)

    def _scratch(self, steps: list[Step], kernels: dict[int, CompiledKernel], slot: Callable) -> dict[int, list[int]]:
        """Scratch buffers of kernels (column accumulators nothing else reads) get slots of their own."""
        found: dict[int, list[int]] = {}
        for index, step in enumerate(steps):
            if step.kind != KERNEL:
                continue
            for param in kernels[index].kernel.params:
                if param.role == "scratch":
                    placeholder = Value(f"scratch.{index}.{param.name}", TensorType((param.size,), param.dtype))
                    found.setdefault(index, []).append(slot(placeholder))
        return found

    def _allocate(self, steps: list[Step], values: list[Value], slots: dict[int, int], dynamic: set[int],
                  scratch: dict[int, list[int]]) -> list[Any]:
        template: list[Any] = [None] * len(values)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        view_base: dict[int, int] = {}
        for index, step in enumerate(steps):
            out_slots = [slots[id(v)] for v in step.outputs] + scratch.get(index, [])
            if step.kind == VIEW:
                base = slots[id(step.inputs[0])]
                view_base[out_slots[0]] = view_base.get(base, base)
                continue
            for s in out_slots:
                first.setdefault(s, index)
                last[s] = max(last.get(s, index), index)
            for value in step.inputs:
                s = slots[id(value)]
                s = view_base.get(s, s)
                last[s] = max(last.get(s, index), index)
        planned = [s for s in first if s not in dynamic]
        sizes = [max(values[s].type.numel * values[s].dtype.itemsize, 1) for s in planned]
        sizes = [-(-n // _ALIGNMENT) * _ALIGNMENT for n in sizes]
        blocks, placement = plan_memory(sizes, [(first[s], last[s]) for s in planned])
        memory = [_aligned(n) for n in blocks]
        self.planned_bytes = sum(blocks)
        for s, (block, offset) in zip(planned, placement):
            value = values[s]
            nbytes = value.type.numel * value.dtype.itemsize
            template[s] = memory[block][offset:offset + nbytes].view(value.dtype.numpy).reshape(value.shape)
        return template

    def _static_view(self, step: Step, slots: dict[int, int]) -> bool:
        """Make a view of a planned buffer once, in the template, when numpy can take it without a copy."""
        base = self.template[slots[id(step.inputs[0])]]
        if base is None:
            return False
        node = step.nodes[0]
        view = take_view(node.op, base, node.attrs)
        if not np.shares_memory(view, base) and view.size:
            return False
        self.template[slots[id(step.outputs[0])]] = view
        return True

    # ------------------------------------------------------------------------------------------------

    def __call__(self, inputs: list[Any]) -> list[np.ndarray]:
        specs = self.input_specs
        if len(inputs) != len(specs):
            raise TypeError(f"{self.graph.name}: expected {len(specs)} inputs, got {len(inputs)}")
        with self.lock:
            env = self.template.copy()
            for i, (shape, dtype, twin) in enumerate(specs):
                array = inputs[i]
                if type(array) is not np.ndarray or array.dtype is not dtype or array.shape != shape:
                    array = self._checked(i, array)
                env[i] = array
                if twin is not None:
                    env[twin] = array if array.flags.c_contiguous else np.ascontiguousarray(array)
            self._inputs = inputs
            for s, shape, dtype, pooled in self.fresh:
                env[s] = _outputs.get(shape, dtype) if pooled else np.empty(shape, dtype)
            try:
                for step in self.steps:
                    step(env)
            finally:
                self._inputs = ()
            return [env[s] for s in self.output_slots]

    def _checked(self, index: int, array: Any) -> np.ndarray:
        """The input as an array of the expected type, or the interpreter's error."""
        array = np.asarray(array)
        if array.shape != self.input_specs[index][0] or array.dtype != self.input_specs[index][1]:
            self._bad_input(index, array)
        return array

    def _bad_input(self, index: int, array: np.ndarray) -> None:
        value = self.graph.inputs[index]
        if array.dtype != value.dtype.numpy:
            raise TypeError(f"{self.graph.name}: input %{value.name} expects {value.type}, got a {array.dtype} array "
                            f"of shape {tuple(array.shape)}")
        raise ShapeError(f"{self.graph.name}: input %{value.name} expects {value.type}, got shape {tuple(array.shape)}")

    def reproduce_error(self, kernel: str, status: int) -> None:
        """A kernel reported `status`: run the graph eagerly on the same inputs to raise eager's error."""
        from jitorch.ir import interpreter
        interpreter.run(self.graph, [np.asarray(a) for a in self._inputs])
        reasons = ", ".join(text for code, text in ERRORS.items() if status & code)
        raise KernelError(f"{self.graph.name}: kernel {kernel} reported {reasons or status}, "
                          "but eager execution of the graph succeeded")


def _call_step(step: Step, slots: dict[int, int], of_input: bool) -> Callable[[list[Any]], None]:
    """How the runtime runs an extern, eager or view step; `of_input`: a view step's base is a graph input."""
    node = step.nodes[0]
    operands = tuple(slots[id(a)] for a in node.inputs)
    target = slots[id(step.outputs[0])]
    if step.kind == EXTERN_STEP:
        a, b = operands

        def matmul(env: list[Any]) -> None:
            np.matmul(env[a], env[b], out=env[target])
        return matmul
    eager, attrs = OPS[node.op].eager, node.attrs
    dtype = node.output.dtype.numpy
    if step.kind == VIEW:
        (base,) = operands
        if not of_input:
            def view(env: list[Any]) -> None:
                env[target] = take_view(node.op, env[base], attrs)
            return view
        # a graph input is often the same array every call (a weight): its view is taken once
        last: list[Any] = [None, None]  # the input last viewed, and its view

        def view_of_input(env: list[Any]) -> None:
            array = env[base]
            if array is not last[0]:
                last[:] = array, take_view(node.op, array, attrs)
            env[target] = last[1]
        return view_of_input

    def call(env: list[Any]) -> None:
        result = eager(*[env[s] for s in operands], **attrs)
        env[target] = np.ascontiguousarray(result, dtype=dtype)
    return call


def take_view(op: str, array: np.ndarray, attrs: dict[str, Any]) -> np.ndarray:
    """A view op applied with numpy, without copying where numpy can (a reshape of strided data copies)."""
    if op == "reshape":
        return array.reshape(attrs["shape"])
    if op == "permute":
        return array.transpose(attrs["perm"])
    if op == "expand":
        return np.broadcast_to(array, attrs["shape"])
    if op == "slice":
        return array[tuple(slice(*bounds) for bounds in zip(attrs["starts"], attrs["stops"], attrs["steps"]))]
    return np.flip(array, attrs["axes"])


def kernel_function(address: int) -> KernelFunction:
    return _SIGNATURE(address)
