"""One node: its parts wired together (Socket.IO server, Redis connections, bus, roster, routes) and its lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import socketio
from aiohttp import web

from sioplay.common.cluster_secret import settings_secret
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.tls import server_context
from sioplay.db.store import UserStore
from sioplay.errors import ClusterError
from sioplay.node import patches
from sioplay.node.auth import TokenVerifier
from sioplay.node.bus import ClusterBus, new_instance_id
from sioplay.node.bus_message import validate_node_id
from sioplay.node.cluster_roster import LocalAnswers, RosterService
from sioplay.node.connections import ConnectionGuard, GuardedRunner
from sioplay.node.listeners import listen
from sioplay.node.manager import ClusterRedisManager
from sioplay.node.metrics import Metrics
from sioplay.node.origins import same_origin
from sioplay.node.part_feed import PartFeed
from sioplay.node.readiness import Readiness
from sioplay.node.redis_wire import RedisPublisher, Subscription
from sioplay.node.room_events import RoomEvents
from sioplay.node.roster_parts import RoomCaches
from sioplay.node.routes import add_routes, middlewares
from sioplay.node.signing import MessageSigner
from sioplay.node.sockets import LocalSockets
from sioplay.node.token_sessions import TokenSessions
from sioplay.settings import Settings
from sioplay.tasks import cancel_and_wait

__all__ = ["Node", "run_node"]

log = logging.getLogger(__name__)

LISTENER_STOP_TIMEOUT_S = 2.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Node:
    """A node listens on its own port and, when given, on the shared public port."""

    def __init__(self, settings: Settings, node_id: str, port: int, public_port: int | None = None) -> None:
        self.settings = settings
        self.node_id = validate_node_id(node_id)
        self.port = port
        self.public_port = public_port
        self.started_at = time.monotonic()
        self.sockets = LocalSockets()
        self.store = UserStore(settings.effective_db_url)
        self.metrics = Metrics()
        endpoint = RedisEndpoint.from_url(settings.redis_url or DEFAULT_REDIS_URL)
        secret = settings_secret(settings)
        signer = MessageSigner(secret)
        # Checked at start: a key file that cannot be read stops the node, not its first client.
        self.verifier = TokenVerifier(settings, secret) if settings.auth == "token" else None
        # One connection carries every PUBLISH of this node, the bus's and Socket.IO's, a tick's worth per write;
        # one more carries every channel it listens on.
        self.publisher = RedisPublisher(endpoint, signer)
        self.subscription = Subscription(
            endpoint,
            signer,
            settings.redis_retry_max_s,
            on_handler_error=self.metrics.handler_failed,
            on_forged=lambda channel: self.metrics.dropped("bad signature"),
        )
        instance = new_instance_id()
        self.local_answers = LocalAnswers(self.sockets, RoomCaches(), node_id, instance)
        replica = settings.roster_mode == "replica"
        # The `replica` mode: every join and leave goes to the other nodes as a delta of this node's part.
        self.part_feed = (
            PartFeed(
                lambda body: self.bus.publish_event("part-delta", body), self.metrics, settings.test_skip_part_deltas
            )
            if replica
            else None
        )
        feed = self.part_feed
        self.bus = ClusterBus(
            self.publisher,
            self.subscription,
            settings,
            node_id,
            instance,
            self.metrics,
            handlers=self.local_answers.handlers(),
            presence=self.sockets.__len__,
            part_seq=(lambda: feed.sent) if feed is not None else None,
        )
        self.roster = RosterService(self.bus, self.local_answers, self.metrics, replica=replica)
        if feed is not None:
            self.sockets.on_change = feed.changed
        self.manager = ClusterRedisManager(
            self.publisher,
            self.subscription,
            channel=f"{settings.cluster}:socketio",
            max_backlog=settings.max_socket_backlog,
            max_message_bytes=settings.bus_max_message_bytes,
            on_dropped=self.metrics.dropped,
            deliveries=self.metrics.room_deliveries,
        )
        self.sio = socketio.AsyncServer(
            client_manager=self.manager,
            async_mode="aiohttp",
            transports=["websocket"],
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_timeout_s,
            max_http_buffer_size=settings.max_http_body_bytes,
            logger=False,
            engineio_logger=False,
            cors_allowed_origins=same_origin,
        )
        self.patches = patches.install(self.sio, self.manager, settings, self.metrics.refused)
        self.readiness = Readiness(self)
        self.tokens = None if self.verifier is None else TokenSessions(self.sio, self.verifier, namespace="/")
        self.events = RoomEvents(
            self.sio,
            self.store,
            self.sockets,
            node_id,
            settings,
            self.metrics.refused,
            self.readiness.refusal,
            tokens=self.tokens,
            part_feed=self.part_feed,
        )
        self.manager.on_connected = self.events.handle_connected
        self.events.register()
        self.connections = ConnectionGuard(
            settings.max_connections_per_address, settings.header_timeout_s, self.metrics.refused
        )
        # The connection guard first: a request's header deadline ends as soon as it is read.
        self.app = web.Application(
            client_max_size=settings.max_http_body_bytes,
            middlewares=[self.connections.middleware, *middlewares(settings)],
        )
        self.sio.attach(self.app)
        add_routes(self.app, self)
        self._runner: GuardedRunner | None = None
        self._listeners: list[asyncio.Server] = []
        self.tls = server_context(settings)

    async def start(self) -> None:
        # Subscribed before listening: a client landing here must hear, and be heard by, the other nodes at once.
        patches.initialize_manager_early(self.sio, self.patches)
        self.subscription.start()
        self.bus.start()
        if self.tokens is not None:
            self.tokens.expiry.start()
        if not await self._wait_subscribed(self.settings.roster_timeout_s):
            log.warning("node %s: Redis subscriptions not ready; listening anyway, they keep retrying", self.node_id)
        await self.readiness.check()
        self.readiness.start()
        self._runner = GuardedRunner(self.app, self.connections, handle_signals=False, access_log=None)
        await self._runner.setup()
        # The kernel spreads connections to the public port over every node bound there.
        for port, shared in ((self.port, False), *(((self.public_port, True),) if self.public_port else ())):
            listener = await listen(
                self._runner,
                self.settings.host,
                port,
                ssl_context=self.tls,
                handshake_timeout_s=self.settings.header_timeout_s,
                reuse_port=shared,
            )
            # Only listeners that listen are closed again, also when the next one cannot.
            self._listeners.append(listener)
        log.info(
            "node %s listening on port %d%s (cluster %r, %s)",
            self.node_id,
            self.port,
            f" and public port {self.public_port}" if self.public_port else "",
            self.settings.cluster,
            "HTTPS" if self.tls else "HTTP",
        )

    async def _wait_subscribed(self, timeout_s: float) -> bool:
        """True once every channel of the node is subscribed, within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.subscription.subscribed.wait()
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
        await self.readiness.stop()
        for listener in self._listeners:
            listener.close()
        if not await self.bus.stop(LISTENER_STOP_TIMEOUT_S):
            log.warning("node %s: the bus heartbeat did not stop", self.node_id)
        patches.abort_all_connections(self.sio)
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s):
                # The disconnect handlers run as engine.io notices each closed connection.
                await self.sockets.wait_empty()
        except TimeoutError:
            log.warning(
                "node %s: sockets still open after %.1f s, closing anyway", self.node_id, self.settings.shutdown_grace_s
            )
        if self.tokens is not None:
            await self.tokens.expiry.stop()
        await self.sio.shutdown()
        # python-socketio sets `thread` when it initialises the manager, which may not have happened yet.
        listener = getattr(self.manager, "thread", None)
        if listener is not None and not await cancel_and_wait(listener, LISTENER_STOP_TIMEOUT_S):
            log.warning("node %s: the Socket.IO pub/sub listener did not stop", self.node_id)
        if not await self.subscription.stop(LISTENER_STOP_TIMEOUT_S):
            log.warning("node %s: the Redis subscription did not stop", self.node_id)
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
