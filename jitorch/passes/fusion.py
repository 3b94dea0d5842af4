"""Fusion: group the nodes of a graph into the steps a backend runs, and print the fused graph.

    plan = fuse(graph)
    print(format_plan(plan))          # fused[e_64x128_add_relu](%1, %l1.bias) ...

Steps are kernels (fused groups), extern calls (matmul), eager calls (scatter_add, index_put) and views
(numpy views of materialized values, for extern/eager operands and outputs). The graph itself is left
untouched: the plan is what the backend runs, and what the `fusion` dump prints.

- View ops (reshape, permute, expand, slice, flip), sources (full, arange) and random ops are never steps
  of their own: every kernel that reads them inlines them, as index maps and scalar expressions.
- A kernel group is a set of elementwise and reduce nodes over one iteration space `shape`, reducing
  `axes` (the same for every reduce in the group). Each value in it is either "full" (indexed by every
  dim of the space) or "row" (a reduce result or computed from them: one value per kept point).
  An edge inside a group must read the producer at the consumer's own point (checked through the view
  chain between them), so a value is never needed at another point of the space than where it is made.
- Row schedule (the reduced dims are the trailing ones): one kernel per row block that runs stages over
  the row, reductions producing per-row scalars and stores writing rows: softmax, layer_norm and
  cross-entropy are one kernel each. Column schedule (a kept dim is innermost): one reduction level,
  accumulated into an array, with elementwise work on the reduced values after it.
- gather fuses like an elementwise op over its output (it reads its index at its own point) but reads
  its data operand, at checked data-dependent offsets, from a contiguous buffer made outside the group;
  cat, slice_scatter and index are kernels of their own; matmul is an extern call; scatter_add and
  index_put run as eager steps (numpy).
- Groups merge producer into consumer in graph order, and only when the step graph stays acyclic
  (a networkx DiGraph of the steps, checked on every merge).

Kernel names say what a kernel does: `e_` (elementwise) or `r_` (reduces), the iteration space, and the
ops in graph order: `r_4096x1024_amax_sub_exp_sum_div`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from jitorch.ir.graph import Graph, Node, Value
from jitorch.ir.ops import ELEMENTWISE, EXTERN, OPS, RANDOM, REDUCE, SOURCE
from jitorch.ir.types import Literal

VIEWS = ("reshape", "permute", "expand", "slice", "flip")
INDEXED = ("gather", "index")  # load their data operand (a contiguous buffer) at checked, data-dependent offsets
ALONE = ("cat", "slice_scatter", "index")  # kernels of one node
KERNEL, EXTERN_STEP, EAGER, VIEW = "kernel", "extern", "eager", "view"
FULL, ROW = "full", "row"
_ZERO = -1  # a coordinate that is always 0
_NAME_OPS = 8  # ops spelled out in a kernel name before the rest are counted


def is_inlined(node: Node | None) -> bool:
    """View, source and random nodes: computed inside the kernels that read them."""
    return node is not None and (node.op in VIEWS or OPS[node.op].kind in (SOURCE, RANDOM))


def _is_compute(node: Node) -> bool:
    return OPS[node.op].kind in (ELEMENTWISE, REDUCE) or node.op in ALONE or node.op in INDEXED


@dataclass
class Step:
    """One thing the runtime does. Kernels list their compute `nodes` (empty for a copy kernel, which
    stores `outputs[0]` through its inlined view chain); the others hold their one node."""

    kind: str
    nodes: list[Node]
    inputs: list[Value]  # materialized values read
    outputs: list[Value]  # values this step materializes
    name: str
    shape: tuple[int, ...] = ()  # iteration space (kernels)
    axes: tuple[int, ...] = ()  # reduced dims (kernels)
    columns: bool = False  # column schedule
    roles: dict[int, str] = field(default_factory=dict)  # id(value) -> FULL or ROW
    # id(value) -> for each dim of the value, the iteration dim it runs along (-1: always 0)
    coords: dict[int, tuple[int, ...]] = field(default_factory=dict)
    copy_of: Value | None = None  # a copy kernel's source (its output, unless that is a graph input)
    read_from: dict[int, Value] = field(default_factory=dict)  # id(value) -> the input holding it (a copy)
    in_place: Value | None = None  # the input whose buffer the output may reuse (passes/inplace.py)


@dataclass
class FusionPlan:
    graph: Graph
    steps: list[Step]
    outputs: list[Value]  # what the steps return: the graph's outputs, with copies of returned inputs


# ----------------------------------------------------------------------------------------------------
# index compatibility of an edge inside a group


def _through_view(node: Node, coords: list) -> list:
    """The coordinates of a view's input, given those of its output (dims, _ZERO, or None: unknown)."""
    source, target = node.inputs[0].shape, node.output.shape
    attrs = node.attrs
    if node.op == "expand":
        return [_ZERO if a == 1 and b != 1 else c for a, b, c in zip(source, target, coords)]
    if node.op == "permute":
        out: list = [None] * len(source)
        for k, p in enumerate(attrs["perm"]):
            out[p] = coords[k]
        return out
    if node.op == "reshape":
        big_in = [d for d, s in enumerate(source) if s != 1]
        big_out = [d for d, s in enumerate(target) if s != 1]
        if [source[d] for d in big_in] != [target[d] for d in big_out]:
            return [None] * len(source)
        out = [_ZERO] * len(source)
        for d_in, d_out in zip(big_in, big_out):
            out[d_in] = coords[d_out]
        return out
    if node.op == "slice":
        out = []
        for start, step, a, b, c in zip(attrs["starts"], attrs["steps"], source, target, coords):
            out.append(c if start == 0 and step == 1 and a == b else _ZERO if start == 0 and b == 1 else None)
        return out
    # flip
    return [None if d in attrs["axes"] and source[d] != 1 else c for d, c in enumerate(coords)]


def _chain(operand: Value) -> tuple[Value, list[Node]]:
    """Follow view ops down from `operand`: (the value they start from, the views outermost first)."""
    views = []
    while operand.producer is not None and operand.producer.op in VIEWS:
        views.append(operand.producer)
        operand = operand.producer.inputs[0]
    return operand, views


def _reads_own_point(views: list[Node], consumer: list, expected: tuple[int, ...]) -> bool:
    """Whether reading through `views` at the consumer's coordinates lands on the producer's own point."""
    coords = consumer
    for view in views:
        coords = _through_view(view, coords)
    return all(want == _ZERO or coords[d] == want for d, want in enumerate(expected))


def coordinate_map(value_shape: tuple[int, ...], shape: tuple[int, ...], dims: list[int]) -> tuple[int, ...] | None:
    """For each dim of a value, the iteration dim it runs along (_ZERO for size 1): its non-1 dims are
    `dims` of the iteration space `shape`, in order; None when the sizes do not line up."""
    mine = [d for d, size in enumerate(value_shape) if size != 1]
    if [value_shape[d] for d in mine] != [shape[d] for d in dims]:
        return None
    coords = [_ZERO] * len(value_shape)
    for d, dim in zip(mine, dims):
        coords[d] = dim
    return tuple(coords)


# ----------------------------------------------------------------------------------------------------
# groups


@dataclass
class _Shape:
    shape: tuple[int, ...]
    axes: tuple[int, ...]
    columns: bool
    roles: dict[int, str]
    coords: dict[int, tuple[int, ...]]


def row_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def _trailing(shape: tuple[int, ...], axes: tuple[int, ...]) -> bool:
    kept = [d for d, s in enumerate(shape) if d not in axes and s > 1]
    reduced = [d for d, s in enumerate(shape) if d in axes and s > 1]
    return not kept or not reduced or max(kept) < min(reduced)


def _analyze(members: list[Node]) -> _Shape | None:
    """The iteration space, schedule, roles and coordinate maps of a candidate group (nodes in graph
    order), or None when the nodes cannot form one kernel."""
    if any(node.op in ALONE for node in members):
        if len(members) > 1:
            return None
        out = members[0].output
        return _Shape(out.shape, (), False, {id(out): FULL}, {id(out): tuple(range(len(out.shape)))})
    reduces = [node for node in members if OPS[node.op].kind == REDUCE]
    if reduces:
        shape, axes = reduces[0].inputs[0].shape, reduces[0].attrs["axes"]
        if any(r.inputs[0].shape != shape or r.attrs["axes"] != axes for r in reduces):
            return None
    else:
        shape, axes = members[0].output.shape, ()
    every = [d for d, size in enumerate(shape) if size != 1]
    kept = [d for d in every if d not in axes]
    columns = bool(axes) and not _trailing(shape, axes) and not any(r.op in ("argmax", "argmin") for r in reduces)
    roles: dict[int, str] = {}
    coords: dict[int, tuple[int, ...]] = {}
    ids = {id(node.output) for node in members}
    for node in members:
        is_reduce = OPS[node.op].kind == REDUCE
        read = node.inputs[1:] if node.op == "gather" else node.inputs
        if node.op == "gather" and id(_chain(node.inputs[0])[0]) in ids:
            return None  # read at other points than its own: it must be made before the kernel
        operands = [_chain(a) for a in read if type(a) is not Literal]
        inner = [(root, views) for root, views in operands if id(root) in ids]
        full_map = coordinate_map(node.output.shape, shape, every)
        row_map = coordinate_map(node.output.shape, shape, kept) if axes else None
        if is_reduce:
            role, mine = ROW, tuple(_ZERO if d in axes else d for d in range(len(shape)))
        elif row_map is not None and not any(roles[id(root)] == FULL for root, _ in inner):
            role, mine = ROW, row_map
        elif full_map is not None:
            role, mine = FULL, full_map
        else:
            return None
        roles[id(node.output)], coords[id(node.output)] = role, mine
        consumer = list(tuple(range(len(shape))) if is_reduce else mine)
        for root, views in inner:
            if not _reads_own_point(views, consumer, coords[id(root)]):
                return None
            if columns and role == FULL and roles[id(root)] == ROW:
                return None  # a column schedule has one reduction level
    return _Shape(shape, axes, columns, roles, coords)


class _Groups:
    """Compute nodes partitioned into groups, and the DAG of groups and other steps."""

    def __init__(self, graph: Graph) -> None:
        import networkx as nx  # here: importing it takes 0.2 s, and the runtime imports this module

        self.graph = graph
        self.position = {id(node): i for i, node in enumerate(graph.nodes)}
        self.unit: dict[int, int] = {}  # id(node) -> group number (its first node's position)
        self.members: dict[int, list[Node]] = {}
        self.dag = nx.DiGraph()
        for node in graph.nodes:
            if is_inlined(node):
                continue
            number = self.position[id(node)]
            self.unit[id(node)] = number
            self.members[number] = [node]
            self.dag.add_node(number)
        for node in graph.nodes:
            if id(node) in self.unit:
                for root in self.roots(node.inputs):
                    if root.producer is not None:
                        self.dag.add_edge(self.unit[id(root.producer)], self.unit[id(node)])

    def roots(self, operands: tuple) -> list[Value]:
        """The non-inlined values that `operands` are computed from, in first-use order."""
        found: dict[int, Value] = {}
        stack = [a for a in reversed(operands) if type(a) is not Literal]
        while stack:
            value = stack.pop()
            if is_inlined(value.producer):
                stack.extend(a for a in reversed(value.producer.inputs) if type(a) is not Literal)
            else:
                found.setdefault(id(value), value)
        return list(found.values())

    def merge(self, a: int, b: int) -> bool:
        """Merge groups a and b when the result is a valid kernel and the step graph stays acyclic."""
        import networkx as nx

        members = sorted(self.members[a] + self.members[b], key=lambda n: self.position[id(n)])
        if _analyze(members) is None:
            return False
        for source, target in ((a, b), (b, a)):
            if any(s != target and nx.has_path(self.dag, s, target) for s in self.dag.successors(source)):
                return False
        keep, gone = min(a, b), max(a, b)
        nx.contracted_nodes(self.dag, keep, gone, self_loops=False, copy=False)
        for node in self.members.pop(gone):
            self.unit[id(node)] = keep
        self.members[keep] = members
        return True


def _fuse_groups(graph: Graph) -> _Groups:
    groups = _Groups(graph)
    for node in graph.nodes:
        if not _is_compute(node) or node.op in ALONE:
            continue
        for operand in node.inputs:
            if type(operand) is Literal:
                continue
            root, _ = _chain(operand)
            producer = root.producer
            if producer is None or not _is_compute(producer) or producer.op in ALONE:
                continue
            a, b = groups.unit[id(producer)], groups.unit[id(node)]
            if a != b:
                groups.merge(a, b)
    return groups


# ----------------------------------------------------------------------------------------------------
# steps


def _shape_name(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


def kernel_name(prefix: str, shape: tuple[int, ...], ops: list[str]) -> str:
    spelled = ops[:_NAME_OPS] + ([f"{len(ops) - _NAME_OPS}more"] if len(ops) > _NAME_OPS else [])
    return "_".join([prefix, _shape_name(shape)] + (spelled or ["copy"]))


def _inlined_ops(value: Value) -> list[str]:
    """The inlined ops a copy kernel for `value` applies, innermost first."""
    ops: list[str] = []
    stack = [value]
    while stack:
        current = stack.pop()
        if is_inlined(current.producer):
            ops.append(current.producer.op)
            stack.extend(a for a in current.producer.inputs if type(a) is not Literal)
    return ops[::-1]


def fuse(graph: Graph) -> FusionPlan:
    """Partition `graph` into steps (see the module docstring)."""
    groups = _fuse_groups(graph)
    steps: dict[int, Step] = {}  # by group number
    for number, members in groups.members.items():
        node = members[0]
        if _is_compute(node):
            info = _analyze(members)
            assert info is not None
            prefix = "r" if any(OPS[n.op].kind == REDUCE for n in members) else "e"
            steps[number] = Step(KERNEL, members, [], [], kernel_name(prefix, info.shape, [n.op for n in members]),
                                 info.shape, info.axes, info.columns, info.roles, info.coords)
        else:
            kind = EXTERN_STEP if OPS[node.op].kind == EXTERN else EAGER
            operands = [a for a in node.inputs if type(a) is not Literal]
            steps[number] = Step(kind, members, list({id(a): a for a in operands}.values()), [node.output], node.op)

    extra: list[tuple[int, Step]] = []  # copy kernels and views, keyed by position for ordering
    materialized: dict[int, Value] = {}  # id(value) -> value, for values some step stores (contiguously)
    copied: dict[int, Value] = {}  # id(inlined value) -> the value a copy kernel stores it in
    viewed: set[int] = set()  # values made available as numpy views (for extern and eager steps)

    def store(value: Value) -> None:
        """Make `value` (produced by a step) materialized by its step."""
        if value.producer is None or id(value) in materialized:
            return
        materialized[id(value)] = value
        step = steps[groups.unit[id(value.producer)]]
        if all(v is not value for v in step.outputs):
            step.outputs.append(value)

    def copy_kernel(value: Value) -> Value:
        """A kernel storing `value` contiguously; it stores into a value of its own when `value` is a graph
        input (returned) or is already a numpy view for another step."""
        roots = groups.roots((value,))
        for root in roots:
            store(root)
        distinct = value.producer is None or id(value) in viewed
        stored = Value(f"{value.name}.copy{len(extra)}", value.type) if distinct else value
        materialized[id(stored)] = stored
        if value.producer is not None:
            copied[id(value)] = stored
        extra.append((groups.position[id(value.producer)] if value.producer else -1,
                      Step(KERNEL, [], roots, [stored], kernel_name("e", value.shape, _inlined_ops(value)),
                           value.shape, (), False, {id(stored): FULL},
                           {id(stored): tuple(range(len(value.shape)))}, value)))
        return stored

    def kernel_inputs(step: Step) -> list[Value]:
        """The buffers a kernel reads: roots of its operands, and the data operands of gather and index,
        which are read at data-dependent offsets and so must be contiguous buffers themselves."""
        members = {id(n.output) for n in step.nodes}
        found: dict[int, Value] = {}
        operands: list[Value | Literal] = []
        for node in step.nodes:
            if node.op in INDEXED:
                data = node.inputs[0]
                held = copied.get(id(data))
                if held is None:
                    held = copy_kernel(data) if is_inlined(data.producer) else data
                found.setdefault(id(held), held)
                if held is not data:
                    step.read_from[id(data)] = held
                operands.extend(node.inputs[1:])
            else:
                operands.extend(node.inputs)
        for root in groups.roots(tuple(operands)):
            if id(root) not in members:
                found.setdefault(id(root), root)
        return list(found.values())

    def provide(value: Value, as_output: bool) -> Value:
        """Make `value` available to an extern/eager step or as a graph output (fresh, writable); returns
        the value holding it."""
        if value.producer is None and as_output:  # each time returned: a copy (as the interpreter does)
            return copy_kernel(value)
        if id(value) in copied:
            return copied[id(value)]
        if id(value) in materialized or id(value) in viewed or value.producer is None:
            return value
        root, views = _chain(value)
        for k, view in enumerate(views):
            if id(view.output) in materialized:
                # a copy kernel already stores this view whole (for an indexed read): views start from that
                # buffer, never make the same value a numpy view as well (two producers, one left unfilled)
                root, views = view.output, views[:k]
                break
        if not is_inlined(value.producer):
            store(value)
            return value
        root_ok = id(root) in materialized or (
            root.producer is not None and not is_inlined(root.producer) if as_output else not is_inlined(root.producer))
        if not root_ok or (as_output and any(v.op == "expand" for v in views)):
            return copy_kernel(value)
        store(root)
        for view in reversed(views):
            if id(view.output) not in viewed:
                viewed.add(id(view.output))
                extra.append((groups.position[id(view)], Step(VIEW, [view], [view.inputs[0]], [view.output],
                                                              view.op)))
        return value

    for number in sorted(steps):
        step = steps[number]
        if step.kind == KERNEL:
            step.inputs = kernel_inputs(step)
            for root in step.inputs:
                store(root)
        else:
            for operand in step.nodes[0].inputs:
                if type(operand) is not Literal:
                    provide(operand, as_output=False)
    outputs = [provide(value, as_output=True) for value in graph.outputs]
    ordered = _order(graph, groups, steps, extra)
    return FusionPlan(graph, ordered, outputs)


def _order(graph: Graph, groups: _Groups, steps: dict[int, Step], extra: list[tuple[int, Step]]) -> list[Step]:
    """All steps in a topological order, ties broken by graph position (byte-stable)."""
    import networkx as nx

    everything = [(number, step) for number, step in steps.items()] + extra
    maker: dict[int, int] = {}
    for key, (_, step) in enumerate(everything):
        for value in step.outputs:
            maker[id(value)] = key
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(everything)))
    for key, (_, step) in enumerate(everything):
        for value in step.inputs:
            if id(value) in maker and maker[id(value)] != key:
                dag.add_edge(maker[id(value)], key)
    order = nx.lexicographical_topological_sort(dag, key=lambda k: (everything[k][0], k))
    return [everything[k][1] for k in order]


# ----------------------------------------------------------------------------------------------------
# printing


def view_base(value: Value, made_by: dict[int, Step]) -> Value:
    """The value a chain of view steps ending in `value` is a view of (`made_by`: id(value) -> its step)."""
    while id(value) in made_by and made_by[id(value)].kind == VIEW:
        value = made_by[id(value)].inputs[0]
    return value


def _operand(value: Value | Literal) -> str:
    return str(value) if type(value) is Literal else f"%{value.name}"


def format_step(step: Step) -> tuple[str, str, str]:
    """(defined values, their types, the call) of a step's line."""
    names = ", ".join(f"%{v.name}" for v in step.outputs)
    types = ", ".join(str(v.type) for v in step.outputs)
    if step.kind == KERNEL:
        return names, types, f"fused[{step.name}]({', '.join(_operand(v) for v in step.inputs)})"
    from jitorch.ir.printer import format_call
    return names, types, format_call(step.nodes[0])


def body(plan: FusionPlan, step: Step) -> Graph:
    """A kernel step's nodes as a graph of their own, named by the kernel."""
    from jitorch.passes.rebuild import rebuild

    wanted: dict[int, Node] = {}
    sources = [step.copy_of] if step.copy_of is not None else step.outputs
    stack = list(step.nodes) + [v.producer for v in sources if v.producer is not None]
    inputs = {id(v) for v in step.inputs}
    while stack:
        node = stack.pop()
        if id(node) in wanted:
            continue
        wanted[id(node)] = node
        for operand in node.inputs:
            if type(operand) is not Literal and id(operand) not in inputs and operand.producer is not None:
                stack.append(operand.producer)
    nodes = [node for node in plan.graph.nodes if id(node) in wanted]
    return rebuild(step.name, [(v.name, v) for v in step.inputs], nodes, sources)


def format_plan(plan: FusionPlan, *, bodies: bool = False) -> str:
    """The fused graph: one line per step, kernels as `fused[name](inputs)`; `bodies` adds each kernel's
    nodes below it."""
    from jitorch.ir.printer import format_graph

    graph = plan.graph
    rows = [format_step(step) for step in plan.steps]
    name_width = max((len(r[0]) for r in rows), default=0)
    type_width = max((len(r[1]) for r in rows), default=0)
    params = ", ".join(f"%{v.name}: {v.type}" for v in graph.inputs)
    results = [str(v.type) for v in graph.outputs]
    result = results[0] if len(results) == 1 else f"({', '.join(results)})"
    lines = [f"graph {graph.name}({params}) -> {result} {{"]
    for step, (names, types, call) in zip(plan.steps, rows):
        lines.append(f"  {names:<{name_width}} : {types:<{type_width}} = {call}".rstrip())
        if bodies and step.kind == KERNEL:
            lines.extend("    " + line for line in format_graph(body(plan, step)).splitlines())
    lines.append(f"  return {', '.join('%' + v.name for v in plan.outputs)}")
    lines.append("}")
    return "\n".join(lines)
