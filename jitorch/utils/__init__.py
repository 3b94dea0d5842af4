"""`jitorch.utils`: `data` (datasets, samplers, DataLoader)."""
from __future__ import annotations

from jitorch.utils import data

__all__ = ["data"]
