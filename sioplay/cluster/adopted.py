"""A process a dead supervisor started, taken over by the next one: supervised, though not its child.

`cluster start` on a state directory whose supervisor died adopts the nodes and
the embedded Redis still running there instead of replacing them, so that no
client is dropped and the public port is never unserved (see `Supervisor._boot`).
An adopted process is known by pid and create time. Only a parent learns how its
child ended, so its exit is seen (its pid is gone, or a zombie of another parent)
but its exit code never is: it is `UNKNOWN_EXIT_CODE`, outside the 0-255 range
of real codes.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time

import psutil

from sioplay.common.pids import ProcessRef, find

__all__ = ["UNKNOWN_EXIT_CODE", "AdoptedProcess"]

UNKNOWN_EXIT_CODE = 256
_POLL_S = 0.05


class AdoptedProcess:
    """The parts of `subprocess.Popen` the supervisor uses (pid, poll, wait, signals), for a process it adopted."""

    def __init__(self, ref: ProcessRef) -> None:
        process = find(ref)
        if process is None:
            raise ProcessLookupError(f"pid {ref.pid} is no longer the process that was recorded")
        self.ref = ref
        self.pid = ref.pid
        self.returncode: int | None = None
        self._process = process

    def poll(self) -> int | None:
        if self.returncode is None and find(self.ref) is None:
            self.returncode = UNKNOWN_EXIT_CODE
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # psutil's own wait, for a process that is not our child, would wait for a zombie forever.
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(_POLL_S)
        return UNKNOWN_EXIT_CODE

    def send_signal(self, signum: int) -> None:
        # psutil checks that the pid is still the adopted process before it signals: a reused pid is left alone.
        try:
            self._process.send_signal(signum)
        except psutil.NoSuchProcess:
            raise ProcessLookupError(self.pid) from None

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.send_signal(signal.SIGKILL)
