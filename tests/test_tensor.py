"""The Tensor as a user sees it: views and memory sharing, dtype promotion, printing, creation,
conversions, in-place ops and `x[i] = v`, and the errors bad input raises."""
from __future__ import annotations

import numpy as np
import pytest
from opinfo import record_dispatch

import jitorch as torch
from jitorch.ir.ops import OPS


def _arange(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.arange(int(np.prod(shape)), dtype=dtype).reshape(*shape)


# ----------------------------------------------------------------------------------------------------
# views share memory exactly where PyTorch's do

VIEWS = {
    "view": lambda x: x.view(4, 6), "reshape": lambda x: x.reshape(2, 12), "flatten": lambda x: x.flatten(),
    "view_as": lambda x: x.view_as(torch.zeros(24)), "unflatten": lambda x: x.unflatten(1, (2, 3)),
    "slice": lambda x: x[1:3, ::2], "int index": lambda x: x[2], "negative index": lambda x: x[-1, 1:],
    "None": lambda x: x[None, :, 1], "ellipsis": lambda x: x[..., 0], "transpose": lambda x: x.transpose(0, 1),
    "t": lambda x: x.t(), "T": lambda x: x.T, "permute": lambda x: x.permute(1, 0),
    "expand": lambda x: x[:1].expand(3, 6), "squeeze": lambda x: x[:1].squeeze(0),
    "unsqueeze": lambda x: x.unsqueeze(1),
    "detach": lambda x: x.detach(), "narrow": lambda x: x.narrow(1, 2, 3), "select": lambda x: x.select(1, 4),
    "split": lambda x: x.split(2)[1], "chunk": lambda x: x.chunk(3, dim=1)[2], "unbind": lambda x: x.unbind(0)[3],
    "movedim": lambda x: x.movedim(0, 1), "contiguous (already)": lambda x: x.contiguous(),
    "to (same dtype)": lambda x: x.to(torch.float32), "data": lambda x: x.data,
}
COPIES = {
    "reshape of a transpose": lambda x: x.t().reshape(-1), "flip": lambda x: x.flip(0), "clone": lambda x: x.clone(),
    "contiguous of a transpose": lambda x: x.t().contiguous(),
    "integer tensor index": lambda x: x[torch.tensor([0, 2])],
    "list index": lambda x: x[[1, 1]], "mask": lambda x: x[x > 3], "to (other dtype)": lambda x: x.to(torch.float64),
    "arithmetic": lambda x: x + 0, "repeat": lambda x: x[:1].repeat(2, 1), "cat of one": lambda x: torch.cat([x]),
    "gather": lambda x: x.gather(1, torch.zeros(4, 2, dtype=torch.int64)),
    "flatten of a transpose": lambda x: x.T.flatten(),
}


@pytest.mark.parametrize("make", VIEWS.values(), ids=VIEWS.keys())
def test_views_share_memory_with_their_base(make) -> None:
    base = _arange(4, 6)
    view = make(base)
    expected = make(_arange(4, 6) + 100).numpy().copy()
    base.add_(100)  # writes to the base show through the view
    np.testing.assert_array_equal(view.numpy(), expected)
    if view.stride() and 0 in view.stride():
        return  # an expanded view cannot be written: several elements share memory
    view.mul_(-1)  # writes through the view show in the base
    assert np.array_equal(make(base).numpy(), -expected)


@pytest.mark.parametrize("make", COPIES.values(), ids=COPIES.keys())
def test_copies_do_not_share_memory(make) -> None:
    base = _arange(4, 6)
    out = make(base)
    before = out.numpy().copy()
    base.add_(100)
    np.testing.assert_array_equal(out.numpy(), before)
    out.fill_(-1)
    np.testing.assert_array_equal(base.numpy(), _arange(4, 6).numpy() + 100)


def test_view_of_a_non_contiguous_tensor_fails_and_reshape_copies() -> None:
    x = _arange(3, 4).t()
    assert not x.is_contiguous() and x.stride() == (1, 4)
    with pytest.raises(RuntimeError, match="view size is not compatible with input tensor's size and stride"):
        x.view(12)
    y = x.reshape(12)
    assert y.is_contiguous()
    np.testing.assert_array_equal(y.numpy(), np.arange(12.0).reshape(3, 4).T.ravel())


def test_writing_through_nested_views_and_setitem_on_views() -> None:
    x = torch.zeros(3, 4)
    row = x[1]
    row[::2] = torch.tensor([1.0, 2.0])
    x.t()[3, 2] = 7.0
    np.testing.assert_array_equal(x.numpy(), [[0, 0, 0, 0], [1, 0, 2, 0], [0, 0, 0, 7]])
    assert row.tolist() == [1.0, 0.0, 2.0, 0.0]


def test_numpy_and_from_numpy_share_memory() -> None:
    array = np.zeros(3, dtype=np.float32)
    t = torch.from_numpy(array)
    array[0] = 5
    t[1] = 6
    assert t.tolist() == [5.0, 6.0, 0.0] and array.tolist() == [5.0, 6.0, 0.0]
    n = t.numpy()
    n[2] = 7
    assert t[2].item() == 7.0
    assert torch.as_tensor(array).numpy() is array or np.shares_memory(torch.as_tensor(array).numpy(), array)
    assert not np.shares_memory(torch.as_tensor(array, dtype=torch.float64).numpy(), array)
    assert not np.shares_memory(torch.tensor(array).numpy(), array)
    with pytest.raises(TypeError):
        torch.from_numpy(np.zeros(2, dtype=np.complex64))


# ----------------------------------------------------------------------------------------------------
# dtype promotion

T = torch.tensor
F32, F64, I32, I64, B = torch.float32, torch.float64, torch.int32, torch.int64, torch.bool
PROMOTION = [
    # tensor with tensor
    (T([1], dtype=I32), T([1], dtype=I64), I64), (T([1], dtype=I32), T([1.0]), F32), (T([True]), T([True]), B),
    (T([True]), T([1], dtype=I32), I32), (T([1]), T([1.0]), F32), (T([1.0]), T([1.0], dtype=F64), F64),
    (T([1], dtype=I64), T([1.0], dtype=F64), F64),
    # tensor with Python scalar: the scalar counts only when its category is higher
    (T([1], dtype=I32), 2, I32), (T([1], dtype=I32), 2.5, F32), (T([True]), 2, I64), (T([True]), 2.5, F32),
    (T([1.0], dtype=F64), 2.5, F64), (T([1.0]), True, F32), (T([1], dtype=I32), True, I32), (T([True]), False, B),
    # 0-d tensors rank below tensors with dims, above Python scalars
    (T([1], dtype=I32), T(1, dtype=I64), I32), (T([1], dtype=I32), T(1.0, dtype=F64), F64),
    (T([1.0]), T(1.0, dtype=F64), F32), (T(1, dtype=I64), T(1.0, dtype=F64), F64), (T(1, dtype=I32), 2.5, F32),
    (T(1, dtype=I32), T([1], dtype=I64), I64), (T(True), T([1], dtype=I32), I32),
]


@pytest.mark.parametrize("a,b,expected", PROMOTION)
def test_promotion(a, b, expected) -> None:
    assert (a + b).dtype is expected
    assert (b + a).dtype is expected
    assert (a * b).dtype is expected
    assert (a == b).dtype is torch.bool


def test_promotion_of_division_reductions_and_where() -> None:
    i = torch.tensor([3, 4], dtype=torch.int32)
    assert (i / i).dtype is torch.float32 and (i / 2).dtype is torch.float32
    assert (torch.tensor([True]) / torch.tensor([True])).dtype is torch.float32
    assert (i // 2).dtype is torch.int32 and (i % 3).dtype is torch.int32
    assert i.sum().dtype is torch.int64 and torch.tensor([True, True]).sum().dtype is torch.int64
    assert i.prod().dtype is torch.int64 and i.cumsum(0).dtype is torch.int64
    assert i.exp().dtype is torch.float32 and i.sqrt().dtype is torch.float32
    assert torch.where(i > 3, i, 0.5).dtype is torch.float32
    assert torch.where(i > 3, i, 1).dtype is torch.int32
    assert torch.cat([i, torch.tensor([1.0], dtype=torch.float64)]).dtype is torch.float64
    assert torch.promote_types(torch.int64, torch.float32) is torch.float32
    assert torch.promote_types(torch.bool, torch.int32) is torch.int32


def test_default_dtype_decides_python_floats() -> None:
    torch.set_default_dtype(torch.float64)
    try:
        assert torch.tensor([1.5]).dtype is torch.float64
        assert (torch.tensor([1], dtype=torch.int32) * 2.5).dtype is torch.float64
        assert torch.zeros(2).dtype is torch.float64 and torch.arange(2.0).dtype is torch.float64
        assert repr(torch.tensor([1.5])) == "tensor([1.5000])"
        assert repr(torch.tensor([1.5], dtype=torch.float32)) == "tensor([1.5000], dtype=jitorch.float32)"
    finally:
        torch.set_default_dtype(torch.float32)
    with pytest.raises(TypeError):
        torch.set_default_dtype(torch.int64)


# ----------------------------------------------------------------------------------------------------
# printing, as PyTorch prints (dtypes as jitorch.*)

NAN, INF = float("nan"), float("inf")
REPRS = [
    (lambda: T([[1.0, 2.0], [3.0, 4.0]]), "tensor([[1., 2.],\n        [3., 4.]])"),
    (lambda: T([1.5, 2.25], dtype=F64), "tensor([1.5000, 2.2500], dtype=jitorch.float64)"),
    (lambda: T(3.0), "tensor(3.)"),
    (lambda: T(-0.5), "tensor(-0.5000)"),
    (lambda: T(5), "tensor(5)"),
    (lambda: T(True), "tensor(True)"),
    (lambda: T([1, 2, 3]), "tensor([1, 2, 3])"),
    (lambda: T([1, -20], dtype=I32), "tensor([  1, -20], dtype=jitorch.int32)"),
    (lambda: T([True, False]), "tensor([ True, False])"),
    (lambda: torch.zeros(0, 3), "tensor([], size=(0, 3))"),
    (lambda: torch.zeros(0), "tensor([])"),
    (lambda: torch.zeros(0, dtype=I64), "tensor([], dtype=jitorch.int64)"),
    (lambda: torch.zeros(2, 0, dtype=F64), "tensor([], size=(2, 0), dtype=jitorch.float64)"),
    (lambda: T([1e-5, 1e5]), "tensor([1.0000e-05, 1.0000e+05])"),
    (lambda: T([1.0, 1e9]), "tensor([1.0000e+00, 1.0000e+09])"),
    (lambda: T([100.0, 1000.5]), "tensor([ 100.0000, 1000.5000])"),
    (lambda: T([-1.5, 2.0]), "tensor([-1.5000,  2.0000])"),
    (lambda: T([0.0, 10.0]), "tensor([ 0., 10.])"),
    (lambda: T([1.0, INF]), "tensor([1., inf])"),
    (lambda: T([0.5, NAN]), "tensor([0.5000,    nan])"),
    (lambda: T([NAN, INF, -INF]), "tensor([nan, inf, -inf])"),
    (lambda: T([0.0, 0.0]), "tensor([0., 0.])"),
    (lambda: _arange(2, 2, 2, dtype=I64),
     "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])"),
    (lambda: torch.arange(30), ("tensor([ 0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16, 17,\n"
                                "        18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29])")),
    (lambda: torch.arange(14, dtype=F64),
     ("tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.],\n"
      "       dtype=jitorch.float64)")),
    (lambda: torch.arange(2000), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])"),
    (lambda: torch.arange(2000.0), ("tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
                                   "        1.9990e+03])")),
    (lambda: torch.ones(1001, 2), ("tensor([[1., 1.],\n        [1., 1.],\n        [1., 1.],\n        ...,\n"
                                  "        [1., 1.],\n        [1., 1.],\n        [1., 1.]])")),
    (lambda: torch.ones(40, 40), "\n".join(["tensor([[1., 1., 1.,  ..., 1., 1., 1.],"]
                                           + ["        [1., 1., 1.,  ..., 1., 1., 1.],"] * 2 + ["        ...,"]
                                           + ["        [1., 1., 1.,  ..., 1., 1., 1.],"] * 2
                                           + ["        [1., 1., 1.,  ..., 1., 1., 1.]])"])),
    (lambda: T([1.0, 2.0], requires_grad=True), "tensor([1., 2.], requires_grad=True)"),
    (lambda: T([1.0, 2.0], dtype=F64, requires_grad=True),
     "tensor([1., 2.], dtype=jitorch.float64, requires_grad=True)"),
    (lambda: T([1.0, 2.0], requires_grad=True) * 2, "tensor([2., 4.], grad_fn=<MulBackward0>)"),
    (lambda: T([1.0, 2.0], requires_grad=True).exp(), "tensor([2.7183, 7.3891], grad_fn=<ExpBackward0>)"),
]


@pytest.mark.parametrize("make,expected", REPRS, ids=[e.split("\n")[0][:40] for _, e in REPRS])
def test_repr_matches_pytorch(make, expected: str) -> None:
    t = make()
    assert repr(t) == expected
    assert str(t) == expected


def test_repr_of_sizes_dtypes_and_devices() -> None:
    assert repr(torch.zeros(2, 3).shape) == "jitorch.Size([2, 3])"
    assert torch.zeros(2, 3).size() == (2, 3) and torch.zeros(2, 3).size(-1) == 3
    assert repr(torch.float32) == "jitorch.float32" and repr(torch.int64) == "jitorch.int64"
    assert repr(torch.zeros(1).device) == "device(type='cpu')" and str(torch.zeros(1).device) == "cpu"
    assert f"{torch.tensor(2.5):.2f}" == "2.50"


# ----------------------------------------------------------------------------------------------------
# creation


def test_tensor_infers_pytorch_dtypes() -> None:
    assert T([1, 2]).dtype is torch.int64 and T([1.0, 2]).dtype is torch.float32
    assert T([True, False]).dtype is torch.bool and T([[1, 2], [3, 4.5]]).dtype is torch.float32
    assert T(np.array([1, 2], dtype=np.int32)).dtype is torch.int32 and T([]).dtype is torch.float32
    assert T(np.float64(2.0)).dtype is torch.float64 and T([T(1.0), T(2.0)]).tolist() == [1.0, 2.0]
    assert T([1, 2], dtype=torch.float64).dtype is torch.float64
    x = T([1.0])
    assert T(x) is not x and not np.shares_memory(T(x).numpy(), x.numpy())
    with pytest.raises(ValueError):
        T([[1, 2], [3]])


@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([2, 3],), (torch.Size([2, 3]),)],
                         ids=["args", "tuple", "list", "Size"])
def test_filled_creation_functions(size) -> None:
    for fn, value in ((torch.zeros, 0.0), (torch.ones, 1.0)):
        t = fn(*size)
        assert t.shape == (2, 3) and t.dtype is torch.float32 and np.all(t.numpy() == value)
        assert fn(*size, dtype=torch.int32).dtype is torch.int32
    assert torch.empty(*size).shape == (2, 3)
    assert torch.zeros(()).shape == () and torch.zeros(0).shape == (0,)


def test_full_and_like_functions() -> None:
    assert torch.full((2,), 3).dtype is torch.int64 and torch.full((2,), 2.5).dtype is torch.float32
    assert torch.full((2,), True).dtype is torch.bool and torch.full((2, 2), 7.0).tolist() == [[7.0, 7.0]] * 2
    x = T([[1, 2]], dtype=torch.int32)
    for fn, value in ((torch.zeros_like, 0), (torch.ones_like, 1), (lambda t: torch.full_like(t, 5), 5)):
        y = fn(x)
        assert y.dtype is torch.int32 and y.shape == (1, 2) and y.tolist() == [[value, value]]
    assert torch.empty_like(x).shape == (1, 2)
    assert torch.zeros_like(x, dtype=torch.float64).dtype is torch.float64
    assert torch.ones_like(T([1.0]), requires_grad=True).requires_grad


def test_ranges_and_eye() -> None:
    assert torch.arange(5).tolist() == [0, 1, 2, 3, 4] and torch.arange(5).dtype is torch.int64
    assert torch.arange(1, 4, 0.5).dtype is torch.float32 and torch.arange(1, 4, 0.5).shape == (6,)
    assert torch.arange(5, 0, -2).tolist() == [5, 3, 1] and torch.arange(3, dtype=torch.float64).dtype is torch.float64
    assert torch.arange(0).shape == (0,)
    np.testing.assert_allclose(torch.linspace(0, 1, 5).numpy(), [0, 0.25, 0.5, 0.75, 1])
    assert torch.linspace(2, 3, 1).tolist() == [2.0]
    np.testing.assert_array_equal(torch.eye(2, 3).numpy(), np.eye(2, 3))
    assert torch.eye(3, dtype=torch.int32).dtype is torch.int32
    with pytest.raises(RuntimeError):
        torch.arange(0, 5, 0)
    with pytest.raises(RuntimeError):
        torch.arange(5, 0, 1)


def test_random_functions_shapes_dtypes_and_ranges() -> None:
    torch.manual_seed(0)
    assert torch.rand(2, 3).shape == (2, 3) and torch.rand(2, dtype=torch.float64).dtype is torch.float64
    assert torch.randn((4,)).shape == (4,) and torch.randn(3).dtype is torch.float32
    r = torch.randint(3, 7, (1000,))
    assert r.dtype is torch.int64 and r.min().item() == 3 and r.max().item() == 6
    assert torch.randint(5, (2, 2), dtype=torch.int32).dtype is torch.int32
    p = torch.randperm(8)
    assert p.dtype is torch.int64 and sorted(p.tolist()) == list(range(8))
    x = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.rand_like(x).dtype is torch.float64 and torch.randn_like(x).shape == (2, 5)
    assert torch.rand(3, requires_grad=True).requires_grad
    with pytest.raises((TypeError, RuntimeError)):
        torch.rand(2, dtype=torch.int64)


def test_manual_seed_gives_reproducible_streams() -> None:
    torch.manual_seed(123)
    first = (torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,)), torch.randperm(6))
    torch.manual_seed(123)
    again = (torch.rand(5), torch.randn(3), torch.randint(0, 100, (4,)), torch.randperm(6))
    for a, b in zip(first, again):
        assert a.tolist() == b.tolist()
    torch.manual_seed(124)
    assert torch.rand(5).tolist() != first[0].tolist()
    assert torch.rand(5).tolist() != torch.rand(5).tolist()  # the stream moves on
    g = torch.Generator().manual_seed(7)
    a = torch.rand(4, generator=g)
    assert torch.rand(4, generator=torch.Generator().manual_seed(7)).tolist() == a.tolist()
    assert torch.initial_seed() == 124


def test_dtype_and_device_keywords() -> None:
    assert torch.zeros(2, dtype=torch.float64, device="cpu").dtype is torch.float64
    assert torch.ones(2, device=torch.device("cpu")).device == "cpu"
    assert T([1.0], device="cpu").to("cpu").device.type == "cpu"
    assert not torch.cuda.is_available() and torch.cuda.device_count() == 0
    for make in (lambda: torch.zeros(2, device="cuda"), lambda: T([1.0], device="cuda:0"),
                 lambda: torch.ones(2).to("cuda"), lambda: torch.ones(2).cuda(), lambda: torch.rand(2, device="cuda")):
        with pytest.raises(RuntimeError, match="cuda.*jitorch runs on the CPU only"):
            make()


# ----------------------------------------------------------------------------------------------------
# conversions


def test_to_and_type_conversions() -> None:
    x = T([1.7, -2.2])
    assert x.to(torch.float64).dtype is torch.float64 and x.to(dtype=torch.int32).tolist() == [1, -2]
    assert x.to(T([1], dtype=torch.int64)).dtype is torch.int64
    assert x.to("cpu", torch.float64).dtype is torch.float64 and x.to(torch.device("cpu")) is x
    assert x.to(torch.float32) is x and x.float() is x
    assert x.double().dtype is torch.float64 and x.long().tolist() == [1, -2] and x.int().dtype is torch.int32
    assert x.bool().tolist() == [True, True] and T([0.0]).bool().tolist() == [False]
    assert x.type_as(T([1], dtype=torch.int32)).dtype is torch.int32
    assert x.to(torch.float32, copy=True) is not x
    assert x.is_floating_point() and not x.long().is_floating_point()


def test_numpy_tolist_item_and_python_numbers() -> None:
    x = T([[1.5, 2.0], [3.0, 4.0]])
    assert x.tolist() == [[1.5, 2.0], [3.0, 4.0]] and isinstance(x.tolist()[0][0], float)
    assert T([1, 2]).tolist() == [1, 2] and isinstance(T([1]).tolist()[0], int)
    assert T([True]).tolist() == [True] and T(2.5).tolist() == 2.5
    assert T(2.5).item() == 2.5 and T([[7]]).item() == 7 and isinstance(T(True).item(), bool)
    assert float(T(2.5)) == 2.5 and int(T(3.9)) == 3 and bool(T([1.0])) and not bool(T(0))
    assert [0, 1, 2][T(1)] == 1
    with pytest.raises(RuntimeError, match="a Tensor with 4 elements cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="Boolean value of Tensor with more than one value is ambiguous"):
        bool(x)
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        T([1.0], requires_grad=True).numpy()
    assert T([1.0], requires_grad=True).detach().numpy().tolist() == [1.0]


def test_clone_contiguous_len_and_iteration() -> None:
    x = _arange(3, 2)
    c = x.clone()
    assert c.tolist() == x.tolist() and not np.shares_memory(c.numpy(), x.numpy())
    w = T([1.0], requires_grad=True)
    assert w.clone().grad_fn is not None and w.clone().requires_grad
    t = x.t()
    assert not t.is_contiguous() and t.contiguous().is_contiguous() and x.contiguous() is x
    assert len(x) == 3 and [row.tolist() for row in x] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert x.numel() == 6 and x.dim() == 2 and x.ndim == 2 and x.element_size() == 4
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(T(1.0))
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(T(1.0))


# ----------------------------------------------------------------------------------------------------
# in-place ops


def test_inplace_arithmetic_returns_self_and_writes_memory() -> None:
    x = T([1.0, 2.0, 3.0])
    alias = x
    assert x.add_(1) is x and x.tolist() == [2.0, 3.0, 4.0]
    assert x.add_(T([1.0, 1.0, 1.0]), alpha=2).tolist() == [4.0, 5.0, 6.0]
    assert x.sub_(1).mul_(2).div_(4).tolist() == [1.5, 2.0, 2.5]
    x += 1
    x -= T([0.5])
    x *= 2
    x /= 2
    assert x is alias and x.tolist() == [2.0, 2.5, 3.0]
    assert x.clamp_(min=2.2, max=2.8).tolist() == [2.2, 2.5, 2.8] or np.allclose(x.numpy(), [2.2, 2.5, 2.8])
    assert x.masked_fill_(x > 2.6, 0.0).tolist()[2] == 0.0
    assert x.zero_().tolist() == [0.0, 0.0, 0.0] and x.fill_(7).tolist() == [7.0, 7.0, 7.0]
    assert x.copy_(T([1, 2, 3])).tolist() == [1.0, 2.0, 3.0] and x.dtype is torch.float32
    assert x.copy_(T(9.0)).tolist() == [9.0, 9.0, 9.0]  # copy_ broadcasts
    i = T([5, 7])
    i //= 2
    i %= 2
    assert i.tolist() == [0, 1] and i.dtype is torch.int64


def test_inplace_keeps_the_dtype_and_refuses_unsafe_casts() -> None:
    i = T([1, 2], dtype=torch.int32)
    i.mul_(3)
    assert i.dtype is torch.int32 and i.tolist() == [3, 6]
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Int"):
        i.div_(2)
    with pytest.raises(RuntimeError, match="result type Float can't be cast"):
        i.add_(1.5)
    assert i.tolist() == [3, 6]
    f = T([1.0, 2.0])
    f.add_(T([1, 1]))  # int into float is fine
    assert f.tolist() == [2.0, 3.0]


def test_inplace_shape_errors_leave_the_tensor_alone() -> None:
    x = torch.zeros(3)
    with pytest.raises(RuntimeError, match="output with shape \\[3\\] doesn't match the broadcast shape \\[2, 3\\]"):
        x.add_(torch.ones(2, 3))
    assert x.tolist() == [0.0, 0.0, 0.0]
    e = torch.zeros(1, 3).expand(2, 3)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor refers to a single "
                                           "memory location"):
        e.add_(1)


def test_setitem_with_scalars_and_tensors() -> None:
    x = torch.zeros(3, 4)
    x[0] = 1.0
    x[1, 1:3] = T([2.0, 3.0])
    x[:, -1] = T([4.0, 5.0, 6.0])
    x[2, ::2] = T(7)  # 0-d value, int into float
    x[..., 1] += 1
    np.testing.assert_array_equal(x.numpy(), [[1, 2, 1, 4], [0, 3, 3, 5], [7, 1, 7, 6]])


def test_setitem_with_advanced_indices_and_masks() -> None:
    x = torch.zeros(3, 4)
    x[[0, 2]] = T([1.0, 2.0, 3.0, 4.0])
    x[T([1]), T([3])] = 9.0
    x[:, T([0, 1])] = T([[5.0, 6.0]])
    np.testing.assert_array_equal(x.numpy(), [[5, 6, 3, 4], [5, 6, 0, 9], [5, 6, 3, 4]])
    x[x > 4] = 0.0
    x[T([True, False, True])] = T([-1.0, -2.0, -3.0, -4.0])
    np.testing.assert_array_equal(x.numpy(), [[-1, -2, -3, -4], [0, 0, 0, 0], [-1, -2, -3, -4]])
    x[x < -2] = T([10.0, 20.0, 30.0, 40.0])  # values for the True positions, in order
    np.testing.assert_array_equal(x.numpy(), [[-1, -2, 10, 20], [0, 0, 0, 0], [-1, -2, 30, 40]])
    y = torch.zeros(4)
    y[T([0, 0, 2])] += 1  # repeated indices write once, as in PyTorch
    assert y.tolist() == [1.0, 0.0, 1.0, 0.0]


# ----------------------------------------------------------------------------------------------------
# bad input: errors raised before anything is computed, naming the op, shapes and dtypes


def _raises_before_computing(make, error: type, match: str) -> None:
    with record_dispatch() as seen, pytest.raises(error, match=match):
        make()
    # views touch no data (index_select lines its index up for gather with reshape and expand)
    computed = [name for name in seen if not OPS[name].view]
    assert computed == [], f"computed {computed} before raising"


SHAPE_ERRORS = [
    (lambda a, b, m: a + b, (2, 3), (4,), ("add: the size of tensor a \\(3\\) must match the size of tensor b "
                                           "\\(4\\) at non-singleton dimension 1")),
    (lambda a, b, m: a * b, (2, 3), (3, 2), ("mul: the size of tensor a \\(3\\) must match the size of tensor b "
                                            "\\(2\\) at non-singleton dimension 1")),
    (lambda a, b, m: a @ b, (2, 3), (4, 5), "mat1 and mat2 shapes cannot be multiplied \\(2x3 and 4x5\\)"),
    (lambda a, b, m: a @ b, (2, 2, 3), (3, 3, 2), ("matmul: the size of tensor a \\(2\\) must match the size of "
                                                  "tensor b \\(3\\)")),
    (lambda a, b, m: torch.cat([a, b]), (2, 3), (2, 4), ("cat\\(f32\\[2,3\\], f32\\[2,4\\]\\): sizes of tensors "
                                                        "must match except in dimension 0")),
    (lambda a, b, m: torch.stack([a, b]), (2, 3), (3, 2), "stack expects each tensor to be equal size"),
    (lambda a, b, m: a.reshape(4, 2), (2, 3), (1,), "shape '\\[4, 2\\]' is invalid for input of size 6"),
    (lambda a, b, m: a.expand(3, 4), (2, 3), (1,), ("The expanded size of the tensor \\(3\\) must match the "
                                                   "existing size \\(2\\) at non-singleton dimension 0")),
    (lambda a, b, m: torch.dot(a, b), (3,), (4,), "inconsistent tensor size"),
    (lambda a, b, m: torch.mm(a, b), (3,), (3, 2), "mm: both arguments must be 2D"),
    (lambda a, b, m: a.masked_fill(m, 1.0), (2, 3), (2,), ("the size of tensor a \\(2\\) must match the size of "
                                                          "tensor b \\(3\\) at non-singleton dimension 1")),
    (lambda a, b, m: torch.where(m, a, b), (2, 3), (2,), ("where: the size of tensor a \\(2\\) must match the size "
                                                         "of tensor b \\(3\\) at non-singleton dimension 1")),
]


@pytest.mark.parametrize("make,a,b,match", SHAPE_ERRORS, ids=[m[:30] for *_, m in SHAPE_ERRORS])
def test_shape_errors(make, a, b, match) -> None:
    x, y, mask = torch.ones(*a), torch.ones(*b), torch.ones(*b, dtype=torch.bool)
    _raises_before_computing(lambda: make(x, y, mask), RuntimeError, match)


DTYPE_ERRORS = [
    (lambda a, b: a & b, lambda: (torch.ones(2), torch.ones(2)), ("bitwise_and: not supported for floating-point "
                                                                 "dtype float32")),
    (lambda a: ~a, lambda: (torch.ones(2),), "bitwise_not\\(f32\\[2\\]\\): not supported for dtype float32"),
    (lambda a: -a, lambda: (T([True]),), "negation, the `-` operator, on a bool tensor is not supported"),
    (lambda a, b: a - b, lambda: (T([True]), T([False])), ("sub\\(b8\\[1\\], b8\\[1\\]\\): not supported for "
                                                          "dtype bool")),
    (lambda a: a.mean(), lambda: (T([1, 2]),), "mean\\(\\): could not infer output dtype.*Got: int64"),
    (lambda a, i: a.gather(0, i), lambda: (torch.ones(2, 2), torch.zeros(2, 2)),
     "gather\\(f32\\[2,2\\], f32\\[2,2\\]\\): index must be an integer tensor, got float32"),
    (lambda c, a: torch.where(c, a, a), lambda: (torch.ones(2), torch.ones(2)),
     "where expected condition to be a boolean tensor, but got a tensor with dtype float32"),
    (lambda a, m: a.masked_fill(m, 0.0), lambda: (torch.ones(2), torch.ones(2)), ("masked_fill only supports boolean "
                                                                                "masks")),
    (lambda a, b: a @ b, lambda: (T([[True]]), T([[True]])), ("matmul\\(b8\\[1,1\\], b8\\[1,1\\]\\): not "
                                                             "supported for bool")),
]


@pytest.mark.parametrize("make,inputs,match", DTYPE_ERRORS, ids=[m[:30] for *_, m in DTYPE_ERRORS])
def test_dtype_errors_are_runtime_errors_naming_the_dtype(make, inputs, match: str) -> None:
    args = inputs()
    _raises_before_computing(lambda: make(*args), RuntimeError, match)


INDEX_ERRORS = [
    (lambda x: x[3], IndexError, "index 3 is out of bounds for dimension 0 with size 3"),
    (lambda x: x[-4], IndexError, "index -4 is out of bounds for dimension 0 with size 3"),
    (lambda x: x[:, 4], IndexError, "index 4 is out of bounds for dimension 1 with size 4"),
    (lambda x: x[0, 0, 0], IndexError, "too many indices for tensor of dimension 2"),
    (lambda x: x[T([0, 3])], IndexError, "index 3 is out of bounds for dimension 0 with size 3"),
    (lambda x: x[T([1.0])], IndexError, "tensors used as indices must be long, int, byte or bool tensors"),
    (lambda x: x[T([True, False])], IndexError, "The shape of the mask \\[2\\] at index 0 does not match"),
    (lambda x: x.gather(1, T([[4]])), RuntimeError, "index 4 is out of bounds for dimension 1 with size 4"),
    (lambda x: x.index_select(0, T([5])), IndexError, "index 5 is out of bounds for dimension 0 with size 3"),
    (lambda x: x.index_select(1, T([0, -1])), IndexError, "index -1 is out of bounds for dimension 1 with size 4"),
    (lambda x: x.sum(dim=2), IndexError,
     "Dimension out of range \\(expected to be in range of \\[-2, 1\\], but got 2\\)"),
    (lambda x: x.transpose(0, 2), IndexError, "Dimension out of range"),
    (lambda x: x.select(0, 3), IndexError, "select\\(\\): index 3 out of range"),
    (lambda x: x[::-1], ValueError, "step must be greater than zero"),
    (lambda x: x[1.5], IndexError, "only integers, slices"),
]


@pytest.mark.parametrize("make,error,match", INDEX_ERRORS, ids=[m[:30] for *_, m in INDEX_ERRORS])
def test_index_errors(make, error: type, match: str) -> None:
    x = torch.zeros(3, 4)
    _raises_before_computing(lambda: make(x), error, match)


def test_setitem_index_errors_leave_the_tensor_alone() -> None:
    x = torch.zeros(3)
    with pytest.raises(IndexError, match="index 5 is out of bounds"):
        x[T([0, 5])] = 1.0
    with pytest.raises(IndexError):
        x[3] = 1.0
    with pytest.raises(RuntimeError):
        x[:2] = torch.ones(3)
    assert x.tolist() == [0.0, 0.0, 0.0]


TYPE_ERRORS = [
    lambda: torch.ones(2) + "a", lambda: torch.zeros(2.5), lambda: torch.ones(2).view("a"),
    lambda: torch.exp([1.0]), lambda: torch.ones(2).sum(dim=1.5), lambda: torch.ones(2).reshape(2.0),
]


@pytest.mark.parametrize("make", TYPE_ERRORS)
def test_wrong_argument_types_raise_type_error(make) -> None:
    with pytest.raises(TypeError):
        make()


OPTIMIZER_UPDATES = {
    "add_": lambda t, a, b: t.add_(a),
    "add_ alpha": lambda t, a, b: t.add_(a, alpha=-0.05),
    "add_ int alpha": lambda t, a, b: t.add_(a, alpha=3),
    "add_ number": lambda t, a, b: t.add_(1e-8),
    "mul_ number": lambda t, a, b: t.mul_(0.9),
    "mul_": lambda t, a, b: t.mul_(a),
    "addcmul_": lambda t, a, b: t.addcmul_(a, b, value=0.001),
    "addcdiv_": lambda t, a, b: t.addcdiv_(a, b.abs() + 0.1, value=-0.01),
    "lerp_": lambda t, a, b: t.lerp_(a, 0.1),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("update", list(OPTIMIZER_UPDATES))
def test_optimizer_updates_under_no_grad_match_the_general_path_bit_for_bit(update: str, dtype) -> None:
    """Under no_grad, optimizers' in-place updates are computed straight into the tensor's memory (see
    tensor_inplace.py): the same bits as the general path, a version bump, writes through views reaching
    their base."""
    generator = torch.Generator().manual_seed(3)
    x, a, b = (torch.randn(6, 5, generator=generator, dtype=dtype) for _ in range(3))
    fast, general = x.clone(), x.clone()
    version = fast._version.value
    with torch.no_grad():
        assert OPTIMIZER_UPDATES[update](fast, a, b) is fast
    with torch.enable_grad():  # a tensor not requiring grad: the general path, no history
        OPTIMIZER_UPDATES[update](general, a, b)
    np.testing.assert_array_equal(fast.numpy(), general.numpy())
    assert fast._version.value == version + 1
    base = x.clone()
    with torch.no_grad():
        OPTIMIZER_UPDATES[update](base[2], a[2], b[2])
    np.testing.assert_array_equal(base[2].numpy(), general[2].numpy())
    np.testing.assert_array_equal(base[3].numpy(), x[3].numpy())


def test_in_place_updates_under_no_grad_keep_their_errors() -> None:
    weight = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        weight.add_(torch.ones(3), alpha=-0.1)  # allowed on a leaf under no_grad, as in PyTorch
        with pytest.raises(RuntimeError, match="more than one element"):
            torch.zeros(1).expand(3).add_(torch.ones(3))
        with pytest.raises(RuntimeError, match="can't be cast"):
            torch.zeros(3, dtype=torch.int64).add_(torch.ones(3), alpha=0.5)
    assert weight.requires_grad and weight.grad_fn is None
