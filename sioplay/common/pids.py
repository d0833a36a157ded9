"""Processes known by pid and create time, so that a reused pid is never mistaken for ours."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from typing import Any

import psutil

__all__ = ["ProcessRef", "alive", "find", "terminate"]

# psutil derives create times from boot time and clock ticks: equal for one process, whoever asks.
_SAME_PROCESS_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessRef:
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        """The reference of a running process; NoSuchProcess when it is already gone."""
        return cls(pid, psutil.Process(pid).create_time())

    def as_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time}


def find(ref: ProcessRef) -> psutil.Process | None:
    """The live process `ref` names: same pid, same create time, not a zombie."""
    try:
        process = psutil.Process(ref.pid)
        if abs(process.create_time() - ref.create_time) > _SAME_PROCESS_S:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return process


def alive(ref: ProcessRef) -> bool:
    return find(ref) is not None


def terminate(refs: Iterable[ProcessRef], timeout: float) -> list[ProcessRef]:
    """SIGTERM every live process of `refs`, SIGKILL those still there after `timeout`; returns those that were live."""
    found = {ref: process for ref in refs if (process := find(ref)) is not None}
    for process in found.values():
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, left = psutil.wait_procs(list(found.values()), timeout=timeout)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=5.0)
    return list(found)
