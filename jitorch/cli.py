"""The `jitorch` command: `run` a script with compiler settings, `bench`mark, manage the `cache`."""
from __future__ import annotations

import argparse
import os
import runpy
import sys


def _run(args: argparse.Namespace) -> int:
    stages = []
    if args.dump_ir:
        stages += ["graph", "passes", "fusion"]
    if args.dump:
        stages += [s for s in args.dump.split(",") if s]
    if stages:
        os.environ["JITORCH_DUMP"] = ",".join(dict.fromkeys(stages))
    if args.dump_dir:
        os.environ["JITORCH_DUMP_DIR"] = args.dump_dir
    if args.eager:
        from jitorch.frontend.compile import set_compile_disabled
        os.environ["JITORCH_DISABLE_COMPILE"] = "1"  # for the script's own subprocesses
        set_compile_disabled(True)
    if args.check:
        os.environ["JITORCH_CHECK"] = "1"
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from jitorch.codegen import jit

    if args.action == "stats":
        stats = jit.cache_stats()
        print(f"cache directory: {stats['dir']}")
        print(f"entries: {stats['entries']}  size: {stats['bytes'] / 1024:.1f} KiB")
    else:
        print(f"removed {jit.cache_clear()} entries from {jit.cache_dir()}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from jitorch.benchmarking import main as bench_main

    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jitorch", description="jitorch: a PyTorch-style framework with a JIT")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a Python script with compiler settings")
    run.add_argument("--dump-ir", action="store_true", help="print the graph before and after the passes")
    run.add_argument("--dump", default="", help="stages to print: graph,passes,autodiff,fusion,kernels,llvm,asm")
    run.add_argument("--dump-dir", default="", help="write the dumps to files in this directory")
    run.add_argument("--eager", action="store_true", help="disable compilation everywhere (debugging)")
    run.add_argument("--check", action="store_true", help="compare every compiled call with eager")
    run.add_argument("script")
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)

    cache = commands.add_parser("cache", help="the on-disk cache of compiled kernels")
    cache.add_argument("action", choices=["stats", "clear"])
    cache.set_defaults(handler=_cache)

    bench = commands.add_parser("bench", help="benchmark eager vs compiled")
    bench.add_argument("target", nargs="?", default=None, help="path/to/script.py:function (default: the suite)")
    bench.add_argument("--only", default=None,
                       help="run only workloads whose name contains this (or any of several, comma-separated)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    bench.add_argument("--json", default=None, help="write the results as JSON to this file")
    bench.add_argument("--plot", default=None, help="write a bar chart of speedups (needs matplotlib)")
    bench.set_defaults(handler=_bench)

    args = parser.parse_args(argv)
    return args.handler(args)
