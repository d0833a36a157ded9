"""The node's listening sockets, plain or TLS, with a deadline for the TLS handshake.

aiohttp's `TCPSite` leaves the handshake to asyncio's default of 60 s, and a
connection is handed to the connection guard (`connections.py`) only once its
handshake is done: a client that opens connections and never says hello
would hold each for a minute, uncounted. Here the handshake gets the header
timeout, as the request headers do. The runner's `server` (the guard's
factory) is public aiohttp; the sockets are asyncio's own.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import web

__all__ = ["listen"]

# aiohttp's TCPSite default: how many connections wait to be accepted.
BACKLOG = 128


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    handshake_timeout_s: float,
    reuse_port: bool = False,
) -> asyncio.Server:
    server = runner.server
    assert server is not None, "the runner is set up first"
    return await asyncio.get_running_loop().create_server(
        server,
        host,
        port,
        ssl=ssl_context,
        ssl_handshake_timeout=handshake_timeout_s if ssl_context is not None else None,
        backlog=BACKLOG,
        reuse_port=reuse_port or None,
    )
