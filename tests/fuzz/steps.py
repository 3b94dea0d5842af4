"""The steps a fuzz program is made of: one proposal function per family of ops, with its weight
(elementwise, reductions, matmul, composites, conversions here; movement, indexing and writes in
shape_steps.py).

Each proposal looks at the builder's variables, picks operands (or asks for new inputs), and returns a
`Candidate`: code with `{out}` standing for the new variable, whether the result is exact (computed bit
for bit alike by every backend), and a check the actual result must pass. Values are kept in their ops'
domains (log and sqrt on positives, division away from zero, exp on bounded ranges), and discontinuous ops
(comparisons, floor, argmax, kinks of relu/abs/max) only see exact values or values with a margin.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .generator import Builder, Candidate, Var

MARGIN = 1e-3  # discontinuities: distance from the values, relative to their scale
KINK_MARGIN = 1e-4  # kinks (relu, abs, max): only gradients jump there


def robust(a: Var, points: Callable[[np.ndarray], Any], margin: float = MARGIN) -> bool:
    return a.exact or a.margin(points) > margin * a.scale


def kinks(*points: float) -> Callable[[np.ndarray], np.ndarray]:
    def nearest(values: np.ndarray) -> np.ndarray:
        grid = np.array(points, dtype=np.float64)
        return grid[np.argmin(np.abs(values[..., None] - grid), axis=-1)]
    return nearest


INTEGERS = np.round
HALVES = lambda v: np.floor(v) + 0.5  # noqa: E731 - where round() jumps


def pair_margin(a: Var, b: Var | None, scalar: float = 0.0) -> float:
    """min |a - b| over the broadcast values (b None: a scalar)."""
    other = scalar if b is None else b.values.astype(np.float64)
    diff = np.abs(a.values.astype(np.float64) - other)
    return float(diff.min()) if diff.size else math.inf


def dim_of(b: Builder, a: Var) -> int:
    """A dim of a (negative half the time); 0 for a 0-d tensor."""
    if a.ndim == 0:
        return b.choice([0, -1])
    d = b.integer(0, a.ndim - 1)
    return d - a.ndim if b.chance(0.5) else d


def reduce_dims(b: Builder, a: Var) -> tuple[str, tuple[int, ...]]:
    """A dim argument as code (`1`, `(0, 2)`, `-1`) and the axes it reduces."""
    if a.ndim == 0 or b.chance(0.15):
        return "", tuple(range(a.ndim))
    axes = sorted({b.integer(0, a.ndim - 1) for _ in range(b.integer(1, min(2, a.ndim)))})
    written = [x - a.ndim if b.chance(0.3) else x for x in axes]
    return (str(written[0]) if len(written) == 1 else str(tuple(written))), tuple(axes)


def keepdim(b: Builder, dims: str) -> str:
    if not dims:
        return ""
    return f"{dims}, keepdim=True" if b.chance(0.4) else dims


def fill(template: str, **names: Any) -> str:
    return "{out} = " + template.format(**names)


# ----------------------------------------------------------------------------------------------------
# elementwise


SMOOTH = ["-{a}", "{a}.sin()", "{a}.cos()", "{a}.tanh()", "{a}.sigmoid()", "jitorch.sigmoid({a})", "{a}.erf()",
          "F.gelu({a})", "F.gelu({a}, approximate='tanh')", "F.silu({a})", "F.softplus({a})", "F.logsigmoid({a})",
          "F.mish({a})", "{a} * {a}", "{a}.square()", "{a} ** 2", "{a} ** 3", "F.elu({a})", "F.selu({a})",
          "jitorch.tanh({a})", "F.softsign({a})", "F.tanhshrink({a})"]
# (template, where the derivative jumps, whether the result is exact given exact operands)
KINKED = [("{a}.relu()", (0.0,), True), ("F.relu({a})", (0.0,), True), ("{a}.abs()", (0.0,), True),
          ("F.leaky_relu({a}, 0.1)", (0.0,), False), ("F.relu6({a})", (0.0, 6.0), True),
          ("F.hardtanh({a})", (-1.0, 1.0), True), ("{a}.clamp(-1.0, 1.5)", (-1.0, 1.5), True),
          ("{a}.clamp(min=0.5)", (0.5,), True), ("jitorch.clamp({a}, max=0.25)", (0.25,), True),
          ("F.hardsigmoid({a})", (-3.0, 3.0), False)]
POSITIVE = ["{a}.log()", "{a}.sqrt()", "{a}.rsqrt()", "{a} ** 0.5", "{a} ** 1.5", "{a}.log2()", "{a}.log10()",
            "{a}.pow(-0.5)", "jitorch.log({a})", "{a}.log1p()"]
BOUNDED_ABOVE = ["{a}.exp()", "{a}.expm1()", "jitorch.exp({a})", "2.0 ** {a}", "{a}.exp2()"]
NONZERO = ["{a}.reciprocal()", "1.0 / {a}", "-2.5 / {a}"]
STEPS = [("{a}.floor()", INTEGERS), ("{a}.ceil()", INTEGERS), ("{a}.trunc()", INTEGERS), ("{a}.round()", HALVES),
         ("{a}.sign()", kinks(0.0)), ("jitorch.sign({a})", kinks(0.0))]
EXACT_UNARY = ["-{a}", "{a}.abs()", "{a}.relu()", "{a} * 2.0", "{a} * 0.5", "{a} / 4", "{a}.clamp(-1.0, 1.0)"]
INT_UNARY = ["-{a}", "{a}.abs()", "{a} * 3", "{a} + 1", "{a} // 2", "{a} % 3", "{a}.clamp(0, 2)", "{a}.to(f32)",
             "{a}.to(f64)", "2 - {a}", "{a}.relu()"]
BOOL_UNARY = ["~{a}", "{a}.logical_not()", "{a}.to(f32)", "{a}.to(i64)", "{a}.to(f32) * 2.5 - 1.0"]


def unary(b: Builder) -> Candidate | None:
    a = b.pick()
    if a is None:
        return None
    if a.dtype == "bool":
        return Candidate(fill(b.choice(BOOL_UNARY), a=a.name), [a], exact=True)
    if not a.is_float:
        return Candidate(fill(b.choice(INT_UNARY), a=a.name), [a], exact=True)
    values = a.values
    kind = b.choice(["smooth"] * 4 + ["kinked"] * 2 + ["positive"] * 2 + ["bounded", "nonzero", "step", "exact"])
    if kind == "smooth":
        return Candidate(fill(b.choice(SMOOTH), a=a.name), [a])
    if kind == "kinked":
        template, points, exact = b.choice(KINKED)
        if not robust(a, kinks(*points), KINK_MARGIN):
            return None
        return Candidate(fill(template, a=a.name), [a], exact=exact)
    if kind == "positive":
        operand = a.name if values.size and values.min() >= 0.05 else f"({a.name}.abs() + 0.25)"
        return Candidate(fill(b.choice(POSITIVE), a=operand), [a])
    if kind == "bounded":
        operand = a.name if not values.size or values.max() <= 6 else f"{a.name}.tanh()"
        return Candidate(fill(b.choice(BOUNDED_ABOVE), a=operand), [a])
    if kind == "nonzero":
        operand = a.name if values.size and np.abs(values).min() >= 0.2 else f"({a.name}.abs() + 0.5)"
        return Candidate(fill(b.choice(NONZERO), a=operand), [a])
    if kind == "step":
        template, points = b.choice(STEPS)
        return Candidate(fill(template, a=a.name), [a], exact=True) if robust(a, points) else None
    return Candidate(fill(b.choice(EXACT_UNARY), a=a.name), [a], exact=True)


ARITHMETIC = ["{a} + {b}", "{a} - {b}", "{a} * {b}", "jitorch.add({a}, {b}, alpha=2)", "{a}.sub({b})",
              "jitorch.mul({a}, {b})", "{a}.lerp({b}, 0.3)", "{a} * 0.5 + {b} * {b}"]
SCALAR_ARITHMETIC = ["{a} + {s}", "{s} - {a}", "{a} * {s}", "{s} * {a}", "{a} - {s}", "{a}.add({s})",
                     "jitorch.mul({a}, {s})", "{a} / {n}", "{a}.div({n})"]
COMPARISONS = [">", "<", ">=", "<=", "==", "!="]
BOOL_BINARY = ["{a} & {b}", "{a} | {b}", "{a} ^ {b}", "{a}.logical_and({b})", "{a}.logical_or({b})"]
INT_BINARY = ["{a} + {b}", "{a} * {b}", "{a} - {b}", "jitorch.maximum({a}, {b})", "{a} // ({b}.abs() + 1)",
              "{a} % ({b}.abs() + 1)", "{a} * 2.5", "{a} / ({b}.abs() + 1)", "jitorch.minimum({a}, {b})"]


def binary(b: Builder) -> Candidate | None:
    a = b.pick()
    if a is None:
        return None
    if a.dtype == "bool":
        other = b.var(b.partner(a, "mask"))
        return Candidate(fill(b.choice(BOOL_BINARY), a=a.name, b=other.name), [a, other], exact=True)
    if not a.is_float:
        other = b.var(b.partner(a, "int", low=-4, high=4))
        return Candidate(fill(b.choice(INT_BINARY), a=a.name, b=other.name), [a, other], exact=True)
    kind = b.choice(["tensor"] * 4 + ["scalar"] * 3 + ["divide", "extreme", "compare", "pow", "mixed"])
    if kind == "scalar":
        template = b.choice(SCALAR_ARITHMETIC)
        return Candidate(fill(template, a=a.name, s=b.scalar(), n=b.scalar(nonzero=True)), [a])
    if kind == "mixed":  # promotion: an int or float64 tensor, a 0-d tensor of another dtype
        options = [dict(kind="int", dtype="int64", low=-3, high=3), dict(dtype="float64"),
                   dict(kind="int", dtype="int32", low=-3, high=3)]
        spec = b.choice(options)
        shape = () if b.chance(0.4) else b.related_shape(a.shape)
        other = b.new_input(shape, **spec)
        template = b.choice(["{a} + {b}", "{b} * {a}", "{a} - {b}", "jitorch.maximum({a}, {b})"])
        if "maximum" in template and pair_margin(a, b.var(other)) < MARGIN * a.scale:
            return None
        return Candidate(fill(template, a=a.name, b=other), [a, b.input_var(other)])
    other = b.var(b.partner(a))
    if kind == "tensor":
        return Candidate(fill(b.choice(ARITHMETIC), a=a.name, b=other.name), [a, other])
    if kind == "divide":
        values = other.values
        denominator = other.name if values.size and np.abs(values).min() >= 0.2 else f"({other.name}.abs() + 0.5)"
        if b.chance(0.3):
            return Candidate(fill("{s} / {d}", s=b.scalar(nonzero=True), d=denominator), [other])
        return Candidate(fill(b.choice(["{a} / {d}", "jitorch.div({a}, {d})", "{a}.true_divide({d})"]),
                              a=a.name, d=denominator), [a, other])
    if kind == "extreme":
        exact = a.exact and other.exact
        if not exact and pair_margin(a, other) < KINK_MARGIN * max(a.scale, other.scale):
            return None
        template = b.choice(["jitorch.maximum({a}, {b})", "jitorch.minimum({a}, {b})", "{a}.maximum({b})",
                             "jitorch.where({a} > {b}, {a}, {b})"])
        return Candidate(fill(template, a=a.name, b=other.name), [a, other], exact=True)
    if kind == "compare":
        op = b.choice(COMPARISONS)
        if b.chance(0.4):
            s = b.scalar()
            if op in ("==", "!=") and not a.exact:
                return None
            if not a.exact and pair_margin(a, None, s) < MARGIN * a.scale:
                return None
            return Candidate(fill("{a} {op} {s}", a=a.name, op=op, s=s), [a], exact=True)
        if not (a.exact and other.exact) and (op in ("==", "!=") or
                                              pair_margin(a, other) < MARGIN * max(a.scale, other.scale)):
            return None
        return Candidate(fill("{a} {op} {b}", a=a.name, op=op, b=other.name), [a, other], exact=True)
    # pow: a positive base, a bounded exponent
    values = a.values
    base = a.name if values.size and values.min() >= 0.1 else f"({a.name}.abs() + 0.5)"
    return Candidate(fill(b.choice(["{a} ** {e}", "jitorch.pow({a}, {e})"]), a=base, e=f"{other.name}.tanh()"),
                     [a, other])


# ----------------------------------------------------------------------------------------------------
# reductions


def _top_gap(a: Var, axes: tuple[int, ...], lowest: bool = False) -> float:
    """The smallest gap between the two extreme values over `axes`: where a tie could be broken differently."""
    values = a.values.astype(np.float64) * (-1 if lowest else 1)
    if not values.size:
        return math.inf
    moved = np.moveaxis(values, axes, tuple(range(-len(axes), 0))) if axes else values[..., None]
    flat = moved.reshape(*moved.shape[:moved.ndim - len(axes)] if axes else moved.shape[:-1], -1)
    if flat.shape[-1] < 2:
        return math.inf
    top = np.sort(flat, axis=-1)[..., -2:]
    return float(np.min(top[..., 1] - top[..., 0]))


def reduction(b: Builder) -> Candidate | None:
    a = b.pick()
    if a is None:
        return None
    dims, axes = reduce_dims(b, a)
    count = math.prod(a.shape[x] for x in axes) if a.ndim else 1
    if a.dtype == "bool":
        return Candidate(fill(b.choice(["{a}.any({d})", "{a}.all({d})", "{a}.sum({d})"]), a=a.name, d=dims), [a],
                         exact=True)
    if not a.is_float:
        template = b.choice(["{a}.sum({d})", "{a}.amax({d})", "{a}.amin({d})", "{a}.prod({d})"])
        return Candidate(fill(template, a=a.name, d=keepdim(b, dims)), [a], exact=True)
    kind = b.choice(["sum"] * 3 + ["mean"] * 2 + ["extreme"] * 2 + ["arg", "prod", "logsumexp", "var"])
    if kind == "sum":
        template = b.choice(["{a}.sum({d})", "jitorch.sum({a}, {d})" if dims else "jitorch.sum({a})",
                             "{a}.sum(dim={d})" if dims else "{a}.sum()"])
        return Candidate(fill(template, a=a.name, d=keepdim(b, dims)), [a])
    if kind == "mean":
        return Candidate(fill(b.choice(["{a}.mean({d})", "{a}.mean({d}) - {a}"]), a=a.name, d=keepdim(b, dims)),
                         [a])
    lowest = b.chance(0.5)
    if kind == "extreme":
        if not a.exact and _top_gap(a, axes, lowest) < MARGIN * a.scale:
            return None
        name = "amin" if lowest else "amax"
        single = len(axes) == 1 and b.chance(0.5)
        if single:
            dim = axes[0] - (a.ndim if b.chance(0.5) else 0)
            which = b.choice(["values", "[0]"])
            template = "{a}.%s({d}%s)%s" % ("min" if lowest else "max", ", keepdim=True" if b.chance(0.3) else "",
                                           "." + which if which == "values" else which)
            return Candidate(fill(template, a=a.name, d=dim), [a], exact=True)
        template = b.choice(["{a}.%s({d})" % name, "{a}.%s()" % ("min" if lowest else "max")])
        return Candidate(fill(template, a=a.name, d=keepdim(b, dims)), [a], exact=True)
    if kind == "arg":
        if len(axes) != 1 and dims:
            return None
        if not a.exact and _top_gap(a, axes, lowest) < MARGIN * a.scale:
            return None
        name = "argmin" if lowest else "argmax"
        if not dims:
            return Candidate(fill("{a}.%s()" % name, a=a.name), [a], exact=True)
        template = b.choice(["{a}.%s({d})" % name, "{a}.%s({d}, keepdim=True)" % name,
                             "{a}.%s({d}).indices" % ("min" if lowest else "max")])
        return Candidate(fill(template, a=a.name, d=dims), [a], exact=True)
    if kind == "prod":
        if count > 12 or len(axes) > 1 and dims:
            return None
        values = a.values
        small = values.size and (np.abs(values).min() < 0.5 or np.abs(values).max() > 2)
        operand = f"({a.name}.tanh() * 0.5 + 1.0)" if small else a.name
        return Candidate(fill("{a}.prod({d})", a=operand, d=keepdim(b, dims)), [a])
    if kind == "logsumexp":
        if not dims:
            return None
        return Candidate(fill("{a}.logsumexp({d})", a=a.name, d=keepdim(b, dims)), [a])
    if count < 2:
        return None
    template = b.choice(["{a}.var({d})", "{a}.std({d})", "{a}.var({d}, unbiased=False)", "jitorch.std({a}, {d})"])
    spread = a.values.astype(np.float64).var(axis=axes) if a.values.size else np.ones(1)
    if "std" in template and spread.size and spread.min() < 1e-3:  # d std / dx grows as 1 / std
        return None
    if not dims:
        template = template.replace("({d})", "()").replace("({d}, ", "(").replace(", {d})", ")")
    return Candidate(fill(template, a=a.name, d=keepdim(b, dims)), [a])


# ----------------------------------------------------------------------------------------------------
# matmul, composites, creation, dtypes, value reads


def matmul(b: Builder) -> Candidate | None:
    a = b.floats(lambda v: v.ndim >= 1 and v.dtype == "float32")
    if a is None:
        return None
    k = a.shape[-1]
    m = b.integer(1, 6)
    kind = b.choice(["plain", "plain", "vector", "batched", "gram", "linear"])
    if kind == "gram" and a.ndim >= 2:
        return Candidate(fill(b.choice(["{a} @ {a}.mT", "{a}.mT @ {a}", "jitorch.matmul({a}, {a}.transpose(-1, -2))"]),
                              a=a.name), [a])
    if kind == "linear":
        weight = b.new_input((m, k), low=-1, high=1)
        operands = [a, b.input_var(weight)]
        if b.chance(0.5):
            bias = b.new_input((m,), low=-1, high=1)
            operands.append(b.input_var(bias))
            return Candidate(fill("F.linear({a}, {w}, {c})", a=a.name, w=weight, c=bias), operands)
        return Candidate(fill("F.linear({a}, {w})", a=a.name, w=weight), operands)
    if kind == "vector":
        other = b.new_input((k,), low=-1, high=1)
        return Candidate(fill(b.choice(["{a} @ {b}", "jitorch.matmul({a}, {b})"]), a=a.name, b=other),
                         [a, b.input_var(other)])
    if kind == "batched" and a.ndim >= 2:
        batch = a.shape[:-2] if b.chance(0.6) else a.shape[-3:-2]
        other = b.new_input((*batch, k, m), low=-1, high=1)
        return Candidate(fill("{a} @ {b}", a=a.name, b=other), [a, b.input_var(other)])
    other = b.pick(lambda v: v.dtype == a.dtype and v.ndim == 2 and v.shape[0] == k and v is not a)
    name = other.name if other is not None and b.chance(0.5) else b.new_input((k, m), low=-1, high=1)
    options = ["{a} @ {b}", "jitorch.matmul({a}, {b})", "{a}.matmul({b})"] + (["{a}.mm({b})"] if a.ndim == 2 else [])
    return Candidate(fill(b.choice(options), a=a.name, b=name), [a, b.var(name)])


def composite(b: Builder) -> Candidate | None:
    a = b.floats()
    if a is None:
        return None
    d = dim_of(b, a)
    kind = b.choice(["softmax", "softmax", "log_softmax", "layer_norm", "cross_entropy", "loss", "normalize",
                     "cumsum", "misc"])
    if kind == "softmax":
        template = b.choice(["F.softmax({a}, {d})", "{a}.softmax({d})", "FF.softmax({a}, {d})", "F.softmin({a}, {d})"])
        return Candidate(fill(template, a=a.name, d=d), [a])
    if kind == "log_softmax":
        template = b.choice(["F.log_softmax({a}, dim={d})", "jitorch.log_softmax({a}, {d})", "{a}.log_softmax({d})"])
        return Candidate(fill(template, a=a.name, d=d), [a])
    if kind == "layer_norm" and a.ndim >= 1:
        k = b.integer(1, min(2, a.ndim))
        shape = a.shape[a.ndim - k:]
        if math.prod(shape) < 2:
            return None
        values = a.values.astype(np.float64)
        spread = values.reshape(-1, math.prod(shape)).var(axis=1) if values.size else np.ones(1)
        if spread.min() < 0.05:
            return None
        if b.chance(0.5):
            weight, bias = b.new_input(shape, low=0.5, high=1.5), b.new_input(shape, low=-0.5, high=0.5)
            return Candidate(fill("F.layer_norm({a}, {s}, {w}, {c})", a=a.name, s=shape, w=weight, c=bias),
                             [a, b.input_var(weight), b.input_var(bias)])
        return Candidate(fill(b.choice(["F.layer_norm({a}, {s})", "FF.layer_norm({a}, {s}, eps=1e-3)"]), a=a.name,
                              s=shape), [a])
    if kind == "cross_entropy" and 1 <= a.ndim <= 3 and all(a.shape):
        classes = a.shape[0 if a.ndim == 1 else 1]
        target_shape = () if a.ndim == 1 else (a.shape[0], *a.shape[2:])
        options = ", reduction='%s'" % b.choice(["mean", "sum", "none"]) if b.chance(0.5) else ""
        if b.chance(0.3):
            options += ", label_smoothing=0.1"
        if b.chance(0.25):
            probabilities = b.partner(a, same_shape=True)
            class_dim = 0 if a.ndim == 1 else 1
            return Candidate(fill("F.cross_entropy({a}, {p}.softmax(%d)%s)" % (class_dim, options), a=a.name,
                                  p=probabilities), [a, b.var(probabilities)])
        target = b.new_input(target_shape, "index", low=0, high=classes)
        return Candidate(fill("F.cross_entropy({a}, {t}%s)" % options, a=a.name, t=target), [a, b.input_var(target)])
    if kind == "loss":
        other = b.var(b.partner(a, same_shape=True))
        template = b.choice(["F.mse_loss({a}, {b})", "F.mse_loss({a}, {b}, reduction='none')",
                             "F.smooth_l1_loss({a}, {b})", "F.binary_cross_entropy_with_logits({a}, {b}.sigmoid())"])
        return Candidate(fill(template, a=a.name, b=other.name), [a, other])
    if kind == "normalize" and a.ndim >= 1:
        values = a.values.astype(np.float64)
        norms = np.sqrt((values ** 2).sum(axis=d)) if values.size else np.ones(1)
        if norms.size and norms.min() < 0.1:
            return None
        return Candidate(fill("F.normalize({a}, dim={d})", a=a.name, d=d), [a])
    if kind == "cumsum":
        return Candidate(fill(b.choice(["{a}.cumsum({d})", "jitorch.cumsum({a}, {d})"]), a=a.name, d=d), [a])
    options = ["F.dropout({a}, p=0.3, training=False)", "jitorch.zeros_like({a})", "jitorch.ones_like({a}) * {a}",
               "{a}.new_full({s}, 1.5) + {a}", "jitorch.full({s}, 0.5, dtype=f32) * {a}"]
    if a.ndim >= 1:
        last = a.shape[-1]
        options += ["{a} + jitorch.arange(%d, dtype=f32)" % last,
                    "{a} * jitorch.linspace(0.0, 1.0, %d, dtype=f32)" % last]
        if a.ndim >= 2:
            options.append("jitorch.eye(%d, dtype=f32) @ {a}" % a.shape[-2])
        if last % 2 == 0 and last:
            options.append("F.glu({a}, -1)")
    return Candidate(fill(b.choice(options), a=a.name, s=a.shape), [a])


def conversion(b: Builder) -> Candidate | None:
    a = b.pick()
    if a is None:
        return None
    if a.dtype == "bool":
        return Candidate(fill(b.choice(["{a}.to(f32)", "{a}.to(i64)", "{a}.to(f64)"]), a=a.name), [a], exact=True)
    if not a.is_float:
        return Candidate(fill(b.choice(["{a}.to(f32)", "{a}.to(f64)", "{a}.to(bool_)", "{a}.to(i32)"]), a=a.name),
                         [a], exact=True)
    # a cast to int truncates: it jumps at every integer, so the values keep a margin from the nearest one
    # (1.9999999 is 1e-7 from a jump, though its truncation, 1, is far)
    template, points = b.choice([("{a}.to(f64)", None), ("{a}.to(f32)", None), ("{a}.double()", None),
                                  ("{a}.to(i64)", INTEGERS), ("{a}.long()", INTEGERS), ("{a}.to(i32)", INTEGERS),
                                  ("{a}.to(bool_)", kinks(0.0))])
    if points is not None and not robust(a, points):
        return None
    return Candidate(fill(template, a=a.name), [a], exact=True)


def value_read(b: Builder) -> Candidate | None:
    """Steps that read a value into Python: the compiled function must fall back to eager, correctly."""
    a = b.floats(lambda v: v.values.size > 0)
    if a is None or not robust(a, kinks(0.0)):
        return None
    template = b.choice(["{a}[{a} > 0]", "{a} * float({a}.abs().amax())", "{a}.masked_select({a} < 0)"])
    return Candidate(fill(template, a=a.name), [a], exact=True, reads_values=True)


def categories() -> list[tuple[Callable[[Builder], Candidate | None], float]]:
    """Every step proposal with its weight (the order is part of what a seed means: keep it)."""
    from .shape_steps import indexing, movement, writes
    return [(unary, 20), (binary, 22), (reduction, 10), (movement, 18), (indexing, 9), (writes, 5), (matmul, 6),
            (composite, 8), (conversion, 3), (value_read, 0.5)]
