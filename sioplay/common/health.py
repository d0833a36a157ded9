"""When a node's /healthz answer says it is healthy: one judgement for the supervisor, status, benches and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `cluster status` judges answers without aiohttp; only the supervisor's reads need it.
    import aiohttp

__all__ = ["answered_by", "is_healthy", "read_healthz"]


def answered_by(healthz_body: Any, pid: int | None) -> bool:
    """True if process `pid` gave this answer: whoever else got its port since does not count."""
    return isinstance(healthz_body, dict) and pid is not None and healthz_body.get("pid") == pid


def is_healthy(healthz_body: Any, pid: int | None) -> bool:
    """Process `pid` answered, reaches Redis, and hears itself on the cluster bus."""
    if not answered_by(healthz_body, pid):
        return False
    redis, bus = healthz_body.get("redis"), healthz_body.get("bus")
    return isinstance(redis, dict) and bool(redis.get("ok")) and isinstance(bus, dict) and bool(bus.get("linked"))


async def read_healthz(session: aiohttp.ClientSession, base_url: str) -> Any:
    """The decoded body of a 200 answer from `base_url`/healthz; None for any other answer or none."""
    import aiohttp

    try:
        async with session.get(base_url + "/healthz") as response:
            if response.status != 200:
                return None
            return await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
