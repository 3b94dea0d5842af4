"""The IR tools: GraphBuilder type checks, the printed text (golden), parse round trips over every op kind
and attribute type, verify's broken-graph cases, the interpreter against numpy, DOT output and replay."""
from __future__ import annotations

import math
import weakref

import numpy as np
import pytest

from jitorch.ir import dtypes
from jitorch.ir.dot import to_dot
from jitorch.ir.graph import Graph, GraphBuilder, Node, Value, replay
from jitorch.ir.interpreter import run
from jitorch.ir.ops import ELEMENTWISE, OPS, Op
from jitorch.ir.parser import ParseError, parse_graph
from jitorch.ir.printer import format_graph
from jitorch.ir.types import Literal, ShapeError, TensorType
from jitorch.ir.verify import VerifyError, verify

f32, f64, i32, i64, b8 = dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64, dtypes.bool_


def T(*shape: int, dtype: dtypes.DType = f32) -> TensorType:
    return TensorType(tuple(shape), dtype)


def mlp() -> Graph:
    b = GraphBuilder("forward")
    x = b.add_input("x", T(64, 784))
    weight = b.add_input("l1.weight", T(128, 784))
    bias = b.add_input("l1.bias", T(128))
    b.scope, b.location = "l1", "model.py:12"
    pre = x @ weight.T + bias
    b.scope, b.location = "act", "model.py:13"
    b.set_outputs([pre.relu()])
    return b.build()


MLP_TEXT = """\
graph forward(%x: f32[64,784], %l1.weight: f32[128,784], %l1.bias: f32[128]) -> f32[64,128] {
  %0 : f32[784,128] = permute(%l1.weight, perm=(1,0))   # l1   model.py:12
  %1 : f32[64,128]  = matmul(%x, %0)                    # l1   model.py:12
  %2 : f32[1,128]   = reshape(%l1.bias, shape=(1,128))  # l1   model.py:12
  %3 : f32[64,128]  = expand(%2, shape=(64,128))        # l1   model.py:12
  %4 : f32[64,128]  = add(%1, %3)                       # l1   model.py:12
  %5 : f32[64,128]  = relu(%4)                          # act  model.py:13
  return %5
}"""


def structure(graph: Graph) -> tuple:
    """Everything that makes two graphs the same, with Python types spelled out (1 vs 1.0, tuple vs list)."""
    def typed(value: object) -> object:
        if isinstance(value, tuple):
            return ("tuple", tuple(typed(v) for v in value))
        if isinstance(value, Graph):
            return ("graph", structure(value))
        return (type(value).__name__, repr(value))

    def operand(a: Value | Literal) -> object:
        return ("literal", typed(a.value), a.dtype.name) if type(a) is Literal else ("value", a.name)

    nodes = [(n.op, tuple(operand(a) for a in n.inputs), tuple(sorted((k, typed(v)) for k, v in n.attrs.items())),
              n.output.name, n.output.type, n.scope, n.location) for n in graph.nodes]
    return (graph.name, [(v.name, v.type) for v in graph.inputs], nodes, [v.name for v in graph.outputs])


def assert_round_trip(graph: Graph, **options: bool) -> Graph:
    text = format_graph(graph, **options)
    parsed = parse_graph(text)
    assert format_graph(parsed, **options) == text
    assert structure(parsed) == structure(graph)
    verify(parsed)
    return parsed


# ------------------------------------------------------------------------------------------------
# building and printing


def test_printed_text_is_the_golden_text():
    graph = mlp()
    assert format_graph(graph) == MLP_TEXT
    assert str(graph) == MLP_TEXT
    assert format_graph(mlp()) == MLP_TEXT  # a second build prints the same bytes


def test_show_uses_counts_operands_and_returns():
    b = GraphBuilder("uses")
    x = b.add_input("x", T(3))
    y = x.exp()
    b.set_outputs([y * y, y])
    assert format_graph(b.build(), show_uses=True) == """\
graph uses(%x: f32[3]) -> (f32[3], f32[3]) {
  %0 : f32[3] = exp(%x)      # uses=3
  %1 : f32[3] = mul(%0, %0)  # uses=1
  return %1, %0
}"""


def test_vjp_rules_emit_nodes_on_values():
    b = GraphBuilder("tanh_backward")
    x, g = b.add_input("x", T(3)), b.add_input("g", T(3))
    out = x.tanh()
    (grad,) = OPS["tanh"].vjp(g, out, x)
    total = g.sum_axes((0,))
    (sum_grad,) = OPS["sum"].vjp(total, total, x, axes=(0,))
    b.set_outputs([grad, sum_grad])
    graph = b.build()
    verify(graph)
    assert format_graph(graph) == """\
graph tanh_backward(%x: f32[3], %g: f32[3]) -> (f32[3], f32[3]) {
  %0 : f32[3] = tanh(%x)
  %1 : f32[3] = mul(%0, %0)
  %2 : f32[3] = sub(1.0:f32, %1)
  %3 : f32[3] = mul(%g, %2)
  %4 : f32[1] = sum(%g, axes=(0,))
  %5 : f32[3] = expand(%4, shape=(3,))
  return %3, %5
}"""
    xs = np.array([-1.0, 0.25, 2.0], np.float32), np.array([1.0, 2.0, 3.0], np.float32)
    grad_x, grad_sum = run(graph, list(xs))
    np.testing.assert_allclose(grad_x, xs[1] * (1 - np.tanh(xs[0]) ** 2), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_sum, np.full(3, 6.0), rtol=0, atol=0)


def test_emit_raises_the_registry_errors():
    b = GraphBuilder("bad")
    a, c = b.add_input("a", T(3, 4)), b.add_input("c", T(5, 2))
    with pytest.raises(ShapeError, match=r"matmul\(f32\[3,4\], f32\[5,2\]\)"):
        b.emit("matmul", a, c)
    with pytest.raises(TypeError, match=r"add\(f32\[3,4\], i64\[3,4\]\)"):
        b.emit("add", a, b.add_input("n", T(3, 4, dtype=i64)))
    with pytest.raises(ValueError, match="unknown op 'frobnicate'"):
        b.emit("frobnicate", a)
    with pytest.raises(TypeError, match="operands are IR Values or Literals"):
        b.emit("add", a, 2.0)
    with pytest.raises(ValueError, match="already exists"):
        b.add_input("a", T(1))
    with pytest.raises(ValueError, match="invalid value name"):
        b.add_input("has space", T(1))
    other = GraphBuilder("other").add_input("z", T(3, 4))
    with pytest.raises(ValueError, match="another graph"):
        b.emit("add", a, other)
    with pytest.raises(TypeError, match="truth value"):
        bool(a)
    assert len(b.nodes) == 0  # failed emits leave nothing behind
    b.set_outputs([a])
    b.build()
    with pytest.raises(ValueError, match="already built"):
        a.exp()


def test_builder_normalizes_attrs_and_names_nodes_after_inputs():
    b = GraphBuilder("names")
    x = b.add_input("x", T(2, 3))
    y = b.emit("reshape", x, shape=[np.int64(3), 2])
    assert y.producer.attrs == {"shape": (3, 2)} and type(y.producer.attrs["shape"][0]) is int
    late = b.add_input("1", T(3, 2))  # a lifted input added mid-trace may take a number
    z = y + late
    assert (y.name, late.name, z.name) == ("0", "1", "2")
    assert b.constant(2, f32) == Literal(2.0, f32) and b.constant(1, "bool") == Literal(True, b8)
    with pytest.raises(TypeError, match="attribute shape"):
        b.emit("reshape", x, shape={3, 2})


def test_graph_users_and_use_counts():
    graph = mlp()
    x, weight, _ = graph.inputs
    assert graph.users(weight) == [graph.nodes[0]]
    assert graph.users(graph.nodes[5].output) == []
    counts = graph.use_counts()
    assert counts[id(x)] == 1 and counts[id(graph.nodes[5].output)] == 1 and id(graph.nodes[5]) not in counts


# ------------------------------------------------------------------------------------------------
# parsing


def everything() -> Graph:
    """A graph using every op kind, every attribute type and literals of every dtype."""
    b = GraphBuilder("everything")
    x = b.add_input("x", T(2, 3))
    d = b.add_input("layers.0.d", T(2, 3, dtype=f64))
    index = b.add_input("idx", T(2, 3, dtype=i64))
    rows = b.add_input("rows", T(4, dtype=i32))
    mask = b.add_input("mask", T(2, 3, dtype=b8))
    seed = b.add_input("seed0", T(dtype=i64))
    b.scope, b.location = "block.0", "model.py:7"
    e = b.emit("add", b.emit("exp", x), Literal(2.5, f32))
    e = b.emit("div", b.emit("sub", e, Literal(-0.0, f32)), Literal(math.inf, f32))
    e = b.emit("mul", e, Literal(math.nan, f32))
    p = b.emit("pow", d, Literal(1e-300, f64))
    b.scope = "weird scope"
    q = b.emit("mod", b.emit("floordiv", rows, Literal(-2, i32)), Literal(3, i32))
    r = b.emit("bitwise_and", mask, Literal(True, b8))
    b.scope, b.location = "", "my file.py:3"
    w = b.emit("where", b.emit("lt", x, Literal(-math.inf, f32)), x, Literal(0.0, f32))
    c = b.emit("cast", w, dtype=f64)
    b.scope, b.location = "uses=3", ""
    s = b.emit("sum", b.emit("detach", c), axes=(0, 1))
    m = b.emit("argmax", x, axes=(1,))
    b.scope = "-"
    moved = b.emit("permute", b.emit("reshape", x, shape=(3, 2)), perm=(1, 0))
    sl = b.emit("slice", moved, starts=(0, 0), stops=(2, 3), steps=(1, 2))
    b.scope, b.location = "", ""
    scattered = b.emit("slice_scatter", moved, sl, starts=(0, 0), stops=(2, 3), steps=(1, 2))
    joined = b.emit("cat", scattered, b.emit("flip", x, axes=(0,)), axis=1)
    gathered = b.emit("gather", x, index, axis=1)
    picked = b.emit("index", x, rows)
    put = b.emit("index_put", x, rows, picked, accumulate=True)
    product = b.emit("matmul", x, b.emit("permute", x, perm=(1, 0)))
    sums = b.emit("cumsum", d, axis=1)
    fills = [b.emit("full", shape=(2,), value=-math.inf, dtype=f32),
             b.emit("full", shape=(), value=math.nan, dtype=f64),
             b.emit("full", shape=(3,), value=7, dtype=i64), b.emit("full", shape=(1,), value=True, dtype=b8),
             b.emit("arange", start=0, step=2, size=5, dtype=i64),
             b.emit("arange", start=0.5, step=-0.25, size=4, dtype=f32)]
    noise = b.emit("add", b.emit("rand_normal", seed, shape=(3,), dtype=f64), Literal(1.0, f64))
    b.set_outputs([e, p, q, r, s, m, joined, gathered, put, product, sums, *fills, noise, x, e])
    return b.build()


def test_round_trip_covers_every_op_kind_and_attr_type():
    graph = everything()
    parsed = assert_round_trip(graph)
    kinds = {OPS[node.op].kind for node in graph.nodes}
    assert kinds == {OPS[name].kind for name in OPS}
    attrs = {type(v).__name__ for node in parsed.nodes for v in node.attrs.values()}
    assert attrs == {"tuple", "int", "float", "bool", "DType"}
    full = parsed.nodes[[n.op for n in parsed.nodes].index("full")]
    assert full.attrs["value"] == -math.inf and full.attrs["dtype"] is f32
    scopes = [(n.scope, n.location) for n in parsed.nodes]
    assert ("weird scope", "model.py:7") in scopes and ("", "my file.py:3") in scopes and ("-", "") in scopes
    text = format_graph(graph)
    for spelling in ("sub(%1, -0.0:f32)", "mul(%3, nan:f32)", "pow(%layers.0.d, 1e-300:f64)", "lt(%x, -inf:f32)",
                     "mod(%6, 3:i32)", "bitwise_and(%mask, true)", "value=nan, dtype=f64", "accumulate=true",
                     "start=0, step=2", '# "weird scope"  model.py:7', '# -              "my file.py:3"',
                     '# "uses=3"\n', '# "-"\n'):
        assert spelling in text
    assert assert_round_trip(graph, show_uses=True) is not None


def test_round_trip_of_strings_none_and_fused_bodies(monkeypatch: pytest.MonkeyPatch):
    def fused_infer(*operands: object, body: Graph, label: str, limit: object) -> TensorType:
        return body.outputs[0].type

    def fused_eager(*arrays: np.ndarray, body: Graph, label: str, limit: object) -> np.ndarray:
        return run(body, list(arrays))[0]

    monkeypatch.setitem(OPS, "fused", Op("fused", ELEMENTWISE, fused_infer, fused_eager))
    inner = GraphBuilder("e_4_add_relu")
    p0, p1 = inner.add_input("p0", T(4)), inner.add_input("p1", T(4))
    inner.set_outputs([(p0 + p1).relu()])
    body = inner.build()
    outer = GraphBuilder("outer")
    a, c = outer.add_input("a", T(4)), outer.add_input("b", T(4))
    outer.scope, outer.location = "l1", "m.py:1"
    outer.set_outputs([outer.emit("fused", a, c, body=body, label='say "hi" # not a comment', limit=None)])
    graph = outer.build()
    verify(graph)
    assert format_graph(graph, bodies=True) == """\
graph outer(%a: f32[4], %b: f32[4]) -> f32[4] {
  %0 : f32[4] = fused[e_4_add_relu](%a, %b, label="say \\"hi\\" # not a comment", limit=none)  # l1  m.py:1
    graph e_4_add_relu(%p0: f32[4], %p1: f32[4]) -> f32[4] {
      %0 : f32[4] = add(%p0, %p1)
      %1 : f32[4] = relu(%0)
      return %1
    }
  return %0
}"""
    parsed = assert_round_trip(graph, bodies=True)
    np.testing.assert_array_equal(run(parsed, [np.array([1, -2, 3, -4], np.float32), np.ones(4, np.float32)])[0],
                                  [2, 0, 4, 0])
    with pytest.raises(ParseError, match=r"line 2: fused\[e_4_add_relu\] needs its body"):
        parse_graph(format_graph(graph))


@pytest.mark.parametrize(("text", "message"), [
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[3] = exp(%y)\n  return %0\n}", r"line 2: %y is not defined"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[4] = exp(%x)\n  return %0\n}", r"line 2: %0 is declared f32\[4\]"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[3] = exp(%x, %x)\n  return %0\n}", r"line 2: TypeError"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[3] = fizz(%x)\n  return %0\n}", r"line 2: .*unknown op 'fizz'"),
    ("graph g(%x: q32[3]) -> f32[3] {\n  return %x\n}", r"line 1: unknown dtype 'q32'"),
    ("graph g(%x: f32[3], %x: f32[3]) -> f32[3] {\n  return %x\n}", r"line 1: .*already exists"),
    ("graph g(%x: f32[3]) -> f32[2] {\n  return %x\n}", r"line 2: returns \(f32\[3\]\) but the header"),
    ("graph g(%x: f32[3]) -> f32[3] {\n\n  %0 : f32[3] = add(%x, 2.5:i64)\n  return %0\n}", r"line 3: literal"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[3] = neg(%x) junk\n  return %0\n}", r"line 2: unexpected 'junk'"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  return %x\n", r"line 2: expected `}` after the return"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  return %x\n}\n}", r"line 4: unexpected text after"),
    ("graf g() -> () {\n}", r"line 1: expected `graph"),
    ("graph g(%x: f32[3]) -> f32[3] {\n  %0 : f32[3] = neg(%x)\n", r"line 2: the graph is not closed"),
])
def test_parse_errors_name_the_line(text: str, message: str):
    with pytest.raises(ParseError, match=message):
        parse_graph(text)


def test_parser_accepts_hand_written_text():
    graph = parse_graph("""
        # a comment line, then blank lines

        graph "my graph"(%x: i32[2,2]) -> (i32[2,2], b8[]) {
          %y : i32[2,2] = mul(%x, -3:i32)   # outer.inner  "a b.py:9"
          %0 : i32[1,1] = amax(%y, axes=(0,1))
          %1 : i32[] = reshape(%0, shape=())
          %2 : b8[] = gt(%1, 0:i32)
          return %y, %2
        }
    """)
    assert graph.name == "my graph" and graph.nodes[0].output.name == "y"
    assert (graph.nodes[0].scope, graph.nodes[0].location) == ("outer.inner", "a b.py:9")
    y, positive = run(graph, [np.array([[1, -2], [3, 4]], np.int32)])
    np.testing.assert_array_equal(y, [[-3, 6], [-9, -12]])
    assert positive.dtype == np.bool_ and positive.shape == () and bool(positive)


# ------------------------------------------------------------------------------------------------
# verify


def _fresh() -> Graph:
    b = GraphBuilder("g")
    x = b.add_input("x", T(3))
    b.set_outputs([x.exp().sin()])
    return b.build()


def test_verify_accepts_built_graphs():
    verify(mlp())
    verify(everything())


def test_verify_catches_use_before_definition():
    graph = _fresh()
    broken = Graph("g", graph.inputs, graph.nodes[::-1], graph.outputs)
    with pytest.raises(VerifyError, match=r"operand %0 is used before its definition\n    %1 : f32\[3\] = sin\(%0\)"):
        verify(broken)


def test_verify_catches_values_from_another_graph():
    graph, other = _fresh(), _fresh()
    with pytest.raises(VerifyError, match=r"operand %x is not defined in this graph.*\n    %0 : f32\[3\] = exp\(%x\)"):
        verify(Graph("g", other.inputs, graph.nodes, graph.outputs))


def test_verify_catches_duplicate_names():
    graph = _fresh()
    twin = Value("x", T(3))
    with pytest.raises(VerifyError, match="the name %x is used by input %x and by input %x"):
        verify(Graph("g", [graph.inputs[0], twin], graph.nodes, graph.outputs))
    graph.nodes[1].output.name = "0"
    with pytest.raises(VerifyError, match=r"the name %0 is used by node %0 and by node %0\n    %0 : f32\[3\] = sin"):
        verify(graph)


def test_verify_catches_stale_types():
    graph = _fresh()
    graph.nodes[0].output.type = T(3, dtype=f64)
    with pytest.raises(VerifyError, match=r"%0 is stored as f64\[3\] but exp infers f32\[3\]\n    %0 : f64\[3\] = exp"):
        verify(graph)
    graph = _fresh()
    graph.nodes[0].attrs["axes"] = (0,)
    with pytest.raises(VerifyError, match=r"the shape rule of exp rejects the node: TypeError"):
        verify(graph)


def test_verify_catches_undefined_outputs_and_unknown_ops():
    graph = _fresh()
    with pytest.raises(VerifyError, match=r"output 1 \(%ghost\) is not defined"):
        verify(Graph("g", graph.inputs, graph.nodes, [*graph.outputs, Value("ghost", T(3))]))
    graph.nodes[1].op = "frobnicate"
    with pytest.raises(VerifyError,
                       match=r"op 'frobnicate' is not in the registry\n    %1 : f32\[3\] = frobnicate\(%0\)"):
        verify(graph)


def test_verify_catches_unprintable_attrs_and_literals():
    graph = parse_graph("graph g(%x: f32[2,3]) -> f32[3,2] {\n"
                        "  %0 : f32[3,2] = reshape(%x, shape=(3,2))\n  return %0\n}")
    graph.nodes[0].attrs["shape"] = [3, 2]
    with pytest.raises(VerifyError, match=r"attribute shape=\[3, 2\] is not"):
        verify(graph)
    graph = _fresh()
    graph.nodes[1].inputs = (graph.nodes[0].output, Literal(2.5, i64))
    graph.nodes[1].op = "add"
    with pytest.raises(VerifyError, match=r"literal 2.5 does not have the Python type of dtype int64"):
        verify(graph)


# ------------------------------------------------------------------------------------------------
# interpreter


def test_interpreter_matches_numpy():
    rng = np.random.default_rng(0)
    graph = mlp()
    x, weight, bias = (rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs)
    (out,) = run(graph, [x, weight, bias])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.maximum(x @ weight.T + bias, 0), rtol=1e-5, atol=1e-5)
    (again,) = run(graph, [x, weight, bias])  # the cached plan gives the same result
    np.testing.assert_array_equal(again, out)


def test_interpreter_softmax_and_integer_graphs():
    b = GraphBuilder("softmax")
    x = b.add_input("x", T(4, 5, dtype=f64))
    shifted = x - x.amax(1, keepdim=True)
    b.set_outputs([shifted.exp() / shifted.exp().sum(1, keepdim=True)])
    data = np.random.default_rng(1).standard_normal((4, 5))
    (probs,) = run(b.build(), [data])
    expected = np.exp(data - data.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-12, atol=1e-12)

    b = GraphBuilder("ints")
    n = b.add_input("n", T(6, dtype=i32))
    b.set_outputs([(n * 3 + 1) % 4, n.sum(), n > 2])
    values = np.arange(-3, 3, dtype=np.int32)
    mod, total, big = run(b.build(), [values])
    np.testing.assert_array_equal(mod, (values * 3 + 1) % 4)
    assert mod.dtype == np.int32 and total.dtype == np.int64 and int(total) == -3
    np.testing.assert_array_equal(big, values > 2)


def test_interpreter_checks_inputs():
    graph = mlp()
    good = [np.zeros(v.shape, np.float32) for v in graph.inputs]
    with pytest.raises(ShapeError, match=r"input %l1.bias expects f32\[128\], got shape \(127,\)"):
        run(graph, [good[0], good[1], np.zeros(127, np.float32)])
    with pytest.raises(TypeError, match=r"input %x expects f32\[64,784\], got a float64 array"):
        run(graph, [np.zeros((64, 784)), good[1], good[2]])
    with pytest.raises(TypeError, match="expected 3 inputs, got 2"):
        run(graph, good[:2])


def test_interpreter_outputs_never_alias_inputs():
    b = GraphBuilder("views")
    x = b.add_input("x", T(2, 3))
    b.set_outputs([x, x.T, x.reshape(6), x.sum(0, keepdim=True).expand(4, 3)])
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    outputs = run(b.build(), [data])
    for out in outputs:
        out[...] = -1  # every output is writable, and writing it leaves the input alone
    np.testing.assert_array_equal(data, np.arange(6).reshape(2, 3))


def test_interpreter_frees_intermediates_after_last_use(monkeypatch: pytest.MonkeyPatch):
    alive: list[weakref.ref] = []
    dead_at_check: list[bool] = []

    def keep(x: np.ndarray) -> np.ndarray:
        alive.append(weakref.ref(x))
        return x + 1

    def check(x: np.ndarray) -> np.ndarray:
        dead_at_check.append(alive[0]() is None)
        return x + 1

    for name, eager in (("keep", keep), ("check", check)):
        monkeypatch.setitem(OPS, name, Op(name, ELEMENTWISE, lambda x: TensorType(x.shape, x.dtype), eager))
    b = GraphBuilder("memory")
    x = b.add_input("x", T(1000))
    first = x.exp()                  # used only by `keep`: dies right after it
    kept = b.emit("keep", first)
    b.set_outputs([b.emit("check", kept.exp())])
    run(b.build(), [np.zeros(1000, np.float32)])
    assert dead_at_check == [True]


def test_interpreter_on_random_and_source_ops_is_deterministic():
    b = GraphBuilder("noise")
    seed = b.add_input("seed", T(dtype=i64))
    b.set_outputs([b.emit("rand_uniform", seed, shape=(3, 2), dtype=f32), b.emit("arange", start=1, step=3, size=4,
                                                                                 dtype=i64)])
    graph = b.build()
    first, steps = run(graph, [np.array(7)])
    second, _ = run(graph, [np.array(7)])
    np.testing.assert_array_equal(first, second)
    assert first.shape == (3, 2) and ((first >= 0) & (first < 1)).all()
    np.testing.assert_array_equal(steps, [1, 4, 7, 10])


# ------------------------------------------------------------------------------------------------
# DOT and replay


def test_dot_output_is_stable():
    b = GraphBuilder("tiny")
    x = b.add_input("x", T(2))
    b.scope = "l1"
    b.set_outputs([x * 2.0])
    assert to_dot(b.build()) == """\
digraph "tiny" {
  node [shape=box, fontname="monospace", fontsize=10];
  edge [fontname="monospace", fontsize=8];
  in0 [label="%x\\nf32[2]", shape=ellipse, style=filled, fillcolor="#d5f5d5"];
  n0 [label="%0 = mul(%x, 2.0:f32)\\nf32[2]\\nl1"];
  in0 -> n0;
  out0 [label="return 0\\nf32[2]", shape=ellipse, style=filled, fillcolor="#d5e5f5"];
  n0 -> out0;
}
"""
    assert to_dot(mlp()) == to_dot(parse_graph(format_graph(mlp())))


def test_replay_without_rewrite_is_an_identical_copy():
    graph = everything()
    before = format_graph(graph)
    copy = replay(graph)
    assert copy is not graph and format_graph(copy) == before and structure(copy) == structure(graph)
    assert all(a is not b for a, b in zip(copy.nodes, graph.nodes))
    assert format_graph(graph) == before
    assert replay(graph, name="renamed").name == "renamed"


def test_replay_rewrite_mul_by_two_into_add():
    b = GraphBuilder("double")
    x = b.add_input("x", T(3))
    b.scope, b.location = "m", "f.py:1"
    b.set_outputs([(x * 2.0).exp()])
    graph = b.build()

    def double_to_add(builder: GraphBuilder, node: Node, inputs: list) -> Value | None:
        if node.op == "mul" and type(inputs[1]) is Literal and inputs[1].value == 2:
            return builder.emit("add", inputs[0], inputs[0])
        return None

    rewritten = replay(graph, double_to_add)
    verify(rewritten)
    assert format_graph(rewritten) == """\
graph double(%x: f32[3]) -> f32[3] {
  %0 : f32[3] = add(%x, %x)  # m  f.py:1
  %1 : f32[3] = exp(%0)      # m  f.py:1
  return %1
}"""
    assert [n.op for n in graph.nodes] == ["mul", "exp"]  # the input graph is untouched
    data = np.array([0.5, -1.0, 2.0], np.float32)
    np.testing.assert_array_equal(run(rewritten, [data])[0], run(graph, [data])[0])


def test_replay_literal_replacements_are_materialized_where_needed():
    b = GraphBuilder("consts")
    x = b.add_input("x", T(2, 2))
    zero = x * 0.0
    b.set_outputs([x + zero, zero.sum(), zero])

    def fold_zero(builder: GraphBuilder, node: Node, inputs: list) -> Literal | None:
        return Literal(0.0, f32) if node.op == "mul" else None

    rewritten = replay(b.build(), fold_zero)
    verify(rewritten)
    assert format_graph(rewritten) == """\
graph consts(%x: f32[2,2]) -> (f32[2,2], f32[], f32[2,2]) {
  %0 : f32[2,2] = add(%x, 0.0:f32)
  %1 : f32[2,2] = full(shape=(2,2), value=0.0, dtype=f32)
  %2 : f32[1,1] = sum(%1, axes=(0,1))
  %3 : f32[]    = reshape(%2, shape=())
  return %0, %3, %1
}"""
    with pytest.raises(TypeError, match="returned %x: f32\\[2,2\\], not f32\\[\\]"):
        replay(rewritten, lambda builder, node, inputs: builder.inputs[0] if node.op == "reshape" else None)
