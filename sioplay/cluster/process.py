"""One node process under the supervisor: its output pumped line by line, its /healthz polled."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import psutil

from sioplay.cluster.pids import ProcessRef
from sioplay.cluster.urls import local_url
from sioplay.settings import Settings

__all__ = ["LineSink", "NodeProcess", "describe_exit", "node_command"]

log = logging.getLogger(__name__)

LineSink = Callable[[str, str], None]  # (node id, line)

_READ_CHUNK = 64 * 1024
# A line longer than this is cut: a runaway node must not grow the supervisor's memory.
_MAX_LINE = 64 * 1024
_PROBE_WHILE_LAUNCHING_S = 0.05
_TAIL_LINES = 8


def node_command(node_id: str, port: int, public_port: int | None = None) -> list[str]:
    """`sioplay node run` for one node, as the supervisor, the benches and the tests start it."""
    args = [sys.executable, "-m", "sioplay", "node", "run", "--node-id", node_id, "--port", str(port)]
    return args + (["--public-port", str(public_port)] if public_port is not None else [])


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


class NodeProcess:
    """A `sioplay node run` child in its own session, so that a terminal's Ctrl-C reaches only the supervisor.

    It is `online` from its first healthy /healthz (its own pid, Redis reachable,
    bus linked); `last_ok` is the time of the latest healthy answer.
    """

    def __init__(self, settings: Settings, node_id: str, port: int, on_line: LineSink) -> None:
        self.settings = settings
        self.node_id = node_id
        self.port = port
        self.on_line = on_line
        self.ref: ProcessRef | None = None
        self.started_at = 0.0  # monotonic
        self.started_wall = 0.0
        self.last_ok = 0.0
        self.online = False
        # Set when the supervisor stops this process on purpose: its exit is not a crash.
        self.expected = False
        self.kill_reason: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._process: asyncio.subprocess.Process | None = None
        self._online = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, session: aiohttp.ClientSession) -> None:
        args = node_command(self.node_id, self.port, self.settings.public_port)
        env = {**self.settings.child_env(), "PYTHONUNBUFFERED": "1"}
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.started_at, self.started_wall = time.monotonic(), time.time()
        try:
            self.ref = ProcessRef.of(self._process.pid)
        except psutil.Error:
            self.ref = ProcessRef(self._process.pid, self.started_wall)
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"{self.node_id}-output"),
            asyncio.create_task(self._probe(session), name=f"{self.node_id}-health"),
        ]

    async def _pump(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        pending = b""
        while chunk := await self._process.stdout.read(_READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > _MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._emit(line)
        if pending:
            self._emit(pending)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        self.tail.append(line)
        self.on_line(self.node_id, line)

    async def _probe(self, session: aiohttp.ClientSession) -> None:
        url = local_url(self.settings.host, self.port) + "/healthz"
        while self.running:
            if await self._healthy(session, url):
                self.last_ok = time.monotonic()
                if not self.online:
                    self.online = True
                    self._online.set()
            await asyncio.sleep(self.settings.health_interval_s if self.online else _PROBE_WHILE_LAUNCHING_S)

    async def _healthy(self, session: aiohttp.ClientSession, url: str) -> bool:
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    return False
                body: Any = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        # The pid check makes sure it is this process answering, not whoever else got the port.
        return (
            isinstance(body, dict)
            and body.get("pid") == self.pid
            and bool(body.get("redis", {}).get("ok"))
            and bool(body.get("bus", {}).get("linked"))
        )

    async def wait_online(self, timeout: float) -> bool:
        """True once it is healthy; False if it exits or `timeout` passes first."""
        assert self._process is not None
        waits = [asyncio.ensure_future(self._online.wait()), asyncio.ensure_future(self._process.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self.online and self.running

    def rss_bytes(self) -> int | None:
        try:
            return psutil.Process(self.pid).memory_info().rss if self.running and self.pid else None
        except psutil.Error:
            return None

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self, reason: str | None = None) -> None:
        if reason is not None and self.kill_reason is None:
            self.kill_reason = reason
        self._signal(signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> None:
        if self.running:
            assert self._process is not None
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signum)

    async def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after `timeout`."""
        if self._process is None:
            return None
        try:
            async with asyncio.timeout(timeout):
                return await self._process.wait()
        except TimeoutError:
            return None

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM (the node drains), SIGKILL after `timeout`, then reap."""
        self.expected = True
        self.terminate()
        code = await self.wait(timeout)
        if code is None:
            log.warning("%s (pid %s) still running %g s after SIGTERM: killing it", self.node_id, self.pid, timeout)
            self.kill()
            code = await self.wait(5.0)
        return code

    async def close(self, timeout: float = 1.0) -> None:
        """Stop polling, and let the output of an exited process drain for up to `timeout`."""
        pump, probe = self._tasks or (None, None)
        if probe is not None:
            probe.cancel()
        if pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(pump)
            pump.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
