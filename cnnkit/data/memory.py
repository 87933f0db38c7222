"""The memory budget that decides between holding a dataset in memory and streaming it."""

from __future__ import annotations

import math
import os

from cnnkit.errors import UsageError

BUDGET_ENV = "CNNKIT_MEMORY_BUDGET"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned and cleaned[-1] in _UNITS else (cleaned, "")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"cannot read '{text}' as a size", "write it like 512M, 4G or 1500000000") from None
    if not math.isfinite(value) or value < 0:  # nan and inf are floats too, but no size
        raise UsageError(f"a memory budget is a finite size >= 0, not '{text}'", "write it like 512M, 4G or 1500000000")
    return int(value * _UNITS[unit])


def memory_budget(explicit: str | None = None) -> int:
    """Bytes of decoded pixels a dataset may take in memory: --memory-budget, the env, or a quarter of RAM."""
    text = explicit or os.environ.get(BUDGET_ENV)
    if text:
        return parse_bytes(text)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return total // 4
