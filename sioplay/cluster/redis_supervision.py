"""The embedded Redis supervised like a node: restarted with back-off on its port and credentials, or left errored.

The supervisor's tick calls `RedisWatch.tick()`. A redis-server that exited is
a crash, judged by the nodes' `RestartPolicy`: restarted after the back-off
(same port, same `redis.conf` users and password files, so the nodes' URL stays
valid and they reconnect by themselves), or, when it keeps dying, `errored` and
left down with the reason. A start runs in a thread of its own, so the tick
keeps supervising the nodes meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal

from sioplay.cluster.policy import Crash, RestartPolicy
from sioplay.cluster.process import describe_exit
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.common.pids import ProcessRef
from sioplay.errors import RedisError

__all__ = ["RedisStatus", "RedisWatch"]

log = logging.getLogger(__name__)

RedisStatus = Literal["online", "waiting-restart", "launching", "errored", "stopped"]


class RedisWatch:
    def __init__(self, redis: EmbeddedRedis, policy: RestartPolicy) -> None:
        self.redis = redis
        self.policy = policy
        self.status: RedisStatus = "online"
        self.restarts = 0
        self.crashes: list[Crash] = []
        self.last_exit: str | None = None
        self.reason: str | None = None
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self.restart_at: float | None = None
        self.ref = self._ref()
        self._starting: asyncio.Task[None] | None = None

    def _ref(self) -> ProcessRef | None:
        pid = self.redis.pid
        if pid is None:
            return None
        try:
            return ProcessRef.of(pid)
        except Exception:  # noqa: BLE001 - gone already: the next tick sees it exited
            return None

    async def tick(self) -> None:
        now = time.monotonic()
        if self.status == "online":
            process = self.redis.process
            if process is not None and process.poll() is not None:
                self._crashed(now, f"exited with {describe_exit(process.returncode)}")
        elif self.status == "waiting-restart" and self.restart_at is not None and now >= self.restart_at:
            self.status = "launching"
            self.restart_at = None
            self._starting = asyncio.create_task(asyncio.to_thread(self.redis.start), name="redis-restart")
        elif self.status == "launching" and self._starting is not None and self._starting.done():
            starting, self._starting = self._starting, None
            error = starting.exception()
            self.restarts += 1
            if error is None:
                self.status, self.ref, self.reason = "online", self._ref(), None
                self.started_at, self.started_wall = now, time.time()
                log.info("embedded redis-server restarted: pid %s on port %d", self.redis.pid, self.redis.port)
            else:
                self._crashed(now, f"did not start again ({error})")

    def _crashed(self, now: float, why: str) -> None:
        self.crashes.append(Crash(at=now, uptime_s=now - self.started_at))
        self.last_exit = why
        self.ref = None
        verdict = self.policy.decide(self.crashes, now)
        if verdict.restart:
            self.status = "waiting-restart"
            self.restart_at = now + verdict.delay_s
            self.reason = f"{why}; {verdict.reason}"
            log.warning("embedded redis-server (port %d) %s: %s", self.redis.port, why, verdict.reason)
            return
        self.status = "errored"
        self.reason = f"{why}, {verdict.reason}; left down (see {self.redis.log_path})"
        log.error("embedded redis-server (port %d) %s", self.redis.port, self.reason)

    async def close(self) -> None:
        """Let a start in progress finish, so that the stop that follows finds its process."""
        if self._starting is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._starting
            self._starting = None
        self.status = "stopped"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "reason": self.reason,
            "started_at": self.started_wall if self.status == "online" else None,
        }
