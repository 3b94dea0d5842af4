"""`jitorch.compiler`: controls for the compiler as a whole."""
from __future__ import annotations

from jitorch.frontend.compile import CompileError, reset, set_compile_disabled  # noqa: F401
