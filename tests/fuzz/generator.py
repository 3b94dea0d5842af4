"""Seeded random programs over jitorch's public op vocabulary, for differential fuzzing of the compiler.

    program = generate(1234)                 # the same program for the same seed, on every machine
    print(program)                            # readable code, with the seed and the inputs
    fn = program.function()                   # a plain Python function of the inputs: call it or compile it
    args, leaves = program.make_inputs()      # fresh tensors (some non-contiguous, some requiring grad)
    ref_args, _ = program.make_inputs(reference=True)   # the same values, floats as float64
    program.function(reference=True)(*ref_args)         # the float64 reference run

A program is a list of Python statements on jitorch tensors (one step per line), executed by `function()`
as one code object, so the text printed is exactly what runs. The builder grows a program step by step
and runs every candidate step eagerly on the actual input values while building: a step that raises,
produces NaN/Inf, huge or subnormal values is dropped, and a step whose result is discontinuous near the
actual values (a comparison, floor, argmax or a kink of relu/abs/max that a rounding difference could flip)
is only taken on "exact" values, ones every backend computes bit for bit (inputs, movement, indexing,
max/min, casts), or when the values keep a margin from the discontinuity. So a difference between
eager and compiled results is a compiler bug, not noise.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import jitorch
import jitorch.nn.functional as F  # noqa: N812 - the name programs use
from jitorch.frontend import functional as FF  # noqa: N812

FLOAT_DTYPES = ("float32", "float64")
MAX_NUMEL = 512
MAX_ABS = 1e3
VAR_NAME = re.compile(r"\b([vximw]\d+)\b")


# ----------------------------------------------------------------------------------------------------
# programs


@dataclass(frozen=True)
class Input:
    """An argument of the program: its values, the memory layout it arrives in and whether it requires grad.

    layout "transposed": `.mT` of a contiguous tensor holding the transpose; "strided": `[::2]` of a
    tensor twice as long in dim 0.
    """

    name: str
    value: np.ndarray
    layout: str = "contiguous"
    requires_grad: bool = False

    def describe(self) -> str:
        flags = [self.layout] if self.layout != "contiguous" else []
        if self.requires_grad:
            flags.append("requires_grad")
        kind = self.value.dtype.name
        if self.value.size and kind != "bool":
            flags.append(f"values in [{self.value.min():.3g}, {self.value.max():.3g}]")
        return f"{self.name}: {kind}{list(self.value.shape)} {' '.join(flags)}".rstrip()

    def storage(self) -> np.ndarray:
        if self.layout == "transposed":
            return np.ascontiguousarray(np.swapaxes(self.value, -1, -2))
        if self.layout == "strided":
            storage = np.zeros((2 * self.value.shape[0], *self.value.shape[1:]), self.value.dtype)
            storage[::2] = self.value
            return storage
        return self.value.copy()

    def arrange(self, leaf: jitorch.Tensor) -> jitorch.Tensor:
        if self.layout == "transposed":
            return leaf.mT
        if self.layout == "strided":
            return leaf[::2]
        return leaf


def namespace(reference: bool = False) -> dict[str, Any]:
    """The names program code uses. In the float64 reference every float dtype a step asks for is float64."""
    return {"jitorch": jitorch, "F": F, "FF": FF, "f32": jitorch.float64 if reference else jitorch.float32,
            "f64": jitorch.float64, "i64": jitorch.int64, "i32": jitorch.int32, "bool_": jitorch.bool}


@dataclass
class Program:
    seed: int
    inputs: list[Input]
    steps: list[str]  # statements, each assigning one variable
    outputs: list[str]
    scales: dict[str, float] = field(default_factory=dict)  # per output: the largest magnitude it depends on
    mutated: list[str] = field(default_factory=list)  # inputs the program writes in place
    reads_values: bool = False  # some step reads a value into Python: compile falls back to eager

    @property
    def source(self) -> str:
        names = ", ".join(i.name for i in self.inputs)
        body = "\n".join(f"    {s}" for s in self.steps) or "    pass"
        returns = ", ".join(self.outputs)
        return f"def program({names}):\n{body}\n    return ({returns},)\n"

    def __str__(self) -> str:
        header = [f"# fuzz program seed={self.seed}: {len(self.steps)} steps"]
        header += [f"#   {i.describe()}" for i in self.inputs]
        return "\n".join(header) + "\n" + self.source

    def function(self, reference: bool = False) -> Callable[..., tuple]:
        """The program as a Python function of its inputs (a closure over the compiled step list)."""
        code = compile("\n".join(self.steps), f"<fuzz program {self.seed}>", "exec")
        names, outputs, scope = [i.name for i in self.inputs], list(self.outputs), namespace(reference)

        def program(*args: Any) -> tuple:
            env = dict(zip(names, args))
            exec(code, scope, env)  # noqa: S102 - the program's own generated code
            # every dtype the program computed in (an int program may take a float32 detour): tolerances
            # follow the least precise of them
            program.dtypes = {v.dtype.name for v in env.values() if isinstance(v, jitorch.Tensor)}
            return tuple(env[o] for o in outputs)
        program.__name__ = f"fuzz_{self.seed}"
        return program

    def make_inputs(self, reference: bool = False) -> tuple[list[jitorch.Tensor], list[jitorch.Tensor | None]]:
        """Fresh argument tensors, and per input the leaf that requires grad (None where none does)."""
        args, leaves = [], []
        for spec in self.inputs:
            storage = spec.storage()
            if reference and storage.dtype.kind == "f":
                storage = storage.astype(np.float64)
            leaf = jitorch.tensor(storage, requires_grad=spec.requires_grad)
            args.append(spec.arrange(leaf))
            leaves.append(leaf if spec.requires_grad else None)
        return args, leaves

    def repro(self, backend: str = "llvm") -> str:
        """A standalone script: the program, its inputs as literals, eager and compiled results side by side."""
        lines = ["import numpy as np", "import jitorch", "import jitorch.nn.functional as F",
                 "from jitorch.frontend import functional as FF",
                 "f32, f64, i64, i32, bool_ = jitorch.float32, jitorch.float64, jitorch.int64, jitorch.int32, "
                 "jitorch.bool", "", self.source, "", "def inputs():", "    return ["]
        with np.printoptions(threshold=10 ** 6, precision=9, floatmode="maxprec"):
            for spec in self.inputs:
                value = f"np.array({spec.value.tolist()!r}, dtype={spec.value.dtype.name!r})"
                tensor = f"jitorch.tensor({value}, requires_grad={spec.requires_grad})"
                if spec.layout == "transposed":
                    tensor = (f"jitorch.tensor(np.ascontiguousarray(np.swapaxes({value}, -1, -2)), "
                              f"requires_grad={spec.requires_grad}).mT")
                elif spec.layout == "strided":
                    tensor = (f"jitorch.tensor(np.repeat({value}, 2, axis=0), "
                              f"requires_grad={spec.requires_grad})[::2]")
                lines.append(f"        {tensor},  # {spec.name}")
        lines += ["    ]", "", f"compiled = jitorch.compile(program, backend={backend!r})",
                  "compiled(*inputs())", "print('eager   ', program(*inputs()))",
                  "print('compiled', compiled(*inputs()))"]
        return "\n".join(lines) + "\n"


def written(step: str) -> str:
    """The variable a step assigns."""
    return step.split(" = ", 1)[0].strip()


def reads(step: str) -> list[str]:
    """The variables a step reads."""
    target = written(step)
    return [name for name in VAR_NAME.findall(step.split(" = ", 1)[1]) if name != target]


def writers(program: Program) -> dict[str, list[str]]:
    """The steps that set each variable: its own step, and for inputs written in place (`x3.add_(v1)`)
    the steps that write them."""
    found: dict[str, list[str]] = {}
    for step in program.steps:
        found.setdefault(written(step), []).append(step)
        target = step.split(" = ", 1)[1].split(".", 1)[0]
        if target in program.mutated:
            found.setdefault(target, []).append(step)
    return found


def dependencies(program: Program, names: list[str]) -> set[str]:
    """The variables `names` are computed from (themselves included)."""
    steps = writers(program)
    found, todo = set(), list(names)
    while todo:
        var = todo.pop()
        if var in found:
            continue
        found.add(var)
        for step in steps.get(var, []):
            todo.extend(reads(step) + [written(step)])
    return found


# ----------------------------------------------------------------------------------------------------
# variables while building


@dataclass
class Var:
    name: str
    tensor: jitorch.Tensor  # its value in the float32 program, computed while building
    exact: bool  # every backend computes it bit for bit (no rounding that could differ)
    scale: float  # the largest magnitude among the float values it is computed from

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def ndim(self) -> int:
        return self.tensor.ndim

    @property
    def dtype(self) -> str:
        return self.tensor.dtype.name

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def values(self) -> np.ndarray:
        return self.tensor.detach().numpy()

    def margin(self, points: Callable[[np.ndarray], np.ndarray]) -> float:
        """The distance of the values from the nearest discontinuity `points(values)` returns."""
        values = self.values.astype(np.float64)
        return float(np.min(np.abs(values - points(values)))) if values.size else math.inf


@dataclass
class Candidate:
    """A step before it is accepted: code with `{out}` for its variable, and what decides acceptance."""

    code: str
    operands: list[Var]
    exact: bool = False
    mutates: str | None = None  # an input written in place
    reads_values: bool = False


class Builder:
    """Grows one program: the proposals in steps.py and shape_steps.py offer candidate steps, `accept` runs
    each on the actual values and keeps it if its result is sane."""

    def __init__(self, seed: int, rng: np.random.Generator, large: bool = False) -> None:
        self.seed, self.rng = seed, rng
        # large programs: outputs big enough for the runtime's output pool, kernels slow enough to go parallel
        self.max_numel = 1 << 16 if large else MAX_NUMEL
        self.inputs: list[Input] = []
        self.pending: list[Input] = []
        self.vars: list[Var] = []
        self.steps: list[str] = []
        self.env: dict[str, Any] = {}
        self.scope = namespace()
        self.mutated: list[str] = []
        self.reads_values = False
        self.counter = 0
        self.base = self._random_large_shape() if large else self._random_shape()

    # ---------------------------------------------------------------------------------------------
    # randomness

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, options: Any) -> Any:
        options = list(options)
        return options[int(self.rng.integers(len(options)))]

    def integer(self, low: int, high: int) -> int:
        """An int in [low, high]."""
        return int(self.rng.integers(low, high + 1))

    def scalar(self, low: float = -2.0, high: float = 2.0, nonzero: bool = False) -> float:
        value = round(float(self.rng.uniform(low, high)), 2)
        if nonzero and abs(value) < 0.5:
            value = math.copysign(abs(value) + 0.5, value)
        return value

    def _random_shape(self) -> tuple[int, ...]:
        rank = self.choice([0, 1, 1, 2, 2, 2, 3, 3, 3, 4])
        while True:
            shape = tuple(self.choice([1, 1, 2, 3, 3, 4, 5, 6, 8, 9, 17]) for _ in range(rank))
            if self.chance(0.02) and shape:
                shape = shape[:-1] + (0,)
            if math.prod(shape) <= 128:
                return shape

    def _random_large_shape(self) -> tuple[int, ...]:
        while True:
            rank = self.choice([1, 2, 2, 3])
            sizes = [20000, 16411, 30000] if rank == 1 else [1, 3, 17, 64, 100, 129, 256, 1000, 4099]
            shape = tuple(self.choice(sizes) for _ in range(rank))
            if (1 << 14) <= math.prod(shape) <= self.max_numel // 2:
                return shape

    def related_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with `shape`: some dims set to 1, leading dims dropped or one added."""
        out = [s if not self.chance(0.3) else 1 for s in shape]
        if out and self.chance(0.3):
            out = out[self.integer(1, len(out)):]
        elif self.chance(0.1) and len(out) < 4 and math.prod(shape) * 2 <= self.max_numel:
            out = [2] + out
        return tuple(out)

    # ---------------------------------------------------------------------------------------------
    # inputs and variables

    def new_input(self, shape: tuple[int, ...], kind: str = "float", dtype: str | None = None,
                  low: float = -2.0, high: float = 2.0, value: np.ndarray | None = None) -> str:
        """A new argument (committed only if the step using it is accepted). kind: float, int, index, mask."""
        self.counter += 1
        prefix = {"float": "x", "int": "x", "index": "i", "mask": "m"}[kind]
        name = f"{prefix}{self.counter}"
        if value is not None:
            pass
        elif kind == "float":
            value = self.rng.uniform(low, high, size=shape)
            if self.chance(0.15):  # quantized values: ties for max/argmax/round, exact zeros for relu
                value = np.round(value * 4) / 4
            value = value.astype(dtype or "float32")
        elif kind == "int":
            value = self.rng.integers(int(low), int(high) + 1, size=shape).astype(dtype or "int64")
        elif kind == "index":
            value = self.rng.integers(int(low), int(high), size=shape).astype(np.int64)
        else:
            value = self.rng.random(size=shape) < 0.5
        value = np.asarray(value)
        layout = "contiguous"
        if value.ndim >= 2 and self.chance(0.2):
            layout = "transposed"
        elif value.ndim >= 1 and self.chance(0.15):
            layout = "strided"
        self.pending.append(Input(name, value, layout))
        self.env[name] = jitorch.tensor(value)
        return name

    def input_var(self, name: str) -> Var:
        tensor = self.env[name]
        scale = float(np.max(np.abs(tensor.numpy()), initial=1.0)) if tensor.dtype.is_floating_point else 1.0
        return Var(name, tensor, True, scale)

    def pick(self, predicate: Callable[[Var], bool] = lambda v: True) -> Var | None:
        """A variable satisfying `predicate`, often the newest (so programs grow deep chains)."""
        found = [v for v in self.vars if predicate(v)]
        if not found:
            return None
        return found[-1] if self.chance(0.5) else self.choice(found)

    def floats(self, predicate: Callable[[Var], bool] = lambda v: True) -> Var | None:
        return self.pick(lambda v: v.is_float and predicate(v))

    def partner(self, a: Var, kind: str = "float", same_shape: bool = False, **input_options: Any) -> str:
        """A variable or a new input of `kind` (float, int, mask) whose shape broadcasts with a's."""
        def fits(v: Var) -> bool:
            matches = {"float": v.is_float, "mask": v.dtype == "bool", "int": v.dtype in ("int64", "int32")}[kind]
            if not matches or v is a:
                return False
            if same_shape:
                return v.shape == a.shape
            try:
                shape = np.broadcast_shapes(v.shape, a.shape)
            except ValueError:
                return False
            return math.prod(shape) <= self.max_numel and len(shape) <= 4
        if self.chance(0.5):
            found = self.pick(fits)
            if found is not None:
                return found.name
        shape = a.shape if same_shape or self.chance(0.4) else self.related_shape(a.shape)
        return self.new_input(shape, kind, **input_options)

    def var(self, name: str) -> Var:
        for v in self.vars:
            if v.name == name:
                return v
        return self.input_var(name)

    # ---------------------------------------------------------------------------------------------
    # accepting steps

    def accept(self, candidate: Candidate) -> bool:
        name = f"v{len(self.steps)}"
        code = candidate.code.replace("{out}", name)
        saved = None
        if candidate.mutates is not None:
            saved = self.env[candidate.mutates].numpy().copy()
        try:
            with jitorch.no_grad():
                exec(code, self.scope, self.env)  # noqa: S102
            value = self.env[name]
            ok = isinstance(value, jitorch.Tensor) and self._sane(value)
        except Exception:  # noqa: BLE001 - a step that raises is simply not taken
            ok = False
        if not ok:
            self.env.pop(name, None)
            for spec in self.pending:
                self.env.pop(spec.name, None)
            if saved is not None:
                np.copyto(self.env[candidate.mutates].numpy(), saved)
            self.pending = []
            return False
        for spec in self.pending:
            self.inputs.append(spec)
            self.vars.append(self.input_var(spec.name))
        self.pending = []
        operands = candidate.operands
        scale = max([v.scale for v in operands if v.is_float] + [1.0])
        if value.dtype.is_floating_point and value.numel():
            scale = max(scale, float(np.max(np.abs(value.numpy()))))
        exact = candidate.exact and all(v.exact for v in operands)
        self.vars.append(Var(name, value, exact, scale))
        self.steps.append(code)
        if candidate.mutates is not None:
            self.mutated.append(candidate.mutates)
            self.vars = [Var(v.name, v.tensor, False, max(v.scale, scale)) if v.name == candidate.mutates else v
                         for v in self.vars]
        self.reads_values |= candidate.reads_values
        return True

    def _sane(self, value: jitorch.Tensor) -> bool:
        if value.numel() > self.max_numel * 4 or value.ndim > 5:
            return False
        if not value.dtype.is_floating_point:
            return value.dtype.name == "bool" or not value.numel() or int(np.max(np.abs(value.numpy()))) < 10 ** 6
        data = value.numpy()
        if not np.all(np.isfinite(data)):
            return False
        magnitude = np.abs(data)
        return not data.size or (magnitude.max() <= MAX_ABS and not np.any((magnitude > 0) & (magnitude < 1e-30)))

    # ---------------------------------------------------------------------------------------------
    # the whole program

    def build(self, n_steps: int) -> Program:
        from .steps import categories

        names, weights = zip(*categories())
        probabilities = np.array(weights, dtype=np.float64) / sum(weights)
        kind, dtype = self.choice([("float", "float32")] * 14 + [("float", "float64")] * 3 + [("int", "int64")])
        first = self.new_input(self.base, kind, dtype, low=-5 if kind == "int" else -2, high=5 if kind == "int" else 2)
        self.inputs.append(self.pending.pop())
        self.vars.append(self.input_var(first))
        if self.chance(0.5):
            second = self.new_input(self.related_shape(self.base))
            self.inputs.append(self.pending.pop())
            self.vars.append(self.input_var(second))
        for _ in range(n_steps):
            for _attempt in range(40):
                self.pending = []
                propose = names[int(self.rng.choice(len(names), p=probabilities))]
                candidate = propose(self)
                if candidate is not None and self.accept(candidate):
                    break
        if not self.steps:
            self.accept(Candidate(f"{{out}} = {first} * 2.0", [self.var(first)]))
        return self._finish()

    def _finish(self) -> Program:
        made = [v for v in self.vars if v.name.startswith("v")]
        used = {name for step in self.steps for name in reads(step)}
        sinks = [v for v in made[:-1] if v.name not in used]  # results nothing else reads
        outputs = [made[-1]]
        for _ in range(self.integer(0, 3)):
            extra = self.choice(sinks or made) if not self.chance(0.05) else self.choice(self.vars)
            if extra not in outputs:
                outputs.append(extra)
        inputs = []
        for spec in self.inputs:
            wants_grad = spec.value.dtype.kind == "f" and spec.name not in self.mutated and self.chance(0.65)
            inputs.append(Input(spec.name, spec.value, spec.layout, wants_grad))
        return Program(self.seed, inputs, self.steps, [v.name for v in outputs],
                       {v.name: v.scale for v in outputs}, list(dict.fromkeys(self.mutated)), self.reads_values)


def generate(seed: int, max_steps: int = 40, validate: Callable[[Program], bool] | None = None) -> Program:
    """The program for `seed`: 1 to `max_steps` steps. `validate` may refuse a program (say, one whose
    gradients overflow); the next candidate comes from the same seed, so the result is still deterministic."""
    for attempt in range(20):
        rng = np.random.default_rng([seed, attempt])
        # most programs are short (quick to compile, easy to read); some are long
        n_steps = int(min(max_steps, 1 + rng.geometric(0.12)))
        large = bool(rng.random() < 0.06)
        program = Builder(seed, rng, large).build(n_steps if not large else min(n_steps, 12))
        if validate is None or validate(program):
            return program
    return program
