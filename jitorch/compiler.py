"""`jitorch.compiler`: controls for the compiler as a whole."""
from __future__ import annotations

from jitorch.frontend.compile import CompileError, reset  # noqa: F401
