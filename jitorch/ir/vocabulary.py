"""The operator vocabulary shared by eager tensors and IR values.

`OpVocabulary` turns PyTorch-style calls (`a + 2`, `x.sum(dim=1)`, `x.transpose(0, 1)`, `a @ b`) into
primitive ops from the registry, doing the work the IR refuses to do implicitly: dtype promotion
(inserting `cast`), broadcasting (inserting `reshape` + `expand`), dim normalization, scalars as
`Literal`s. A subclass supplies `shape`, `dtype` and `_apply(op, *operands, **attrs)`: the frontend
Tensor computes with numpy and records autograd; an IR value emits a node into a graph. So the VJP
rules in `ops.py`, written with these methods, run unchanged in eager backward and in the autodiff pass.

The methods come in families, each a mixin over `VocabularyBase` (`vocabulary_base`, which also holds
the argument helpers re-exported here): `ElementwiseOps`, `ReductionOps` (with the matrix products) and
`MovementOps` (with the indexing primitives). The families call each other's methods through `self`;
`OpVocabulary`, which composes them, is the complete vocabulary.
"""
from __future__ import annotations

from jitorch.ir.vocabulary_base import (
    Scalar,
    VocabularyBase,
    broadcast_shapes,
    literal,
    normalize_dim,
    normalize_dims,
    shape_args,
)
from jitorch.ir.vocabulary_elementwise import ElementwiseOps
from jitorch.ir.vocabulary_movement import MovementOps
from jitorch.ir.vocabulary_reductions import ReductionOps, ValuesIndices

__all__ = ["ElementwiseOps", "MovementOps", "OpVocabulary", "ReductionOps", "Scalar", "ValuesIndices",
           "VocabularyBase", "broadcast_shapes", "literal", "normalize_dim", "normalize_dims", "shape_args"]


class OpVocabulary(ElementwiseOps, ReductionOps, MovementOps):
    """Mixin: PyTorch-style methods written in terms of `_apply` (see the module docstring)."""

    __slots__ = ()
