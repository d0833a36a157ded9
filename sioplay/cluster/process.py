"""One node process under the supervisor: it logs to its own file, its /healthz is polled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import aiohttp
import psutil

from sioplay.cluster.adopted import UNKNOWN_EXIT_CODE, AdoptedProcess
from sioplay.cluster.logs import FileTail, tail_lines
from sioplay.cluster.spawn import spawn_node
from sioplay.common.health import answered_by, is_alive, is_healthy, read_healthz
from sioplay.common.pids import ProcessRef
from sioplay.common.urls import local_url
from sioplay.settings import Settings

__all__ = ["LineSink", "NodeProcess", "describe_exit"]

log = logging.getLogger(__name__)

LineSink = Callable[[str, str], None]  # (node id, line)
# The steps of a starting node that its health probe sees (see cluster/progress.py).
ProbeStep = Literal["subscribed", "healthy"]

_PROBE_WHILE_LAUNCHING_S = 0.05
_FOLLOW_S = 0.1
_TAIL_LINES = 8


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode == UNKNOWN_EXIT_CODE:
        return "an unknown code (adopted)"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


class NodeProcess:
    """A `sioplay node run` child in its own session, so that a terminal's Ctrl-C reaches only the supervisor.

    It writes its own rotated log at `log_path`, stdout and stderr included: its
    lines outlive the supervisor, and a node never blocks on a reader. `on_line`,
    when given (a supervisor in the foreground), is told the lines as they land.

    It has `answered` from its first /healthz answer that says it is alive
    (`is_alive`), and `last_ok` is the time of the latest such answer: a node whose
    Redis or database is down is alive, only not `ready`. It is `online` from its
    first ready answer (`is_healthy`). `failing` holds the reasons a node that is
    not alive gave (a task of its own died). It is started by `spawn_node`, as the
    benches and the tests start theirs; a thread of its own waits for its exit, as
    asyncio's ThreadedChildWatcher does, and hands the exit code to the event loop.
    A node a dead supervisor left running is `adopt`ed instead (see `cluster/adopted.py`).
    """

    def __init__(
        self, settings: Settings, node_id: str, port: int, log_path: Path, on_line: LineSink | None = None
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.port = port
        self.log_path = log_path
        self.on_line = on_line
        self.ref: ProcessRef | None = None
        self.started_at = 0.0  # monotonic
        self.started_wall = 0.0
        # Since when this supervisor watches it (its start, or its adoption): its start timeout counts from there.
        self.watched_at = 0.0
        self.last_ok = 0.0
        self.answered = False
        self.ready = False
        self.online = False
        self.failing: list[str] = []
        # Set when the supervisor stops this process on purpose: its exit is not a crash.
        self.expected = False
        self.kill_reason: str | None = None
        # Told "subscribed" once the node hears itself on the cluster bus, and "healthy" once it is online.
        self.on_step: Callable[[NodeProcess, ProbeStep], None] | None = None
        self.subscribed = False
        self._process: subprocess.Popen[bytes] | AdoptedProcess | None = None
        self._returncode: int | None = None
        self._exited = asyncio.Event()
        self._online = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        follower = FileTail(self.node_id, self.log_path, from_end=True) if self.on_line is not None else None
        # Append: the supervisor's lifecycle lines share the file, and a crash's traceback lands after them.
        with self.log_path.open("ab") as output:
            self._process = process = spawn_node(
                self.settings,
                self.node_id,
                self.port,
                output,
                public_port=self.settings.public_port,
                own_session=True,
                log_file=self.log_path,
            )
        self.started_at, self.started_wall = time.monotonic(), time.time()
        try:
            self.ref = ProcessRef.of(process.pid)
        except psutil.Error:
            self.ref = ProcessRef(process.pid, self.started_wall)
        self._watch(session, follower)

    def adopt(self, ref: ProcessRef, started_wall: float | None, session: aiohttp.ClientSession) -> None:
        """Supervise the node `ref` that a dead supervisor started: its log goes on in `log_path`, where it writes."""
        follower = FileTail(self.node_id, self.log_path, from_end=True) if self.on_line is not None else None
        self._process = AdoptedProcess(ref)
        self.ref = ref
        self.started_wall = started_wall or ref.create_time
        # Its uptime is what the restart policy judges a later crash by: it counts from its own start.
        self.started_at = time.monotonic() - max(0.0, time.time() - self.started_wall)
        self._watch(session, follower)

    def _watch(self, session: aiohttp.ClientSession, follower: FileTail | None) -> None:
        self.watched_at = time.monotonic()
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._wait_exit, args=(loop,), name=f"{self.node_id}-exit", daemon=True).start()
        self._tasks = [asyncio.create_task(self._probe(session), name=f"{self.node_id}-health")]
        if follower is not None:
            self._tasks.append(asyncio.create_task(self._follow(follower), name=f"{self.node_id}-follow"))

    def _wait_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._process is not None
        code = self._process.wait()
        # A supervisor that failed may have closed its loop already; nobody waits for this exit then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._note_exit, code)

    def _note_exit(self, code: int) -> None:
        self._returncode = code
        self._exited.set()

    async def _follow(self, follower: FileTail) -> None:
        assert self.on_line is not None
        try:
            while True:
                for line in follower.read():
                    self.on_line(self.node_id, line.text)
                await asyncio.sleep(_FOLLOW_S)
        finally:
            follower.close()

    def tail(self) -> list[str]:
        """The last lines of its log: what a crash report shows."""
        return tail_lines(self.log_path, _TAIL_LINES)

    async def _probe(self, session: aiohttp.ClientSession) -> None:
        url = local_url(self.settings.host, self.port, tls=self.settings.tls_enabled)
        while self.running:
            body = await read_healthz(session, url)
            if not self.subscribed and answered_by(body, self.pid) and (body.get("bus") or {}).get("linked"):
                self.subscribed = True
                self._step("subscribed")
            if is_alive(body, self.pid):
                self.last_ok = time.monotonic()
                self.answered = True
                self.ready = is_healthy(body, self.pid)
                if self.ready and not self.online:
                    self.online = True
                    self._online.set()
                    self._step("healthy")
            elif answered_by(body, self.pid):
                self.failing = [str(failure) for failure in body.get("bus", {}).get("failures", [])] or ["not alive"]
            await asyncio.sleep(self.settings.health_interval_s if self.online else _PROBE_WHILE_LAUNCHING_S)

    def _step(self, step: ProbeStep) -> None:
        if self.on_step is not None:
            self.on_step(self, step)

    async def wait_online(self, timeout_s: float) -> bool:
        """True once it is healthy; False if it exits or `timeout_s` passes first."""
        assert self._process is not None
        waits = [asyncio.ensure_future(self._online.wait()), asyncio.ensure_future(self._exited.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
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

    async def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if it is still running after `timeout_s`."""
        if self._process is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                await self._exited.wait()
        except TimeoutError:
            return None
        return self._returncode

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM (the node drains), SIGKILL after `timeout_s`, then reap."""
        self.expected = True
        self.terminate()
        code = await self.wait(timeout_s)
        if code is None:
            log.warning("%s (pid %s) still running %g s after SIGTERM: killing it", self.node_id, self.pid, timeout_s)
            self.kill()
            code = await self.wait(5.0)
        return code

    async def close(self) -> None:
        """Stop polling its health and following its log."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
