"""einsum by alignment: each operand is permuted and unsqueezed onto one index order, multiplied with
broadcasting, and summed over the letters missing from the output. Simple and exact; a contraction of
two large operands is better written as a matmul."""
from __future__ import annotations

from typing import Any

from jitorch.frontend.tensor import Tensor


def _parse(equation: str, operands: tuple) -> tuple[list[str], str]:
    equation = equation.replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {len(terms)} terms in '{equation}' but {len(operands)} operands")
    for term, op in zip(terms, operands):
        if "." in term:
            raise NotImplementedError("einsum(): ellipsis ('...') is not supported")
        if len(term) != op.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in '{term}' does not match the number of "
                               f"dimensions ({op.ndim}) of the operand")
    if not _:
        counts: dict[str, int] = {}
        for letter in "".join(terms):
            counts[letter] = counts.get(letter, 0) + 1
        output = "".join(sorted(letter for letter, n in counts.items() if n == 1))
    return terms, output


def einsum(equation: str, *operands: Any) -> Tensor:
    terms, output = _parse(equation, operands)
    letters = list(output) + sorted({c for term in terms for c in term if c not in output})
    total = None
    for term, op in zip(terms, operands):
        if len(set(term)) != len(term):
            raise NotImplementedError(f"einsum(): repeated subscripts within one operand ('{term}')")
        present = [c for c in letters if c in term]
        aligned = op.permute(*[term.index(c) for c in present])
        shape = [aligned.shape[present.index(c)] if c in term else 1 for c in letters]
        aligned = aligned.reshape(*shape)
        total = aligned if total is None else total * aligned
    reduced = tuple(range(len(output), len(letters)))
    return total.sum(reduced, dtype=total.dtype) if reduced else total
