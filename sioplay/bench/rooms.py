"""Whether nodes' cluster-wide rosters of a room are exactly the bench's own record of who is in it."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp

from sioplay.errors import ClientError

__all__ = ["roster_exact", "roster_exact_everywhere"]

# Well above the nodes' own roster timeout: a slow answer is still an answer to compare.
REQUEST_TIMEOUT_S = 30.0


async def roster_exact(session: aiohttp.ClientSession, url: str, room: str, expected: set[tuple[str, str]]) -> bool:
    """True if `url` answers `/rooms/{room}` complete and with exactly the `expected` (id_socket, id_user) pairs.

    A refusal or a partial answer is inexact; a node that cannot be reached is a ClientError.
    """
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S), session.get(f"{url}/rooms/{quote(room, safe='')}") as response:
            if response.status != 200:
                return False
            body = await response.json()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ClientError(f"roster of {room!r} from {url}: {str(exc) or type(exc).__name__}") from exc
    got = {(member["id_socket"], member["id_user"]) for member in body["users"]}
    return bool(body["complete"]) and got == expected


async def roster_exact_everywhere(
    session: aiohttp.ClientSession, urls: list[str], room: str, expected: set[tuple[str, str]]
) -> bool:
    """`roster_exact` from every node in turn; False at the first that is not."""
    for url in urls:
        if not await roster_exact(session, url, room, expected):
            return False
    return True
