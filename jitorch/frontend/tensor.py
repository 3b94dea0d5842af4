"""Tensor: numpy data (or only a shape, when symbolic) plus autograd state, and the one dispatch door.

Every op reaches `dispatch()` (through `Tensor._apply`): the registry's shape rule, then its numpy
implementation, then a tape node when gradients are wanted, then the active trace, if any. The
PyTorch-style methods come from `OpVocabulary`; this file adds what needs real data: construction,
attributes and `to`, autograd entry points, the in-place core (`_inplace`: memory, version counters,
history) and views sharing memory. Two mixins hold method families written on top of these: conversions
to Python and numpy values (`tensor_conversions.py`) and the in-place methods (`tensor_inplace.py`).
The device model is in `device.py`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from jitorch.frontend import autograd, autograd_engine, tracing
from jitorch.frontend.device import CPU, _check_device, device
from jitorch.frontend.tensor_conversions import ConversionMethods
from jitorch.frontend.tensor_inplace import InplaceMethods
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.ops import OPS
from jitorch.ir.types import Literal, TensorType, check_size
from jitorch.ir.vocabulary import OpVocabulary
from jitorch.ir.vocabulary_base import normalize_dim

# PyTorch's names of the element types, as its messages and type() strings spell them
_SCALAR_NAMES = {"float32": "Float", "float64": "Double", "int32": "Int", "int64": "Long", "bool": "Bool"}


class Size(tuple):
    """A tensor's shape: a tuple that prints like PyTorch's."""

    def __repr__(self) -> str:
        return f"jitorch.Size([{', '.join(map(str, self))}])"

    def numel(self) -> int:
        out = 1
        for s in self:
            out *= s
        return out


class VersionCounter:
    """Shared by a tensor and all its views: bumped by every in-place write to the memory."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0



class Tensor(OpVocabulary, ConversionMethods, InplaceMethods):
    __slots__ = ("_data", "shape", "dtype", "_requires_grad", "_grad_fn", "_grad", "_version", "_base",
                 "_view_chain", "_view_version", "_hooks", "__dict__", "__weakref__")
    __array_priority__ = 1000
    __array_ufunc__ = None  # numpy operators defer to ours: np.float32(2) * t is a Tensor

    # ---------------------------------------------------------------------------------------------
    # construction

    def __init__(self, data: Any = None, *, dtype: DType | None = None) -> None:
        from jitorch.frontend.creation import as_array
        arr = as_array([] if data is None else data, dtype)
        self._init(arr, dtypes.from_numpy(arr.dtype))

    def _init(self, data: np.ndarray | None, dtype: DType, shape: tuple[int, ...] | None = None) -> None:
        self._data = data
        self.shape = Size(data.shape if data is not None else shape)
        self.dtype = dtype
        self._requires_grad = False
        self._grad_fn = None
        self._grad = None
        self._version = VersionCounter()
        self._base = None
        self._view_chain = None
        self._view_version = 0  # for views: the memory's version their history describes
        self._hooks = None

    @classmethod
    def _wrap(cls, data: np.ndarray, dtype: DType | None) -> Tensor:
        """A new tensor owning (not copying) a numpy array."""
        t = object.__new__(Tensor)
        t._init(data, dtype if dtype is not None else dtypes.from_numpy(data.dtype))
        return t

    @classmethod
    def _symbolic(cls, shape: tuple[int, ...], dtype: DType) -> Tensor:
        """A tensor with a shape and dtype but no data: ops on it record without computing."""
        t = object.__new__(Tensor)
        t._init(None, dtype, tuple(shape))
        return t

    def _apply(self, name: str, *operands: Any, **attrs: Any) -> Tensor:
        return dispatch(name, operands, attrs)

    def _coerce(self, value: Any) -> Tensor:
        if isinstance(value, (list, tuple, np.ndarray)):
            from jitorch.frontend.creation import tensor
            return tensor(value)
        raise TypeError(f"unsupported operand type {type(value).__name__} for a Tensor op")

    @property
    def is_symbolic(self) -> bool:
        return self._data is None

    def _need_data(self, what: str) -> np.ndarray:
        if self._data is None:
            raise RuntimeError(f"{what}: a symbolic tensor ({TensorType(tuple(self.shape), self.dtype)}) has no data")
        tracing.value_read(self, what)
        return self._data

    # ---------------------------------------------------------------------------------------------
    # attributes and `to` (the shorthands and Python/numpy conversions are in tensor_conversions.py)

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[normalize_dim(dim, self.ndim)]

    def nelement(self) -> int:
        return self.numel()

    def element_size(self) -> int:
        return self.dtype.itemsize

    def stride(self, dim: int | None = None) -> Any:
        strides = tuple(s // self.dtype.itemsize for s in self._data.strides) if self._data is not None else ()
        return strides if dim is None else strides[normalize_dim(dim, self.ndim)]

    def is_contiguous(self) -> bool:
        return self._data is None or self._data.flags.c_contiguous

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def data_ptr(self) -> int:
        return 0 if self._data is None else self._data.ctypes.data

    @property
    def device(self) -> device:
        return CPU if self._data is not None else device("meta")

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def layout(self) -> str:
        return "strided"

    def type_name(self) -> str:
        return f"jitorch.{_SCALAR_NAMES[self.dtype.name]}Tensor"

    def type(self, dtype: Any = None) -> Any:
        return self.type_name() if dtype is None else self.to(dtypes.as_dtype(dtype))

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        dtype, copy = kwargs.get("dtype"), kwargs.get("copy", False)
        _check_device(kwargs.get("device"))
        for arg in args:
            if isinstance(arg, Tensor):
                dtype = arg.dtype
            elif isinstance(arg, (str, device)):
                _check_device(arg)
            elif arg is not None:
                dtype = dtypes.as_dtype(arg)
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
        if dtype is None or dtype is self.dtype:
            return self.clone() if copy else self
        return dispatch("cast", (self,), {"dtype": dtype})

    def __reduce_ex__(self, protocol: int) -> Any:
        # whole-module pickles (save(model) with weights_only=False) store the data and grad flag only
        return (_rebuild, (self._need_data("pickle"), self.dtype.name, self._requires_grad, type(self)))

    def __deepcopy__(self, memo: dict) -> Tensor:
        out = type(self).__new__(type(self))
        Tensor._init(out, None if self._data is None else self._data.copy(), self.dtype, tuple(self.shape))
        out._requires_grad = self._requires_grad
        if self._grad is not None:
            out._grad = self._grad.__deepcopy__(memo)
        out.__dict__.update({k: v for k, v in self.__dict__.items()})
        memo[id(self)] = out
        return out

    # ---------------------------------------------------------------------------------------------
    # autograd

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self._grad_fn is not None and not value:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        if value and not self.dtype.is_floating_point:
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients (got {self.dtype.name})")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def grad_fn(self) -> autograd.Node | None:
        autograd.refresh_view(self)
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def grad(self) -> Tensor | None:
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None and (tuple(value.shape) != tuple(self.shape) or value.dtype is not self.dtype):
            raise RuntimeError(f"assigned grad has data of a different type or size: expected "
                               f"{TensorType(tuple(self.shape), self.dtype)}, got "
                               f"{TensorType(tuple(value.shape), value.dtype)}")
        self._grad = value

    def retain_grad(self) -> None:
        if self._grad_fn is None:
            return
        import weakref
        self._grad_fn.retained = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        return self._grad_fn is not None and self._grad_fn.retained is not None

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._grad_fn is not None:
            self._grad_fn.register_prehook(hook)
            return _RemovableHook(self._grad_fn, hook)
        self._hooks = (self._hooks or []) + [hook]
        return _RemovableHook(self, hook)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False,
                 inputs: Any = None) -> None:
        autograd_engine.backward(self, gradient, retain_graph, create_graph, inputs)

    def detach(self) -> Tensor:
        """A tensor sharing memory and version counter with this one, cut off from autograd."""
        out = dispatch("detach", (self,), {})
        out._version = self._version
        return out

    def detach_(self) -> Tensor:
        self._grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> Tensor:
        if self._data is None:
            out = Tensor._symbolic(self.shape, self.dtype)
        else:
            out = Tensor._wrap(self._data, self.dtype)
        out._version = self._version
        return out

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data
        self.shape = Size(value.shape)
        self.dtype = value.dtype

    # ---------------------------------------------------------------------------------------------
    # copies and the in-place core (the in-place methods are in tensor_inplace.py)

    def clone(self, *, memory_format: Any = None) -> Tensor:
        return dispatch("cast", (self,), {"dtype": self.dtype})

    def contiguous(self, memory_format: Any = None) -> Tensor:
        return self if self.is_contiguous() else self.clone()

    def _check_inplace(self) -> None:
        if autograd.is_grad_enabled():
            if self._requires_grad and self._grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
            if self._base is not None and self._base._requires_grad and self._base._grad_fn is None:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")

    def _inplace(self, result: Any) -> Tensor:
        """Write `result` (same shape, cast to our dtype) into our memory and take over its history."""
        self._check_inplace()
        if not isinstance(result, Tensor):
            result = self.new_full(tuple(self.shape), result)
        if tuple(result.shape) != tuple(self.shape):
            try:
                result = result.expand(*self.shape)
            except RuntimeError:
                raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                                   f"{list(result.shape)}") from None
        if result.dtype is not self.dtype:
            if self.dtype.rank < result.dtype.rank and not (self.dtype.is_floating_point or result.dtype.is_bool):
                raise RuntimeError(f"result type {_SCALAR_NAMES[result.dtype.name]} can't be cast to the desired "
                                   f"output type {_SCALAR_NAMES[self.dtype.name]}")
            result = result.to(self.dtype)
        if result._grad_fn is not None and autograd.is_grad_enabled():
            autograd.keep_saved_values(self, result._grad_fn)
        if self._data is not None:
            try:
                np.copyto(self._data, result._data)
            except ValueError:
                raise RuntimeError("unsupported operation: more than one element of the written-to tensor "
                                   "refers to a single memory location. Please clone() the tensor before "
                                   "performing the operation.") from None
        self._version.value += 1
        tracing.inplace(self, result)
        if autograd.is_grad_enabled() and (result._requires_grad or self._requires_grad):
            base, source = self._base, autograd.edge(result)
            if base is not None:
                node = autograd.CopySlices(autograd.edge(base), source, self._view_chain, tuple(base.shape),
                                           base.dtype)
                base._grad_fn, base._requires_grad = node, True
            self._grad_fn, self._requires_grad = autograd.copy_node(source), True
        self._view_version = self._version.value
        return self

    def copy_(self, src: Any, non_blocking: bool = False) -> Tensor:
        if not isinstance(src, Tensor):
            src = self._coerce(np.asarray(src))
        return self._inplace(src.to(self.dtype))

    def fill_(self, value: Any) -> Tensor:
        return self._inplace(value.expand(*self.shape) if isinstance(value, Tensor) else
                             self.new_full(tuple(self.shape), value))

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        if mask.dtype is not dtypes.bool_:
            raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with dtype {mask.dtype.name}")
        if isinstance(value, Tensor):
            if value.ndim:
                raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                                   f"{value.ndim} dimension(s).")
            value = value.to(self.dtype)
        return mask.if_else(value, self).to(self.dtype)

    # ---------------------------------------------------------------------------------------------
    # views and indexing

    def view(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], DType):
            raise NotImplementedError("view(dtype) reinterprets bits, which jitorch does not support")
        out = self.reshape(*shape)
        copied = self._data is not None and not np.may_share_memory(out._data, self._data)
        if out is not self and copied and out.numel():
            raise RuntimeError(f"view size is not compatible with input tensor's size and stride (at least one "
                               f"dimension spans across two contiguous subspaces). Use .reshape(...) instead. "
                               f"(input shape {list(self.shape)}, view shape {list(out.shape)})")
        return out

    def __getitem__(self, index: Any) -> Tensor:
        from jitorch.frontend.indexing import getitem
        return getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        from jitorch.frontend.indexing import setitem
        setitem(self, index, value)

    def nonzero(self, *, as_tuple: bool = False) -> Any:
        found = np.nonzero(self._need_data("nonzero()"))
        if as_tuple:
            return tuple(Tensor._wrap(np.ascontiguousarray(i, dtype=np.int64), dtypes.int64) for i in found)
        return Tensor._wrap(np.stack(found, axis=1).astype(np.int64) if found else np.zeros((1, 0), np.int64),
                            dtypes.int64)

    def masked_select(self, mask: Tensor) -> Tensor:
        return self[mask.expand(*self.shape)] if tuple(mask.shape) != tuple(self.shape) else self[mask]

    # ---------------------------------------------------------------------------------------------
    # composites with their own home in functional.py

    def softmax(self, dim: int, dtype: DType | None = None) -> Tensor:
        from jitorch.frontend import functional
        return functional.softmax(self, dim, dtype=dtype)

    def log_softmax(self, dim: int, dtype: DType | None = None) -> Tensor:
        from jitorch.frontend import functional
        return functional.log_softmax(self, dim, dtype=dtype)

    def cumsum(self, dim: int, *, dtype: DType | None = None) -> Tensor:
        from jitorch.frontend import functional
        return functional.cumsum(self, dim, dtype=dtype)


def _install_inplace_unary() -> None:
    """`x.exp_()`, `x.relu_()`, ...: the out-of-place op written back into x."""
    Tensor.neg = Tensor.negative = OpVocabulary.__neg__  # type: ignore[attr-defined]
    for name in ("neg", "abs", "sign", "floor", "ceil", "round", "trunc", "relu", "exp", "expm1", "log", "log1p",
                 "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "erf", "reciprocal", "square"):
        method = getattr(Tensor, name)
        setattr(Tensor, name + "_", lambda self, _m=method: self._inplace(_m(self)))


_install_inplace_unary()


class _RemovableHook:
    def __init__(self, owner: Any, hook: Callable) -> None:
        self.owner, self.hook = owner, hook

    def remove(self) -> None:
        attr = "pre_hooks" if isinstance(self.owner, autograd.Node) else "_hooks"
        hooks = getattr(self.owner, attr) or []
        setattr(self.owner, attr, [h for h in hooks if h is not self.hook])


def _rebuild(data: np.ndarray, dtype_name: str, requires_grad: bool, cls: type) -> Tensor:
    out = cls.__new__(cls)
    Tensor._init(out, data, dtypes.BY_NAME[dtype_name])
    out._requires_grad = requires_grad
    return out


def replay_view(tensor: Tensor, chain: tuple) -> Tensor:
    """Apply a view's recorded (op, attrs) chain to another tensor of the base's shape."""
    for name, attrs in chain:
        tensor = dispatch(name, (tensor,), dict(attrs))
    return tensor


# ----------------------------------------------------------------------------------------------------
# the dispatch door


def dispatch(name: str, operands: tuple, attrs: dict) -> Tensor:
    """Apply primitive `name`: infer, compute, record on the tape, record in the trace."""
    op = OPS[name]
    out_type = op.infer(*operands, **attrs)
    arrays: list[Any] | None = []
    for o in operands:
        if type(o) is Literal:
            arrays.append(o.numpy_value())
        elif o._data is None:
            arrays = None
            break
        else:
            arrays.append(o._data)
    if arrays is None:
        out = Tensor._symbolic(out_type.shape, out_type.dtype)
    else:
        check_size(out_type, name, operands, view=op.view)
        data = op.eager(*arrays, **attrs)
        if type(data) is not np.ndarray:
            data = np.asarray(data)
        if data.dtype != out_type.dtype.numpy:
            data = data.astype(out_type.dtype.numpy)
        out = Tensor._wrap(data, out_type.dtype)
    if op.view:
        source = operands[0]
        out._version = source._version
        out._base = source._base if source._base is not None else source
        link = ((name, tuple(sorted(attrs.items()))),)
        out._view_chain = source._view_chain + link if source._view_chain is not None else link
        out._view_version = out._version.value
    # only floating-point results carry gradients (comparisons, argmax, casts to int cut the graph)
    if op.vjp is not None and autograd._mode.enabled and out_type.dtype.is_floating_point:
        for o in operands:
            if type(o) is not Literal and o._requires_grad:
                edges = [autograd.edge(v) for v in operands]
                out._grad_fn = autograd.OpNode(op, attrs, operands, out, edges)
                out._requires_grad = True
                break
    if tracing.STATE.recorder is not None:
        tracing.STATE.recorder.record(name, operands, attrs, out)
    return out
