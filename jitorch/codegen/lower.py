"""Lowering: a fused kernel step (passes/fusion.py) becomes a loop nest (codegen/loopnest.py).

Each value of the group is built as a scalar expression at the current point of the iteration space:
members of the group inline (full values at the point, row values from per-row `Local`s or, in the
column schedule, from their accumulator), everything materialized is a `Load` whose offset composes
the view ops between it and the use, and sources and random ops become expressions of the index.

Row schedule (the reduced dims are trailing): outer loops over the kept dims; stage k runs the
reductions of level k (those depending on k-1 earlier reduction levels) and stores the full values of
level k-1, in one pass over the row; row values are stored last. Column schedule: accumulators over
the kept dims are initialized, then one pass in natural loop order accumulates into them (and stores
the full values), then row values are computed from them.

Afterwards loops of extent 1 disappear and adjacent loops that every index treats as one contiguous
range merge (`x*2+1` on a [64,128] array is one loop of 8192), so the innermost loop is as long and
as contiguous as the data allows, which is what the LLVM vectorizer needs.
"""
from __future__ import annotations

import functools
import math
from typing import Any

from jitorch.codegen.loopnest import (
    Accumulate, Affine, Apply, Const, Expr, Gather, IndexValue, Kernel, Load, Local, Loop, Param, Random,
    Reduction, Stage, Statement, Store, bounds, identity, map_statement, ravel, statement_affines, unravel)
from jitorch.ir import dtypes
from jitorch.ir.graph import Node, Value
from jitorch.ir.ops import OPS, REDUCE
from jitorch.ir.types import Literal
from jitorch.passes.fusion import ALONE, FULL, Step, is_inlined, row_shape

# ops worth keeping in a row rather than recomputing in a later stage
EXPENSIVE = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos", "pow")
_STACK_ROW_BYTES = 1 << 16


class _Lowering:
    """Builds one kernel's loop nest; `lower` is the entry point."""

    def __init__(self, step: Step, in_place: bool) -> None:
        self.step = step
        self.members = {id(n.output): n for n in step.nodes}
        self.params: list[Param] = []
        self.param_of: dict[int, int] = {}
        reused = step.in_place if in_place else None
        for i, value in enumerate(step.outputs):
            if reused is None:
                self.param_of[id(value)] = self._param(f"out{i}", value, "out")
        self.inputs: set[int] = set()
        for i, value in enumerate(step.inputs):
            self.param_of[id(value)] = self._param(f"in{i}", value, "inout" if value is reused else "in")
            self.inputs.add(id(value))
        if reused is not None:  # one output (inplace.py): stored where the input it overwrites is read
            self.param_of[id(step.outputs[0])] = self.param_of[id(reused)]
        for original, held in step.read_from.items():
            self.param_of[original] = self.param_of[id(held)]
            self.inputs.add(original)
        self.extents: dict[str, int] = {}
        self.kept: dict[str, bool] = {}
        self.memo: dict[int, Expr] = {}
        self.locals: dict[int, Expr] = {}  # id(reduce output) -> its value for row consumers
        self.cached: dict[int, Expr] = {}  # id(value) -> where an earlier stage kept it

    def _param(self, name: str, value: Value, role: str) -> int:
        self.params.append(Param(name, value.dtype, math.prod(value.shape), role))
        return len(self.params) - 1

    def new_var(self, name: str, extent: int, kept: bool) -> Affine:
        self.extents[name] = extent
        self.kept[name] = kept
        return Affine.of(name)

    # ------------------------------------------------------------------------------------------------
    # expressions

    def value(self, operand: Value | Literal, coords: tuple[Affine, ...] | None = None,
              flat: Affine | None = None) -> Expr:
        """`operand` at `coords` (or at flat offset `flat` of its contiguous layout)."""
        if type(operand) is Literal:
            return Const(operand.value, operand.dtype)
        if id(operand) in self.members:
            return self.member(operand)
        node = operand.producer
        if not is_inlined(node) or id(operand) in self.inputs:  # materialized: a buffer
            offset = flat if flat is not None else ravel(coords, operand.shape)
            return Load(self.param_of[id(operand)], offset, operand.dtype)
        if node.op == "reshape":
            return self.value(node.inputs[0], flat=flat if flat is not None else ravel(coords, operand.shape))
        if coords is None:
            coords = unravel(flat, operand.shape, self.extents)
        return self.inlined(node, coords)

    def inlined(self, node: Node, coords: tuple[Affine, ...]) -> Expr:
        attrs, dtype = node.attrs, node.output.dtype
        if node.op == "expand":
            source = node.inputs[0].shape
            return self.value(node.inputs[0], tuple(Affine() if s == 1 else c for s, c in zip(source, coords)))
        if node.op == "permute":
            inner: list[Affine] = [Affine()] * len(coords)
            for k, p in enumerate(attrs["perm"]):
                inner[p] = coords[k]
            return self.value(node.inputs[0], tuple(inner))
        if node.op == "slice":
            return self.value(node.inputs[0], tuple(c * step + start for c, start, step in
                                                    zip(coords, attrs["starts"], attrs["steps"])))
        if node.op == "flip":
            shape = node.inputs[0].shape
            return self.value(node.inputs[0], tuple(c * -1 + (shape[d] - 1) if d in attrs["axes"] else c
                                                    for d, c in enumerate(coords)))
        if node.op == "full":
            return Const(_convert(attrs["value"], dtype), dtype)
        if node.op == "arange":
            return _arange(coords[0], attrs["start"], attrs["step"], dtype)
        kind = "uniform" if node.op == "rand_uniform" else "normal"
        return Random(kind, self.value(node.inputs[0], ()), ravel(coords, node.output.shape), dtype)

    def member(self, value: Value) -> Expr:
        if id(value) in self.locals:
            return self.locals[id(value)]
        if id(value) in self.cached:
            return self.cached[id(value)]
        if id(value) in self.memo:
            return self.memo[id(value)]
        node = value.producer
        assert OPS[node.op].kind != REDUCE, f"reduce %{value.name} used before its stage"
        coords = self.coords_of(value)
        if node.op == "gather":
            expr = self.gather(node, coords)
        else:
            args = tuple(self.value(a, coords) for a in node.inputs)
            expr = Apply(node.op, args, tuple(sorted(node.attrs.items())), node.output.dtype)
        self.memo[id(value)] = expr
        return expr

    # ------------------------------------------------------------------------------------------------
    # schedules

    def space(self, shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
        self.shape = shape
        self.axes = axes
        self.full = tuple(self.new_var(_var(d, axes), s, d not in axes) for d, s in enumerate(shape))
        self.row = tuple(Affine() if d in axes else c for d, c in enumerate(self.full))

    def coords_of(self, value: Value) -> tuple[Affine, ...]:
        """The coordinates of a group value at the current point of the iteration space."""
        return tuple(Affine() if d < 0 else self.full[d] for d in self.step.coords[id(value)])

    def loops(self, dims: list[int]) -> tuple[Loop, ...]:
        return tuple(Loop(_var(d, self.axes), self.shape[d]) for d in dims)

    def store(self, value: Value) -> Store:
        coords = self.coords_of(value)
        if self.step.copy_of is None:
            expr = self.member(value)
        else:  # a copy kernel: the stored value is inlined
            expr = self.value(self.step.copy_of, coords)
        return Store(self.param_of[id(value)], ravel(coords, value.shape), expr)

    def rows(self) -> tuple[tuple[Loop, ...], list[Stage]]:
        step = self.step
        kept = [d for d in range(len(self.shape)) if d not in self.axes]
        inner = self.loops([d for d in self.axes])
        level: dict[int, int] = {}  # reduce levels, and for other members how many levels they wait for
        for node in step.nodes:
            wait = max((level[id(r)] for r in _member_roots(node, self.members)), default=0)
            level[id(node.output)] = wait + 1 if OPS[node.op].kind == REDUCE else wait
        stored_full = [v for v in step.outputs if step.roles[id(v)] == FULL]
        reduces = [n for n in step.nodes if OPS[n.op].kind == REDUCE]
        depth = max([level[id(n.output)] for n in reduces] + [level.get(id(v), 0) + 1 for v in stored_full])
        stage_stores = [[v for v in stored_full if level.get(id(v), 0) == k - 1] for k in range(1, depth + 1)]
        stage_reduces = [[n for n in reduces if level[id(n.output)] == k] for k in range(1, depth + 1)]
        reused = self._reused_values(stage_stores, stage_reduces)
        stages = []
        for k in range(depth):
            self.memo = {}
            body: list[Statement] = [self.store(v) for v in stage_stores[k]]
            body += [self.reduction(node) for node in stage_reduces[k]]
            for value in reused.get(k, []):
                kept_in = self._keep_for_later(value, stage_stores[k])
                if kept_in is not None:
                    body.append(kept_in)
            stages.append(Stage(inner, tuple(body)))
        full_ids = {id(v) for v in stored_full}
        row_outputs = [v for v in step.outputs if id(v) not in full_ids]
        if row_outputs:
            stages.append(Stage((), tuple(self.store(v) for v in row_outputs)))
        return self.loops(kept), stages

    def _reused_values(self, stores: list[list[Value]], reduces: list[list[Node]]) -> dict[int, list[Value]]:
        """Expensive full values (transcendental ops) that later stages need again, by the stage that
        first computes them: that stage keeps them in the row (in their output, or on the stack when the
        row is small enough to stay in cache), and later stages load them instead of recomputing."""
        seen: dict[int, int] = {}
        found: dict[int, list[Value]] = {}
        for k, (values, nodes) in enumerate(zip(stores, reduces)):
            stack = [v.producer for v in values if id(v) in self.members]
            stack += [r.producer for n in nodes for r in _member_roots(n, self.members)]
            visited: set[int] = set()
            while stack:
                node = stack.pop()
                if id(node) in visited or OPS[node.op].kind == REDUCE:
                    continue
                visited.add(id(node))
                value = node.output
                if node.op in EXPENSIVE and self.step.roles[id(value)] == FULL:
                    if id(value) not in seen:
                        seen[id(value)] = k
                    elif seen[id(value)] != k and all(v is not value for v in found.get(seen[id(value)], [])):
                        found.setdefault(seen[id(value)], []).append(value)
                stack.extend(r.producer for r in _member_roots(node, self.members))
        row_bytes = math.prod(self.shape[d] for d in self.axes) * 8
        return found if row_bytes <= _STACK_ROW_BYTES else {}

    def _keep_for_later(self, value: Value, stored: list[Value]) -> Statement | None:
        """Keep `value` for later stages: in its own output when this stage stores it (nothing to add),
        else in a row on the stack (a store to add)."""
        if any(v is value for v in stored):
            self.cached[id(value)] = Load(self.param_of[id(value)], ravel(self.coords_of(value), value.shape),
                                          value.dtype)
            return None
        size = math.prod(self.shape[d] for d in self.axes)
        self.params.append(Param(f"row{len(self.params)}", value.dtype, size, "stack"))
        param = len(self.params) - 1
        offset = ravel(tuple(self.full[d] for d in self.axes), tuple(self.shape[d] for d in self.axes))
        statement = Store(param, offset, self.member(value))
        self.cached[id(value)] = Load(param, offset, value.dtype)
        return statement

    def reduction(self, node: Node) -> Reduction:
        local = f"acc{len(self.locals)}"
        expr = self.value(node.inputs[0], self.full)
        position = None
        if node.op in ("argmax", "argmin"):
            (axis,) = node.attrs["axes"]
            position = self.full[axis]
        self.locals[id(node.output)] = Local(local, node.output.dtype)
        return Reduction(local, node.op, expr, node.output.dtype, position)

    def columns(self) -> tuple[tuple[Loop, ...], list[Stage]]:
        step = self.step
        ndim = len(self.shape)
        first = min(d for d in self.axes if self.shape[d] > 1)
        outer = [d for d in range(first) if d not in self.axes]
        inner = [d for d in range(ndim) if d not in outer]
        inner_kept = self.loops([d for d in inner if d not in self.axes])
        reduces = [n for n in step.nodes if OPS[n.op].kind == REDUCE]
        init: list[Statement] = []
        main: list[Statement] = [self.store(v) for v in step.outputs if step.roles[id(v)] == FULL]
        row_offset = ravel(self.row, row_shape(self.shape, self.axes))
        for node in reduces:
            param = self.param_of.get(id(node.output))
            if param is None:
                param = self._param(f"scratch{len(self.params)}", node.output, "scratch")
            dtype = node.output.dtype
            init.append(Store(param, row_offset, Const(identity(node.op, dtype), dtype)))
            main.append(Accumulate(param, row_offset, node.op, self.value(node.inputs[0], self.full)))
            self.locals[id(node.output)] = Load(param, row_offset, dtype)
        epilogue = [self.store(v) for v in step.outputs
                    if step.roles[id(v)] != FULL and OPS[v.producer.op].kind != REDUCE]
        stages = [Stage(inner_kept, tuple(init)), Stage(self.loops(inner), tuple(main))]
        if epilogue:
            stages.append(Stage(inner_kept, tuple(epilogue)))
        return self.loops(outer), stages

    def gather(self, node: Node, coords: tuple[Affine, ...]) -> Gather:
        """gather at `coords`: the data element at the same point but for the index's value along axis."""
        data, axis = node.inputs[0], node.attrs["axis"]
        offset = ravel(tuple(Affine() if d == axis else c for d, c in enumerate(coords)), data.shape)
        index = self.value(node.inputs[1], coords)
        return Gather(self.param_of[id(data)], offset, ((index, _strides(data.shape)[axis], data.shape[axis], False),),
                      data.dtype)

    def index(self) -> tuple[tuple[Loop, ...], list[Stage]]:
        """index: one pass over the output, loading the data at checked offsets (negative indices wrap)."""
        node = self.step.nodes[0]
        out, data, indices = node.output, node.inputs[0], node.inputs[1:]
        self.space(out.shape, ())
        strides = _strides(data.shape)
        leading = len(indices[0].shape)
        at = self.full[:leading]
        terms = tuple((self.value(index, at), strides[d], data.shape[d], True) for d, index in enumerate(indices))
        offset = ravel((Affine(),) * len(indices) + self.full[leading:], data.shape)
        store = Store(self.param_of[id(out)], ravel(self.full, out.shape),
                      Gather(self.param_of[id(data)], offset, terms, data.dtype))
        dims = list(range(len(out.shape)))
        return self.loops(dims[:1]), [Stage(self.loops(dims[1:]), (store,))]

    def assembly(self) -> tuple[tuple[Loop, ...], list[Stage]]:
        node = self.step.nodes[0]
        if node.op == "index":
            return self.index()
        out = node.output
        self.space(out.shape, ())
        stages = []
        if node.op == "cat":
            axis = node.attrs["axis"]
            offset = 0
            for k, piece in enumerate(node.inputs):
                coords = list(self.full[:axis])
                loops = []
                for d in range(axis, len(out.shape)):
                    loops.append(Loop(f"s{k}_{d}", piece.shape[d]))
                    coords.append(self.new_var(f"s{k}_{d}", piece.shape[d], True))
                target = list(coords)
                target[axis] = target[axis] + offset
                offset += piece.shape[axis]
                stages.append(Stage(tuple(loops), (Store(self.param_of[id(out)], ravel(tuple(target), out.shape),
                                                         self.value(piece, tuple(coords))),)))
            return self.loops(list(range(axis))), stages
        base, source = node.inputs
        stages.append(Stage(self.loops(list(range(len(out.shape)))),
                            (Store(self.param_of[id(out)], ravel(self.full, out.shape), self.value(base, self.full)),)))
        coords = tuple(self.new_var(f"s{d}", n, True) for d, n in enumerate(source.shape))
        target = tuple(c * step + start for c, start, step in zip(coords, node.attrs["starts"], node.attrs["steps"]))
        stages.append(Stage(tuple(Loop(f"s{d}", n) for d, n in enumerate(source.shape)),
                            (Store(self.param_of[id(out)], ravel(target, out.shape), self.value(source, coords)),)))
        return (), stages


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a contiguous array of `shape`."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _var(dim: int, axes: tuple[int, ...]) -> str:
    """The loop variable of iteration dim `dim`: i<dim> when kept, r<dim> when reduced."""
    return f"{'r' if dim in axes else 'i'}{dim}"


def _member_roots(node: Node, members: dict[int, Node]) -> list[Value]:
    """The group members `node` reads directly or through inlined ops."""
    found, stack = [], [a for a in node.inputs if type(a) is not Literal]
    while stack:
        value = stack.pop()
        if id(value) in members:
            found.append(value)
        elif is_inlined(value.producer):
            stack.extend(a for a in value.producer.inputs if type(a) is not Literal)
    return found


def _convert(value: Any, dtype: dtypes.DType) -> Any:
    return dtype.numpy.type(value).item()


def _arange(index: Affine, start: Any, step: Any, dtype: dtypes.DType) -> Expr:
    wide = dtypes.float64 if dtype.is_floating_point or isinstance(start, float) or isinstance(step, float) \
        else dtypes.int64
    position: Expr = IndexValue(index, dtypes.int64)
    if wide is dtypes.float64:
        position = Apply("cast", (position,), (("dtype", wide),), wide)
    scaled = Apply("mul", (Const(step, wide), position), (), wide)
    value = Apply("add", (Const(start, wide), scaled), (), wide)
    return value if dtype is wide else Apply("cast", (value,), (("dtype", dtype),), dtype)


# ----------------------------------------------------------------------------------------------------
# loop simplification


def _collapse(outer: tuple[Loop, ...], stages: list[Stage], extents: dict[str, int],
              kept: dict[str, bool]) -> tuple[tuple[Loop, ...], list[Stage]]:
    """Drop extent-1 loops and merge adjacent loops that every index treats as one contiguous range."""
    ones = {var for var, extent in extents.items() if extent == 1}
    if ones:
        zero = {var: Affine() for var in ones}
        outer = tuple(loop for loop in outer if loop.var not in ones)
        stages = [Stage(tuple(loop for loop in s.loops if loop.var not in ones),
                        tuple(map_statement(st, lambda a: _substitute_vars(a, zero)) for st in s.body))
                  for s in stages]
    while True:
        pair = _mergeable(outer, stages, extents, kept)
        if pair is None:
            return outer, stages
        a, b = pair
        extents[a] *= extents[b]
        outer = _merge_loops(outer, a, b, extents[a])
        stages = [Stage(_merge_loops(s.loops, a, b, extents[a]),
                        tuple(map_statement(st, functools.partial(_merge, a=a, b=b)) for st in s.body))
                  for s in stages]


def _merge_loops(loops: tuple[Loop, ...], a: str, b: str, extent: int) -> tuple[Loop, ...]:
    """Loop `a` takes loop `b` (directly inside it) in: one loop of `extent`."""
    return tuple(Loop(a, extent) if loop.var == a else loop for loop in loops if loop.var != b)


def _substitute_vars(index: Affine, mapping: dict[str, Affine]) -> Affine:
    if not any(v in mapping for v in index.variables()):
        return index
    out = Affine((), index.const)
    for atom, c in index.terms:
        if isinstance(atom, str):
            out = out + (mapping.get(atom, Affine.of(atom))) * c
        else:
            inner = _substitute_vars(atom.inner, mapping)
            out = out + Affine.of(type(atom)(atom.kind, inner, atom.divisor)) * c
    return out


def _merge(index: Affine, a: str, b: str) -> Affine:
    ca, cb = index.coefficient(a), index.coefficient(b)
    if ca == 0 and cb == 0:
        return index
    rest = Affine(tuple((atom, c) for atom, c in index.terms if atom not in (a, b)), index.const)
    return rest + Affine.of(a) * cb


def _mergeable(outer: tuple[Loop, ...], stages: list[Stage], extents: dict[str, int],
               kept: dict[str, bool]) -> tuple[str, str] | None:
    lists = [outer] + [s.loops for s in stages]
    indices = [a for s in stages for st in s.body for a in statement_affines(st)]
    for loops in lists:
        for first, second in zip(loops, loops[1:]):
            a, b = first.var, second.var
            if kept[a] != kept[b] or extents[a] == 0 or extents[b] == 0:
                continue
            if not _adjacent_everywhere(a, b, lists):
                continue
            if all(_mergeable_in(index, a, b, extents[b]) for index in indices):
                return a, b
    return None


def _adjacent_everywhere(a: str, b: str, lists: list[tuple[Loop, ...]]) -> bool:
    for loops in lists:
        names = [loop.var for loop in loops]
        if a in names or b in names:
            if a not in names or b not in names or names.index(b) != names.index(a) + 1:
                return False
    return True


def _mergeable_in(index: Affine, a: str, b: str, extent_b: int) -> bool:
    for atom, _ in index.terms:
        if not isinstance(atom, str) and {a, b} & atom.inner.variables():
            return False
    return index.coefficient(a) == index.coefficient(b) * extent_b


# ----------------------------------------------------------------------------------------------------


def lower(step: Step, name: str) -> Kernel:
    """The loop nest of a kernel step, named `name` (the step's name made unique in its module); written
    over its `in_place` input where every iteration reads that input only at the element it stores."""
    if step.in_place is not None:
        kernel = _lower(step, name, in_place=True)
        if _overwrites_safely(kernel):
            return kernel
    return _lower(step, name, in_place=False)


def _lower(step: Step, name: str, in_place: bool) -> Kernel:
    lowering = _Lowering(step, in_place)
    if step.nodes and step.nodes[0].op in ALONE:
        outer, stages = lowering.assembly()
    else:
        lowering.space(step.shape, step.axes)
        outer, stages = lowering.columns() if step.columns else lowering.rows()
    extents = dict(lowering.extents)
    outer, stages = _collapse(outer, stages, extents, lowering.kept)
    parallel = _parallel_var(outer, stages, lowering.kept, step.columns)
    span = math.prod(loop.extent for loop in outer)
    elements = sum(span * math.prod(loop.extent for loop in s.loops) for s in stages)
    parallel_extent = next((loop.extent for loops in [outer] + [s.loops for s in stages] for loop in loops
                            if loop.var == parallel), 1)
    notes = tuple(f"out0 is written over {p.name}, in place" for p in lowering.params if p.role == "inout")
    kernel = Kernel(name, tuple(lowering.params), outer, tuple(stages), parallel, parallel_extent, elements,
                    in_place, notes)
    _check_bounds(kernel)
    return kernel


def _overwrites_safely(kernel: Kernel) -> bool:
    """Whether an in-place kernel is one store per iteration whose loads of the overwritten buffer all read
    the element it stores: then each load precedes the store it feeds, and no iteration reads another's."""
    (param,) = [k for k, p in enumerate(kernel.params) if p.role == "inout"]
    if len(kernel.stages) != 1 or len(kernel.stages[0].body) != 1:
        return False
    store = kernel.stages[0].body[0]
    if not isinstance(store, Store) or store.param != param:
        return False
    stack: list[Expr] = [store.expr]
    while stack:
        expr = stack.pop()
        if isinstance(expr, (Load, Gather)) and expr.param == param and (
                isinstance(expr, Gather) or expr.offset != store.offset):
            return False
        if isinstance(expr, Apply):
            stack.extend(expr.args)
        elif isinstance(expr, Gather):
            stack.extend(index for index, _, _, _ in expr.terms)
        elif isinstance(expr, Random):
            stack.append(expr.seed)
    return True


def _parallel_var(outer: tuple[Loop, ...], stages: list[Stage], kept: dict[str, bool], columns: bool) -> str | None:
    if outer:
        return outer[0].var
    if columns:
        for stage in stages:
            for loop in stage.loops:
                if kept[loop.var]:
                    return loop.var
    return None


def _check_bounds(kernel: Kernel) -> None:
    """Every access stays inside its buffer for every point of the loops (a compiler bug otherwise)."""
    extents = kernel.extents()
    for stage in kernel.stages:
        if any(loop.extent == 0 for loop in stage.loops) or any(loop.extent == 0 for loop in kernel.outer):
            continue
        for statement in stage.body:
            for expr_index, param in _accesses(statement):
                low, high = bounds(expr_index, extents)
                size = kernel.params[param].size
                name = kernel.params[param].name
                assert 0 <= low and high < size, \
                    f"{kernel.name}: index {expr_index} spans [{low}, {high}] outside {name}[{size}]"


def _accesses(statement: Statement) -> list[tuple[Affine, int]]:
    found: list[tuple[Affine, int]] = []
    if isinstance(statement, (Store, Accumulate)):
        found.append((statement.offset, statement.param))
    stack: list[Expr] = [statement.expr]
    while stack:
        expr = stack.pop()
        if isinstance(expr, Load):
            found.append((expr.offset, expr.param))
        elif isinstance(expr, Gather):  # the data-dependent part stays within [0, size) once checked
            reach = Affine((), sum(stride * max(size - 1, 0) for _, stride, size, _ in expr.terms))
            found.append((expr.offset, expr.param))
            found.append((expr.offset + reach, expr.param))
            stack.extend(index for index, _, _, _ in expr.terms)
        elif isinstance(expr, Apply):
            stack.extend(expr.args)
        elif isinstance(expr, Random):
            stack.append(expr.seed)
    return found
