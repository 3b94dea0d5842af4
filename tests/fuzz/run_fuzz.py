"""Long differential fuzzing runs of the compiler, crash-safe.

    python tests/fuzz/run_fuzz.py --count 10000 --seed 0 [--backend llvm] [--jobs 2] [--out DIR]

Programs seed..seed+count-1 run in worker subprocesses, one chunk of seeds each, so a crash (a segfault in
generated code, an abort, a hang past --timeout) kills only the worker: the parent reports the program
that was running, with its code, and goes on with the next seed. Mismatches are shrunk to a small program
that fails the same way. Every failure is written to DIR (default: a fresh temporary directory) as the
program, its problems, the shrunk program and a standalone repro script. The last line is the summary:
"N programs, M mismatches, C crashes" (plus known, reported bugs counted apart, and fallbacks).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
ROOT = TESTS.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def worker(start: int, stop: int, backends: list[str], shrink_budget: int, memory_limit: float) -> None:
    """Run seeds [start, stop); one JSON line per event on stdout."""
    import resource
    import warnings

    if memory_limit:  # a runaway allocation fails in this process instead of summoning the OOM killer
        limit = int(memory_limit * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    from fuzz.differential import check_program, validate
    from fuzz.generator import generate
    from fuzz.known import explained
    from fuzz.shrink import kind, shrink

    warnings.simplefilter("ignore")  # recompile-limit and deprecation warnings are not findings here
    for seed in range(start, stop):
        print(json.dumps({"event": "begin", "seed": seed}), flush=True)
        program = generate(seed, validate=validate)
        report = check_program(program, backends)
        record = {"event": "end", "seed": seed, "problems": report.problems, "fallbacks": report.fallbacks,
                  "skipped": report.skipped, "steps": len(program.steps)}
        if report.problems:
            known = explained(program, report.problems)
            record.update(program=str(program), known=known, kinds=sorted({kind(p) for p in report.problems}))
            if not known and shrink_budget:
                backend = report.problems[0].split("]", 1)[0].lstrip("[")
                small = shrink(program, backend, report.problems[0], budget=shrink_budget)
                record.update(shrunk=str(small), repro=small.repro(backend),
                              shrunk_problems=check_program(small, [backend]).problems)
        print(json.dumps(record), flush=True)
    print(json.dumps({"event": "done"}), flush=True)


class Totals:
    def __init__(self) -> None:
        self.programs = self.mismatches = self.crashes = self.known = self.fallbacks = 0
        self.kinds: Counter[str] = Counter()
        self.fallback_reasons: Counter[str] = Counter()
        self.known_kinds: Counter[str] = Counter()
        self.skipped: set[str] = set()


def _write(out: Path, name: str, text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text)
    return path


def run_chunk(start: int, stop: int, args: argparse.Namespace, totals: Totals, out: Path) -> int:
    """Run seeds from `start` in a worker until it finishes or dies; returns the next seed to run."""
    command = [sys.executable, __file__, "--worker", "--seed", str(start), "--count", str(stop - start),
               "--shrink-budget", str(args.shrink_budget), "--memory-limit", str(args.memory_limit)]
    command += [f"--backend={b}" for b in args.backend]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    running, next_seed = None, start
    deadline = time.monotonic() + args.timeout
    import selectors
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while True:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            process.kill()
            process.wait()
            _crash(running, f"no progress for {args.timeout} s (hang), worker killed", totals, out)
            return (running if running is not None else next_seed) + 1
        line = process.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        deadline = time.monotonic() + args.timeout
        if event["event"] == "begin":
            running = event["seed"]
        elif event["event"] == "end":
            _record(event, totals, out, args.verbose)
            running, next_seed = None, event["seed"] + 1
    stderr = process.stderr.read()
    code = process.wait()
    if running is not None or code != 0:
        _crash(running, f"worker exited with status {code}\n{stderr[-4000:]}", totals, out)
        return (running if running is not None else next_seed) + 1
    return stop


def _record(event: dict, totals: Totals, out: Path, verbose: bool) -> None:
    totals.programs += 1
    totals.fallbacks += bool(event["fallbacks"])
    totals.fallback_reasons.update({reason.split(" (")[0] for reason in event["fallbacks"]})
    totals.skipped.update(event["skipped"])
    if not event["problems"]:
        return
    seed = event["seed"]
    if event["known"]:
        totals.known += 1
        totals.known_kinds.update(event["known"])
        return
    totals.mismatches += 1
    totals.kinds.update(event["kinds"])
    text = [event["program"], "problems:", *event["problems"]]
    if "shrunk" in event:
        text += ["", "shrunk:", event["shrunk"], "problems of the shrunk program:", *event["shrunk_problems"]]
        _write(out, f"seed_{seed}_repro.py", event["repro"])
    path = _write(out, f"seed_{seed}.txt", "\n".join(text) + "\n")
    print(f"MISMATCH seed {seed}: {'; '.join(event['kinds'])} -> {path}", flush=True)
    if verbose:
        print(event.get("shrunk", event["program"]), flush=True)


def _crash(seed: int | None, why: str, totals: Totals, out: Path) -> None:
    totals.crashes += 1
    totals.programs += seed is not None
    if seed is None:
        print(f"CRASH between programs: {why}", flush=True)
        return
    from fuzz.differential import validate
    from fuzz.generator import generate
    program = generate(seed, validate=validate)
    path = _write(out, f"seed_{seed}_crash.txt", f"{program}\ncrash: {why}\n\nrepro:\n{program.repro()}")
    print(f"CRASH seed {seed}: {why.splitlines()[0]} -> {path}\n{program}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="programs to run (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--backend", action="append", choices=["interpreter", "llvm"],
                        help="backend to compare with eager (repeatable; default: both)")
    parser.add_argument("--chunk", type=int, default=100, help="programs per worker process (default 100)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes at once (default 1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds without progress = a hang")
    parser.add_argument("--shrink-budget", type=int, default=150, help="programs tried when shrinking (0: off)")
    parser.add_argument("--memory-limit", type=float, default=8.0,
                        help="address space of a worker in GiB (default 8; 0: no limit)")
    parser.add_argument("--out", type=Path, help="where failures are written (default: a new temp directory)")
    parser.add_argument("--verbose", action="store_true", help="print each shrunk failing program")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backend = args.backend or ["interpreter", "llvm"]
    if args.worker:
        worker(args.seed, args.seed + args.count, args.backend, args.shrink_budget, args.memory_limit)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="jitorch-fuzz-"))
    totals, started = Totals(), time.monotonic()
    chunks = [(s, min(s + args.chunk, args.seed + args.count)) for s in range(args.seed, args.seed + args.count,
                                                                            args.chunk)]
    print(f"fuzzing {args.count} programs from seed {args.seed} with {', '.join(args.backend)}; "
          f"failures go to {out}", flush=True)
    if args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda chunk: _run_range(*chunk, args, totals, out, started), chunks))
    else:
        for chunk in chunks:
            _run_range(*chunk, args, totals, out, started)
    for reason in sorted(totals.skipped):
        print(f"skipped: {reason}")
    for reason, count in totals.fallback_reasons.most_common(8):
        print(f"  {count:5d} x fell back: {reason}")
    for name, count in totals.kinds.most_common():
        print(f"  {count:5d} x {name}")
    for name, count in totals.known_kinds.most_common():
        print(f"  {count:5d} x known, reported: {name}")
    print(f"{totals.programs} programs, {totals.mismatches} mismatches, {totals.crashes} crashes "
          f"({totals.known} more hit known, reported bugs; {totals.fallbacks} fell back to eager; "
          f"{time.monotonic() - started:.0f} s)", flush=True)
    return 1 if totals.mismatches or totals.crashes else 0


def _run_range(start: int, stop: int, args: argparse.Namespace, totals: Totals, out: Path, started: float) -> None:
    seed = start
    while seed < stop:
        seed = run_chunk(seed, stop, args, totals, out)
    elapsed = time.monotonic() - started
    print(f"[{totals.programs:6d}/{args.count}] {totals.mismatches} mismatches, {totals.crashes} crashes, "
          f"{totals.known} known; {totals.programs / max(elapsed, 1e-9):.1f} programs/s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
