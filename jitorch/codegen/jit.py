"""The process-wide LLVM target machine and JIT: the O3 pipeline, loading machine code, and the on-disk
object-code cache.

Every module takes the same road: parse → O3 for the host CPU → relocatable object code → loaded into
an MCJIT engine of its own. A kernel found in the on-disk cache joins that road at the last step, so a
cache hit skips parsing, optimization and code generation, and runs exactly the code a miss would.

    module = get_jit().compile(ir_text, ["kernel"])
    kernel = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)(module.address("kernel"))

A module's machine code lives as long as its `CompiledModule`: whatever runs the code holds the module
(a compiled graph keeps it as `keep_alive`), and the JIT's in-memory cache only refers to it weakly, so
code nobody can call any more is released.

Disk entries live in `$JITORCH_CACHE_DIR` (default `~/.cache/jitorch`); `JITORCH_DISABLE_DISK_CACHE=1`
turns the cache off. An entry is `<key>.json` (metadata) next to `<key>.o` (raw object bytes, checked
by size and sha256); an entry that does not match this process exactly is recompiled, never trusted.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm

# Bump when the pipeline or the entry layout changes, so older entries stop matching.
CACHE_FORMAT = 1

# LLVM's global context and the shared target machine are not thread safe: all LLVM work holds this.
_LLVM_LOCK = threading.RLock()

_HOST: tuple[llvm.TargetMachine, str, str] | None = None


def _host() -> tuple[llvm.TargetMachine, str, str]:
    """The shared target machine for the host CPU, with the CPU's name and features."""
    global _HOST
    if _HOST is None:
        with _LLVM_LOCK:
            if _HOST is None:
                llvm.initialize_native_target()
                llvm.initialize_native_asmprinter()
                cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
                _HOST = _create_target_machine(cpu, features), cpu, features
    return _HOST


def host_cpu() -> tuple[str, str]:
    """The host CPU's LLVM name and feature string ("+avx2,+fma,…"), as used in cache keys."""
    _, cpu, features = _host()
    return cpu, features


def _create_target_machine(cpu: str, features: str) -> llvm.TargetMachine:
    # The JIT code model: loaded sections may land anywhere in the address space.
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True, codemodel="jitdefault")


# What optimize() runs, part of the disk cache key (code built by another pipeline is not reused).
# No SLP vectorization: our hot code is loops, which the loop vectorizer handles (the benchmarks measure
# the same without SLP), and LLVM 22's SLP vectorizer after unrolling never returned on one kernel the
# fuzzer made (seed 8534: a column sum of bool-to-float casts), hanging the process.
PIPELINE = "O3, loop vectorization, no SLP vectorization"


def optimize(module: llvm.ModuleRef) -> None:
    """Run LLVM's O3 pipeline with loop vectorization (PIPELINE) on `module` in place."""
    with _LLVM_LOCK:
        options = llvm.create_pipeline_tuning_options(speed_level=3)
        options.loop_vectorization = True
        options.slp_vectorization = False
        # A pass manager runs once: build a fresh one per module.
        builder = llvm.create_pass_builder(_host()[0], options)
        builder.getModulePassManager().run(module, builder)


def _parse(llvm_ir: str) -> llvm.ModuleRef:
    machine = _host()[0]
    module = llvm.parse_assembly(llvm_ir)
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    module.verify()
    return module


def _load(object_code: bytes) -> llvm.ExecutionEngine:
    """An MCJIT engine holding `object_code`, relocated and ready to run."""
    _, cpu, features = _host()
    with _LLVM_LOCK:
        _dispose_retired()
        empty = _parse("")
        # The engine takes ownership of its target machine, so each engine gets its own.
        engine = llvm.create_mcjit_compiler(empty, _create_target_machine(cpu, features))
        engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        engine.finalize_object()
        return engine


_retired: list[llvm.ExecutionEngine] = []  # engines of dropped modules, waiting for the LLVM lock


def _release(engine: llvm.ExecutionEngine) -> None:
    """Free an engine's machine code once its module is gone. LLVM's context is not thread safe, so freeing
    holds the LLVM lock; but a finalizer must not wait for it (the thread dropping the module may hold a lock
    that the LLVM lock's holder wants), so when another thread holds it, the next load frees the engine."""
    _retired.append(engine)
    if _LLVM_LOCK.acquire(blocking=False):
        try:
            _dispose_retired()
        finally:
            _LLVM_LOCK.release()


def _dispose_retired() -> None:
    """Free the engines of dropped modules (holding the LLVM lock)."""
    while _retired:
        _retired.pop().close()


class CompiledModule:
    """The machine code of one LLVM module; it stays loaded while this object is alive."""

    def __init__(self, llvm_ir: str, engine: llvm.ExecutionEngine, llvm_ir_optimized: str | None,
                 timings: dict[str, float]) -> None:
        self._source_ir = llvm_ir
        self._engine = engine
        # at exit the process's memory goes anyway, and LLVM may already be shut down
        weakref.finalize(self, _release, engine).atexit = False
        self._addresses: dict[str, int] = {}
        self._llvm_ir_optimized = llvm_ir_optimized
        self._asm: str | None = None
        self.timings = timings  # seconds per stage: parse, optimize, codegen, load (read, load on a disk hit)

    def address(self, name: str) -> int:
        """The entry address of the function `name`."""
        address = self._addresses.get(name)
        if address is None:
            address = self._engine.get_function_address(name)
            if not address:
                raise KeyError(f"the compiled module defines no function {name!r}")
            self._addresses[name] = address
        return address

    @property
    def llvm_ir_optimized(self) -> str:
        """The optimized IR; for code from the disk cache, optimized again on first request."""
        if self._llvm_ir_optimized is None:
            self._llvm_ir_optimized = str(self._optimized_again())
        return self._llvm_ir_optimized

    @property
    def asm(self) -> str:
        """The host assembly of the optimized module, generated on first request."""
        if self._asm is None:
            with _LLVM_LOCK:
                self._asm = _host()[0].emit_assembly(self._optimized_again())
        return self._asm

    def _optimized_again(self) -> llvm.ModuleRef:
        # The pipeline is deterministic: this is the module the running code was generated from.
        with _LLVM_LOCK:
            module = _parse(self._source_ir)
            optimize(module)
            return module


class JIT:
    """Compiles LLVM IR to callable machine code, once per distinct module while it is in use (use get_jit())."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the fields below
        # weak: a module nobody holds is released, not kept for a text that may never come again
        self._modules: weakref.WeakValueDictionary[str, CompiledModule] = weakref.WeakValueDictionary()
        self.memory_hits = 0
        self.disk_hits = 0
        self.compiles = 0

    def compile(self, llvm_ir: str, names: list[str], *, key_extra: str = "") -> CompiledModule:
        """The module compiled from `llvm_ir`, with the addresses of `names` resolved.

        `key_extra` is anything besides the IR text that the caller wants in the cache key.
        Compiling the same text again while the first module is alive returns the same object; threads
        asking for the same text at the same time compile it once. The caller keeps the module alive as
        long as it calls its code.
        """
        key = _cache_key(llvm_ir, key_extra)
        compiled = self._lookup(key)
        if compiled is None:
            with _LLVM_LOCK:
                compiled = self._lookup(key)  # another thread may have compiled it while this one waited
                if compiled is None:
                    compiled = self._from_disk(key, llvm_ir) or self._compile(key, llvm_ir, names)
                    with self._lock:
                        self._modules[key] = compiled
        for name in names:
            compiled.address(name)  # raises here if the module lacks one
        return compiled

    def reset(self) -> None:
        """Forget every compiled module; its code is released once no caller holds it."""
        with self._lock:
            self._modules.clear()

    def _lookup(self, key: str) -> CompiledModule | None:
        with self._lock:
            compiled = self._modules.get(key)
            if compiled is not None:
                self.memory_hits += 1
            return compiled

    def _from_disk(self, key: str, llvm_ir: str) -> CompiledModule | None:
        if not _disk_cache_enabled():
            return None
        start = time.perf_counter()
        object_code = _read_entry(key)
        if object_code is None:
            return None
        read = time.perf_counter()
        engine = _load(object_code)
        timings = {"read": read - start, "load": time.perf_counter() - read}
        compiled = CompiledModule(llvm_ir, engine, None, timings)
        with self._lock:
            self.disk_hits += 1
        return compiled

    def _compile(self, key: str, llvm_ir: str, names: list[str]) -> CompiledModule:
        start = time.perf_counter()
        module = _parse(llvm_ir)
        parsed = time.perf_counter()
        optimize(module)
        llvm_ir_optimized = str(module)  # before code generation, which rewrites the module in place
        optimized = time.perf_counter()
        object_code = _host()[0].emit_object(module)
        generated = time.perf_counter()
        engine = _load(object_code)
        loaded = time.perf_counter()
        timings = {"parse": parsed - start, "optimize": optimized - parsed, "codegen": generated - optimized,
                   "load": loaded - generated}
        compiled = CompiledModule(llvm_ir, engine, llvm_ir_optimized, timings)
        for name in names:
            compiled.address(name)  # before caching code that lacks one
        if _disk_cache_enabled():
            _write_entry(key, object_code, names)
        with self._lock:
            self.compiles += 1
        return compiled


_JIT: JIT | None = None
_JIT_LOCK = threading.Lock()


def get_jit() -> JIT:
    """The process-wide JIT."""
    global _JIT
    with _JIT_LOCK:
        if _JIT is None:
            _JIT = JIT()
        return _JIT


# ---------------------------------------------------------------------------------------------------------
# On-disk object-code cache


@functools.cache
def _versions() -> dict[str, str]:
    try:
        jitorch_version = importlib.metadata.version("jitorch")
    except importlib.metadata.PackageNotFoundError:
        jitorch_version = "0.0.0"
    return {"jitorch": jitorch_version, "llvmlite": llvmlite.__version__}


def _metadata(key: str) -> dict[str, object]:
    """The fields an entry must carry, exactly, to be used by this process."""
    cpu, features = host_cpu()
    return {"format": CACHE_FORMAT, "key": key, "cpu": cpu, "features": features, **_versions()}


def _cache_key(llvm_ir: str, key_extra: str = "") -> str:
    """The sha256 (hex) naming the machine code of `llvm_ir` for this CPU and these versions."""
    digest = hashlib.sha256()
    cpu, features = host_cpu()
    versions = _versions()
    parts = (llvm_ir, key_extra, cpu, features, versions["jitorch"], versions["llvmlite"], str(CACHE_FORMAT), PIPELINE)
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: parts cannot run together
        digest.update(data)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The cache directory: `$JITORCH_CACHE_DIR`, or `~/.cache/jitorch`; read on every use."""
    configured = os.environ.get("JITORCH_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "jitorch"


def _disk_cache_enabled() -> bool:
    return os.environ.get("JITORCH_DISABLE_DISK_CACHE", "") in ("", "0")


def _read_entry(key: str) -> bytes | None:
    """The object code stored under `key`, or None when it is absent or fails any check."""
    directory = cache_dir()
    try:
        metadata = json.loads((directory / f"{key}.json").read_text())
        object_code = (directory / f"{key}.o").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(metadata, dict):
        return None
    expected = _metadata(key)
    if any(metadata.get(field) != value for field, value in expected.items()):
        return None
    if metadata.get("size") != len(object_code):
        return None
    if metadata.get("sha256") != hashlib.sha256(object_code).hexdigest():
        return None
    return object_code


def _write_entry(key: str, object_code: bytes, names: list[str]) -> None:
    metadata = {**_metadata(key), "size": len(object_code),
                "sha256": hashlib.sha256(object_code).hexdigest(), "names": list(names)}
    directory = cache_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Code first, metadata last: a reader only trusts code that the metadata's checksum matches.
        _write_atomically(directory / f"{key}.o", object_code)
        _write_atomically(directory / f"{key}.json", json.dumps(metadata, indent=1).encode())
    except OSError as error:
        warnings.warn(f"jitorch: cannot write the kernel cache in {directory}: {error}", RuntimeWarning,
                      stacklevel=2)


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _entries() -> list[Path]:
    """The cache's files: `<key>.json` and `<key>.o` (not the temporary files of unfinished writes)."""
    directory = cache_dir()
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir()
                  if path.suffix in (".json", ".o") and len(path.stem) == 64 and path.name[0] != ".")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed by another process meanwhile
        return 0


def cache_stats() -> dict[str, object]:
    """{"dir": the cache directory, "entries": number of kernels stored, "bytes": their total size}."""
    files = _entries()
    return {"dir": str(cache_dir()), "entries": sum(path.suffix == ".json" for path in files),
            "bytes": sum(_size(path) for path in files)}


def cache_clear() -> int:
    """Delete every stored kernel; returns how many there were."""
    files = _entries()
    for path in files:
        path.unlink(missing_ok=True)
    return sum(path.suffix == ".json" for path in files)
