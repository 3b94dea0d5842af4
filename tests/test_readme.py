"""The README is what a newcomer runs first: its first two commands are exactly the ones CI runs
(.ci/run), and its Python blocks, the tour's first, run in order as one session."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def commands(script: str) -> list[str]:
    """The shell commands of a script with whitespace normalized, leaving out comments and the plumbing
    that sets up a fresh environment (`set`, `cd`, `source`, variables, the venv and a pip upgrade)."""
    found = []
    for line in script.splitlines():
        line = " ".join(line.split())
        if not line or line.startswith("#"):
            continue
        if re.match(r"^(set |cd |source |\w+=|python3? -m venv |.*pip install .*--upgrade pip$)", line):
            continue
        found.append(line)
    return found


def without_quiet_flags(command: str) -> str:
    """CI installs quietly (`pip install -q`); that is the same command."""
    return re.sub(r"(pip install) -q\b", r"\1", command)


def readme_commands() -> list[str]:
    return commands(fenced_blocks(README, "bash")[0])[:2]


def test_readme_starts_with_two_commands() -> None:
    first, second = readme_commands()
    assert "examples/train_mlp.py" in first
    assert "pytest" in second


@pytest.mark.parametrize("index", [0, 1], ids=["install-and-example", "install-and-tests"])
def test_readme_command_is_what_ci_runs(index: int) -> None:
    ci = [without_quiet_flags(c) for c in commands((REPO / ".ci" / "run").read_text())]
    command = readme_commands()[index]
    assert command in ci, f"README command {command!r} is not one .ci/run runs; .ci/run runs {ci}"


def test_every_python_block_runs_as_one_session() -> None:
    """The tour's blocks build on each other (the second uses the first's `torch`), as they would in one
    interpreter session; later sections' blocks may use what the tour defined."""
    tour = re.search(r"^## A five-minute tour\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert tour, "the README has a '## A five-minute tour' section"
    assert len(fenced_blocks(tour.group(1), "python")) >= 2
    blocks = fenced_blocks(README, "python")
    session = "\n".join(f"# --- README block {i + 1}\n{block}" for i, block in enumerate(blocks))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JITORCH_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", session], capture_output=True, text=True, env=environment,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, f"the README's code failed:\n{session}\n{done.stdout}\n{done.stderr}"
    # what the tour's comments promise: x.grad printed like PyTorch prints it, compile stats, an explanation
    assert "tensor([[ 8., 12.],\n        [ 8., 12.]])" in done.stdout
    assert re.search(r"'calls': 2, 'hits': 1, 'compiles': 1", done.stdout), done.stdout
    assert "explain(" in done.stdout
