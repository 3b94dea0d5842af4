"""Printing tensors the way PyTorch does: `tensor([[1., 2.],\\n        [3., 4.]])`."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from jitorch.ir import dtypes

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80


class _Formatter:
    """Chooses one element format for a whole tensor, as PyTorch's _Formatter does."""

    def __init__(self, values: np.ndarray) -> None:
        self.kind = "bool" if values.dtype == np.bool_ else "int" if values.dtype.kind in "iu" else "float"
        self.sci = False
        self.integral = True
        shown = values.ravel()
        if self.kind == "float":
            # PyTorch decides the format and the column width from the nonzero finite values only
            shown = shown[np.isfinite(shown) & (shown != 0)]
            if shown.size:
                self.integral = bool(np.all(shown == np.ceil(shown)))
                magnitude = np.abs(shown).astype(np.float64)
                high, low = magnitude.max(), magnitude.min()
                self.sci = high / low > 1000.0 or high > 1e8 or (not self.integral and low < 1e-4)
        self.width = max((len(self.raw(v)) for v in shown), default=1)

    def raw(self, value: Any) -> str:
        if self.kind == "bool":
            return "True" if value else "False"
        if self.kind == "int":
            return str(int(value))
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if self.sci:
            return f"{value:.{PRECISION}e}"
        if self.integral:
            return f"{value:.0f}."
        return f"{value:.{PRECISION}f}"

    def __call__(self, value: Any) -> str:
        return self.raw(value).rjust(self.width)


def _summary(values: np.ndarray) -> np.ndarray:
    """The elements shown when a tensor is summarized (the first and last EDGEITEMS of each dim)."""
    if values.ndim == 0:
        return values
    if values.shape[0] > 2 * EDGEITEMS:
        values = np.concatenate([values[:EDGEITEMS], values[-EDGEITEMS:]])
    return np.stack([_summary(v) for v in values]) if values.ndim > 1 else values


def _format(values: np.ndarray, fmt: _Formatter, indent: int, summarize: bool) -> str:
    """`values` (the whole tensor) in PyTorch's layout; with `summarize`, long dims show their edges only."""
    if values.ndim == 0:
        return fmt(values.item())
    cut = summarize and values.shape[0] > 2 * EDGEITEMS
    if values.ndim == 1:
        if cut:
            items = [fmt(v) for v in values[:EDGEITEMS]] + [" ..."] + [fmt(v) for v in values[-EDGEITEMS:]]
        else:
            items = [fmt(v) for v in values]
        per_line = max(1, (LINEWIDTH - indent) // (fmt.width + 2))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    if cut:
        rows = [_format(v, fmt, indent + 1, summarize) for v in values[:EDGEITEMS]] + ["..."] + \
            [_format(v, fmt, indent + 1, summarize) for v in values[-EDGEITEMS:]]
    else:
        rows = [_format(v, fmt, indent + 1, summarize) for v in values]
    separator = "," + "\n" * (values.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(rows) + "]"


def tensor_repr(t: Tensor) -> str:
    prefix = "tensor("
    suffixes = []
    default_dtype = dtypes.get_default_dtype()
    if t._data is None:
        body = "..."
        suffixes.append(f"size={tuple(t.shape)}")
        suffixes.append(f"dtype={t.dtype!r}")
    else:
        values = t._data
        summarize = values.size > THRESHOLD
        if values.size == 0:
            body = "[]"
            if values.ndim != 1:
                suffixes.append(f"size={tuple(values.shape)}")
        else:
            fmt = _Formatter(_summary(values) if summarize else values)
            body = _format(values, fmt, len(prefix), summarize)
        implicit = (default_dtype, dtypes.int64, dtypes.bool_)
        if t.dtype not in implicit or (values.size == 0 and t.dtype is not default_dtype):
            suffixes.append(f"dtype={t.dtype!r}")
    if t._grad_fn is not None:
        suffixes.append(f"grad_fn=<{t._grad_fn.name()}>")
    elif t._requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, len(prefix))


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    """`, dtype=...` after the values, on a new line where the last line would pass LINEWIDTH, as PyTorch does."""
    last_line = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > LINEWIDTH:
            text += ",\n" + " " * indent + suffix
            last_line = indent + len(suffix)
        else:
            text += ", " + suffix
            last_line += len(suffix) + 2
    return text + ")"
