"""Steps that move values around: movement (permute, reshape, expand, slices, flip, cat, stack, ...), indexing
(gather, index_select, advanced indexing, masks, scatter_add, embedding) and writes (setitem, in-place ops,
an input written in place). See steps.py for what a step proposal is.
"""
from __future__ import annotations

import math

import numpy as np

from .generator import VAR_NAME, Builder, Candidate, Var
from .steps import dim_of, fill


# ----------------------------------------------------------------------------------------------------
# movement


def _factorizations(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _new_shape(b: Builder, numel: int) -> tuple[int, ...]:
    shape, rest = [], numel
    for _ in range(b.integer(0, 3)):
        d = b.choice(_factorizations(rest)) if rest else b.choice([0, 1])
        shape.append(d)
        rest = rest // d if d else rest
    shape.append(rest if numel else 0)
    if numel == 0:
        shape = [0] + [b.choice([1, 2]) for _ in range(b.integer(0, 2))]
    return tuple(shape)


def _basic_index(b: Builder, a: Var) -> str:
    parts = []
    for size in a.shape:
        options = [":", "1:", "::2", "1::2", ":-1", "-2:", "::3", None]
        if size:
            options += [str(b.integer(-size, size - 1))]
        choice = b.choice(options)
        parts.append(choice if choice is not None else "None, :")
        if b.chance(0.3):
            break
    if b.chance(0.2):
        parts.insert(b.integer(0, len(parts)), "...")
        while parts.count("...") > 1:
            parts.remove("...")
    return ", ".join(parts) or "..."


def movement(b: Builder) -> Candidate | None:
    a = b.pick()
    if a is None:
        return None
    n = a.ndim
    kind = b.choice(["permute", "reshape", "unsqueeze", "expand", "slice", "slice", "flip", "cat", "stack",
                     "narrow", "split", "repeat", "copy"])
    d = dim_of(b, a)
    if kind == "permute" and n >= 2:
        perm = [int(p) for p in b.rng.permutation(n)]
        options = ["{a}.permute(%s)" % ", ".join(map(str, perm)), "{a}.transpose(%d, %d)" % (d, dim_of(b, a)),
                   "{a}.mT", "{a}.movedim(%d, %d)" % (d, dim_of(b, a))] + (["{a}.T", "{a}.t()"] if n == 2 else [])
        template = b.choice(options)
    elif kind == "reshape":
        shape = _new_shape(b, math.prod(a.shape))
        written = list(shape)
        if written and all(written) and b.chance(0.3):
            written[b.integer(0, len(written) - 1)] = -1
        options = ["{a}.reshape(%s)" % ", ".join(map(str, written)) if written else "{a}.reshape(())",
                   "{a}.flatten()"]
        if n >= 2:
            options.append("{a}.flatten(%d)" % b.integer(0, n - 2))
        template = b.choice(options)
    elif kind == "unsqueeze":
        ones = [i for i, s in enumerate(a.shape) if s == 1]
        options = ["{a}.unsqueeze(%d)" % b.integer(-n - 1, n), "{a}[None]", "{a}.squeeze()"]
        if ones:
            options.append("{a}.squeeze(%d)" % b.choice(ones))
        template = b.choice(options)
    elif kind == "expand":
        target = [b.choice([2, 3, 4]) if s == 1 and b.chance(0.7) else s for s in a.shape]
        if b.chance(0.3) and n < 4:
            target = [b.choice([1, 2, 3])] + target
        if math.prod(target) > b.max_numel:
            return None
        written = [-1 if t == s and b.chance(0.3) else t for t, s in zip(target[len(target) - n:], a.shape)]
        written = target[:len(target) - n] + written
        template = b.choice(["{a}.expand(%s)" % ", ".join(map(str, written)) if written else "{a}.expand(())",
                             "{a}.broadcast_to(%s)" % (tuple(target),)])
    elif kind == "slice":
        template = "{a}[%s]" % _basic_index(b, a)
    elif kind == "flip" and n >= 1:
        dims = sorted({dim_of(b, a) % n for _ in range(b.integer(1, n))})
        template = b.choice(["{a}.flip(%s)" % ", ".join(map(str, dims)), "jitorch.flip({a}, %s)" % (tuple(dims),)])
    elif kind == "cat" and n >= 1:
        size = b.integer(0 if b.chance(0.1) else 1, 4)
        shape = list(a.shape)
        shape[d] = size
        if math.prod(shape) + math.prod(a.shape) > b.max_numel:
            return None
        kind_of = "float" if a.is_float else "mask" if a.dtype == "bool" else "int"
        other = b.new_input(tuple(shape), kind_of, dtype=a.dtype if kind_of != "mask" else "float32")
        template = b.choice(["jitorch.cat([{a}, %s], %d)" % (other, d), "jitorch.cat((%s, {a}), dim=%d)" % (other, d)])
        return Candidate(fill(template, a=a.name), [a, b.input_var(other)], exact=True)
    elif kind == "stack":
        other = b.partner(a, "float" if a.is_float else "mask" if a.dtype == "bool" else "int", same_shape=True)
        if math.prod(a.shape) * 2 > b.max_numel:
            return None
        dim = b.integer(-n - 1, n)
        return Candidate(fill("jitorch.stack([{a}, {b}], %d)" % dim, a=a.name, b=other), [a, b.var(other)],
                         exact=True)
    elif kind == "narrow" and n >= 1 and a.shape[d] >= 1:
        size = a.shape[d]
        start = b.integer(0, size - 1)
        options = ["{a}.narrow(%d, %d, %d)" % (d, start, b.integer(0, size - start)),
                   "{a}.select(%d, %d)" % (d, b.integer(-size, size - 1))]
        if size <= 16:  # unbind makes one tensor per index
            options.append("{a}.unbind(%d)[%d]" % (d, start))
        template = b.choice(options)
    elif kind == "split" and n >= 1 and a.shape[d] >= 2:
        size = a.shape[d]
        chunks = b.integer(2, min(size, 8))
        pieces = -(-size // -(-size // chunks))
        template = b.choice(["{a}.chunk(%d, %d)[%d]" % (chunks, d, b.integer(0, pieces - 1)),
                             "{a}.split(%d, %d)[0]" % (b.integer(1, size - 1), d)])
    elif kind == "repeat":
        reps = [b.choice([1, 1, 2, 3]) for _ in range(n + b.integer(0, 1))]
        if not reps or math.prod(reps) * math.prod(a.shape) > b.max_numel:
            return None
        template = "{a}.repeat(%s)" % ", ".join(map(str, reps))
    else:
        options = ["{a}.contiguous()", "{a}.clone()"] + (["{a}.tril()", "{a}.triu(1)", "jitorch.tril({a}, -1)"]
                                                         if n >= 2 else [])
        template = b.choice(options)
    return Candidate(fill(template, a=a.name), [a], exact=True)


# ----------------------------------------------------------------------------------------------------
# indexing


def _int_shape(b: Builder) -> tuple[int, ...]:
    return b.choice([(), (1,), (3,), (2, 2), (4,), (2, 3)])


def indexing(b: Builder) -> Candidate | None:
    a = b.pick(lambda v: v.ndim >= 1)
    if a is None:
        return None
    n, d = a.ndim, dim_of(b, a)
    size = a.shape[d]
    kind = b.choice(["gather", "index_select", "advanced", "advanced", "mask", "mask", "scatter", "embedding"])
    if kind == "gather" and size:
        shape = tuple(b.integer(1, s) if i != d % n and s else (b.integer(1, 4) if i == d % n else s)
                      for i, s in enumerate(a.shape))
        index = b.new_input(shape, "index", low=0, high=size)
        template = b.choice(["{a}.gather({d}, {i})", "jitorch.gather({a}, {d}, {i})"])
        return Candidate(fill(template, a=a.name, d=d, i=index), [a, b.input_var(index)], exact=True)
    if kind == "index_select" and size:
        index = b.new_input((b.integer(1, 5),), "index", low=0, high=size)
        template = b.choice(["{a}.index_select({d}, {i})", "jitorch.index_select({a}, {d}, {i})"])
        return Candidate(fill(template, a=a.name, d=d, i=index), [a, b.input_var(index)], exact=True)
    if kind == "advanced" and a.shape[0]:
        shape = _int_shape(b)
        first = b.new_input(shape, "index", low=-a.shape[0], high=a.shape[0])
        operands = [a, b.input_var(first)]
        if n >= 2 and a.shape[1] and b.chance(0.4):
            second = b.new_input(shape, "index", low=0, high=a.shape[1])
            operands.append(b.input_var(second))
            template = b.choice(["{a}[{i}, %s]" % second, "{a}[{i}, %s, ...]" % second])
        elif n >= 2 and a.shape[1] and b.chance(0.3):
            index = b.new_input(shape, "index", low=0, high=a.shape[1])
            return Candidate(fill("{a}[:, {i}]", a=a.name, i=index), [a, b.input_var(index)], exact=True)
        else:
            template = b.choice(["{a}[{i}]", "{a}[{i}, ...]"])
        return Candidate(fill(template, a=a.name, i=first), operands, exact=True)
    if kind == "mask":
        mask_shape = tuple(s if not b.chance(0.3) else 1 for s in a.shape)[b.integer(0, n):]
        mask = b.new_input(mask_shape, "mask") if b.chance(0.6) else None
        operands = [a]
        if mask is None:  # a computed condition
            found = b.pick(lambda v: v.dtype == "bool" and len(v.shape) <= n and _broadcasts_to(v.shape, a.shape))
            if found is None:
                return None
            mask = found.name
            operands.append(found)
        else:
            operands.append(b.input_var(mask))
        if not a.is_float:
            return Candidate(fill("{a}.masked_fill({m}, 1)", a=a.name, m=mask), operands, exact=True)
        other = b.var(b.partner(a))
        operands.append(other)
        template = b.choice(["{a}.masked_fill({m}, {s})", "jitorch.where({m}, {a}, {b})",
                             "jitorch.where({m}, {a}, {s})", "{a}.where({m}, {b})", "jitorch.where({m}, {s}, {a})"])
        return Candidate(fill(template, a=a.name, m=mask, s=b.scalar(), b=other.name), operands, exact=True)
    if kind == "scatter" and a.is_float and size:
        shape = tuple(b.integer(1, s) if s else s for s in a.shape)
        index = b.new_input(shape, "index", low=0, high=size)
        source = b.new_input(shape)
        return Candidate(fill("{a}.scatter_add({d}, {i}, {s})", a=a.name, d=d, i=index, s=source),
                         [a, b.input_var(index), b.input_var(source)])
    if kind == "embedding" and not a.is_float and a.dtype != "bool" and a.ndim <= 2:
        values = a.values
        if values.size and values.min() < 0:
            return None
        rows = int(values.max()) + 1 if values.size else 1
        weight = b.new_input((rows + b.integer(0, 2), b.integer(1, 4)))
        return Candidate(fill("F.embedding({a}, {w})", a=a.name, w=weight), [a, b.input_var(weight)], exact=True)
    return None


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def writes(b: Builder) -> Candidate | None:
    """setitem and in-place ops, on a clone or on an input that does not require grad."""
    a = b.floats(lambda v: v.ndim >= 1)
    if a is None:
        return None
    kind = b.choice(["setitem", "setitem", "inplace", "view_inplace", "index_put", "input"])
    if kind == "input":
        used = {name for step in b.steps for name in VAR_NAME.findall(step)}
        target = b.pick(lambda v: v.name.startswith("x") and v.is_float and v.name not in used)
        if target is None:
            return None
        other = b.var(b.partner(target)) if b.chance(0.5) else None
        if other is not None and not _broadcasts_to(other.shape, target.shape):
            return None
        template = b.choice(["{x}.mul_(%s)" % b.scalar(nonzero=True), "{x}.add_({o})" if other else "{x}.add_(1.5)",
                             "{x}.clamp_(-1.0, 1.0)" if target.exact else "{x}.mul_(0.5)"])
        operands = [target] + ([other] if other else [])
        return Candidate(fill(template, x=target.name, o=other.name if other else ""), operands,
                         mutates=target.name)
    out = "{out}"
    if kind == "setitem":
        index = _basic_index(b, a)
        with_value = b.choice(["scalar", "tensor"])
        if with_value == "scalar":
            code = f"{out} = {a.name}.clone(); {out}[{index}] = {b.scalar()}"
            return Candidate(code, [a], exact=a.exact)
        try:
            region = a.values[eval(f"np.s_[{index}]")].shape  # noqa: S307 - our own index text
        except Exception:  # noqa: BLE001
            return None
        value = b.new_input(b.related_shape(tuple(region))[-len(region):] if region else ())
        code = f"{out} = {a.name}.clone(); {out}[{index}] = {value}"
        return Candidate(code, [a, b.input_var(value)], exact=True)
    if kind == "inplace":
        other = b.var(b.partner(a))
        if not _broadcasts_to(other.shape, a.shape):
            return None
        op = b.choice([f"add_({other.name})", f"sub_({other.name}, alpha=0.5)", f"mul_({other.name})",
                       f"mul_({b.scalar()})", "sigmoid_()", "tanh_()"])
        return Candidate(f"{out} = {a.name}.clone(); {out}.{op}", [a, other])
    if kind == "view_inplace":
        index = _basic_index(b, a)
        op = b.choice([f"mul_({b.scalar()})", f"add_({b.scalar()})", "zero_()", f"fill_({b.scalar()})"])
        return Candidate(f"{out} = {a.name}.clone(); {out}[{index}].{op}", [a], exact="fill" in op or "zero" in op)
    if not a.shape[0]:
        return None
    # index_put with distinct indices (with repeated ones the last write wins: order is unspecified)
    count = b.integer(1, a.shape[0])
    rows = [int(r) for r in b.rng.permutation(a.shape[0])[:count]]
    index = b.new_input((count,), "index", value=np.array(rows, dtype=np.int64))
    value = b.scalar()
    return Candidate(f"{out} = {a.name}.clone(); {out}[{index}] = {value}", [a, b.input_var(index)], exact=a.exact)
