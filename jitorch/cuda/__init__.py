"""jitorch runs on the CPU: there is no CUDA device, and code that checks for one takes the CPU path."""
from __future__ import annotations


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Seeding CUDA is a no-op without CUDA, as in PyTorch on a CPU-only machine."""


def manual_seed_all(seed: int) -> None:
    """Seeding CUDA is a no-op without CUDA, as in PyTorch on a CPU-only machine."""


def synchronize() -> None:
    """Nothing runs asynchronously on the CPU."""
