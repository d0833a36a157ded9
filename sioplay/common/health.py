"""When a node's /healthz answer says it is alive, or ready: one judgement for the supervisor, status, benches, tests.

Alive (the supervisor keeps it) is any answer from the process itself that does not
say a task of its own died; ready (it serves new clients) is what `ready` says. An
answer from before readiness existed is ready when Redis answers and the bus is linked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `cluster status` judges answers without aiohttp; only the supervisor's reads need it.
    import aiohttp

__all__ = ["answered_by", "is_alive", "is_healthy", "read_healthz"]


def answered_by(healthz_body: Any, pid: int | None) -> bool:
    """True if process `pid` gave this answer: whoever else got its port since does not count."""
    return isinstance(healthz_body, dict) and pid is not None and healthz_body.get("pid") == pid


def is_alive(healthz_body: Any, pid: int | None) -> bool:
    """Process `pid` answered, and none of its own background tasks died."""
    return answered_by(healthz_body, pid) and healthz_body.get("alive", True) is True


def is_healthy(healthz_body: Any, pid: int | None) -> bool:
    """Process `pid` answered and is ready: Redis, the database and the cluster bus all work for it."""
    if not is_alive(healthz_body, pid):
        return False
    if "ready" in healthz_body:
        return healthz_body["ready"] is True
    redis, bus = healthz_body.get("redis"), healthz_body.get("bus")
    return isinstance(redis, dict) and bool(redis.get("ok")) and isinstance(bus, dict) and bool(bus.get("linked"))


async def read_healthz(session: aiohttp.ClientSession, base_url: str) -> Any:
    """The decoded body of `base_url`/healthz (200: alive, 503: failing); None for any other answer or none."""
    import aiohttp

    try:
        async with session.get(base_url + "/healthz") as response:
            if response.status not in (200, 503):
                return None
            return await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
