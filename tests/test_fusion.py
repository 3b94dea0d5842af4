"""Fusion goldens: which nodes become one kernel, the kernel names, and the fused graph's text; groups
never form a cycle with the steps between them."""
from __future__ import annotations

import numpy as np
import pytest

from jitorch.ir import dtypes
from jitorch.ir.graph import Graph, GraphBuilder
from jitorch.ir.types import TensorType
from jitorch.passes.fusion import EXTERN_STEP, KERNEL, format_plan, fuse

F32 = dtypes.float32


def affine_relu() -> Graph:
    b = GraphBuilder("affine_relu")
    x = b.add_input("x", TensorType((64, 128), F32))
    b.set_outputs([(x * 2.0 + 1.0).relu()])
    return b.build()


def softmax_rows() -> Graph:
    b = GraphBuilder("softmax")
    x = b.add_input("x", TensorType((4096, 1024), F32))
    peak = b.emit("amax", x, axes=(1,))
    e = (x - peak.expand(4096, 1024)).exp()
    b.set_outputs([e / e.sum_axes((1,)).expand(4096, 1024)])
    return b.build()


def layer_norm() -> Graph:
    b = GraphBuilder("layer_norm")
    x = b.add_input("x", TensorType((32, 256), F32))
    weight = b.add_input("weight", TensorType((256,), F32))
    bias = b.add_input("bias", TensorType((256,), F32))
    mean = x.sum_axes((1,)) / 256.0
    centered = x - mean.expand(32, 256)
    variance = (centered * centered).sum_axes((1,)) / 256.0
    out = centered * (variance + 1e-5).sqrt().reciprocal().expand(32, 256)
    b.set_outputs([out * weight.reshape(1, 256).expand(32, 256) + bias.reshape(1, 256).expand(32, 256)])
    return b.build()


def linear_relu() -> Graph:
    b = GraphBuilder("linear")
    x = b.add_input("x", TensorType((64, 784), F32))
    weight = b.add_input("l1.weight", TensorType((128, 784), F32))
    bias = b.add_input("l1.bias", TensorType((128,), F32))
    y = x.matmul(weight.permute(1, 0))
    b.set_outputs([(y + bias.reshape(1, 128).expand(64, 128)).relu()])
    return b.build()


def cross_entropy() -> Graph:
    b = GraphBuilder("cross_entropy")
    logits = b.add_input("logits", TensorType((256, 10), F32))
    onehot = b.add_input("onehot", TensorType((256, 10), F32))
    peak = b.emit("amax", logits, axes=(1,))
    shifted = logits - peak.expand(256, 10)
    log_probabilities = shifted - shifted.exp().sum_axes((1,)).log().expand(256, 10)
    loss = (log_probabilities * onehot).sum_axes((0, 1)).reshape() * -0.00390625
    b.set_outputs([loss, log_probabilities])
    return b.build()


def around_matmul() -> Graph:
    """`a + a @ w`: fusing the two elementwise ops would put the matmul inside a cycle."""
    b = GraphBuilder("around_matmul")
    x = b.add_input("x", TensorType((16, 16), F32))
    w = b.add_input("w", TensorType((16, 16), F32))
    a = x * 2.0
    b.set_outputs([a + a.matmul(w)])
    return b.build()


def attention() -> Graph:
    b = GraphBuilder("attention")
    x = b.add_input("x", TensorType((8, 16), F32))
    wq = b.add_input("wq", TensorType((16, 16), F32))
    wk = b.add_input("wk", TensorType((16, 16), F32))
    scores = (x.matmul(wq) * 0.25).matmul(x.matmul(wk).permute(1, 0))
    peak = b.emit("amax", scores, axes=(1,))
    e = (scores - peak.expand(8, 8)).exp()
    b.set_outputs([(e / e.sum_axes((1,)).expand(8, 8)).matmul(x) + x])
    return b.build()


GOLDENS = {
    affine_relu: """\
graph affine_relu(%x: f32[64,128]) -> f32[64,128] {
  %2 : f32[64,128] = fused[e_64x128_mul_add_relu](%x)
  return %2
}""",
    softmax_rows: """\
graph softmax(%x: f32[4096,1024]) -> f32[4096,1024] {
  %6 : f32[4096,1024] = fused[r_4096x1024_amax_sub_exp_sum_div](%x)
  return %6
}""",
    layer_norm: """\
graph layer_norm(%x: f32[32,256], %weight: f32[256], %bias: f32[256]) -> f32[32,256] {
  %17 : f32[32,256] = fused[r_32x256_sum_div_sub_mul_sum_div_add_sqrt_4more](%x, %weight, %bias)
  return %17
}""",
    linear_relu: """\
graph linear(%x: f32[64,784], %l1.weight: f32[128,784], %l1.bias: f32[128]) -> f32[64,128] {
  %0 : f32[784,128] = permute(%l1.weight, perm=(1,0))
  %1 : f32[64,128]  = matmul(%x, %0)
  %5 : f32[64,128]  = fused[e_64x128_add_relu](%1, %l1.bias)
  return %5
}""",
    cross_entropy: """\
graph cross_entropy(%logits: f32[256,10], %onehot: f32[256,10]) -> (f32[], f32[256,10]) {
  %8, %7 : f32[256,10], f32[256,10] = fused[r_256x10_amax_sub_exp_sum_log_sub_mul](%logits, %onehot)
  %11    : f32[]                    = fused[r_256x10_sum_mul](%8)
  return %11, %7
}""",
    around_matmul: """\
graph around_matmul(%x: f32[16,16], %w: f32[16,16]) -> f32[16,16] {
  %0 : f32[16,16] = fused[e_16x16_mul](%x)
  %1 : f32[16,16] = matmul(%0, %w)
  %2 : f32[16,16] = fused[e_16x16_add](%0, %1)
  return %2
}""",
    attention: """\
graph attention(%x: f32[8,16], %wq: f32[16,16], %wk: f32[16,16]) -> f32[8,16] {
  %0  : f32[8,16] = matmul(%x, %wq)
  %1  : f32[8,16] = fused[e_8x16_mul](%0)
  %2  : f32[8,16] = matmul(%x, %wk)
  %3  : f32[16,8] = permute(%2, perm=(1,0))
  %4  : f32[8,8]  = matmul(%1, %3)
  %11 : f32[8,8]  = fused[r_8x8_amax_sub_exp_sum_div](%4)
  %12 : f32[8,16] = matmul(%11, %x)
  %13 : f32[8,16] = fused[e_8x16_add](%12, %x)
  return %13
}""",
}


@pytest.mark.parametrize("build", list(GOLDENS), ids=lambda f: f.__name__)
def test_fusion_golden(build) -> None:  # noqa: ANN001
    assert format_plan(fuse(build())) == GOLDENS[build]


def test_fused_text_is_byte_stable() -> None:
    assert format_plan(fuse(layer_norm())) == format_plan(fuse(layer_norm()))


def test_body_prints_on_request() -> None:
    text = format_plan(fuse(linear_relu()), bodies=True)
    assert text.splitlines()[3:9] == [
        "  %5 : f32[64,128]  = fused[e_64x128_add_relu](%1, %l1.bias)",
        "    graph e_64x128_add_relu(%1: f32[64,128], %l1.bias: f32[128]) -> f32[64,128] {",
        "      %0 : f32[1,128]  = reshape(%l1.bias, shape=(1,128))",
        "      %2 : f32[64,128] = expand(%0, shape=(64,128))",
        "      %3 : f32[64,128] = add(%1, %2)",
        "      %4 : f32[64,128] = relu(%3)",
    ]


@pytest.mark.parametrize("build", [around_matmul, attention, cross_entropy], ids=lambda f: f.__name__)
def test_steps_are_in_dependency_order_and_cover_every_node(build) -> None:  # noqa: ANN001
    """No cycle: every step reads only graph inputs and what earlier steps made; each compute node is in
    exactly one kernel."""
    graph = build()
    plan = fuse(graph)
    available = {id(v) for v in graph.inputs}
    for step in plan.steps:
        assert all(id(v) in available for v in step.inputs), step.name
        available.update(id(v) for v in step.outputs)
    covered = [id(n) for step in plan.steps if step.kind in (KERNEL, EXTERN_STEP) for n in step.nodes]
    assert len(covered) == len(set(covered))


def test_a_reduction_and_the_elementwise_chain_feeding_it_are_one_kernel() -> None:
    b = GraphBuilder("sum_of_squares")
    x = b.add_input("x", TensorType((100, 30), F32))
    b.set_outputs([((x - 1.0) * (x - 1.0)).sum_axes((1,))])
    (step,) = fuse(b.build()).steps
    assert step.name == "r_100x30_sub_sub_mul_sum"


def test_column_reduction_keeps_its_epilogue_and_stores_what_others_need() -> None:
    b = GraphBuilder("bias_grad")
    g = b.add_input("g", TensorType((256, 512), F32))
    mask = b.add_input("mask", TensorType((256, 512), dtypes.bool_))
    masked = b.emit("where", mask, g, b.constant(0.0, F32))
    b.set_outputs([masked.sum_axes((0,)).reshape(512) * 0.5, masked])
    plan = fuse(b.build())
    (step,) = plan.steps
    assert step.columns and step.name == "r_256x512_where_sum_mul"
    assert sorted(v.name for v in step.outputs) == ["0", "3"]


def test_compiled_dump_shows_the_fused_graph(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path) -> None:  # noqa: ANN001
    from jitorch.codegen.backend import llvm_backend

    monkeypatch.setenv("JITORCH_DUMP", "fusion,kernels")
    monkeypatch.setenv("JITORCH_CACHE_DIR", str(tmp_path))
    timings: dict[str, float] = {}
    run = llvm_backend(affine_relu(), timings)
    err = capsys.readouterr().err
    assert "=== fusion: affine_relu: fused (" in err and "fused[e_64x128_mul_add_relu](%x)" in err
    assert "=== kernels: affine_relu: loop nests (" in err and "for i0 in [start, end) (8192):" in err
    assert set(timings) == {"fusion", "lowering", "llvm", "codegen"}
    x = np.linspace(-2, 2, 64 * 128, dtype=np.float32).reshape(64, 128)
    np.testing.assert_allclose(run([x])[0], np.maximum(x * 2 + 1, 0), rtol=1e-6, atol=1e-6)
