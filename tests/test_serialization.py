"""jitorch.save / jitorch.load: round trips, file objects, atomic writes, malformed files, weights_only."""
from __future__ import annotations

import io
import json
import math
import os
import pathlib
import pickle
from collections import Counter, OrderedDict

import numpy as np
import pytest

import jitorch as torch
from jitorch import serialization
from jitorch.serialization import CheckpointError, WeightsOnlyError


def _round_trip(obj, **load_args):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, **load_args)


def _assert_same(a, b):
    """Equal values and equal types, all the way down (tensors: dtype, shape and bits)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b and repr(a) == repr(b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int32, torch.int64, torch.bool])
def test_every_dtype_round_trips_exactly(dtype):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)) * 1e6
    data = values > 0 if dtype == torch.bool else values.astype(dtype.numpy)
    if dtype == torch.float32:
        data[0, :3] = [np.inf, -0.0, np.finfo(np.float32).tiny]
    original = torch.tensor(data)
    loaded = _round_trip(original)
    _assert_same(original, loaded)
    assert loaded.dtype == dtype


@pytest.mark.parametrize("shape", [(), (0,), (2, 0, 3), (1,), (1, 1, 1)])
def test_zero_dim_and_empty_tensors(shape):
    original = torch.full(shape, 7.5) if shape else torch.tensor(7.5)
    _assert_same(original, _round_trip(original))
    _assert_same(torch.zeros(shape, dtype=torch.int64), _round_trip(torch.zeros(shape, dtype=torch.int64)))


def test_non_contiguous_tensors():
    base = torch.arange(24).reshape(4, 6).float()
    views = {"transposed": base.t(), "strided": base[::2, 1::3], "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),
             "permuted": base.reshape(2, 3, 4).permute(2, 0, 1)}
    assert not views["transposed"].is_contiguous()
    loaded = _round_trip(views)
    for name, view in views.items():
        _assert_same(view.contiguous(), loaded[name])
        assert loaded[name].is_contiguous()


def test_nested_checkpoint_keeps_structure_and_types():
    checkpoint = {
        "epoch": 12, "loss": 0.125, "best": float("inf"), "worst": float("-inf"), "missing": float("nan"),
        "negative_zero": -0.0, "big": 2 ** 70, "name": "run-α", "done": False, "note": None,
        "model_state_dict": OrderedDict([("fc.weight", torch.randn(3, 2)), ("fc.bias", torch.zeros(3))]),
        "optimizer_state_dict": {"state": {0: {"step": torch.tensor(4.0), "exp_avg": torch.ones(3, 2)}},
                                 "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "foreach": None,
                                                   "params": [0, 1]}]},
        "milestones": Counter({5: 2, 9: 1}), "history": [1.0, [2, (3, "x")], {"k": ()}],
        (1, "a"): "tuple key", 3.5: "float key", None: "none key", True: "bool key",
        "dtype": torch.float64, "shape": torch.Size([2, 3]), "device": torch.device("cpu"),
    }
    loaded = _round_trip(checkpoint)
    _assert_same(checkpoint, loaded)
    assert isinstance(loaded["model_state_dict"], OrderedDict) and isinstance(loaded["milestones"], Counter)


def test_shared_tensors_and_requires_grad():
    weight = torch.randn(4, requires_grad=True)
    view = weight.detach()[:2]
    loaded = _round_trip({"a": weight, "b": [weight], "view": view})
    assert loaded["a"] is loaded["b"][0]  # one object saved twice loads as one object
    assert loaded["a"].requires_grad and loaded["a"].is_leaf and not loaded["view"].requires_grad
    with torch.no_grad():
        loaded["a"].mul_(0)
    np.testing.assert_array_equal(loaded["view"].numpy(), weight.detach().numpy()[:2])  # views are stored apart


def test_loaded_tensors_own_writable_memory(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.ones(3)}, path)
    first = torch.load(path)["w"]
    first.add_(1)
    second = torch.load(path)["w"]
    np.testing.assert_array_equal(first.numpy(), [2, 2, 2])
    np.testing.assert_array_equal(second.numpy(), [1, 1, 1])
    assert first.numpy().flags.writeable and first.numpy().flags.owndata


def test_file_objects_read_and_write_at_their_position():
    buffer = io.BytesIO()
    buffer.write(b"preamble")
    torch.save({"x": torch.arange(3)}, buffer)
    torch.save([torch.ones(2), "second"], buffer)
    buffer.write(b"trailer")
    buffer.seek(len(b"preamble"))
    first, second = torch.load(buffer), torch.load(buffer)
    assert first["x"].tolist() == [0, 1, 2] and second[1] == "second" and second[0].tolist() == [1.0, 1.0]
    assert buffer.read() == b"trailer"


def test_file_layout_is_safetensors(tmp_path):
    path = tmp_path / "layout.safetensors"
    torch.save({"w": torch.ones(2, 3), "n": 1}, str(path))
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    assert (8 + length) % 8 == 0
    assert header["w"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["__metadata__"]["format"] == "jitorch" and header["__metadata__"]["pickle"] == "0"
    assert len(raw) == 8 + length + 24
    np.testing.assert_array_equal(np.frombuffer(raw[8 + length:], "<f4"), np.ones(6))


def test_plain_safetensors_files_load_as_a_dict():
    entries = {"b": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
               "a": {"dtype": "BOOL", "shape": [3], "data_offsets": [16, 19]}}
    buffer = io.BytesIO(_container(entries, np.array([5, 6], "<i8").tobytes() + bytes([1, 0, 1])))
    loaded = torch.load(buffer)
    assert list(loaded) == ["b", "a"] and loaded["b"].tolist() == [5, 6] and loaded["a"].tolist() == [True, False, True]


def test_paths_and_map_location(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, path)
    for location in (None, "cpu", torch.device("cpu"), {"cuda:0": "cpu"}, lambda storage, loc: storage):
        assert torch.load(path, map_location=location)["w"].tolist() == [1.0, 1.0]
    assert torch.load(str(path), weights_only=True)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
        torch.load(path, map_location="cuda")
    with pytest.raises(RuntimeError, match="Parent directory .* does not exist"):
        torch.save({}, tmp_path / "missing" / "m.pt")


# ---------------------------------------------------------------------------------------------------
# atomic writes


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    torch.save({"version": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()

    def broken_writer(f, arrays):
        f.write(b"\0" * 100)
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing the tensors

    monkeypatch.setattr(serialization, "_write_buffers", broken_writer)
    with pytest.raises(KeyboardInterrupt):
        torch.save({"version": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    monkeypatch.undo()
    assert torch.load(path)["version"] == 1
    torch.save({"version": 2}, path)
    assert torch.load(path) == {"version": 2} and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = tmp_path / "fresh.pt"
        torch.save({}, path)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.chmod(path, 0o600)
        torch.save({"again": 1}, path)
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


# ---------------------------------------------------------------------------------------------------
# malformed files


def _container(entries: dict, data: bytes, metadata: dict | None = None, pad: bool = True) -> bytes:
    header = dict(entries)
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def _ours(entries: dict, data: bytes, structure, text: str | None = None) -> bytes:
    metadata = {"format": "jitorch", "version": "1", "data_size": str(len(data)), "pickle": "0",
                "structure": json.dumps(structure) if text is None else text}
    return _container(entries, data, metadata)


def _json_list_header() -> bytes:
    text = b"[1, 2]  "
    return len(text).to_bytes(8, "little") + text


def _valid_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(64).float(), "step": 3}, buffer)
    return buffer.getvalue()


F32_4 = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
MALFORMED = {
    "empty": (b"", "the file is empty"),
    "short": (b"\x10\x00\x00", "truncated"),
    "truncated header": (_valid_bytes()[:40], "header length .* is larger than the .* bytes that follow"),
    "truncated data": (_valid_bytes()[:-10], "data section should have 256 bytes but only 246 follow"),
    "absurd header length": ((2 ** 62).to_bytes(8, "little") + b"{}", "header length 4611686018427387904"),
    "not json": (b"\x08\x00\x00\x00\x00\x00\x00\x00{nojson}", "the header is not valid JSON"),
    "not utf-8": (b"\x04\x00\x00\x00\x00\x00\x00\x00\xff\xfe{}", "the header is not valid JSON"),
    "json list": (_json_list_header(), "the header is a JSON list, not an object"),
    "offsets past the data": (_container(F32_4, b"\0" * 8), "ends at byte 16, past the end of the 8-byte data"),
    "offsets into the header": (_container({"w": {"dtype": "F32", "shape": [4], "data_offsets": [-8, 8]}},
                                           b"\0" * 16), "invalid data_offsets \\[-8, 8\\]"),
    "reversed offsets": (_container({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}, b"\0" * 8),
                         "invalid data_offsets"),
    "overlap": (_container({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16),
                "tensors 'a' and 'b' overlap"),
    "unknown dtype": (_container({"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
                      "unknown dtype 'F16'"),
    "size mismatch": (_container({"w": {"dtype": "F64", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
                      "needs 32 bytes but its data_offsets \\[0, 16\\] span 16"),
    "huge shape": (_container({"w": {"dtype": "F64", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 16]}},
                              b"\0" * 16), "needs 9671406556917033397649408 bytes"),
    "bad shape": (_container({"w": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}}, b"\0" * 16),
                  "invalid shape"),
    "bad data_size": (_container(F32_4, b"\0" * 16, {"format": "jitorch", "data_size": "lots"}),
                      "data_size 'lots' is not a byte count"),
    "unknown tensor": (_ours(F32_4, b"\0" * 16, {"tensor": "v"}), "refers to tensor 'v', which the header does not"),
    "unknown tag": (_ours(F32_4, b"\0" * 16, {"set": [1, 2]}), "unknown or malformed entry"),
    "bad pairs": (_ours(F32_4, b"\0" * 16, {"dict": [[1, 2, 3]]}), "are not \\[key, value\\] pairs"),
    "unhashable key": (_ours(F32_4, b"\0" * 16, {"dict": [[[1], 2]]}), "key in the structure is not hashable"),
    "deep structure": (_ours(F32_4, b"\0" * 16, None, text="[" * 100000), "structure in the header is not valid JSON"),
    "pytorch zip": (b"PK\x03\x04" + b"\0" * 60, "zip archive, probably a checkpoint written by PyTorch"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_a_clear_error(case, tmp_path):
    data, message = MALFORMED[case]
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as caught:
        torch.load(path)
    assert str(path) in str(caught.value) and isinstance(caught.value, RuntimeError)
    with pytest.raises(CheckpointError, match=message):
        torch.load(io.BytesIO(data))


# ---------------------------------------------------------------------------------------------------
# pickles: whole modules need weights_only=False


class TinyModule:
    """A stand-in for an nn.Module: an object holding tensors that only pickle can restore."""

    def __init__(self) -> None:
        self.weight = torch.randn(3, 2).t()  # non-contiguous data goes through the pickle too
        self.bias = torch.zeros(3, requires_grad=True)
        self.name = "tiny"

    def __call__(self, x):
        return x @ self.weight + self.bias[:2]


_SIDE_EFFECTS: list[str] = []


def _record_side_effect() -> None:
    _SIDE_EFFECTS.append("code ran")


class Exploit:
    def __reduce__(self):
        return (_record_side_effect, ())


def _module():
    try:
        from jitorch import nn
        return nn.Linear(4, 3)
    except (ImportError, AttributeError):
        return TinyModule()


def test_whole_module_needs_weights_only_false(tmp_path):
    module = _module()
    path = tmp_path / "model_full.pth"
    torch.save(module, path)
    with pytest.raises(WeightsOnlyError, match="weights_only=False") as caught:
        torch.load(path)
    assert isinstance(caught.value, pickle.UnpicklingError) and isinstance(caught.value, RuntimeError)
    assert "trust" in str(caught.value) and str(path) in str(caught.value)
    restored = torch.load(path, weights_only=False)
    assert type(restored) is type(module)
    x = torch.randn(2, 2 if isinstance(module, TinyModule) else 4)
    np.testing.assert_array_equal(restored(x).detach().numpy(), module(x).detach().numpy())


def test_weights_only_never_runs_code_from_the_file(tmp_path):
    path = tmp_path / "exploit.pt"
    torch.save({"payload": Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=None)
    assert _SIDE_EFFECTS == []
    torch.load(pathlib.Path(path), weights_only=False)
    assert _SIDE_EFFECTS == ["code ran"]
