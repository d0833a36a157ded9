"""One node: a python-socketio server on aiohttp, its HTTP routes, and its lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any

import socketio
from aiohttp import web
from engineio.async_drivers import aiohttp as engineio_aiohttp

from sioplay.db.store import UserStore
from sioplay.errors import ClusterError
from sioplay.node import eio_socket
from sioplay.node.bus import ClusterBus
from sioplay.node.corked import CorkedTransport
from sioplay.node.http import json_errors, json_response, roster_routes, user_routes
from sioplay.node.manager import ClusterRedisManager
from sioplay.node.metrics import Metrics
from sioplay.node.realtime import RoomEvents
from sioplay.node.redis_wire import RedisPublisher
from sioplay.node.roster import RosterService
from sioplay.node.sockets import LocalSockets
from sioplay.node.ui import ui_routes
from sioplay.settings import Settings
from sioplay.tasks import cancel_and_wait

__all__ = ["Node", "run_node"]

log = logging.getLogger(__name__)

LISTENER_STOP_TIMEOUT_S = 2.0


def _websocket_driver(compress: bool, send_buffer_bytes: int | None) -> type[engineio_aiohttp.WebSocket]:
    """engine.io's aiohttp websocket wrapper with compression and the send buffer as settings.

    aiohttp compresses every frame by default and engine.io does not turn it
    off; under a join storm in a large room that costs more CPU than anything
    else and drops clients. The frames of one event-loop tick leave in one
    write (`CorkedTransport`).
    """

    class WebSocket(engineio_aiohttp.WebSocket):
        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            request = environ["aiohttp.request"]
            self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=compress)
            await self._sock.prepare(request)
            # aiohttp keeps the frame writer private; without it frames are simply not batched.
            frame_writer = getattr(self._sock, "_writer", None)
            if frame_writer is not None and isinstance(getattr(frame_writer, "transport", None), asyncio.Transport):
                frame_writer.transport = CorkedTransport(frame_writer.transport)
            raw_socket = request.transport.get_extra_info("socket") if request.transport else None
            if send_buffer_bytes is not None and raw_socket is not None:
                raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            self.environ = environ
            await self.handler(self)
            return self._sock

    return WebSocket


class Node:
    """A node listens on its own port and, when given, on the shared public port."""

    def __init__(self, settings: Settings, node_id: str, port: int, public_port: int | None = None) -> None:
        self.settings = settings
        self.node_id = node_id
        self.port = port
        self.public_port = public_port
        self.started_at = time.monotonic()
        self.sockets = LocalSockets()
        self.store = UserStore(settings.effective_db_url)
        redis_url = settings.redis_url or "redis://127.0.0.1:6379/0"
        self.metrics = Metrics()
        # One connection carries every PUBLISH of this node, the bus's and Socket.IO's, a tick's worth per write.
        self.publisher = RedisPublisher(redis_url)
        self.bus = ClusterBus(redis_url, self.publisher, settings, node_id, self.metrics)
        self.roster = RosterService(self.bus, self.sockets, self.metrics)
        self.manager = ClusterRedisManager(
            redis_url,
            self.publisher,
            channel=f"{settings.cluster}:socketio",
            retry_max_s=settings.redis_retry_max_s,
            max_backlog=settings.max_socket_backlog,
            max_message_bytes=settings.bus_max_message_bytes,
            on_dropped=self.metrics.dropped,
        )
        eio_socket.install()
        self.sio = socketio.AsyncServer(
            client_manager=self.manager,
            async_mode="aiohttp",
            transports=["websocket"],
            max_http_buffer_size=settings.max_http_body_bytes,
            logger=False,
            engineio_logger=False,
        )
        self.sio.eio._async = {
            **self.sio.eio._async,
            "websocket": _websocket_driver(settings.ws_compression, settings.ws_send_buffer_bytes),
        }
        self.events = RoomEvents(self.sio, self.store, self.sockets, node_id)
        self.manager.on_connected = self.events.handle_connected
        self.events.register()
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._sites: list[web.TCPSite] = []

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_http_body_bytes, middlewares=[json_errors])
        self.sio.attach(app)
        app.add_routes(user_routes(self.store))
        app.add_routes(ui_routes())
        app.add_routes(
            [
                web.get("/healthz", self.handle_health),
                web.get("/metrics", self.handle_metrics),
                web.get("/cluster", self.handle_cluster),
            ]
        )
        app.add_routes(roster_routes(self.roster, self.settings.roster_timeout_s))
        return app

    async def handle_health(self, request: web.Request) -> web.Response:
        redis_state: dict[str, Any]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(1.0):
                await self.publisher.ping()
            redis_state = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
        except (OSError, TimeoutError) as exc:
            redis_state = {"ok": False, "error": str(exc) or type(exc).__name__}
        return json_response(
            {
                "node": self.node_id,
                "pid": os.getpid(),
                "cluster": self.settings.cluster,
                "uptime_s": round(time.monotonic() - self.started_at, 3),
                "sockets": len(self.sockets),
                "redis": redis_state,
                "bus": {"linked": self.bus.linked, "peers": len(self.bus.membership)},
                "metrics": self.metrics.as_json(),
            }
        )

    async def handle_metrics(self, request: web.Request) -> web.Response:
        text = self.metrics.prometheus(self.node_id, len(self.sockets), len(self.bus.membership))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def handle_cluster(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        nodes = [
            {
                "node": self.node_id,
                "instance": self.bus.instance,
                "self": True,
                "sockets": len(self.sockets),
                "last_seen_s": 0.0,
            }
        ]
        nodes += [
            {
                "node": peer.node_id,
                "instance": peer.instance,
                "self": False,
                "sockets": peer.sockets,
                "last_seen_s": round(now - peer.last_seen, 3),
            }
            for peer in self.bus.live_nodes()
        ]
        return json_response({"cluster": self.settings.cluster, "linked": self.bus.linked, "nodes": nodes})

    async def start(self) -> None:
        # Subscribed before listening: a client landing here must hear, and be heard by, the other nodes at once.
        self.sio.manager_initialized = True
        self.manager.initialize()
        self.bus.start()
        if not await self._wait_subscribed(self.settings.roster_timeout_s):
            log.warning("node %s: Redis subscriptions not ready; listening anyway, they keep retrying", self.node_id)
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        host = self.settings.host
        sites = [web.TCPSite(self._runner, host, self.port)]
        if self.public_port is not None:
            # The kernel spreads connections over every node bound here.
            sites.append(web.TCPSite(self._runner, host, self.public_port, reuse_port=True))
        for site in sites:
            await site.start()
            # Only sites that listen are stopped again, also when the next one cannot.
            self._sites.append(site)
        log.info(
            "node %s listening on port %d%s (cluster %r)",
            self.node_id,
            self.port,
            f" and public port {self.public_port}" if self.public_port else "",
            self.settings.cluster,
        )

    async def _wait_subscribed(self, timeout: float) -> bool:
        """True once both the Socket.IO channel and the bus are subscribed, within one `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self.manager.subscribed.wait()
                await self.bus.subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close the listeners, drop the connections (the room hears it), then let go of Redis.

        Connections are closed, not sent a Socket.IO DISCONNECT: clients take a
        DISCONNECT as final, while a closed transport makes them reconnect, and
        with this node's listeners closed they land on another node.
        """
        log.info("node %s stopping: %d sockets to drop", self.node_id, len(self.sockets))
        for site in self._sites:
            await site.stop()
        if not await self.bus.stop(LISTENER_STOP_TIMEOUT_S):
            log.warning("node %s: the bus listener did not stop", self.node_id)
        for environ in list(self.sio.environ.values()):
            request = environ.get("aiohttp.request")
            if request is not None and request.transport is not None:
                request.transport.abort()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                # The disconnect handlers run as engine.io notices each closed connection.
                await self.sockets.wait_empty()
        except TimeoutError:
            log.warning(
                "node %s: sockets still open after %.1f s, closing anyway", self.node_id, self.settings.shutdown_grace_s
            )
        await self.sio.shutdown()
        listener = self.manager.thread
        if listener is not None and not await cancel_and_wait(listener, LISTENER_STOP_TIMEOUT_S):
            log.warning("node %s: the Socket.IO pub/sub listener did not stop", self.node_id)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.publisher.close()
        await self.store.close()
        log.info("node %s stopped", self.node_id)


async def run_node(settings: Settings, node_id: str, port: int, public_port: int | None = None) -> None:
    """Run a node until SIGTERM or SIGINT; a second signal stops it at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def handle_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handle_signal, signum)
    node = Node(settings, node_id, port, public_port)
    try:
        await node.start()
    except OSError as exc:
        await node.stop()
        ports = f"port {port}" + (f" and public port {public_port}" if public_port is not None else "")
        raise ClusterError(f"node {node_id} cannot listen on {ports}: {exc.strerror or exc}") from None
    try:
        await stop.wait()
    finally:
        await node.stop()
