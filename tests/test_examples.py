"""The examples run as a user runs them, each in a subprocess with small settings, and print what their
docstrings promise: a line per epoch for the eager and the compiled run (with the same losses, since
both start from the same weights and see the same batches) and the eager vs compiled times with the
speedup. inspect_pipeline.py shows every compiler stage that exists."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jitorch import debug
from jitorch.frontend.compile import default_backend

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

TIME = r"\d+(?:\.\d+)?\s*(?:s|ms|us|µs)"
SPEEDUP = re.compile(rf"eager {TIME}, compiled {TIME}, speedup (\d+\.\d+)x")
EPOCH = re.compile(r"^\s*(eager|compiled)\s+epoch (\d+)/(\d+)\s.*?\b(?:loss|train mse) (\d+\.\d+)", re.MULTILINE)


def run_example(name: str, *args: str) -> str:
    """Run examples/<name> with `args` the way a user would; its stdout."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JITORCH_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=300)
    assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def assert_trains_the_same(output: str, epochs: int) -> None:
    """One line per epoch for each run, and the compiled run's losses match the eager run's."""
    losses: dict[str, list[float]] = {"eager": [], "compiled": []}
    for run, epoch, total, loss in EPOCH.findall(output):
        assert (int(epoch), int(total)) == (len(losses[run]) + 1, epochs), output
        losses[run].append(float(loss))
    assert len(losses["eager"]) == len(losses["compiled"]) == epochs, output
    for eager, compiled in zip(losses["eager"], losses["compiled"]):
        assert compiled == pytest.approx(eager, rel=2e-2, abs=2e-3), f"compiled training diverged:\n{output}"


def assert_speedups(output: str, count: int) -> None:
    found = SPEEDUP.findall(output)
    assert len(found) == count, f"expected {count} 'eager …, compiled …, speedup …x' lines:\n{output}"
    assert all(float(speedup) > 0 for speedup in found)


@pytest.mark.slow
def test_train_mlp() -> None:
    output = run_example("train_mlp.py", "--epochs", "1")
    assert "MLP 784-512-512-10" in output
    assert_trains_the_same(output, epochs=1)
    assert_speedups(output, 1)


def test_cnn() -> None:
    output = run_example("cnn.py", "--quick", "--epochs", "1")
    assert "training and" in output and "test images" in output
    assert_trains_the_same(output, epochs=1)
    assert re.search(r"compiled calls \d+, compiles 1, fallbacks 0", output), output
    assert_speedups(output, 2)  # training and inference


def test_regression_dataloader() -> None:
    output = run_example("regression_dataloader.py", "--quick", "--epochs", "1")
    assert_trains_the_same(output, epochs=1)
    assert re.search(r"validation mse \d+\.\d+", output) and re.search(r"lr 0\.\d+", output), output
    # the last, smaller batch and evaluation under no_grad each compile their own graph; nothing runs eagerly
    assert re.search(r"compiles 3 .*fallbacks 0", output), output
    assert_speedups(output, 2)  # training steps and whole epochs


@pytest.mark.slow
@pytest.mark.skipif(not (EXAMPLES / "char_lm.py").exists(), reason="examples/char_lm.py is not in this checkout")
def test_char_lm() -> None:
    output = run_example("char_lm.py", "--quick", "--epochs", "1")
    assert_trains_the_same(output, epochs=1)
    assert_speedups(output, 1)
    assert "sample:" in output


def test_inspect_pipeline_shows_every_stage() -> None:
    output = run_example("inspect_pipeline.py", "--max-lines", "8")
    expected = ["graph", "passes", "autodiff"]
    if default_backend() == "llvm":
        expected += ["fusion", "kernels", "llvm"]
    for stage in expected:
        if stage in debug.STAGES:
            assert re.search(rf"^# {stage.upper()}: ", output, re.MULTILINE), f"no {stage} section:\n{output}"
            assert re.search(rf"^=== {stage}: attention_scores\S*: .+ ===$", output, re.MULTILINE), output
    assert "graph attention_scores(%q: f32[32,64], %k: f32[48,64], %bias: f32[48])" in output
    if default_backend() == "llvm":
        assert "fused[" in output and "kernel " in output and " float" in output
    assert re.search(r"compiled vs eager: largest difference \d\.\d\de[-+]\d\d", output), output
    assert_speedups(output, 1)
    assert "explain(attention_scores): 1 graph(s)" in output
