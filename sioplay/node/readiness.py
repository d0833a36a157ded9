"""Liveness and readiness of a node, as Kubernetes separates them.

A node is *alive* while its own parts run: a background task of its own that
died (the bus heartbeat, the Redis subscription, this monitor) makes it not
alive, /healthz answers 503, and the supervisor replaces it. It is *ready*
while what it depends on answers: Redis (a PING on the publishing connection,
and the subscription confirmed), the database (a round trip, and for SQLite the
file still being the one opened) and the bus (the node hears its own
heartbeats). A node that is not ready stays up, keeps its connected clients,
answers what it can (rosters marked partial, reads while the database answers),
refuses new Socket.IO connections with the reason, and becomes ready again by
itself: the subscription reconnects and announces the node, the database pool
reconnects. Each dependency is checked every heartbeat interval and at each
/healthz, and says since when it is in its state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from sioplay.errors import DatabaseError
from sioplay.tasks import report_death

if TYPE_CHECKING:
    from sioplay.node.app import Node

__all__ = ["Dependency", "Readiness"]

log = logging.getLogger(__name__)

REDIS_PING_TIMEOUT_S = 0.5
ANSWER_WITHIN_S = 0.5
DEPENDENCIES = ("redis", "database", "bus")
NOT_CHECKED = "not checked yet"


@dataclasses.dataclass(slots=True)
class Dependency:
    ok: bool
    since: float  # wall clock of the last change
    error: str | None = None
    latency_ms: float | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        value: dict[str, Any] = {
            "ok": self.ok,
            "since": round(self.since, 3),
            "for_s": round(max(now - self.since, 0.0), 1),
            "error": self.error,
        }
        if self.latency_ms is not None:
            value["latency_ms"] = self.latency_ms
        return value


class Readiness:
    """What /healthz reports and what a new connection is refused for."""

    def __init__(self, node: Node) -> None:
        self.node = node
        started = time.time()
        self.dependencies = {name: Dependency(False, started, NOT_CHECKED) for name in DEPENDENCIES}
        self._task: asyncio.Task[None] | None = None
        self._database_check: asyncio.Future[None] | None = None
        self.failure: str | None = None

    # What the node's parts say ------------------------------------------------------------

    @property
    def failures(self) -> list[str]:
        """Background tasks of this node that died: the node is not alive."""
        found = (self.node.bus.failure, self.node.subscription.failure, self.failure)
        return [failure for failure in found if failure is not None]

    @property
    def alive(self) -> bool:
        return not self.failures

    @property
    def ready(self) -> bool:
        return self.alive and all(dependency.ok for dependency in self.dependencies.values())

    def refusal(self) -> str | None:
        """Why a new client is refused now (the last check, and what is known without I/O); None: it is taken.

        Short, for the client to show; the details (which file, which error) are in /healthz and the log.
        Only Redis and the database refuse: a bus not linked yet (the first heartbeat on its way) does not.
        """
        if not self.alive:
            return "not ready: node failing, being replaced"
        if not self.node.subscription.subscribed.is_set() or not self.dependencies["redis"].ok:
            return "not ready: redis down"
        if self.node.store.check.file_problem() is not None or not self.dependencies["database"].ok:
            return "not ready: database down"
        return None

    # Checks ---------------------------------------------------------------------------------

    async def check(self) -> None:
        """Ask Redis and the database now, and read the bus's state; within about half a second.

        A database that is slow to answer (a host that drops packets) is still asked, up to its own
        deadline, by one check shared by every caller; meanwhile the last known state stands, so that
        /healthz answers in time and the node is never taken for hung because of its database.
        """
        if self._database_check is None or self._database_check.done():
            self._database_check = asyncio.ensure_future(self._check_database())
        await asyncio.gather(self._check_redis(), asyncio.wait({self._database_check}, timeout=ANSWER_WITHIN_S))
        bus = self.node.bus
        self._set("bus", None if bus.linked else "not hearing its own heartbeats on the cluster bus")

    async def _check_redis(self) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REDIS_PING_TIMEOUT_S):
                await self.node.publisher.ping()
        except (OSError, TimeoutError) as exc:
            self._set("redis", str(exc) or type(exc).__name__)
            return
        if not self.node.subscription.subscribed.is_set():
            self._set("redis", "the subscription is not confirmed (reconnecting)")
            return
        self._set("redis", None, latency_ms=round((time.perf_counter() - started) * 1000, 3))

    async def _check_database(self) -> None:
        try:
            await self.node.store.check.check()
        except DatabaseError as exc:
            self._set("database", str(exc))
        else:
            self._set("database", None)

    def _set(self, name: str, error: str | None, latency_ms: float | None = None) -> None:
        dependency = self.dependencies[name]
        ok = error is None
        # A dependency found up at the first check was never away, and one found down then (the bus before its
        # first heartbeat comes back) is not news yet: only changes after it are logged.
        if ok != dependency.ok:
            now = time.time()
            if ok and dependency.error != NOT_CHECKED:
                log.info("%s is back after %.1f s", name, now - dependency.since)
            elif not ok:
                log.warning("%s is down: %s; refusing new connections until it is back", name, error)
            dependency.ok, dependency.since = ok, now
        dependency.error = error
        dependency.latency_ms = latency_ms

    # The monitor ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._monitor(), name="readiness-monitor")
        report_death(self._task, self._failed)
        # python-socketio's pub/sub listener, started when the manager was initialised: it never ends by itself.
        listener = getattr(self.node.manager, "thread", None)
        if isinstance(listener, asyncio.Future):
            listener.add_done_callback(self._listener_ended)

    def _listener_ended(self, listener: asyncio.Future[Any]) -> None:
        if self._task is None:
            return  # the node is stopping
        error = None if listener.cancelled() else listener.exception()
        reason = f"socketio-listener died: {error!r}" if error else "socketio-listener ended"
        log.error("background task %s", reason, exc_info=error)
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        self.failure = self.failure or reason

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.node.settings.heartbeat_interval_s)
            await self.check()

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._database_check) if task is not None]
        self._task = self._database_check = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def as_json(self) -> dict[str, Any]:
        now = time.time()
        return {name: dependency.as_json(now) for name, dependency in self.dependencies.items()}
