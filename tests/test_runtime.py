"""The compiled-graph runtime: fresh outputs and the output pool, intermediates sharing memory by
liveness, input checks, threads, and a small MLP trained with compiled forward and backward graphs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import jitorch
from jitorch.codegen import runtime
from jitorch.codegen.backend import llvm_backend, lower_plan
from jitorch.codegen.loopnest import Kernel, format_kernel
from jitorch.ir import dtypes
from jitorch.ir.graph import Graph, GraphBuilder
from jitorch.ir.types import ShapeError, TensorType
from jitorch.passes.fusion import Step, fuse
from jitorch.passes.inplace import mark_in_place

F32 = dtypes.float32


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JITORCH_CACHE_DIR", str(tmp_path_factory.mktemp("jitorch-cache")))
        yield


def two_layer_graph() -> GraphBuilder:
    """x -> matmul -> tanh -> matmul -> exp, with a transposed view of the first activation returned."""
    b = GraphBuilder("two_layers")
    x = b.add_input("x", TensorType((64, 128), F32))
    w1 = b.add_input("w1", TensorType((128, 256), F32))
    w2 = b.add_input("w2", TensorType((256, 128), F32))
    h = x.matmul(w1).tanh()
    b.set_outputs([(h.matmul(w2) * 0.5).exp(), h.permute(1, 0)])
    return b


def inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) * 0.1 for s in ((64, 128), (128, 256), (256, 128))]


def reference(arrays: list[np.ndarray]) -> list[np.ndarray]:
    x, w1, w2 = arrays
    h = np.tanh(x @ w1)
    return [np.exp((h @ w2) * 0.5), h.T]


def test_outputs_are_fresh_and_never_overwritten_by_later_calls() -> None:
    run = llvm_backend(two_layer_graph().build(), {})
    first_inputs, second_inputs = inputs(0), inputs(1)
    first = run(first_inputs)
    kept = [a.copy() for a in first]
    second = run(second_inputs)
    for a, b in zip(first, second):
        assert not np.shares_memory(a, b)
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    for got, want in zip(second, reference(second_inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_output_pool_reuses_an_array_once_nothing_else_refers_to_it() -> None:
    """Outputs of _POOLED_BYTES or more come from the pool (smaller ones from np.empty, which malloc may or
    may not place where the last one was)."""
    b = GraphBuilder("pooled")
    x = b.add_input("x", TensorType((128, 256), F32))  # 128 KiB
    b.set_outputs([(x * 0.5).exp()])
    run = llvm_backend(b.build(), {})
    assert 128 * 256 * 4 >= runtime._POOLED_BYTES
    arrays = [np.ones((128, 256), np.float32)]
    out = run(arrays)[0]
    address = out.ctypes.data
    held = run(arrays)[0]  # `out` is still referred to: a different array
    assert held.ctypes.data != address
    del out
    again = run(arrays)[0]
    assert again.ctypes.data == address


def test_intermediates_with_disjoint_lifetimes_share_memory() -> None:
    # five buffers in a chain: each lives from the step making it to the step reading it
    sizes = [4096, 4096, 8192, 4096, 1024]
    lifetimes = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    blocks, placement = runtime.plan_memory(sizes, lifetimes)
    assert len(blocks) == 2 and sum(blocks) < sum(sizes)
    for i in range(len(sizes) - 1):  # neighbours overlap in time, so never in memory
        assert placement[i][0] != placement[i + 1][0]
    b = GraphBuilder("chain")
    x = b.add_input("x", TensorType((256, 256), F32))
    w = b.add_input("w", TensorType((256, 256), F32))
    y = x
    for _ in range(4):
        y = (y.matmul(w) * 0.01).relu()
    b.set_outputs([y])
    run = llvm_backend(b.build(), {})
    intermediate = 256 * 256 * 4
    assert run.planned_bytes <= 2 * intermediate  # 7 intermediates, two alive at a time
    rng = np.random.default_rng(2)
    xs, ws = rng.normal(size=(256, 256)).astype(np.float32), rng.normal(size=(256, 256)).astype(np.float32)
    want = xs
    for _ in range(4):
        want = np.maximum((want @ ws) * np.float32(0.01), 0)
    np.testing.assert_allclose(run([xs, ws])[0], want, rtol=1e-4, atol=1e-6)


def _in_place_plan(graph: Graph) -> tuple[dict[int, Step], dict[int, Kernel]]:
    """The steps of a graph planned for in-place kernels, and the kernels, by id of the value they make."""
    plan = fuse(graph)
    mark_in_place(plan)
    kernels = lower_plan(plan)
    return ({id(step.outputs[0]): step for step in plan.steps},
            {id(step.outputs[0]): kernels[i] for i, step in enumerate(plan.steps) if i in kernels})


def linear_relu_linear() -> Graph:
    b = GraphBuilder("linear_relu_linear")
    x = b.add_input("x", TensorType((256, 64), F32))
    w = b.add_input("w", TensorType((64, 128), F32))
    bias = b.add_input("bias", TensorType((128,), F32))
    w2 = b.add_input("w2", TensorType((128, 32), F32))
    b.set_outputs([(x.matmul(w) + bias).relu().matmul(w2)])
    return b.build()


def test_an_elementwise_kernel_overwrites_the_matmul_output_it_consumes() -> None:
    steps, kernels = _in_place_plan(linear_relu_linear())
    ((made, kernel),) = kernels.items()
    assert steps[made].in_place is not None and kernel.in_place
    text = format_kernel(kernel)
    assert "out0[" not in text and "in0[128*i0 + i1] = relu(add(in0[128*i0 + i1], in1[i1]))" in text
    assert "// out0 is written over in0, in place" in text
    run = llvm_backend(linear_relu_linear(), {})
    assert run.planned_bytes == 256 * 128 * 4  # the matmul's output, which the kernel then overwrites
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=s).astype(np.float32) for s in ((256, 64), (64, 128), (128,), (128, 32))]
    x, w, bias, w2 = arrays
    for _ in range(2):  # the second call finds the buffer holding the first call's result
        np.testing.assert_allclose(run(arrays)[0], np.maximum(x @ w + bias, 0) @ w2, rtol=1e-4, atol=1e-4)


def test_a_kernel_overwrites_no_value_read_later_returned_viewed_or_given() -> None:
    b = GraphBuilder("kept")
    x = b.add_input("x", TensorType((64, 64), F32))
    h = x.matmul(x)
    relu = h.relu()
    added = relu.matmul(x) + h  # h is read after relu's kernel, whose output so gets a buffer of its own
    later = added.matmul(x)
    returned = x.matmul(x)
    viewed = x.matmul(x)
    exp, view_user, given = returned.exp(), viewed.sigmoid() + viewed.permute(1, 0).matmul(x), x.sin()
    b.set_outputs([later, returned, exp, view_user, given])
    steps, _ = _in_place_plan(b.build())
    assert steps[id(relu)].in_place is None
    assert steps[id(added)].in_place is added.producer.inputs[0]  # the add is the last reader of both
    assert steps[id(exp)].in_place is None and steps[id(given)].in_place is None
    assert all(step.in_place is not viewed for step in steps.values())


def test_a_kernel_reading_the_input_elsewhere_than_it_stores_keeps_its_own_output() -> None:
    b = GraphBuilder("transposed")
    x = b.add_input("x", TensorType((64, 64), F32))
    h = x.matmul(x)
    y = h + h.permute(1, 0)  # reads h[j, i] while storing [i, j]: overwriting h would read new values
    b.set_outputs([y.matmul(x)])
    graph = b.build()
    steps, kernels = _in_place_plan(graph)
    assert steps[id(y)].in_place is h and not kernels[id(y)].in_place
    xs = np.random.default_rng(4).normal(size=(64, 64)).astype(np.float32)
    hs = xs @ xs
    np.testing.assert_allclose(llvm_backend(graph, {})([xs])[0], (hs + hs.T) @ xs, rtol=1e-4, atol=1e-3)


def test_bad_inputs_raise_like_the_interpreter() -> None:
    run = llvm_backend(two_layer_graph().build(), {})
    x, w1, w2 = inputs()
    with pytest.raises(ShapeError, match="expects f32"):
        run([x[:10], w1, w2])
    with pytest.raises(TypeError, match="expects f32"):
        run([x.astype(np.float64), w1, w2])
    with pytest.raises(TypeError, match="expected 3 inputs"):
        run([x, w1])


def test_thread_count_api() -> None:
    previous = jitorch.get_num_threads()
    try:
        jitorch.set_num_threads(1)
        assert jitorch.get_num_threads() == runtime.get_num_threads() == 1
        with pytest.raises(ValueError):
            jitorch.set_num_threads(0)
    finally:
        jitorch.set_num_threads(previous)
    script = "import jitorch; print(jitorch.get_num_threads())"
    found = subprocess.run([sys.executable, "-c", script], env={"JITORCH_NUM_THREADS": "3", "PATH": ""},
                           capture_output=True, text=True, check=True, cwd=str(__import__("pathlib").Path(
                               __file__).resolve().parents[1]))
    assert found.stdout.strip() == "3"


def test_compiled_training_of_a_small_mlp_matches_eager() -> None:
    from jitorch.frontend.functional import log_softmax

    def make() -> list[jitorch.Tensor]:
        jitorch.manual_seed(0)
        return [(jitorch.randn(20, 32) * 0.2).requires_grad_(), jitorch.zeros(32, requires_grad=True),
                (jitorch.randn(32, 5) * 0.2).requires_grad_(), jitorch.zeros(5, requires_grad=True)]

    def loss_of(params: list[jitorch.Tensor]):  # noqa: ANN202
        w1, b1, w2, b2 = params

        def loss(x: jitorch.Tensor, targets: jitorch.Tensor) -> jitorch.Tensor:
            logits = (x @ w1 + b1).relu() @ w2 + b2
            return -(log_softmax(logits, 1) * targets).sum() / x.shape[0]
        return loss

    rng = np.random.default_rng(3)
    batches = [(jitorch.tensor(rng.normal(size=(16, 20)).astype(np.float32)),
                jitorch.tensor(np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)])) for _ in range(4)]
    eager_params, compiled_params = make(), make()
    eager_loss, compiled_loss = loss_of(eager_params), jitorch.compile(loss_of(compiled_params), backend="llvm")
    for x, targets in batches:
        for params, fn in ((eager_params, eager_loss), (compiled_params, compiled_loss)):
            value = fn(x, targets)
            value.backward()
            with jitorch.no_grad():
                for p in params:
                    p -= 0.5 * p.grad
            grads = [p.grad.numpy().copy() for p in params]
            for p in params:
                p.grad = None
            if fn is eager_loss:
                eager_grads, eager_value = grads, value.item()
            else:
                np.testing.assert_allclose(value.item(), eager_value, rtol=1e-5, atol=1e-6)
                for got, want in zip(grads, eager_grads):
                    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert compiled_loss.stats["hits"] == 3 and compiled_loss.stats["compiles"] == 1
    (entry,) = compiled_loss.entries()
    assert isinstance(entry.run_forward, runtime.CompiledGraph)  # not the interpreter fallback
    assert isinstance(entry.backward[0], runtime.CompiledGraph)
    for got, want in zip(compiled_params, eager_params):
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-6)
