"""Sequence models compiled: Transformer modules and an LSTM run as compiled graphs without falling back and
match eager (forward and gradients); an encoder layer's softmax, layer norms and activation are each one
kernel of the fused graph; an LSTM is one graph per sequence length, with linear-size gradient code."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import jitorch
from jitorch.codegen import runtime
from jitorch.frontend.compile import CompiledFunction, default_backend
from jitorch.ir.graph import Graph, Node
from jitorch.ir.ops import ELEMENTWISE, OPS, REDUCE
from jitorch.nn.rnn import LSTM
from jitorch.nn.transformer import Transformer, TransformerEncoder, TransformerEncoderLayer
from jitorch.passes.fusion import KERNEL, Step, fuse

BACKENDS = sorted({"interpreter", default_backend()})


@pytest.fixture(autouse=True)
def _seed() -> None:
    jitorch.manual_seed(0)


# -------------------------------------------------------------------------------------------------
# compiled against eager, with the reference interpreter and with the default (LLVM when present) backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_transformer_with_masks_matches_eager_forward_and_gradients(backend: str) -> None:
    model = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                        dropout=0.0, batch_first=True)
    compiled = jitorch.compile(model, backend=backend)
    tgt_mask = Transformer.generate_square_subsequent_mask(4)
    for _ in range(3):
        src, tgt = jitorch.randn(2, 5, 8), jitorch.randn(2, 4, 8)
        padding = jitorch.rand(2, 5) < 0.3
        padding[:, 0] = False
        kwargs = {"tgt_mask": tgt_mask, "src_key_padding_mask": padding, "memory_key_padding_mask": padding}
        got = compiled(src, tgt, **kwargs)
        model.zero_grad()
        got.square().sum().backward()
        got_grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
        model.zero_grad()
        want = model(src, tgt, **kwargs)
        want.square().sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
        for name, p in model.named_parameters():
            np.testing.assert_allclose(got_grads[name], p.grad.numpy(), rtol=1e-3, atol=1e-5, err_msg=name)
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_encoder_in_training_with_dropout_and_in_eval_does_not_fall_back(backend: str) -> None:
    encoder = TransformerEncoder(TransformerEncoderLayer(8, 2, dim_feedforward=16, activation="gelu"), 2)
    compiled = jitorch.compile(encoder, backend=backend)
    mask = Transformer.generate_square_subsequent_mask(5)
    for _ in range(2):
        compiled(jitorch.randn(5, 2, 8), mask=mask, is_causal=True).sum().backward()
    encoder.eval()
    with jitorch.no_grad():
        x = jitorch.randn(5, 2, 8)
        for _ in range(2):
            np.testing.assert_allclose(compiled(x, mask=mask).numpy(), encoder(x, mask=mask).numpy(), rtol=1e-5,
                                       atol=1e-5)
    assert compiled.stats["fallbacks"] == 0 and compiled.stats["compiles"] == 2


# -------------------------------------------------------------------------------------------------
# what the LLVM backend runs: one compiled graph each way, and the composites fused


def _compiled_entry(compiled: CompiledFunction, backward: bool) -> Any:
    """The one cache entry of `compiled`, after checking its graphs run as compiled code."""
    (entry,) = compiled.entries()
    assert compiled.stats["fallbacks"] == 0
    assert isinstance(entry.run_forward, runtime.CompiledGraph)  # not the interpreter, not eager
    assert (entry.backward is not None) == backward
    if backward:
        assert isinstance(entry.backward[0], runtime.CompiledGraph)
    return entry


def _kernels(graph: Graph) -> dict[int, Step]:
    """The kernel of the graph's fusion plan (as the backend fuses it) holding each compute node, by id."""
    return {id(node): step for step in fuse(graph).steps if step.kind == KERNEL for node in step.nodes}


def _computed_in(graph: Graph, module: str) -> list[Node]:
    """The elementwise and reduce nodes a submodule (by its attribute name) recorded."""
    return [node for node in graph.nodes if node.scope.rsplit(".", 1)[-1] == module
            and OPS[node.op].kind in (ELEMENTWISE, REDUCE)]


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_compiled_encoder_layer_fuses_softmax_layer_norms_and_activation(training: bool, activation: str) -> None:
    layer = TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, activation=activation,
                                    batch_first=True).train(training)
    compiled = jitorch.compile(lambda x: layer(x), backend="llvm")
    x = jitorch.randn(2, 6, 32, requires_grad=training)
    with jitorch.set_grad_enabled(training):  # inference as served: no gradients, so one forward graph
        for _ in range(2):
            got, want = compiled(x), layer(x)
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
            if training:
                got_grad, = jitorch.autograd.grad(got.square().sum(), [x])
                want_grad, = jitorch.autograd.grad(want.square().sum(), [x])
                np.testing.assert_allclose(got_grad.numpy(), want_grad.numpy(), rtol=1e-3, atol=1e-4)
    entry = _compiled_entry(compiled, backward=training)
    assert compiled.stats["compiles"] == 1
    graph = entry.graphs["forward" if training else "optimized"]
    kernel_of = _kernels(graph)

    (exp,) = [node for node in _computed_in(graph, "self_attn") if node.op == "exp"]
    softmax = kernel_of[id(exp)]  # max, shift, exp, sum and divide over each row of scores: one kernel
    assert {"amax", "sub", "exp", "sum", "div"} <= {node.op for node in softmax.nodes}
    assert softmax.name.startswith("r_2x4x6x6_") and softmax.axes == (3,) and not softmax.columns

    for norm in ("norm1", "norm2"):
        nodes = _computed_in(graph, norm)
        kernel = kernel_of[id(nodes[0])]
        assert all(kernel_of[id(node)] is kernel for node in nodes), norm  # mean, variance, normalize, affine
        assert [node.op for node in kernel.nodes].count("sum") == 2 and kernel.axes == (2,) and not kernel.columns

    (bias_add,) = _computed_in(graph, "linear1")
    activations = [node for node in graph.nodes if node.op in ("relu", "erf")]
    assert len(activations) == 1 and kernel_of[id(activations[0])] is kernel_of[id(bias_add)]
    assert kernel_of[id(bias_add)].name.startswith(f"e_2x6x64_add_{'relu' if activation == 'relu' else 'mul'}")

    if training:  # the q, k, v chunks of the packed projection get their gradients back as one cat
        backward_ops = [node.op for node in entry.graphs["backward"].nodes]
        assert "slice_scatter" not in backward_ops and "cat" in backward_ops


def test_compiled_lstm_is_one_graph_per_sequence_length() -> None:
    model = LSTM(4, 8, batch_first=True)
    compiled = jitorch.compile(lambda x: model(x)[0].square().mean(), backend="llvm")
    for length in (5, 5, 9):
        x = jitorch.randn(3, length, 4)
        losses, grads = [], []
        for fn in (compiled, lambda x: model(x)[0].square().mean()):
            model.zero_grad()
            loss = fn(x)
            loss.backward()
            losses.append(loss.item())
            grads.append([p.grad.numpy().copy() for p in model.parameters()])
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, atol=1e-7)
        for got, want in zip(*grads):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert compiled.stats["compiles"] == 2 and compiled.stats["hits"] == 1 and compiled.stats["fallbacks"] == 0
    for entry, length in zip(compiled.entries(), (5, 9)):
        assert isinstance(entry.run_forward, runtime.CompiledGraph)
        assert isinstance(entry.backward[0], runtime.CompiledGraph)
        forward, backward = entry.graphs["forward"], entry.graphs["backward"]
        assert tuple(forward.inputs[0].shape) == (3, length, 4)
        # the input projection, then one product with the hidden state per step: the whole loop is here
        assert [node.op for node in forward.nodes].count("matmul") == 1 + length
        ops = [node.op for node in backward.nodes]
        # each step's four gates and the steps of the projected input: cats, not sums of slice_scatters
        assert "slice_scatter" not in ops and ops.count("cat") == length + 1
