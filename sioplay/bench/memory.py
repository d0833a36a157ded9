"""Resident memory of the fleet's processes, for memory-per-client figures."""

from __future__ import annotations

import contextlib

import psutil

__all__ = ["rss_bytes"]


def rss_bytes(pids: list[int]) -> int:
    """Sum of the resident set sizes of these processes; one that has gone counts as nothing."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total
