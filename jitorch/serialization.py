"""`jitorch.save` / `jitorch.load`: checkpoints as safetensors files, never unpickled unless asked to.

The file is a valid safetensors file:

    8 bytes   little-endian u64: N, the header's length
    N bytes   JSON header, padded with spaces to a multiple of 8:
              {"__metadata__": {"format": "jitorch", "version": "1", "data_size": "<bytes>",
                                "pickle": "0", "structure": "<JSON of the saved object>"},
               "<tensor name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
    data      each tensor's raw little-endian bytes, packed in order; offsets are relative to here

The structure is JSON too, nested in a string because safetensors metadata maps strings to strings:
plain values are themselves (infinite and NaN floats use JSON's common extension `Infinity`, `NaN`),
lists are arrays, and everything else is a one-key object:
`{"tensor": name}` (plus `"requires_grad": true` and `"parameter": true` when so), `{"tuple": [...]}`,
`{"dict": [[key, value], ...]}` (keys of any plain type, in order), `{"ordered_dict": ...}`,
`{"counter": ...}`, `{"dtype": "float32"}`, `{"size": [...]}`, `{"device": "cpu"}`. A tensor object
reached twice is stored once and loads as one object; distinct
tensors that share memory (views) are stored separately and load as independent tensors.

Anything else (a whole nn.Module, a namedtuple, a numpy array) is pickled into the same container:
`"pickle": "1"`, the pickle stream as the U8 tensor `__pickle__` and its out-of-band buffers (tensor
data) as `__buffer_<i>__`. Loading that needs `weights_only=False`, because unpickling runs code.

Saving to a path writes a temporary file in the same directory, fsyncs it and renames it over the
target, so an interrupted save leaves the previous file intact. File objects are written and read at
their current position. Every size in a file is checked against the file's length before anything is
allocated; a malformed file raises `CheckpointError` (a RuntimeError) naming the file and the problem.
Plain safetensors files written by other tools load as a dict from tensor name to tensor.
"""
from __future__ import annotations

import io
import itertools
import json
import math
import os
import pickle
import secrets
import stat
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import IO, Any

import numpy as np

import jitorch

FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 2 ** 20  # the safetensors limit
_MAX_DIMS = 64
_DTYPES: dict[str, tuple[np.dtype, Any]] = {  # safetensors code -> (little-endian numpy dtype, jitorch dtype)
    "F32": (np.dtype("<f4"), jitorch.float32), "F64": (np.dtype("<f8"), jitorch.float64),
    "I32": (np.dtype("<i4"), jitorch.int32), "I64": (np.dtype("<i8"), jitorch.int64),
    "BOOL": (np.dtype("u1"), jitorch.bool), "U8": (np.dtype("u1"), None),
}
_CODES = {jitorch_dtype.name: code for code, (_, jitorch_dtype) in _DTYPES.items() if jitorch_dtype is not None}
_MAPPING_TAGS: dict[str, type] = {"dict": dict, "ordered_dict": OrderedDict, "counter": Counter}


class CheckpointError(RuntimeError):
    """A file `jitorch.load` cannot read: truncated, malformed, or not a jitorch/safetensors file."""


class WeightsOnlyError(pickle.UnpicklingError, RuntimeError):
    """`jitorch.load` with `weights_only=True` met a pickled object (as PyTorch 2.6+ refuses to unpickle it)."""


class _NotPlainData(Exception):
    """The object holds something the JSON structure cannot describe: it will be pickled."""


# -------------------------------------------------------------------------------------------------
# save


def save(obj: Any, f: str | os.PathLike | IO[bytes], pickle_module: Any = None, pickle_protocol: int = 5,
         _use_new_zipfile_serialization: bool = True) -> None:
    """Save `obj` (a tensor, or nested dicts/lists/tuples of tensors and plain values) to a path or file object.

    Objects that are not plain data are pickled (protocol 5, whatever `pickle_protocol` says, so tensor
    data stays out of the pickle stream); loading them then needs `weights_only=False`.
    """
    tensors: list[tuple[str, np.ndarray, str]] = []
    try:
        structure = _Encoder(tensors).encode(obj, "")
        metadata = {"pickle": "0", "structure": json.dumps(structure, separators=(",", ":"))}
    except _NotPlainData:
        tensors = []
        buffers: list[pickle.PickleBuffer] = []
        stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        tensors.append(("__pickle__", np.frombuffer(stream, np.uint8), "U8"))
        tensors += [(f"__buffer_{i}__", np.frombuffer(b.raw(), np.uint8), "U8") for i, b in enumerate(buffers)]
        metadata = {"pickle": "1"}
    header, arrays = _layout(tensors, metadata)
    if isinstance(f, (str, os.PathLike)):
        _write_atomic(os.fspath(f), lambda out: _write_container(out, header, arrays))
    else:
        _write_container(f, header, arrays)


class _Encoder:
    """Object -> JSON structure, collecting tensors (named by their path) into `tensors`."""

    def __init__(self, tensors: list[tuple[str, np.ndarray, str]]) -> None:
        self.tensors = tensors
        self.names: dict[int, str] = {}  # id(tensor) -> name, so a tensor reached twice is stored once
        self.used: set[str] = {"__metadata__"}
        self.active: set[int] = set()  # containers on the current path: a cycle is not plain data
        self.keep: list[Any] = []  # keeps encoded tensors alive so their ids stay unique

    def encode(self, obj: Any, path: str) -> Any:
        kind = type(obj)
        if obj is None or kind in (bool, int, str, float):
            return obj
        if isinstance(obj, jitorch.Tensor):
            return self.tensor(obj, path)
        if isinstance(obj, jitorch.dtype):
            return {"dtype": obj.name}
        if isinstance(obj, jitorch.device):
            return {"device": str(obj)}
        if id(obj) in self.active:
            raise _NotPlainData
        self.active.add(id(obj))
        try:
            if kind is jitorch.Size:
                return {"size": [self.encode(s, path) for s in obj]}
            if kind is list:
                return [self.encode(item, f"{path}.{i}") for i, item in enumerate(obj)]
            if kind is tuple:
                return {"tuple": [self.encode(item, f"{path}.{i}") for i, item in enumerate(obj)]}
            for tag, mapping_type in _MAPPING_TAGS.items():
                if kind is mapping_type:
                    return {tag: [[self.key(k), self.encode(v, f"{path}.{k}")] for k, v in obj.items()]}
            raise _NotPlainData
        finally:
            self.active.discard(id(obj))

    def key(self, key: Any) -> Any:
        if key is None or type(key) in (bool, int, str, float):
            return key
        if type(key) is tuple:
            return {"tuple": [self.key(k) for k in key]}
        raise _NotPlainData

    def tensor(self, t: jitorch.Tensor, path: str) -> dict[str, Any]:
        name = self.names.get(id(t))
        if name is None:
            name = path.lstrip(".") or "tensor"
            if name in self.used:
                name = next(f"{name}#{i}" for i in range(1, len(self.used) + 2) if f"{name}#{i}" not in self.used)
            self.used.add(name)
            self.names[id(t)] = name
            self.keep.append(t)
            self.tensors.append((name, t.numpy(force=True), _CODES[t.dtype.name]))
        node: dict[str, Any] = {"tensor": name}
        if t.requires_grad:
            node["requires_grad"] = True
        parameter = getattr(sys.modules.get("jitorch.nn"), "Parameter", None)
        if parameter is not None and isinstance(t, parameter):
            node["parameter"] = True
        return node


def _layout(tensors: list[tuple[str, np.ndarray, str]], metadata: dict[str, str]) -> tuple[bytes, list]:
    """The header bytes (length prefix included) and the arrays to write after it, in order."""
    entries: dict[str, Any] = {}
    offset = 0
    for name, array, code in tensors:
        nbytes = array.size * _DTYPES[code][0].itemsize
        entries[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = {"__metadata__": {"format": "jitorch", "version": FORMAT_VERSION, "data_size": str(offset),
                               **metadata}, **entries}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if len(text) > _MAX_HEADER:
        raise RuntimeError(f"jitorch.save: the header describing this object takes {len(text)} bytes, over the "
                           f"{_MAX_HEADER}-byte limit of the format; split it across several files")
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as safetensors writes it
    return len(text).to_bytes(8, "little") + text, [(array, code) for _, array, code in tensors]


def _write_container(f: IO[bytes], header: bytes, arrays: list[tuple[np.ndarray, str]]) -> None:
    f.write(header)
    _write_buffers(f, arrays)


def _write_buffers(f: IO[bytes], arrays: list[tuple[np.ndarray, str]]) -> None:
    """Each array's bytes, little-endian and C-ordered (non-contiguous tensors are copied one at a time)."""
    for array, code in arrays:
        if array.size:
            data = np.ascontiguousarray(array, dtype=_DTYPES[code][0] if code != "BOOL" else np.bool_)
            f.write(data.reshape(-1).view(np.uint8).data)


def _write_atomic(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write a temporary file beside `path`, fsync it, then rename it over `path`."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RuntimeError(f"Parent directory {directory} does not exist.")
    while True:
        temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
        try:  # mode 0o666 so the umask decides the permissions, as for any new file
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        if os.path.exists(path):
            os.chmod(temp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# -------------------------------------------------------------------------------------------------
# load


def load(f: str | os.PathLike | IO[bytes], map_location: Any = None, pickle_module: Any = None, *,
         weights_only: bool | None = None, mmap: bool | None = None, **pickle_load_args: Any) -> Any:
    """Load what `save` wrote (or any safetensors file) from a path or file object.

    `weights_only` (the default) never unpickles; a file holding a pickled object needs
    `weights_only=False`, which runs code from the file: use it only for files you trust. `map_location`
    may be 'cpu', a device, a dict of device names, or a callable `(tensor, location) -> tensor`.
    """
    weights_only = True if weights_only is None else weights_only
    mapper = _location_mapper(map_location)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as opened:
            return _Reader(opened, os.fspath(f)).load(weights_only, mapper)
    return _Reader(f, getattr(f, "name", None) or repr(f)).load(weights_only, mapper)


def _location_mapper(map_location: Any) -> Callable[[jitorch.Tensor], jitorch.Tensor]:
    if map_location is None:
        return lambda t: t
    if callable(map_location) and not isinstance(map_location, (str, jitorch.device)):
        def call(t: jitorch.Tensor) -> jitorch.Tensor:
            result = map_location(t, "cpu")
            return result if isinstance(result, jitorch.Tensor) else t
        return call
    targets = map_location.values() if isinstance(map_location, dict) else [map_location]
    for target in targets:
        jitorch.device(target)  # raises for devices jitorch does not have
    return lambda t: t


class _Reader:
    """One load from a file object positioned at the start of a saved object."""

    def __init__(self, f: IO[bytes], name: str) -> None:
        self.name = name
        if not (hasattr(f, "seekable") and f.seekable()):
            f = io.BytesIO(f.read())  # a pipe or socket: the bytes it has are the file
        self.f = f
        self.start = f.tell()
        self.available = f.seek(0, io.SEEK_END) - self.start
        f.seek(self.start)

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"jitorch.load: cannot read {self.name}: {problem}")

    def load(self, weights_only: bool, mapper: Callable[[jitorch.Tensor], jitorch.Tensor]) -> Any:
        entries, metadata, data_start, data_size = self.header()
        ours = metadata.get("format") == "jitorch"
        pickled = ours and metadata.get("pickle") == "1"
        if pickled and weights_only:
            raise WeightsOnlyError(
                f"Weights only load failed: {self.name} holds a pickled Python object (jitorch.save of something "
                f"that is not tensors and plain data, e.g. a whole nn.Module). Unpickling can run arbitrary code, "
                f"so jitorch.load refuses it by default. If you trust where this file came from, load it with "
                f"weights_only=False; otherwise save and load the state_dict() instead.")
        arrays = {name: self.read_array(name, entry, data_start) for name, entry in entries.items()}
        self.f.seek(data_start + data_size)
        if not ours:  # a safetensors file from another tool
            return {name: mapper(self.tensor(name, arrays[name])) for name in arrays}
        if pickled:
            return self.unpickle(arrays)
        if "structure" not in metadata:
            raise self.fail("the header's metadata has no 'structure'")
        try:
            structure = json.loads(metadata["structure"])
        except (ValueError, RecursionError) as error:
            raise self.fail(f"the structure in the header is not valid JSON ({error})") from None
        try:
            return _Decoder(self, arrays, mapper).decode(structure)
        except RecursionError:
            raise self.fail("the structure in the header is nested too deeply") from None

    def header(self) -> tuple[dict[str, dict], dict[str, str], int, int]:
        if self.available < 8:
            raise self.fail(f"the file is {'empty' if self.available == 0 else 'truncated'} ({self.available} "
                            f"bytes; a header length takes 8)")
        prefix = self.f.read(8)
        if prefix[:4] == b"PK\x03\x04":
            raise self.fail("this is a zip archive, probably a checkpoint written by PyTorch's torch.save; "
                            "jitorch does not unpickle those: save the tensors with safetensors and load that")
        length = int.from_bytes(prefix, "little")
        if length > self.available - 8:
            raise self.fail(f"the header length {length} is larger than the {self.available - 8} bytes that follow "
                            f"it (the file is truncated or not a jitorch/safetensors file)")
        if length > _MAX_HEADER:
            raise self.fail(f"the header length {length} is over the {_MAX_HEADER}-byte limit")
        text = self.f.read(length)
        try:
            header = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise self.fail(f"the header is not valid JSON ({error})") from None
        if not isinstance(header, dict):
            raise self.fail(f"the header is a JSON {type(header).__name__}, not an object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self.fail("the header's __metadata__ is not an object of strings")
        data_start = self.start + 8 + length
        remaining = self.available - 8 - length
        data_size = remaining
        if "data_size" in metadata:
            if not metadata["data_size"].isdigit():
                raise self.fail(f"the header's data_size {metadata['data_size']!r} is not a byte count")
            data_size = int(metadata["data_size"])
            if data_size > remaining:
                raise self.fail(f"the data section should have {data_size} bytes but only {remaining} follow the "
                                f"header (the file is truncated)")
        for name, entry in header.items():
            self.check_entry(name, entry, data_size)
        spans = sorted((e["data_offsets"][0], e["data_offsets"][1], name) for name, e in header.items()
                       if e["data_offsets"][0] != e["data_offsets"][1])
        for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
            if begin < end:
                raise self.fail(f"tensors {first!r} and {second!r} overlap in the data section")
        return header, metadata, data_start, data_size

    def check_entry(self, name: str, entry: Any, data_size: int) -> None:
        if not isinstance(entry, dict):
            raise self.fail(f"the header entry for tensor {name!r} is not an object")
        code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if code not in _DTYPES:
            raise self.fail(f"tensor {name!r} has unknown dtype {code!r} (jitorch reads {', '.join(_CODES.values())})")
        if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS
                and all(type(s) is int and s >= 0 for s in shape)):
            raise self.fail(f"tensor {name!r} has an invalid shape {shape!r} (a list of at most {_MAX_DIMS} sizes "
                            f"that are non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise self.fail(f"tensor {name!r} has invalid data_offsets {offsets!r} (two integers, begin <= end)")
        if offsets[1] > data_size:
            raise self.fail(f"tensor {name!r} ends at byte {offsets[1]}, past the end of the {data_size}-byte data "
                            f"section")
        nbytes = math.prod(shape) * _DTYPES[code][0].itemsize
        if nbytes != offsets[1] - offsets[0]:
            raise self.fail(f"tensor {name!r} of shape {shape} and dtype {code} needs {nbytes} bytes but its "
                            f"data_offsets {offsets} span {offsets[1] - offsets[0]}")

    def read_array(self, name: str, entry: dict, data_start: int) -> np.ndarray:
        """A new array owning its memory, filled straight from the file."""
        numpy_dtype, _ = _DTYPES[entry["dtype"]]
        array = np.empty(entry["shape"], dtype=numpy_dtype)
        begin, end = entry["data_offsets"]
        if end > begin:
            self.f.seek(data_start + begin)
            target = array.reshape(-1).view(np.uint8)
            got = self.f.readinto(target.data) if hasattr(self.f, "readinto") else None
            if got is None:
                chunk = self.f.read(end - begin)
                got = len(chunk)
                target[:got] = np.frombuffer(chunk, np.uint8)
            if got != end - begin:
                raise self.fail(f"tensor {name!r}: only {got} of its {end - begin} bytes could be read (the file is "
                                f"truncated)")
        if entry["dtype"] == "BOOL":
            return array != 0
        return array.astype(numpy_dtype.newbyteorder("="), copy=False)

    def tensor(self, name: str, array: np.ndarray) -> jitorch.Tensor:
        dtype = _DTYPES_BY_NUMPY.get(array.dtype)
        if dtype is None:
            raise self.fail(f"tensor {name!r} has dtype U8, which jitorch tensors do not support")
        return jitorch.from_numpy(array)

    def unpickle(self, arrays: dict[str, np.ndarray]) -> Any:
        if "__pickle__" not in arrays:
            raise self.fail("the header says the file holds a pickle but there is no __pickle__ entry")
        count = sum(1 for name in arrays if name.startswith("__buffer_"))
        try:
            buffers = [arrays[f"__buffer_{i}__"] for i in range(count)]
        except KeyError as missing:
            raise self.fail(f"the pickle's out-of-band buffer {missing} is missing") from None
        return pickle.loads(arrays["__pickle__"].tobytes(), buffers=buffers)


_DTYPES_BY_NUMPY = {numpy_dtype.newbyteorder("="): jitorch_dtype for numpy_dtype, jitorch_dtype in _DTYPES.values()
                    if jitorch_dtype is not None and jitorch_dtype is not jitorch.bool}
_DTYPES_BY_NUMPY[np.dtype(np.bool_)] = jitorch.bool


class _Decoder:
    """JSON structure -> object, checking every tag and tensor reference."""

    def __init__(self, reader: _Reader, arrays: dict[str, np.ndarray],
                 mapper: Callable[[jitorch.Tensor], jitorch.Tensor]) -> None:
        self.reader, self.arrays, self.mapper = reader, arrays, mapper
        self.tensors: dict[str, jitorch.Tensor] = {}

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        if not isinstance(node, dict) or not node:
            raise self.reader.fail(f"unexpected {type(node).__name__} in the structure")
        tag = next(iter(node))
        value = node[tag]
        if tag == "tensor":
            return self.tensor(node)
        if tag == "tuple" and isinstance(value, list):
            return tuple(self.decode(item) for item in value)
        if tag in _MAPPING_TAGS and isinstance(value, list):
            if not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
                raise self.reader.fail(f"the items of a {tag} in the structure are not [key, value] pairs")
            try:
                return _MAPPING_TAGS[tag]({self.decode(k): self.decode(v) for k, v in value})
            except TypeError as error:
                raise self.reader.fail(f"a {tag} key in the structure is not hashable ({error})") from None
        if tag == "dtype" and value in _CODES:
            return getattr(jitorch, value)
        if tag == "size" and isinstance(value, list) and all(type(s) is int for s in value):
            return jitorch.Size(value)
        if tag == "device" and isinstance(value, str):
            return jitorch.device(value)
        raise self.reader.fail(f"unknown or malformed entry {json.dumps(node)[:80]} in the structure")

    def tensor(self, node: dict[str, Any]) -> jitorch.Tensor:
        name = node["tensor"]
        if not isinstance(name, str) or name not in self.arrays:
            raise self.reader.fail(f"the structure refers to tensor {name!r}, which the header does not list")
        if name not in self.tensors:
            t = self.reader.tensor(name, self.arrays[name])
            if node.get("requires_grad") and t.is_floating_point():
                t.requires_grad_(True)
            if node.get("parameter"):
                from jitorch.nn import Parameter  # only files that saved Parameters import nn
                t = Parameter(t, requires_grad=t.requires_grad)
            self.tensors[name] = self.mapper(t)
        return self.tensors[name]


__all__ = ["CheckpointError", "WeightsOnlyError", "load", "save"]
