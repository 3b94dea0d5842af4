"""Templates over the OpInfo table: eager results and dtypes against numpy, and registry coverage."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opinfo import NUMPY_DTYPES, OPINFOS, OpInfo, record_dispatch

import jitorch as torch
from jitorch.ir.ops import OPS

# (rtol, atol) by result dtype; PyTorch's defaults for assert_close
TOLERANCE = {np.dtype(np.float32): (1.3e-6, 1e-5), np.dtype(np.float64): (1e-7, 1e-7)}

CASES = [pytest.param(info, dtype, id=f"{info.name}-{dtype}") for info in OPINFOS for dtype in info.dtypes]


def assert_matches(actual: Any, expected: Any, extra_atol: float, where: str) -> None:
    """`actual` (jitorch results) equals `expected` (numpy results): structure, dtype, shape, values."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), \
            f"{where}: expected {len(expected)} results, got {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_matches(a, e, extra_atol, f"{where} [result {i}]")
        return
    if isinstance(expected, np.dtype):
        assert NUMPY_DTYPES[actual] == expected, f"{where}: dtype {actual}, expected {expected}"
        return
    if not isinstance(expected, (np.ndarray, np.generic)):
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        return
    expected = np.asarray(expected)
    assert isinstance(actual, torch.Tensor), f"{where}: expected a tensor, got {type(actual).__name__}"
    assert NUMPY_DTYPES[actual.dtype] == expected.dtype, \
        f"{where}: result dtype {actual.dtype}, PyTorch gives {expected.dtype}"
    assert tuple(actual.shape) == expected.shape, f"{where}: shape {tuple(actual.shape)}, expected {expected.shape}"
    values = actual.detach().numpy()
    if expected.dtype.kind == "f":
        rtol, atol = TOLERANCE[expected.dtype]
        np.testing.assert_allclose(values, expected, rtol=rtol, atol=atol + extra_atol, err_msg=where)
    else:
        np.testing.assert_array_equal(values, expected, err_msg=where)


@pytest.mark.parametrize("info,dtype", CASES)
def test_eager_matches_numpy(info: OpInfo, dtype: str) -> None:
    for sample in info.sample_list(dtype):
        where = f"{info.name}({sample.describe()})"
        args, kwargs = sample.tensor_args()
        inputs = [(a, t) for a, t in zip(sample.arg_list(), _tensors(args, kwargs))]
        actual = info.op(*args, **kwargs)
        expected = info.ref(*sample.numpy_args()[0], **sample.numpy_args()[1])
        assert_matches(actual, expected, info.atol, where)
        for arg, tensor in inputs:  # out-of-place ops leave their inputs alone
            np.testing.assert_array_equal(tensor.numpy(), arg.value, err_msg=f"{where} modified an input")


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
    walk(args)
    walk(kwargs)
    return found


@pytest.mark.parametrize("info", OPINFOS, ids=[i.name for i in OPINFOS])
def test_layouts_are_what_samples_claim(info: OpInfo) -> None:
    """Transposed and strided samples really reach the op as non-contiguous tensors."""
    for dtype in info.dtypes:
        for sample in info.sample_list(dtype):
            for arg in sample.arg_list():
                tensor = arg.arrange(torch.tensor(arg.storage()))
                np.testing.assert_array_equal(tensor.numpy(), arg.value)
                shape = arg.value.shape
                if 0 in shape or (arg.layout == "transposed" and sum(s > 1 for s in shape) < 2) or \
                        (arg.layout == "strided" and shape[0] < 2):
                    continue  # size-1 and empty dims make any layout contiguous
                if arg.layout != "contiguous":
                    assert not tensor.is_contiguous(), f"{info.name}: {arg.describe()} is contiguous"


@pytest.mark.parametrize("info", [i for i in OPINFOS if not i.aliases], ids=[i.name for i in OPINFOS if not i.aliases])
def test_results_own_their_memory(info: OpInfo) -> None:
    """Only views share memory with their input: `y = x.round(); y += 1` must leave x alone."""
    for dtype in info.dtypes:
        for sample in info.sample_list(dtype):
            args, kwargs = sample.tensor_args()
            inputs = [t for t in _tensors(args, kwargs) if t.numel()]
            outputs = info.op(*args, **kwargs)
            for out in outputs if isinstance(outputs, (tuple, list)) else (outputs,):
                if isinstance(out, torch.Tensor) and out.numel():
                    assert not any(np.shares_memory(out.numpy(), t.numpy()) for t in inputs), \
                        f"{info.name}({sample.describe()}) returned memory of an input"


def _backward(outputs: Any) -> None:
    flat = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    total = None
    for out in flat:
        if isinstance(out, torch.Tensor) and out.requires_grad:
            total = out.sum() if total is None else total + out.sum()
    if total is not None:
        total.backward()


@pytest.mark.parametrize("info", OPINFOS, ids=[i.name for i in OPINFOS])
def test_entry_dispatches_its_primitives(info: OpInfo) -> None:
    """Each entry's samples dispatch every registry op it lists (forward, and backward when differentiable)."""
    with record_dispatch() as seen:
        for dtype in info.dtypes:
            for sample in info.sample_list(dtype):
                if info.differentiable and dtype == "float64":
                    leaves, fn = sample.grad_function(info.op)
                    _backward(fn(*leaves))
                else:
                    args, kwargs = sample.tensor_args()
                    info.op(*args, **kwargs)
    missing = [p for p in info.primitives if p not in seen]
    assert not missing, f"{info.name} lists {missing} but its samples dispatch only {sorted(set(seen))}"


def test_every_registry_op_has_an_entry() -> None:
    covered = {p for info in OPINFOS for p in info.primitives}
    unknown = sorted(covered - set(OPS))
    assert not unknown, f"OpInfo entries list ops the registry does not have: {unknown}"
    uncovered = sorted(set(OPS) - covered)
    assert not uncovered, f"registry ops exercised by no OpInfo entry: {uncovered}"


def test_entry_names_are_unique() -> None:
    names = [info.name for info in OPINFOS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_record_dispatch_sees_creation_and_method_calls() -> None:
    with record_dispatch() as seen:
        x = torch.zeros(2, 3)
        (x + 1).sum()
    assert seen == ["full", "add", "sum", "reshape"]
