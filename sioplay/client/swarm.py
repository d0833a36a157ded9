"""`sioplay swarm`: thousands of simulated clients in one process, each a WireClient on its own connection.

Handshakes go through a semaphore so that a large swarm does not open them all
at once; a failed connect or a dropped client is retried with a capped,
jittered back-off and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import resource
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal

from sioplay.client.http import Api
from sioplay.client.ids import id_ranges
from sioplay.client.names import NameCache
from sioplay.client.wire import WireClient
from sioplay.errors import ClientError, ValidationError
from sioplay.tasks import cancel_all

__all__ = [
    "Swarm",
    "SwarmPhase",
    "SwarmStats",
    "parse_users",
    "preflight",
    "raise_open_files_limit",
    "run",
    "stop_on_signals",
]

SwarmPhase = Literal["connecting", "holding"]

ATTEMPT_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0
TICK_S = 0.25
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
# Besides one socket per client: the preflight's HTTP calls, stdio, the event loop.
SPARE_FILES = 64


def parse_users(spec: str) -> list[str]:
    """`1-10`, `3`, or a comma-separated mix of both: the id_users, in order, without repeats."""
    users: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        low, dash, high = part.partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit() and int(low) <= int(high):
            users += [str(n) for n in range(int(low), int(high) + 1)]
        elif part and not dash:
            users.append(part)
        else:
            raise ValidationError(f"--users must look like '1-10' or '1,4,7', not {spec!r}")
    return list(dict.fromkeys(users))


def raise_open_files_limit(clients: int) -> None:
    """Each client holds a socket; lift the soft limit on open files as far as the hard limit allows."""
    needed = clients + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ClientError(f"{clients} clients need {needed} open files, the limit is {hard} (raise 'ulimit -n')")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def preflight(api: Api, room: str, users: list[str]) -> None:
    """Fail fast on what retrying cannot fix: no cluster, a bad room name, users that do not exist."""
    await api.health()
    await api.roster(room)
    names = await NameCache(api).hydrate(users)
    unknown = [id_user for id_user, name in names.items() if name is None]
    if unknown:
        verb = "is" if len(unknown) == 1 else "are"
        raise ClientError(f"--users: {id_ranges(unknown)} {verb} unknown; --users must name existing users")


@dataclasses.dataclass(slots=True)
class SwarmStats:
    clients: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    connected: int = 0
    per_node: Counter[str] = dataclasses.field(default_factory=Counter)
    errors: int = 0
    reconnects: int = 0
    # Why connected clients lost their connection (while the swarm was not stopping).
    drops: Counter[str] = dataclasses.field(default_factory=Counter)
    events: int = 0
    last_error: str | None = None
    connect_seconds: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "connected": self.connected,
            "per_node": {node: count for node, count in sorted(self.per_node.items()) if count},
            "errors": self.errors,
            "reconnects": self.reconnects,
            "connect_seconds": None if self.connect_seconds is None else round(self.connect_seconds, 3),
            "events": self.events,
            "last_error": self.last_error,
            "drops": dict(self.drops.most_common()),
        }


class _ReconnectingClient:
    """One client: connects, and connects again whenever it is refused or dropped."""

    def __init__(self, swarm: Swarm, id_user: str) -> None:
        self.swarm = swarm
        self.id_user = id_user
        self.node = "?"

    async def run(self) -> None:
        swarm = self.swarm
        failures = 0
        connected_before = False
        while True:
            token = await swarm.api.token_for(self.id_user)
            client = WireClient(
                swarm.api.url, self.id_user, swarm.room, swarm.heard, swarm.api.ssl_context, token=token
            )
            try:
                async with swarm.gate, asyncio.timeout(ATTEMPT_TIMEOUT_S):
                    handshake = await client.connect()
            except (ClientError, TimeoutError) as exc:
                swarm.failed(str(exc) or f"no handshake within {ATTEMPT_TIMEOUT_S:g} s")
                failures += 1
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (failures - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            failures = 0
            self.node = str(handshake.get("node", "?")) if isinstance(handshake, dict) else "?"
            swarm.joined(self, again=connected_before)
            connected_before = True
            swarm.dropped(await client.run())
            swarm.left(self)


class Swarm:
    """`clients` members in `room`, given users round-robin, started at most `ramp` per second."""

    def __init__(
        self, api: Api, room: str, users: list[str], clients: int, *, ramp: float | None = None, concurrency: int = 100
    ) -> None:
        self.api = api
        self.room = room
        self.ramp = ramp
        self.stats = SwarmStats(clients)
        self.gate = asyncio.Semaphore(concurrency)
        self.all_connected = asyncio.Event()
        self.members = [_ReconnectingClient(self, users[i % len(users)]) for i in range(clients)]
        self._tasks: list[asyncio.Task[None]] = []
        self._launcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stats.started = time.monotonic()
        self._launcher = asyncio.create_task(self._launch())

    async def _launch(self) -> None:
        started = time.monotonic()
        for index, member in enumerate(self.members):
            if self.ramp:
                await asyncio.sleep(max(0.0, started + index / self.ramp - time.monotonic()))
            self._tasks.append(asyncio.create_task(member.run()))

    def joined(self, member: _ReconnectingClient, again: bool) -> None:
        stats = self.stats
        stats.connected += 1
        stats.per_node[member.node] += 1
        if again:
            stats.reconnects += 1
        if stats.connected == stats.clients and stats.connect_seconds is None:
            stats.connect_seconds = stats.elapsed
            self.all_connected.set()

    def left(self, member: _ReconnectingClient) -> None:
        self.stats.connected -= 1
        self.stats.per_node[member.node] -= 1

    def failed(self, error: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = error

    def dropped(self, reason: str) -> None:
        self.stats.drops[reason] += 1

    def heard(self) -> None:
        self.stats.events += 1

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Cancel every member, each leaving its room as it ends.

        A member still running after `timeout_s` keeps its connection until the process exits.
        """
        await cancel_all([task for task in (self._launcher, *self._tasks) if task is not None], timeout_s)


async def run(
    swarm: Swarm,
    *,
    stop: asyncio.Event,
    connect_timeout_s: float,
    duration: float | None,
    tick: Callable[[SwarmPhase, SwarmStats], None],
) -> dict[str, Any]:
    """Connect everyone (or until `connect_timeout_s`), hold for `duration` s or until `stop`; the summary."""
    swarm.start()
    try:
        await _until(
            swarm.all_connected, stop, timeout_s=connect_timeout_s, tick=lambda: tick("connecting", swarm.stats)
        )
        if not stop.is_set():
            await _until(stop, timeout_s=duration, tick=lambda: tick("holding", swarm.stats))
        return swarm.stats.summary()
    finally:
        await swarm.stop()


async def _until(*events: asyncio.Event, timeout_s: float | None, tick: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    end = None if timeout_s is None else loop.time() + timeout_s
    while not any(event.is_set() for event in events):
        tick()
        wait = TICK_S if end is None else min(TICK_S, end - loop.time())
        if wait <= 0:
            return
        await asyncio.sleep(wait)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """The first SIGINT/SIGTERM asks for a graceful stop; a second cancels the running task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def handle() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
