"""Dumps and the command line: JITORCH_DUMP prints each stage headed by its name and time, JITORCH_DUMP_DIR
writes one file per graph and stage, and `python -m jitorch run [--dump-ir] [--eager] [--check] script.py
args…` runs a user script with its argv. Each case runs a script written to tmp_path in a subprocess."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jitorch

REPO = Path(jitorch.__file__).resolve().parents[1]

SCRIPT = '''\
import sys
import jitorch

@jitorch.compile(backend="interpreter")
def step(x):
    return (x * 2.0 - 0.0).relu().sum()

rows = int(sys.argv[1])
for n in (rows, rows, rows + 1):
    x = jitorch.ones(n, 3, requires_grad=sys.argv[2] == "grad")
    out = step(x)
    if x.requires_grad:
        out.backward()
print("argv", sys.argv[1:], "stats", sorted(step.stats.items()), "value", out.item())
'''

HEADER = re.compile(r"^=== (\w+): (\S+): (.+) \((\d+\.\d\d) ms\) ===$", re.MULTILINE)


BROKEN = '''\
import jitorch
from jitorch.frontend import backends

def plus_one(graph, timings):
    run = backends.interpreter(graph, timings)
    return lambda inputs: [out + 1 for out in run(inputs)]

backends.BACKENDS["plus_one"] = plus_one

@jitorch.compile(backend="plus_one")
def f(x):
    return x * 2.0

x = jitorch.ones(3)
f(x)
f(x)
'''


def run(tmp_path: Path, *command: str, expect: int = 0, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JITORCH_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    environment.update(env)
    args = [a if a != "SCRIPT" else str(script) for a in command]
    result = subprocess.run([sys.executable, *args], check=False, cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, result.stderr
    return result


def test_dump_prints_each_stage_headed_by_its_name_and_time_byte_stable(tmp_path: Path) -> None:
    runs = [run(tmp_path, "SCRIPT", "4", "grad", JITORCH_DUMP="graph,passes,autodiff", PYTHONHASHSEED=seed)
            for seed in ("1", "2")]
    result = runs[0]
    assert "argv ['4', 'grad'] stats [('calls', 3), ('compiles', 2), ('fallbacks', 0), ('hits', 1), " \
           "('recompiles', 1)] value 30.0" in result.stdout
    headers = [(stage, graph, title) for stage, graph, title, _ in HEADER.findall(result.stderr)]
    passes = [f"after {name}" for name in ("simplify", "cse", "dce")]
    one_compile = ([("graph", "step", "traced")] + [("passes", "step", title) for title in passes * 2]
                   + [("passes", "step_backward", title) for title in passes]
                   + [("autodiff", "step", "forward"), ("autodiff", "step", "backward")])
    assert headers == one_compile * 2  # two shapes
    traced = result.stderr.split("=== passes")[0]
    assert "graph step(%x: f32[4,3]) -> f32[] {" in traced
    assert "sub(%0, 0.0:f32)" in traced and "# -  train.py:6" in traced
    simplified = result.stderr.split("=== passes: step: after simplify")[1].split("===")[0]
    assert "sub(" not in simplified  # x - 0.0 is x
    assert "graph step_backward(" in result.stderr
    # no ids, addresses or set order in any dump: another hash seed prints the same bytes
    assert HEADER.sub("", runs[1].stderr) == HEADER.sub("", result.stderr)


def test_dump_dir_writes_one_file_per_graph_and_stage(tmp_path: Path) -> None:
    directory = tmp_path / "dumps"
    result = run(tmp_path, "SCRIPT", "2", "grad", JITORCH_DUMP="graph,passes,autodiff",
                 JITORCH_DUMP_DIR=str(directory))
    assert result.stderr == ""
    files = {p.name: p.read_text() for p in directory.iterdir()}
    assert len(files) == 24  # every dump of both compiles (12 each): nothing overwritten
    for name, text in files.items():
        stage, graph = name.split(".")[1], name.split(".")[0]
        assert HEADER.match(text.splitlines()[0]).groups()[:2] == (stage, graph), name
        assert text.splitlines()[1].startswith(f"graph {graph}"), name
    assert "graph step(%x: f32[2,3]) -> f32[] {" in files["step.graph.traced.txt"]
    assert "graph step(%x: f32[3,3]) -> f32[] {" in files["step.graph.traced.1.txt"]
    assert "graph step_backward(" in files["step.autodiff.backward.txt"]


def test_run_dump_ir_runs_the_script_with_its_arguments(tmp_path: Path) -> None:
    result = run(tmp_path, "-m", "jitorch", "run", "--dump-ir", "--check", "SCRIPT", "5", "nograd")
    assert "argv ['5', 'nograd'] stats [('calls', 3), ('compiles', 2), ('fallbacks', 0), ('hits', 1)," \
        in result.stdout
    assert "=== graph: step: traced (" in result.stderr
    assert "graph step(%x: f32[5,3]) -> f32[] {" in result.stderr
    assert "=== passes: step: after dce (" in result.stderr


def test_run_eager_disables_compilation(tmp_path: Path) -> None:
    result = run(tmp_path, "-m", "jitorch", "run", "--eager", "--dump-ir", "SCRIPT", "3", "grad")
    assert "argv ['3', 'grad'] stats [('calls', 3), ('compiles', 0), ('fallbacks', 0), ('hits', 0), " \
           "('recompiles', 0)] value 24.0" in result.stdout
    assert result.stderr == ""  # nothing compiled, nothing dumped


def test_run_check_fails_when_compiled_differs_from_eager(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN)
    result = run(tmp_path, "-m", "jitorch", "run", "--check", str(tmp_path / "broken.py"), expect=1)
    assert "CompileError: jitorch.compile(check=True): f output differs from eager" in result.stderr
