"""The recording context: while a trace is active, every dispatched op is handed to its recorder.

The dispatch door and the few places that read values or mutate memory call the hooks below; with no
active recorder each hook is one attribute test.
"""
from __future__ import annotations

import threading
from typing import Any


class _State(threading.local):
    recorder: Any = None


STATE = _State()


def value_read(tensor: Any, what: str) -> None:
    """A tensor's value reaches Python (`.item()`, `bool()`, ...): a trace cannot be replayed past this."""
    if STATE.recorder is not None:
        STATE.recorder.value_read(tensor, what)


def inplace(tensor: Any, result: Any) -> None:
    """`tensor` now holds `result`'s values (an in-place op)."""
    if STATE.recorder is not None:
        STATE.recorder.inplace(tensor, result)


def random_seed(seed: Any, generator: Any) -> None:
    """`seed` was drawn from `generator` for a random op: a traced graph draws it anew on every call."""
    if STATE.recorder is not None:
        STATE.recorder.random_seed(seed, generator)
