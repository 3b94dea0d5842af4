"""`jitorch bench` and `jitorch.benchmark()` as a user sees them: the table, the JSON, a user's own target,
a failing workload that does not hide the others, and a wrong compiled result that is flagged rather
than reported as a speedup. The command runs in a subprocess; numbers are never asserted, only shapes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jitorch
from jitorch.benchmarking import (BenchmarkResult, Row, Target, Workload, first_calls, format_first_calls, format_table,
                                  load_suite, load_target, measure_alternating, run_workload)
from jitorch.frontend import backends

REPO = Path(__file__).resolve().parents[1]
SPEEDUP = re.compile(r"^\d+\.\d\dx$")

TARGET = '''\
import jitorch

def scaled_relu():
    x = jitorch.randn(4096)
    return (lambda t: (t * 2.0 - 1.0).relu()), (x,)

def broken():
    raise ValueError("no inputs for this one")
'''


def bench(*args: str, cwd: Path = REPO, expect: int = 0) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JITORCH_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "jitorch", "bench", *args], capture_output=True, text=True,
                          env=environment, cwd=cwd, timeout=120)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def table_rows(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and the body rows of the printed table (cells are separated by 2+ spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    header = re.split(r"\s{2,}", lines[start].strip())
    assert re.fullmatch(r"[- ]+", lines[start + 1]), "a rule under the header"
    body = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        body.append(re.split(r"\s{2,}", line.strip()))
    return header, body


def test_quick_bench_prints_a_table_with_one_row_per_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = bench("--quick", "--only", "cache hit,elementwise", "--json", str(out))
    header, body = table_rows(done.stdout)
    assert header[:4] == ["workload", "eager", "compiled", "speedup"] and "compile" in header
    chosen = [w.name for w in load_suite() if "cache hit" in w.name or "elementwise" in w.name]
    assert [row[0] for row in body] == chosen
    for row in body:
        assert SPEEDUP.match(row[header.index("speedup")]), row
    # one progress line per workload on stderr, and the machine the numbers came from
    assert len(re.findall(r"^\[\d+/2\] .+ \.\.\. eager .+ compiled .+\(\d+\.\d\dx\)$", done.stderr, re.MULTILINE)) == 2
    assert re.search(r"^machine: .+, \d+ cores", done.stdout, re.MULTILINE)

    report = json.loads(out.read_text())
    assert report["quick"] is True and report["backend"] and report["machine"]["cores"] >= 1
    assert [entry["name"] for entry in report["workloads"]] == chosen
    for entry in report["workloads"]:
        assert entry["error"] is None
        for name in ("eager", "compiled", "speedup", "compile_time", "eager_spread", "compiled_spread"):
            assert isinstance(entry[name], float) and entry[name] >= 0, (name, entry)
        assert entry["speedup"] == pytest.approx(entry["eager"] / entry["compiled"])
        assert entry["numpy"] is not None and entry["compiled_over_numpy"] > 0  # both have numpy baselines
    assert report["workloads"][0]["gb_per_s"] > 0  # the elementwise chain counts its bytes


def test_a_user_target_and_a_failing_one(tmp_path: Path) -> None:
    script = tmp_path / "my_model.py"
    script.write_text(TARGET)
    done = bench(f"{script}:scaled_relu", "--quick", cwd=tmp_path)
    _, body = table_rows(done.stdout)
    assert [row[0] for row in body] == ["my_model.py:scaled_relu"]
    assert SPEEDUP.match(body[0][3])

    failed = bench(f"{script}:broken", "--quick", cwd=tmp_path, expect=1)
    assert "FAILED" in failed.stdout and "ValueError: no inputs for this one" in failed.stdout


def test_bad_targets_and_filters_say_what_is_wrong(tmp_path: Path) -> None:
    done = bench("--only", "no such workload", expect=1)
    assert "no workload matches" in done.stderr and "softmax" in done.stderr  # and lists the workloads
    with pytest.raises(SystemExit, match="no function 'missing'"):
        (tmp_path / "script.py").write_text(TARGET)
        load_target(f"{tmp_path / 'script.py'}:missing")
    with pytest.raises(SystemExit, match="path/to/script.py:function"):
        load_target("script.py")


def test_suite_workloads_build_and_run_eagerly() -> None:
    workloads = load_suite()
    assert all(isinstance(w, Workload) for w in workloads)
    assert len({w.name for w in workloads}) == len(workloads)
    for workload in workloads:
        fn, args = workload.setup(True)
        out = fn(*args)
        if workload.backward:
            out.backward()
        assert isinstance(out, jitorch.Tensor)


def test_benchmark_api_reports_median_spread_and_compile_time() -> None:
    x = jitorch.randn(1000)

    def fn(t: jitorch.Tensor) -> jitorch.Tensor:
        return (t * 3.0 + 1.0).tanh()

    compiled = jitorch.benchmark(fn, x, min_time=0.02)
    assert isinstance(compiled, BenchmarkResult)
    assert compiled.median > 0 and compiled.spread >= 0 and compiled.runs >= 5
    assert compiled.compile_time is not None and compiled.compile_time >= 0
    eager = jitorch.benchmark(fn, x, compiled=False, min_time=0.02)
    assert eager.median > 0 and eager.compile_time is None
    assert re.fullmatch(r"\S+ (s|ms|µs) ± \S+ (s|ms|µs) \(\d+ runs, compile \S+ (s|ms|µs)\)", str(compiled))
    # an already compiled function is timed as it is, not compiled again
    again = jitorch.compile(fn)
    again(x)
    jitorch.benchmark(again, x, min_time=0.01)
    assert again.stats["compiles"] == 1


def test_a_baseline_is_timed_in_rounds_alternating_with_the_compiled_calls() -> None:
    """Drift in the machine's speed must reach the compiled calls and their yardstick alike."""
    order: list[str] = []
    first, second = measure_alternating([lambda: order.append("a"), lambda: order.append("b")], min_time=0.004,
                                        min_runs=8, rounds=4)
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches >= 7  # a, b, a, b, ... in four rounds each
    assert first.runs >= 8 and second.runs >= 8 and len(first.samples) == first.runs
    assert 0 < first.median and first.spread >= 0


def test_a_wrong_compiled_result_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    def off_by_one(graph: object, timings: dict) -> object:
        run = backends.interpreter(graph, timings)
        return lambda inputs: [out + 1 for out in run(inputs)]

    monkeypatch.setitem(backends.BACKENDS, "off_by_one", off_by_one)
    workload = Workload("relu", lambda quick: ((lambda t: t.relu()), (jitorch.randn(64),)))
    row = run_workload(workload, quick=True, backend="off_by_one")
    assert row.note.startswith("WRONG RESULT") and row.speedup > 0
    assert "x *" in format_table([row]) and "* relu: WRONG RESULT" in format_table([row])
    assert run_workload(workload, quick=True, backend="interpreter").note == ""


def test_targets_are_checked_at_full_size_and_printed() -> None:
    row = Row("w", eager=1e-3, compiled=2e-4, speedup=5.0, compile_time=0.0, numpy=1.5e-4)
    assert Target("compiled/numpy", 1.5).met(row.figure("compiled/numpy")) is True  # 1.33x
    assert Target("compiled/numpy", 1.2).met(row.figure("compiled/numpy")) is False
    assert Target("speedup", 5.0, at_least=True).met(row.figure("speedup")) is True
    assert Target("compiled", 15e-6).met(row.figure("compiled")) is False
    assert str(Target("speedup", 5.0, at_least=True)) == "speedup >= 5x"
    assert str(Target("compiled", 15e-6)) == "compiled <= 15.0 µs"
    assert Target("compiled/numpy", 1.5).met(None) is None  # no numpy baseline: nothing to say
    suite = {w.name: w for w in load_suite()}
    assert [str(t) for t in suite["gelu tanh (2^22)"].targets] == ["compiled/numpy <= 1.5x", "speedup >= 5x"]

    row.targets, row.met = ["speedup >= 5x"], False
    header, body = table_rows(format_table([row]))
    assert header[-2:] == ["target", "met"] and body[0][-2:] == ["speedup >= 5x", "NO"]

    quick = run_workload(suite["cache hit 16 elements 4 ops"], quick=True)
    assert quick.targets == [] and quick.met is None  # --quick sizes are not the sizes targets are stated for


@pytest.mark.slow
def test_first_calls_are_timed_cold_and_from_the_disk_cache() -> None:
    """Two fresh processes share a new disk cache: the second compiles no machine code."""
    workload = next(w for w in load_suite() if w.first_call)
    cold, warm = first_calls(workload, quick=True)
    assert (cold.cache, warm.cache) == ("cold", "disk cache")
    assert cold.machine_code_compiles >= 1 and warm.machine_code_compiles == 0
    assert cold.compile > 0 and warm.compile >= 0 and cold.imports > 0
    text = format_first_calls([cold, warm])
    assert "disk cache" in text and "compile <= 100.00 ms" in text and "compile <= 1.00 s" in text
