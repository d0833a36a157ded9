"""Sizes, durations and counts as people write and read them."""

from __future__ import annotations

import re

from sioplay.errors import ConfigError

__all__ = ["count_of", "format_bytes", "format_duration", "parse_bytes"]

# 1024-based whatever the spelling, as pm2's max_memory_restart and docker's --memory read them.
_MULTIPLIERS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'200MB', '200M', '1.5GiB' or '1048576' as a number of bytes."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"not a size: {text!r} (expected e.g. 200MB, 1.5G or 1048576)")
    value = int(float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()])
    if value <= 0:
        raise ConfigError(f"a size must be positive, not {text!r}")
    return value


def format_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def format_duration(seconds: float | None) -> str:
    """Like pm2: 42s, 5m, 3h, 2D."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}D"


def count_of(count: int, word: str) -> str:
    """'1 node', '3 nodes'."""
    return f"{count} {word}{'' if count == 1 else 's'}"
