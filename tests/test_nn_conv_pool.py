"""Convolution, pooling, padding, resizing and im2col against loop-based numpy references, their
gradients against float64 finite differences, and the Conv/Pool modules (init, repr, errors)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import jitorch
from jitorch.nn import functional as F
from tests.nn_reference import close, gradcheck, t

RNG = np.random.default_rng(0)




# ----------------------------------------------------------------------------------------------------
# numpy references (loops, written from PyTorch's definitions)


def ref_conv2d(x, w, b=None, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    x = np.pad(x, ((0, 0), (0, 0), *pads))
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, ho, wo))
    per_group = o // groups
    for oc in range(o):
        g = oc // per_group
        for i in range(ho):
            for j in range(wo):
                patch = x[:, g * cg:(g + 1) * cg,
                          i * stride[0]: i * stride[0] + dilation[0] * (kh - 1) + 1: dilation[0],
                          j * stride[1]: j * stride[1] + dilation[1] * (kw - 1) + 1: dilation[1]]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def ref_conv_transpose2d(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), groups=1,
                         dilation=(1, 1)):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    canvas = np.zeros((n, og * groups, (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 + output_padding[0],
                       (wd - 1) * stride[1] + dilation[1] * (kw - 1) + 1 + output_padding[1]))
    for ci in range(c):
        g = ci // cg
        for i in range(h):
            for j in range(wd):
                for ki in range(kh):
                    for kj in range(kw):
                        canvas[:, g * og:(g + 1) * og, i * stride[0] + ki * dilation[0],
                               j * stride[1] + kj * dilation[1]] += x[:, ci, i, j, None] * w[ci, :, ki, kj]
    ho = canvas.shape[2] - 2 * padding[0]
    wo = canvas.shape[3] - 2 * padding[1]
    out = canvas[:, :, padding[0]:padding[0] + ho, padding[1]:padding[1] + wo]
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def _pool_out(size, k, s, p, d, ceil_mode):
    span = d * (k - 1) + 1
    out = (math.ceil if ceil_mode else math.floor)((size + 2 * p - span) / s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def ref_max_pool2d(x, k, s, p, d, ceil_mode):
    n, c, h, w = x.shape
    ho, wo = (_pool_out(size, k[i], s[i], p[i], d[i], ceil_mode) for i, size in enumerate((h, w)))
    out = np.zeros((n, c, ho, wo))
    index = np.zeros((n, c, ho, wo), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    best, where = -np.inf, -1
                    for ki in range(k[0]):
                        for kj in range(k[1]):
                            r, q = i * s[0] - p[0] + ki * d[0], j * s[1] - p[1] + kj * d[1]
                            if 0 <= r < h and 0 <= q < w and x[b, ch, r, q] > best:
                                best, where = x[b, ch, r, q], r * w + q
                    out[b, ch, i, j], index[b, ch, i, j] = best, where
    return out, index


def ref_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad, divisor_override=None):
    """PyTorch's CPU avg_pool2d loop, transcribed."""
    n, c, h, w = x.shape
    ho, wo = (_pool_out(size, k[i], s[i], p[i], 1, ceil_mode) for i, size in enumerate((h, w)))
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            pool_size = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            total = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3))
            divisor = divisor_override or (pool_size if count_include_pad else (h1 - h0) * (w1 - w0))
            out[:, :, i, j] = total / divisor
    return out


def _adaptive(size, out):
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def ref_adaptive_pool2d(x, out_size, reduce):
    n, c, h, w = x.shape
    out = np.zeros((n, c, *out_size))
    index = np.zeros((n, c, *out_size), dtype=np.int64)
    for i, (h0, h1) in enumerate(_adaptive(h, out_size[0])):
        for j, (w0, w1) in enumerate(_adaptive(w, out_size[1])):
            box = x[:, :, h0:h1, w0:w1]
            out[:, :, i, j] = reduce(box, axis=(2, 3))
            flat = box.reshape(n, c, -1).argmax(-1)
            index[:, :, i, j] = (h0 + flat // (w1 - w0)) * w + w0 + flat % (w1 - w0)
    return out, index


def ref_unfold(x, k, d, p, s):
    x = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    n, c, h, w = x.shape
    ho = (h - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros((n, c * k[0] * k[1], ho * wo))
    for ch in range(c):
        for ki in range(k[0]):
            for kj in range(k[1]):
                row = (ch * k[0] + ki) * k[1] + kj
                for i in range(ho):
                    for j in range(wo):
                        out[:, row, i * wo + j] = x[:, ch, i * s[0] + ki * d[0], j * s[1] + kj * d[1]]
    return out


def ref_interpolate_1d(x, axis, out, mode, align_corners, scale_factor=None):
    size = x.shape[axis]
    ratio = np.float32(1.0 / scale_factor if scale_factor else size / out)
    pieces = []
    for dst in range(out):
        if mode == "nearest":
            src = min(int(np.floor(np.float32(dst) * ratio)), size - 1)
            pieces.append(np.take(x, [src], axis=axis))
            continue
        if align_corners:
            real = dst * ((size - 1) / (out - 1)) if out > 1 else 0.0
        else:
            real = max((dst + 0.5) * float(ratio) - 0.5, 0.0)
        low = min(int(np.floor(real)), size - 1)
        high = min(low + 1, size - 1)
        lam = real - low
        pieces.append(np.take(x, [low], axis=axis) * (1 - lam) + np.take(x, [high], axis=axis) * lam)
    return np.concatenate(pieces, axis=axis)


# ----------------------------------------------------------------------------------------------------
# convolution

CONV_CASES = [  # (N, C, H, W), out channels, kernel, stride, padding, dilation, groups
    ((2, 3, 7, 6), 4, (3, 3), 1, 0, 1, 1),
    ((1, 4, 9, 8), 6, (3, 2), (2, 1), 1, 1, 2),
    ((2, 2, 8, 9), 4, (3, 3), 1, "same", 2, 1),
    ((1, 3, 6, 7), 3, (2, 4), 1, "same", 1, 3),
    ((2, 4, 11, 10), 2, (3, 3), 3, (2, 1), (1, 2), 2),
    ((1, 2, 5, 5), 3, (5, 5), 1, "valid", 1, 1),
    ((2, 3, 6, 6), 4, (1, 1), 2, 0, 1, 1),
]


def _pair(v):
    """PyTorch's int-or-pair argument as a pair."""
    return (v, v) if isinstance(v, int) else v


def _ref_pads(padding, kernel, dilation):
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((tt // 2, tt - tt // 2) for tt in totals)
    return tuple((v, v) for v in _pair(padding))


@pytest.mark.parametrize("shape, out_channels, kernel, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_matches_reference(shape, out_channels, kernel, stride, padding, dilation, groups):
    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((out_channels, shape[1] // groups, *kernel)).astype(np.float32)
    b = RNG.standard_normal(out_channels).astype(np.float32)
    out = F.conv2d(t(x), t(w), t(b), stride, padding, dilation, groups)
    expected = ref_conv2d(x, w, b, _pair(stride), _ref_pads(padding, kernel, _pair(dilation)), _pair(dilation), groups)
    close(out, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_unbatched_and_no_bias():
    x = RNG.standard_normal((3, 6, 5)).astype(np.float32)
    w = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
    out = F.conv2d(t(x), t(w), padding=1)
    assert tuple(out.shape) == (2, 6, 5)
    close(out, ref_conv2d(x[None], w, pads=((1, 1), (1, 1)))[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, "same", 3, 1)])
def test_conv1d_matches_reference(stride, padding, dilation, groups):
    x = RNG.standard_normal((2, 4, 13)).astype(np.float32)
    w = RNG.standard_normal((6, 4 // groups, 3)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    out = F.conv1d(t(x), t(w), t(b), stride, padding, dilation, groups)
    pads = ((0, 0), _ref_pads(padding, (3,), (dilation,))[0])
    expected = ref_conv2d(x[:, :, None], w[:, :, None], b, (1, stride), pads, (1, dilation), groups)[:, :, 0]
    close(out, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_gradients():
    x = RNG.standard_normal((1, 4, 5, 4))
    w = RNG.standard_normal((2, 2, 3, 2))
    b = RNG.standard_normal(2)
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2), [x, w, b])


def test_conv1d_same_padding_gradients():
    x, w = RNG.standard_normal((2, 2, 6)), RNG.standard_normal((3, 2, 4))
    gradcheck(lambda x, w: F.conv1d(x, w, padding="same"), [x, w])


CONV_T_CASES = [  # (N, C, H, W), out channels per group, kernel, stride, padding, output_padding, groups, dilation
    ((2, 3, 4, 5), 2, (3, 3), 1, 0, 0, 1, 1),
    ((1, 4, 3, 4), 3, (3, 2), 2, 1, 1, 2, 1),
    ((2, 2, 5, 3), 2, (2, 3), (3, 2), (0, 1), (2, 0), 1, (1, 2)),
    ((1, 2, 4, 4), 1, (3, 3), 2, 2, 0, 2, 2),
    ((1, 2, 3, 3), 2, (4, 4), 1, 4, 0, 1, 1),  # padding larger than the kernel reach crops
]


@pytest.mark.parametrize("shape, out_per_group, kernel, stride, padding, output_padding, groups, dilation",
                         CONV_T_CASES)
def test_conv_transpose2d_matches_reference(shape, out_per_group, kernel, stride, padding, output_padding, groups,
                                            dilation):
    if padding == 4:
        shape = (1, 2, 6, 6)
    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal((shape[1], out_per_group, *kernel)).astype(np.float32)
    b = RNG.standard_normal(out_per_group * groups).astype(np.float32)
    out = F.conv_transpose2d(t(x), t(w), t(b), stride, padding, output_padding, groups, dilation)
    expected = ref_conv_transpose2d(x, w, b, _pair(stride), _pair(padding), _pair(output_padding), groups,
                                    _pair(dilation))
    assert tuple(out.shape) == expected.shape
    close(out, expected, rtol=1e-4, atol=1e-4)


def test_layer_outputs_are_contiguous_so_view_works():
    x = jitorch.randn(2, 4, 7, 8)
    outputs = [F.conv2d(x, jitorch.randn(6, 2, 3, 3), jitorch.randn(6), groups=2).relu(),
               F.conv1d(x[:, :, 0], jitorch.randn(3, 4, 2)), F.conv_transpose2d(x, jitorch.randn(4, 3, 3, 3), None, 2),
               F.adaptive_avg_pool2d(x, (3, None)), F.pad(x, (-1, 0, 0, -2)),
               F.interpolate(x, scale_factor=2), F.interpolate(x, size=(5, 9), mode="bilinear")]
    for out in outputs:
        assert out.is_contiguous()
        assert tuple(out.view(2, -1).shape) == (2, out.numel() // 2)


def test_conv_transpose_is_the_adjoint_of_conv():
    x, y = RNG.standard_normal((2, 3, 7, 8)), RNG.standard_normal((2, 4, 4, 4))
    w = RNG.standard_normal((4, 3, 3, 3))
    forward = F.conv2d(t(x), t(w), stride=2, padding=1).numpy()
    backward = F.conv_transpose2d(t(y), t(w), stride=2, padding=1, output_padding=(0, 1)).numpy()
    np.testing.assert_allclose((forward * y).sum(), (x * backward).sum(), rtol=1e-10, atol=1e-10)


def test_conv_transpose1d_matches_reference():
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    w = RNG.standard_normal((4, 3, 3)).astype(np.float32)
    out = F.conv_transpose1d(t(x), t(w), None, 2, 1, 1, 2)
    expected = ref_conv_transpose2d(x[:, :, None], w[:, :, None], None, (1, 2), (0, 1), (0, 1), 2)[:, :, 0]
    close(out, expected, rtol=1e-4, atol=1e-4)


def test_conv_transpose2d_gradients():
    x, w, b = RNG.standard_normal((1, 2, 3, 3)), RNG.standard_normal((2, 2, 2, 3)), RNG.standard_normal(4)
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=(1, 0), output_padding=1, groups=2),
              [x, w, b])


def test_conv_errors_name_the_shapes():
    x = jitorch.randn(2, 4, 8, 8)
    with pytest.raises(RuntimeError, match=r"expected input\[2, 4, 8, 8\] to have 3 channels, but got 4"):
        F.conv2d(x, jitorch.randn(8, 3, 3, 3))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(x, jitorch.randn(2, 4, 9, 3))
    with pytest.raises(RuntimeError, match=r"4D \(batched\) input, but got input of size: \[4, 8\]"):
        F.conv2d(jitorch.randn(4, 8), jitorch.randn(2, 4, 3, 3))
    with pytest.raises(RuntimeError, match="not supported for strided convolutions"):
        F.conv2d(x, jitorch.randn(2, 4, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="output padding must be smaller than either stride or dilation"):
        F.conv_transpose2d(x, jitorch.randn(4, 2, 3, 3), stride=2, output_padding=2)


def test_unfold_matches_reference_and_fold_is_its_adjoint():
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    args = ((2, 3), (2, 1), (1, 2), (1, 2))  # kernel, dilation, padding, stride
    out = F.unfold(t(x), *args)
    close(out, ref_unfold(x, *args))
    columns = RNG.standard_normal(tuple(out.shape))
    folded = F.fold(t(columns), (6, 7), *args).numpy()
    np.testing.assert_allclose((out.numpy() * columns).sum(), (x * folded).sum(), rtol=1e-5, atol=1e-4)


def test_fold_of_unfold_counts_overlaps():
    x = jitorch.ones(1, 2, 4, 4)
    counts = F.fold(F.unfold(x, 2, stride=1), (4, 4), 2, stride=1).numpy()[0, 0]
    np.testing.assert_allclose(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------
# pooling

MAX_POOL_CASES = [  # (H, W), kernel, stride, padding, dilation, ceil_mode
    ((7, 7), (2, 2), None, 0, 1, False),
    ((7, 8), (3, 3), (2, 2), 1, 1, True),
    ((9, 6), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((5, 5), (2, 2), (2, 2), 0, 1, True),
    ((6, 7), (3, 3), (3, 2), (1, 1), (1, 2), True),
]


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode", MAX_POOL_CASES)
def test_max_pool2d_matches_reference(size, kernel, stride, padding, dilation, ceil_mode):
    x = RNG.standard_normal((2, 3, *size)).astype(np.float32)
    out, index = F.max_pool2d(t(x), kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    expected, expected_index = ref_max_pool2d(x, kernel, _pair(stride or kernel), _pair(padding), _pair(dilation),
                                              ceil_mode)
    close(out, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(index.numpy(), expected_index)
    close(F.max_pool2d(t(x), kernel, stride, padding, dilation, ceil_mode), expected, rtol=0, atol=0)


def test_max_pool2d_first_index_wins_ties_and_nan_propagates():
    x = jitorch.tensor([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, float("nan"), 1.0]]]])
    out, index = F.max_pool2d(x, 2, return_indices=True)
    assert out.numpy()[0, 0, 0, 0] == 3.0 and math.isnan(out.numpy()[0, 0, 0, 1])
    assert index.tolist() == [[[[1, 6]]]]


@pytest.mark.parametrize("ceil_mode, count_include_pad, divisor", [(False, True, None), (True, True, None),
                                                                   (True, False, None), (False, False, 5)])
@pytest.mark.parametrize("size, kernel, stride, padding", [((7, 8), (3, 3), (2, 2), (1, 1)),
                                                           ((6, 5), (2, 3), (2, 1), (1, 0)),
                                                           ((5, 5), (2, 2), None, 0)])
def test_avg_pool2d_matches_reference(size, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    x = RNG.standard_normal((2, 3, *size)).astype(np.float32)
    out = F.avg_pool2d(t(x), kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    expected = ref_avg_pool2d(x, kernel, _pair(stride or kernel), _pair(padding), ceil_mode, count_include_pad, divisor)
    close(out, expected)


def test_pool1d_matches_the_2d_reference():
    x = RNG.standard_normal((2, 3, 11)).astype(np.float32)
    out, index = F.max_pool1d(t(x), 3, 2, 1, 2, True, return_indices=True)
    expected, expected_index = ref_max_pool2d(x[:, :, None], (1, 3), (1, 2), (0, 1), (1, 2), True)
    close(out, expected[:, :, 0], rtol=0, atol=0)
    np.testing.assert_array_equal(index.numpy(), expected_index[:, :, 0])
    avg = F.avg_pool1d(t(x), 4, 3, 2, ceil_mode=True, count_include_pad=False)
    close(avg, ref_avg_pool2d(x[:, :, None], (1, 4), (1, 3), (0, 2), True, False)[:, :, 0])


@pytest.mark.parametrize("size, out_size", [((7, 9), (3, 4)), ((5, 5), (5, 2)), ((6, 4), (1, 1)),
                                            ((4, 6), (7, 3)), ((8, 8), (None, 3))])
def test_adaptive_pools_match_reference(size, out_size):
    x = RNG.standard_normal((2, 3, *size)).astype(np.float32)
    target = tuple(s if o is None else o for s, o in zip(size, out_size))
    close(F.adaptive_avg_pool2d(t(x), out_size), ref_adaptive_pool2d(x, target, np.mean)[0])
    out, index = F.adaptive_max_pool2d(t(x), out_size, return_indices=True)
    expected, expected_index = ref_adaptive_pool2d(x, target, np.max)
    close(out, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(index.numpy(), expected_index)


def test_adaptive_pool1d_and_int_output_size():
    x = RNG.standard_normal((2, 3, 10)).astype(np.float32)
    close(F.adaptive_avg_pool1d(t(x), 4), ref_adaptive_pool2d(x[:, :, None], (1, 4), np.mean)[0][:, :, 0])
    close(F.adaptive_max_pool1d(t(x), 3), ref_adaptive_pool2d(x[:, :, None], (1, 3), np.max)[0][:, :, 0])
    y = RNG.standard_normal((3, 7, 7)).astype(np.float32)
    close(F.adaptive_avg_pool2d(t(y), 3), ref_adaptive_pool2d(y[None], (3, 3), np.mean)[0][0])


def test_pool_gradients():
    x = RNG.standard_normal((1, 2, 5, 6))
    gradcheck(lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), [x])
    gradcheck(lambda x: F.avg_pool2d(x, (2, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=False), [x])
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, (3, 4)), [x])
    gradcheck(lambda x: F.adaptive_max_pool2d(x, (2, 4)), [x])


def test_pool_errors():
    x = jitorch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="output size is too small"):
        F.max_pool2d(jitorch.randn(1, 1, 2, 2), 3)
    with pytest.raises(RuntimeError, match="max_pool2d"):
        F.max_pool2d(jitorch.randn(4, 4), 2)


# ----------------------------------------------------------------------------------------------------
# padding and resizing


@pytest.mark.parametrize("mode, numpy_mode", [("constant", "constant"), ("reflect", "reflect"),
                                              ("replicate", "edge"), ("circular", "wrap")])
def test_pad_matches_numpy(mode, numpy_mode):
    x = RNG.standard_normal((2, 3, 5, 6)).astype(np.float32)
    out = F.pad(t(x), (1, 3, 2, 0), mode=mode)
    close(out, np.pad(x, ((0, 0), (0, 0), (2, 0), (1, 3)), mode=numpy_mode), rtol=0, atol=0)


def test_pad_constant_value_and_negative_crop():
    x = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    out = F.pad(t(x), (-1, 2, 1, -2), value=7.5)
    expected = np.pad(x[:, :1, 1:], ((0, 0), (1, 0), (0, 2)), constant_values=7.5)
    close(out, expected, rtol=0, atol=0)
    gradcheck(lambda x: F.pad(x, (2, -1, 0, 1), mode="constant"), [x.astype(np.float64)[:1]])
    gradcheck(lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), [RNG.standard_normal((1, 1, 3, 4))])
    with pytest.raises(RuntimeError, match="too large"):
        F.pad(t(x), (5, 5), mode="reflect")


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("size, scale", [((9, 5), None), (None, 2.0), (None, (0.5, 1.7)), ((3, 12), None)])
def test_interpolate_matches_reference(mode, align_corners, size, scale):
    x = RNG.standard_normal((2, 3, 6, 7)).astype(np.float32)
    out = F.interpolate(t(x), size=size, scale_factor=scale, mode=mode, align_corners=align_corners)
    scales = (scale, scale) if isinstance(scale, float) else scale or (None, None)
    target = size or tuple(math.floor(i * f) for i, f in zip(x.shape[2:], scales))
    expected = x
    for axis in (2, 3):
        expected = ref_interpolate_1d(expected, axis, target[axis - 2], mode, align_corners, scales[axis - 2])
    close(out, expected)


def test_interpolate_linear_gradients_and_errors():
    x = RNG.standard_normal((1, 2, 3, 4))
    gradcheck(lambda x: F.interpolate(x, size=(5, 3), mode="bilinear", align_corners=False), [x])
    out = F.interpolate(t(RNG.standard_normal((1, 2, 4)).astype(np.float32)), scale_factor=2, mode="linear")
    assert tuple(out.shape) == (1, 2, 8)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(t(x), size=(2, 2), align_corners=True)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(t(x))


# ----------------------------------------------------------------------------------------------------
# modules


def test_conv2d_module_parameters_init_repr_and_forward():
    from jitorch import nn
    jitorch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3)
    assert repr(conv) == "Conv2d(16, 32, kernel_size=(3, 3), stride=(1, 1))"
    assert [(n, tuple(p.shape)) for n, p in conv.named_parameters()] == [("weight", (32, 16, 3, 3)), ("bias", (32,))]
    bound = 1 / math.sqrt(16 * 9)  # kaiming_uniform_(a=sqrt(5)) and the bias rule both give U(±1/sqrt(fan_in))
    weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.95 * bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert np.abs(bias).max() <= bound
    x = RNG.standard_normal((2, 16, 5, 6)).astype(np.float32)
    close(conv(t(x)), ref_conv2d(x, weight, bias), rtol=1e-4, atol=1e-4)
    assert conv.weight.requires_grad and conv.bias.requires_grad


def test_conv_module_options_and_reprs():
    from jitorch import nn
    conv = nn.Conv2d(4, 8, (3, 5), stride=2, padding=1, dilation=(2, 1), groups=2, bias=False,
                     padding_mode="reflect")
    assert repr(conv) == ("Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), padding=(1, 1), dilation=(2, 1), "
                          "groups=2, bias=False, padding_mode=reflect)")
    assert conv.bias is None and tuple(conv.weight.shape) == (8, 2, 3, 5)
    x = RNG.standard_normal((1, 4, 9, 9)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    close(conv(t(x)), ref_conv2d(padded, conv.weight.detach().numpy(), None, (2, 2), ((0, 0), (0, 0)), (2, 1), 2),
          rtol=1e-4, atol=1e-4)
    same = nn.Conv1d(3, 6, 4, padding="same", dilation=2)
    assert repr(same) == "Conv1d(3, 6, kernel_size=(4,), stride=(1,), padding=same, dilation=(2,))"
    assert tuple(same(jitorch.randn(2, 3, 11)).shape) == (2, 6, 11)
    assert tuple(same(jitorch.randn(3, 11)).shape) == (6, 11)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 6, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(3, 6, 3, padding_mode="mirror")


def test_conv_module_errors_name_the_layer_and_shapes():
    from jitorch import nn
    conv = nn.Conv2d(3, 8, kernel_size=3)
    message = r"Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\): expected input with 3 channels, got " \
              r"input of shape \(2, 4, 8, 8\)"
    with pytest.raises(RuntimeError, match=message):
        conv(jitorch.randn(2, 4, 8, 8))
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 8.*expected 3D \(unbatched\) or 4D \(batched\) input, "
                                           r"got input of shape \(8, 8\)"):
        conv(jitorch.randn(8, 8))
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 8.*Kernel size: \(3 x 3\). Kernel size can't be greater"):
        conv(jitorch.randn(1, 3, 2, 5))


def test_conv_transpose2d_module():
    from jitorch import nn
    deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert repr(deconv) == ("ConvTranspose2d(4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                            "output_padding=(1, 1), groups=2)")
    assert tuple(deconv.weight.shape) == (4, 3, 3, 3) and tuple(deconv.bias.shape) == (6,)
    bound = 1 / math.sqrt(3 * 9)  # fan_in is weight.size(1) * kernel, as PyTorch computes it
    assert np.abs(deconv.weight.detach().numpy()).max() <= bound
    x = RNG.standard_normal((2, 4, 3, 4)).astype(np.float32)
    expected = ref_conv_transpose2d(x, deconv.weight.detach().numpy(), deconv.bias.detach().numpy(), (2, 2), (1, 1),
                                    (1, 1), 2)
    close(deconv(t(x)), expected, rtol=1e-4, atol=1e-4)
    plain = nn.ConvTranspose2d(4, 2, 3, stride=2)
    assert tuple(plain(t(x), output_size=(8, 10)).shape) == (2, 2, 8, 10)
    with pytest.raises(ValueError, match="requested an output size of"):
        plain(t(x), output_size=(9, 12))
    with pytest.raises(ValueError, match='Only "zeros" padding mode is supported'):
        nn.ConvTranspose2d(4, 2, 3, padding_mode="reflect")
    assert tuple(nn.ConvTranspose1d(2, 3, 4, stride=3)(jitorch.randn(1, 2, 5)).shape) == (1, 3, 16)


def test_pool_modules_reprs_and_forward():
    from jitorch import nn
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.MaxPool2d((3, 2), stride=1, padding=1, ceil_mode=True)) == \
        "MaxPool2d(kernel_size=(3, 2), stride=1, padding=1, dilation=1, ceil_mode=True)"
    assert repr(nn.AvgPool2d(3, 2)) == "AvgPool2d(kernel_size=3, stride=2, padding=0)"
    assert repr(nn.AvgPool1d(2)) == "AvgPool1d(kernel_size=(2,), stride=(2,), padding=(0,))"
    assert repr(nn.AdaptiveAvgPool2d((1, 1))) == "AdaptiveAvgPool2d(output_size=(1, 1))"
    assert repr(nn.AdaptiveMaxPool2d(3)) == "AdaptiveMaxPool2d(output_size=3)"
    assert repr(nn.Upsample(scale_factor=2, mode="bilinear")) == "Upsample(scale_factor=2.0, mode='bilinear')"
    x = RNG.standard_normal((2, 3, 7, 9)).astype(np.float32)
    out, index = nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)(t(x))
    expected, expected_index = ref_max_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
    close(out, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(index.numpy(), expected_index)
    close(nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)(t(x)),
          ref_avg_pool2d(x, (2, 2), (2, 2), (0, 0), True, False))
    close(nn.AdaptiveAvgPool2d((2, 4))(t(x)), ref_adaptive_pool2d(x, (2, 4), np.mean)[0])
    close(nn.AdaptiveMaxPool1d(4)(t(x[:, :, 0])), ref_adaptive_pool2d(x[:, :, :1], (1, 4), np.max)[0][:, :, 0])
    close(nn.Upsample(size=(9, 4), mode="bilinear", align_corners=True)(t(x)),
          ref_interpolate_1d(ref_interpolate_1d(x, 2, 9, "bilinear", True), 3, 4, "bilinear", True))
    with pytest.raises(RuntimeError, match=r"MaxPool2d\(kernel_size=2.*input of size: \[7\]"):
        nn.MaxPool2d(2)(jitorch.randn(7))
    unfold, fold = nn.Unfold((2, 3), padding=1), nn.Fold((7, 9), (2, 3), padding=1)
    assert repr(unfold) == "Unfold(kernel_size=(2, 3), dilation=1, padding=1, stride=1)"
    assert repr(fold) == "Fold(output_size=(7, 9), kernel_size=(2, 3), dilation=1, padding=1, stride=1)"
    close(unfold(t(x)), ref_unfold(x, (2, 3), (1, 1), (1, 1), (1, 1)))
    close(fold(unfold(t(x))), F.fold(F.unfold(t(x), (2, 3), padding=1), (7, 9), (2, 3), padding=1).numpy())


def test_conv_net_trains_end_to_end():
    from jitorch import nn
    jitorch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, groups=2), nn.AdaptiveAvgPool2d(1)]
    x = jitorch.randn(3, 1, 8, 8)
    out = x
    for layer in layers:
        out = layer(out).relu() if isinstance(layer, nn.Conv2d) else layer(out)
    assert tuple(out.shape) == (3, 4, 1, 1)
    out.sum().backward()
    assert all(p.grad is not None and tuple(p.grad.shape) == tuple(p.shape)
               for layer in layers for p in layer.parameters())


def test_compiled_conv_and_pool_match_eager_without_fallback():
    def net(x, w, b):
        h = F.conv2d(x, w, b, padding="same", groups=2).relu()
        h = F.max_pool2d(h, 3, 2, 1, ceil_mode=True) + F.avg_pool2d(h, 3, 2, 1, ceil_mode=True,
                                                                     count_include_pad=False)
        h = F.conv_transpose2d(h, w, None, stride=2, padding=1, output_padding=1, groups=2)
        return F.adaptive_avg_pool2d(h, (3, 2)).sum() + F.interpolate(h, scale_factor=0.5, mode="bilinear").mean()

    x = t(RNG.standard_normal((2, 4, 9, 9)).astype(np.float32), requires_grad=True)
    w = t(RNG.standard_normal((4, 2, 3, 3)).astype(np.float32), requires_grad=True)
    b = t(RNG.standard_normal(4).astype(np.float32), requires_grad=True)
    compiled = jitorch.compile(net)
    expected = net(x, w, b)
    expected_grads = jitorch.autograd.grad(expected, (x, w, b))
    for _ in range(2):
        out = compiled(x, w, b)
        close(out, expected.detach().numpy(), rtol=1e-5, atol=1e-4)
        for grad, reference in zip(jitorch.autograd.grad(out, (x, w, b)), expected_grads):
            close(grad, reference.numpy(), rtol=1e-4, atol=1e-4)
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] == 1
