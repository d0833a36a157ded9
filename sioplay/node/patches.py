"""Every place where sioplay reaches into python-socketio, python-engineio, aiohttp or asyncio internals.

Each patch names the private target it needs and checks, before applying,
that the target is still there and still has the shape it was written for.
`install()` applies them and returns which took effect; one that cannot is
logged once as a warning naming its target and left off, so an upgrade that
moves a private name costs speed, never correctness (no double delivery, no
crash). `/healthz` lists the active ones. pyproject pins the versions they
were written for (python-socketio 5.16-5.18, python-engineio 4.12-4.15,
aiohttp 3.10-3.14).

The patches, and why each exists:

- ``websocket-driver``: engine.io's aiohttp websocket wrapper, with per-message
  compression as a setting (aiohttp compresses every frame by default, and
  under a join storm that costs more CPU than anything else) and SO_SNDBUF as
  a setting; it replaces ``eio._async["websocket"]``.
- ``corked-writes``: the frames of one event-loop tick leave in one write
  (`CorkedTransport`), set on aiohttp's private frame writer.
- ``queue-socket``: a cheaper writer wait (`QueueSocket`) put in place of
  engine.io's ``AsyncSocket``: on Python 3.11 ``wait_for`` starts a task per
  wait (``python -m sioplay.bench.writer_wait`` on this 2-core machine: 29-33
  vs 22-25 µs per wait on 3.11; 19.5-19.9 vs 19.9-20.4 on 3.12, whose
  ``wait_for`` is the same timeout-around-await). It also knows when its
  websocket writer waits with nothing queued, which ``direct-writes`` needs.
- ``room-broadcast``: a room emit queues its frames on each recipient's
  engine.io queue without a task each (`RoomBroadcaster`); it relies on
  ``AsyncManager.get_participants`` and ``AsyncSocket.queue``.
- ``direct-writes``: a room emit builds its websocket frame once and writes it
  straight to each recipient whose writer is idle with nothing queued, over an
  uncompressed connection whose transport holds less than
  `DIRECT_WRITE_BUFFER_BYTES` unsent (`QueueSocket.write_now`); the others get
  it queued as above. In a join storm each delivery otherwise wakes the
  recipient's writer task to encode and send one frame. It relies on aiohttp's
  ``WebSocketWriter`` (``transport``, ``compress``, ``_closing``) and on
  engine.io's writer polling ``self.poll()``.
- ``client-guard``: what one client may send. The contract has no binary
  events, so a binary frame, or a packet announcing binary attachments (whose
  total python-socketio does not bound), closes the connection; so does the
  first malformed packet (engine.io would log a traceback for each and keep
  reading); and a connection that has not sent its Socket.IO CONNECT within
  the connect timeout is closed, as Node's socket.io does after 45 s. It wraps
  the ``message`` and ``connect`` handlers python-socketio registers with
  engine.io, and the driver's ``wait``.
- ``lean-socket``: two tasks fewer per connected socket (`LeanSocket`): the
  next ping is a timer instead of a sleeping task, and frames are read in the
  connection's own task instead of one more task under ``wait_for``.
- ``send-queue``: each socket's send queue is a `SendQueue`, which makes its
  parts only while they are in use, instead of an ``asyncio.Queue``, whose four
  deques cost 3 KiB per connection for as long as it lasts; it takes the place
  of the engine.io server's ``create_queue``, which each socket calls once.
- ``early-manager``: the client manager subscribed before the node listens,
  by setting ``AsyncServer.manager_initialized`` first; if that flag moved,
  python-socketio would initialise the manager a second time (two listeners,
  every event delivered twice), so without it the node waits for the first
  connection to initialise it, as python-socketio does.
- ``json-parse-errors``: aiohttp answers a request it cannot parse (a header
  over 8 KB, a bad request line) and a handler that crashed from
  ``RequestHandler.handle_error``, before and outside any middleware, in text;
  `JsonErrorRequestHandler` answers the documented JSON instead, and logs a
  malformed request as one line, not a traceback. It takes the place of
  ``aiohttp.web_server.RequestHandler``, the class ``web.Server`` builds for
  each connection. Off, those answers stay aiohttp's text.
- ``tls-read-buffer``: asyncio gives every TLS connection a 256 KiB buffer
  for the data it decrypts (``asyncio.sslproto.SSLProtocol.max_size``): a
  `--tls dev` join storm of 600 clients on 2 nodes cost 323 KiB of node memory
  per client (46 without TLS) and took 13 s instead of 6. Here it reads at most
  one TLS record (16 KiB) at a time; the read loop takes what is there until the
  TLS object has no more, so only the number of reads per burst changes. With
  it, the same storm: 83 KiB per client, 4.3 s (5.0 s without TLS). Off, TLS
  costs the memory.

Also here, so that no other module touches engine.io's tables: the session of
a connected socket (`connected_session`) and aborting a connection
(`abort_connection`). python-socketio keeps each connection's environ until it
ends; with the ``websocket-driver`` patch, once the websocket is open it holds
a `Connection` (transport, peer address, refused mark) and the query string
only, not engine.io's copy of every header and the aiohttp request.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import logging
import re
import socket
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

import socketio
from aiohttp import WSMsgType, hdrs, web, web_protocol, web_server
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_websocket import WebSocketWriter
from engineio import async_server, async_socket, base_socket, exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from sioplay.log import Throttle
from sioplay.node.routes.responses import error_body
from sioplay.node.send_queue import SendQueue
from sioplay.settings import Settings

__all__ = [
    "Connection",
    "CorkedTransport",
    "JsonErrorRequestHandler",
    "LeanSocket",
    "PatchReport",
    "RefusedSink",
    "QueueSocket",
    "RoomBroadcaster",
    "abort_all_connections",
    "abort_connection",
    "connected_session",
    "connection_of",
    "initialize_manager_early",
    "install",
]

log = logging.getLogger(__name__)

# Unsent bytes a connection may hold from direct writes; about what `max_socket_backlog` queued packets would hold.
DIRECT_WRITE_BUFFER_BYTES = 256 * 1024
# What `install` applies when every target is intact, in its order.
APPLICABLE: tuple[str, ...] = (
    "websocket-driver",
    "corked-writes",
    "client-guard",
    "queue-socket",
    "lean-socket",
    "send-queue",
    "room-broadcast",
    "direct-writes",
    "early-manager",
    "json-parse-errors",
    "tls-read-buffer",
)
# engine.io packet types a client may send first in a text frame: open to noop.
_ENGINEIO_TYPES = frozenset("0123456")
# A connection closed for what it sent is logged at most this often across the node.
_REFUSAL_LOG_EVERY_S = 10.0

RefusedSink = Callable[[str], None]
# Where a connection's environ keeps its `Connection`: it lives and goes with the connection.
_CONNECTION = "sioplay.connection"
# What of a websocket's environ stays after its upgrade: what python-socketio's connect handlers read.
_KEPT_ENVIRON = ("QUERY_STRING",)


@dataclasses.dataclass(frozen=True, slots=True)
class PatchReport:
    """Which patches took effect on this node, and why the others did not."""

    active: tuple[str, ...]
    inactive: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"active": list(self.active), "inactive": self.inactive}


# Corked writes ---------------------------------------------------------------------------


class CorkedTransport:
    """A transport wrapper that sends everything written to it during one event-loop tick in one write.

    engine.io's writer sends each queued packet as its own websocket frame, and
    aiohttp writes each frame straight to the socket: one system call per frame.
    In a join storm a socket has several room events queued at once, and the
    profile of a node showed a third of its time in those writes. Frames written
    here within a tick go out together at the end of it, in the order written,
    through the real transport, whose buffer and flow control are unchanged.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        # A bytearray or view may be reused by the writer before the flush.
        self._pending.append(data if isinstance(data, bytes) else bytes(data))

    def writelines(self, lines: list[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        # Asked for every recipient of a direct write: not through `__getattr__`.
        return self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _cork(response: web.WebSocketResponse) -> bool:
    """Wrap the transport of `response`'s frame writer; False when aiohttp no longer has one there."""
    frame_writer = getattr(response, "_writer", None)
    if frame_writer is None or not isinstance(getattr(frame_writer, "transport", None), asyncio.Transport):
        return False
    frame_writer.transport = CorkedTransport(frame_writer.transport)
    return True


# The websocket driver --------------------------------------------------------------------


def _websocket_driver(
    compress: bool, send_buffer_bytes: int | None, cork: bool, refuse: Callable[[dict[str, Any], str], None] | None
) -> type[engineio_aiohttp.WebSocket]:
    """engine.io's aiohttp `WebSocket.__call__`, with compression, the send buffer and corked writes.

    With `refuse`, `wait` ends the connection on a binary frame or a text frame
    that is no engine.io packet, instead of handing it on.
    """

    class WebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
        corked = cork

        async def wait(self) -> str | bytes:
            message = await self._sock.receive()
            if message.type is WSMsgType.TEXT:
                if refuse is not None and message.data[:1] not in _ENGINEIO_TYPES:
                    refuse(self.environ, "malformed packet")
                    raise OSError("malformed engine.io packet")
                return str(message.data)
            if message.type is WSMsgType.BINARY and refuse is not None:
                refuse(self.environ, "binary frame")
                raise OSError("binary frame")
            if isinstance(message.data, bytes):
                return message.data
            # Closed or failed: engine.io ends the connection on OSError, as its own driver makes it.
            raise OSError()

        async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
            request = environ["aiohttp.request"]
            self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=compress)
            await self._sock.prepare(request)
            if WebSocket.corked and not _cork(self._sock):
                WebSocket.corked = False
                log.warning("patch corked-writes is off: aiohttp's WebSocketResponse._writer.transport is gone")
            # The engine.io socket this websocket serves: its handler is that socket's bound method.
            owner = getattr(self.handler, "__self__", None)
            if isinstance(owner, QueueSocket):
                owner.frame_writer = getattr(self._sock, "_writer", None)
            raw_socket = request.transport.get_extra_info("socket") if request.transport else None
            if send_buffer_bytes is not None and raw_socket is not None:
                raw_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            _keep_connection_only(environ)
            self.environ = environ
            await self.handler(self)
            return self._sock

    return WebSocket


def _driver_target(sio: socketio.AsyncServer) -> str | None:
    """None if engine.io's driver table and aiohttp wrapper look as the driver expects, else what is missing."""
    table = getattr(sio.eio, "_async", None)
    if not isinstance(table, dict) or not issubclass(table.get("websocket", object), engineio_aiohttp.WebSocket):
        return "engineio AsyncServer._async['websocket']"
    parameters = list(inspect.signature(engineio_aiohttp.WebSocket.__init__).parameters)
    if parameters != ["self", "handler", "server"]:
        return "engineio.async_drivers.aiohttp.WebSocket(handler, server)"
    return None


def _writer_target() -> str | None:
    # Only a prepared response has a writer; each connection checks it again (`_cork`).
    return None if hasattr(web.WebSocketResponse, "_writer") else "aiohttp WebSocketResponse._writer"


# The writer's wait -----------------------------------------------------------------------


# engine.io's own class, as imported: what the checks read even after QueueSocket took its place.
_ENGINEIO_SOCKET: type = async_socket.AsyncSocket


class QueueSocket(_ENGINEIO_SOCKET):  # type: ignore[misc,valid-type]
    """engine.io's socket with a cheaper wait for the next packet to send.

    Each socket's writer waits for packets with `asyncio.wait_for(queue.get(), …)`,
    which on Python 3.11 starts a task and a timer for every wait; in a join storm
    every socket waits again after every room event, and the profile of a node
    holding 2,500 sockets showed a sixth of its time in those waits. This wait is
    the same queue, the same order and the same timeout, taken with
    `asyncio.timeout` around the queue's own wait, and none when a packet is
    already queued.

    While its websocket writer waits here with nothing queued, a frame written
    straight to the connection (`write_now`) leaves in the socket's order: nothing
    of this socket is queued or being sent.
    """

    # aiohttp's frame writer of this socket's websocket, once the driver has prepared it.
    frame_writer: Any = None
    # True exactly while the websocket writer waits in `poll` on an empty queue.
    writer_idle: bool = False

    async def poll(self) -> list[Any]:
        """The queued packets, waiting for the first; QueueEmpty after the ping timeout or on cancel."""
        return await self.next_packets(self.server.ping_interval + self.server.ping_timeout)

    async def packets_to_send(self) -> list[Any]:
        """`LeanSocket`'s writer wait: no timeout of its own, idle as `poll` is."""
        return await self.next_packets(None)

    async def next_packets(self, timeout_s: float | None) -> list[Any]:
        queue: asyncio.Queue[Any] = self.queue
        if queue.empty():
            # Before the upgrade a long-poll GET waits here, not the websocket writer.
            self.writer_idle = self.upgraded and not self.upgrading and self.frame_writer is not None
            try:
                if timeout_s is None:
                    first = await queue.get()
                else:
                    async with asyncio.timeout(timeout_s):
                        first = await queue.get()
            except (TimeoutError, asyncio.CancelledError):
                raise exceptions.QueueEmpty() from None
            finally:
                self.writer_idle = False
        else:
            first = queue.get_nowait()
        return _with_queued(queue, first)

    def write_now(self, frame: bytes) -> bool:
        """Write `frame`, a whole websocket frame, to the connection at once if that keeps this socket's frame order
        and flow control; False when it must be queued instead."""
        writer = self.frame_writer
        if not self.writer_idle or not self.queue.empty() or self.closed:
            return False
        transport = writer.transport
        if writer.compress or writer._closing or transport.is_closing():
            return False
        # A client that reads slower than the room talks: past this, its frames queue, its writer waits for the
        # transport to drain, and its queue's backlog limit ends it (see `RoomBroadcaster`).
        if transport.get_write_buffer_size() >= DIRECT_WRITE_BUFFER_BYTES:
            return False
        transport.write(frame)
        return True


def _with_queued(queue: Any, first: Any) -> list[Any]:
    """`first`, taken from `queue`, and every packet queued after it up to the end-of-stream marker."""
    queue.task_done()
    if first is None:
        return []
    packets = [first]
    while not queue.empty():
        packet = queue.get_nowait()
        queue.task_done()
        if packet is None:
            # The end-of-stream marker stays for the next poll, as engine.io does.
            queue.put_nowait(None)
            break
        packets.append(packet)
    return packets


class LeanSocket(_ENGINEIO_SOCKET):  # type: ignore[misc,valid-type]
    """engine.io's socket, holding two tasks fewer for as long as it is connected.

    engine.io sleeps towards each socket's next ping in a task of its own, and
    reads each websocket frame in one more task, awaited with a `wait_for`, that
    is pending all the time the client is quiet. Here the next ping is a timer,
    and the frames are read in the connection's own task under
    `asyncio.timeout`: same ping interval, same read timeout, same handling of
    each packet. The writer task is engine.io's, but waits for packets without
    a timer of its own: the reader's timeout ends the session, and the writer
    with it. A socket upgraded from long-polling (which the node does not
    serve) keeps engine.io's handler.
    """

    def schedule_ping(self) -> None:
        # engine.io's rule: a new ping only once the previous one was answered.
        if self.last_ping:
            self.last_ping = None
            asyncio.get_running_loop().call_later(self.server.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        if not self.closing and not self.closed:
            # Just set, so the ping-timeout check of `send` cannot close the socket here: the packet is queued.
            self.last_ping = time.time()
            self.queue.put_nowait(eio_packet.Packet(eio_packet.PING))

    async def _websocket_handler(self, ws: Any) -> None:
        if self.connected:
            await super()._websocket_handler(ws)
            return
        self.connected = True
        self.upgraded = True
        writer = asyncio.ensure_future(self._write_packets(ws))
        cancelled = False
        try:
            cancelled = await self._read_packets(ws)
        finally:
            # As engine.io ends a session: the writer drains and closes, then the disconnect handlers run.
            await self.queue.put(None)
            await writer
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        if cancelled:
            raise asyncio.CancelledError

    async def _read_packets(self, ws: Any) -> bool:
        """Read and handle packets until the connection ends; True if it ended because this task was cancelled."""
        read_timeout_s = self.server.ping_interval + self.server.ping_timeout
        while True:
            try:
                async with asyncio.timeout(read_timeout_s):
                    data = await ws.wait()
                if data and len(data) > self.server.max_http_buffer_size:
                    raise ValueError("packet is too large")
            except asyncio.CancelledError:
                return True
            except Exception:  # noqa: BLE001 - closed, silent past the timeout or too large: engine.io ends it
                return False
            if data is None:
                return False
            try:
                await self.receive(eio_packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                return False
            except Exception:
                self.server.logger.exception("Unknown receive error")
            # One packet per turn of the loop, as engine.io's task per read gave: a burst of buffered frames
            # would otherwise start all its handlers before any socket's writer could send.
            await asyncio.sleep(0)

    async def packets_to_send(self) -> list[Any]:
        """The queued packets, waiting for the first without a timeout (`QueueSocket` tracks the idle wait)."""
        return _with_queued(self.queue, await self.queue.get())

    async def _write_packets(self, ws: Any) -> None:
        while True:
            # No timeout on this wait (engine.io's poll has one): the reader's ends the session, and queues the
            # end-of-stream marker this wait ends on.
            try:
                packets = await self.packets_to_send()
            except exceptions.QueueEmpty:
                break
            if not packets or not await _sent(ws, packets):
                break
            # Not kept while waiting for the next: a quiet socket would hold its last frames.
            del packets
        await ws.close()


async def _sent(ws: Any, packets: list[Any]) -> bool:
    """Send `packets` on `ws`; False if one could not be sent (the writer ends, as engine.io's does)."""
    try:
        for packet in packets:
            await ws.send(packet.encode())
    except Exception:  # noqa: BLE001 - whatever failed, the connection is done
        return False
    return True


# The socket classes `install` built, by the patches in them: the same class for the same patches.
_SOCKET_CLASSES: dict[tuple[type, ...], type] = {}


def _socket_class(mixins: tuple[type, ...]) -> type:
    if mixins not in _SOCKET_CLASSES:
        _SOCKET_CLASSES[mixins] = mixins[0] if len(mixins) == 1 else type("PatchedSocket", mixins, {})
    return _SOCKET_CLASSES[mixins]


def _socket_module_target() -> str | None:
    # engine.io looks the class up in this module on every connection.
    if getattr(async_server, "async_socket", None) is not async_socket:
        return "engineio.async_server.async_socket"
    if getattr(async_socket, "AsyncSocket", None) not in (_ENGINEIO_SOCKET, *_SOCKET_CLASSES.values()):
        return "engineio.async_socket.AsyncSocket"
    return None


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed websocket text frame of `payload`: what a server sends (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


def _queue_socket_target() -> str | None:
    if "self.queue.get()" not in inspect.getsource(_ENGINEIO_SOCKET.poll):
        return "engineio AsyncSocket.poll on self.queue"
    return _socket_module_target()


def _lean_socket_target() -> str | None:
    if "start_background_task(self._send_ping)" not in inspect.getsource(_ENGINEIO_SOCKET.schedule_ping):
        return "engineio AsyncSocket.schedule_ping starting _send_ping"
    handler = inspect.getsource(_ENGINEIO_SOCKET._websocket_handler)
    if not all(part in handler for part in ("self.connected", "writer()", "self.receive(pkt)", "self.queue.put(None)")):
        return "engineio AsyncSocket._websocket_handler(ws)"
    return _socket_module_target()


# The send queue --------------------------------------------------------------------------


def _send_queue_target(sio: socketio.AsyncServer) -> str | None:
    if not callable(getattr(sio.eio, "create_queue", None)):
        return "engineio AsyncServer.create_queue"
    if "self.server.create_queue()" not in inspect.getsource(base_socket.BaseSocket.__init__):
        return "engineio BaseSocket.__init__ taking its queue from server.create_queue()"
    return None


def _direct_writes_target() -> str | None:
    handler = inspect.getsource(_ENGINEIO_SOCKET._websocket_handler)
    if "await self.poll()" not in handler or "self.upgraded = True" not in handler:
        return "engineio AsyncSocket._websocket_handler polling self.poll() once upgraded"
    writer = inspect.getsource(WebSocketWriter.__init__)
    if not all(f"self.{name} =" in writer for name in ("transport", "compress", "_closing")):
        return "aiohttp WebSocketWriter(transport, compress, _closing)"
    return None


# Room broadcasts -------------------------------------------------------------------------


class RoomBroadcaster(AsyncManager):  # type: ignore[misc]
    """Local delivery of an emit: encoded once, queued for every recipient without a task each.

    python-socketio creates one asyncio task per recipient and awaits them all,
    which dominates a join storm in a large room. Here the packet goes straight
    into each socket's own engine.io send queue, the same queue the handshake,
    pings and every other packet of that socket go through, so frame order is
    kept. A socket whose queue already holds `max_backlog` packets is not
    reading: it is disconnected (its connection aborted, its backlog freed)
    with a logged reason instead of growing without bound.

    It skips `AsyncSocket.send`'s ping-timeout check: a socket past its ping
    timeout is closed by its own reader, and the packets queued meanwhile go
    with it. Off (`enabled` False), emits take python-socketio's own path.
    """

    max_backlog: int = 1000
    enabled: bool = False
    # With `direct-writes`: a recipient whose writer is idle gets the frame written at once (`QueueSocket.write_now`).
    direct: bool = False
    # Frames delivered, by path ("direct", "queued"): the share queued shows clients reading slower than rooms talk.
    # The subclass's __init__ gives it its own (the node's metrics).
    deliveries: collections.Counter[str]

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: str | list[str] | None = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.enabled or callback is not None or namespace not in self.rooms:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        frames = [
            eio_packet.Packet(eio_packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
        skipped = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        # One frame for every recipient: a server's frames are unmasked, and these uncompressed.
        frame = text_frame(frames[0].encode().encode()) if self.direct and len(frames) == 1 else None
        sockets = self.server.eio.sockets
        direct = queued = 0
        for sid, eio_sid in self.get_participants(namespace, to or room):
            if sid in skipped:
                continue
            eio_socket = sockets.get(eio_sid)
            if eio_socket is None or eio_socket.closed:
                continue
            if frame is not None and eio_socket.write_now(frame):
                direct += 1
                continue
            if eio_socket.queue.qsize() >= self.max_backlog:
                self._drop_slow_reader(sid, eio_sid, eio_socket)
                continue
            for packet in frames:
                eio_socket.queue.put_nowait(packet)
            queued += 1
        self.deliveries["direct"] += direct
        self.deliveries["queued"] += queued

    def _drop_slow_reader(self, sid: str, eio_sid: str, eio_socket: Any) -> None:
        log.warning(
            "disconnecting socket %s: it stopped reading (%d packets waiting, limit %d)",
            sid,
            eio_socket.queue.qsize(),
            self.max_backlog,
        )
        while not eio_socket.queue.empty():
            eio_socket.queue.get_nowait()
            eio_socket.queue.task_done()
        # Closing politely would queue a CLOSE frame behind a client that does not read.
        abort_connection(self.server, eio_sid)


def _broadcast_target() -> str | None:
    parameters = inspect.signature(AsyncManager.emit).parameters
    if not {"event", "data", "namespace", "room", "skip_sid", "callback", "to"} <= set(parameters):
        return "socketio AsyncManager.emit(event, data, namespace, room, skip_sid, callback, to)"
    if not callable(getattr(AsyncManager, "get_participants", None)):
        return "socketio AsyncManager.get_participants"
    if "self.queue" not in inspect.getsource(_ENGINEIO_SOCKET.send):
        return "engineio AsyncSocket.send on self.queue"
    return None


# The manager, subscribed before listening ------------------------------------------------


def _early_manager_target(sio: socketio.AsyncServer) -> str | None:
    if getattr(sio, "manager_initialized", None) is not False:
        return "socketio AsyncServer.manager_initialized"
    if "manager_initialized" not in inspect.getsource(socketio.AsyncServer._handle_eio_connect):
        return "socketio AsyncServer._handle_eio_connect checking manager_initialized"
    return None


def initialize_manager_early(sio: socketio.AsyncServer, report: PatchReport) -> bool:
    """Initialise the client manager now, as python-socketio would on the first connection; False when off."""
    if "early-manager" not in report.active:
        return False
    sio.manager_initialized = True
    sio.manager.initialize()
    return True


# aiohttp's own error answers ---------------------------------------------------------------


# aiohttp's class, as imported: what the checks read even after JsonErrorRequestHandler took its place.
_AIOHTTP_REQUEST_HANDLER: type = web_protocol.RequestHandler
# Where a parser's message starts quoting the request it could not parse.
_QUOTED_INPUT = re.compile(r":?\s*b?['\"]")


def _parse_error_message(exc: BaseException | None, status: int) -> str:
    """What went wrong, in aiohttp's words up to where they quote the request (which is not echoed back)."""
    if isinstance(exc, HttpProcessingError):
        first_line = (exc.message or "").strip().split("\n", 1)[0]
        said = _QUOTED_INPUT.split(first_line, 1)[0].rstrip(" :.")
        return f"malformed HTTP request: {said}" if said else "malformed HTTP request"
    if status == 504:
        return "the request took too long"
    return "internal server error"


class JsonErrorRequestHandler(_AIOHTTP_REQUEST_HANDLER):  # type: ignore[misc,valid-type]
    """aiohttp's connection handler, with its own error answers in the JSON every other error has."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= 500:
            # aiohttp's own: the traceback of a server error is logged, and a half-sent answer raises.
            super().handle_error(request, status, exc, message)
        else:
            if request.writer.output_size > 0:
                raise ConnectionError("response already sent, cannot send the error")
            log.info("bad request from %s: %s", request.remote, _parse_error_message(exc, status))
        response = web.Response(
            body=error_body(status, _parse_error_message(exc, status)),
            status=status,
            content_type="application/json",
            headers={hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff"},
        )
        response.force_close()
        return response


def _request_handler_target() -> str | None:
    if getattr(web_server, "RequestHandler", None) not in (_AIOHTTP_REQUEST_HANDLER, JsonErrorRequestHandler):
        return "aiohttp.web_server.RequestHandler"
    if list(inspect.signature(_AIOHTTP_REQUEST_HANDLER.handle_error).parameters) != [
        "self",
        "request",
        "status",
        "exc",
        "message",
    ]:
        return "aiohttp RequestHandler.handle_error(request, status, exc, message)"
    if "RequestHandler(self" not in inspect.getsource(web_server.Server.__call__):
        return "aiohttp web.Server.__call__ building a RequestHandler"
    return None


# asyncio's TLS read buffer ---------------------------------------------------------------


# The largest plaintext of one TLS record (RFC 8446 5.1).
TLS_READ_BUFFER_BYTES = 16 * 1024


def _tls_buffer_target() -> str | None:
    if not isinstance(getattr(sslproto.SSLProtocol, "max_size", None), int):
        return "asyncio.sslproto.SSLProtocol.max_size"
    if "bytearray(self.max_size)" not in inspect.getsource(sslproto.SSLProtocol.__init__):
        return "asyncio SSLProtocol.__init__ sizing its buffer by max_size"
    return None


# Engine.io's tables ----------------------------------------------------------------------


def connected_session(sio: socketio.AsyncServer, sid: str, namespace: str) -> dict[str, Any] | None:
    """The session saved for Socket.IO socket `sid`, or None when its connection is already closed."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, namespace)
    eio_socket = sio.eio.sockets.get(eio_sid) if eio_sid else None
    if eio_socket is None or eio_socket.closed:
        return None
    session: dict[str, Any] = eio_socket.session.get(namespace, {})
    return session


@dataclasses.dataclass(slots=True)
class Connection:
    """What the node needs of a client's connection once it is a websocket, kept in place of its request.

    python-socketio keeps each connection's environ until it ends; engine.io's
    has every header copied and the aiohttp request. After the upgrade the
    environ keeps this and the query string only (`_keep_connection_only`).
    """

    transport: asyncio.BaseTransport | None
    remote: str | None
    refused: bool = False


def connection_of(environ: dict[str, Any]) -> Connection | None:
    """The `Connection` of the connection `environ` describes (made from its request the first time); None if gone."""
    connection: Connection | None = environ.get(_CONNECTION)
    if connection is None and (request := environ.get("aiohttp.request")) is not None:
        connection = environ[_CONNECTION] = Connection(request.transport, request.remote)
    return connection


def _keep_connection_only(environ: dict[str, Any]) -> None:
    """Empty a websocket's environ in place (engine.io's frames hold the same dict) but for its `Connection`."""
    kept = {key: environ[key] for key in _KEPT_ENVIRON if key in environ}
    connection = connection_of(environ)
    environ.clear()
    environ.update(kept)
    environ[_CONNECTION] = connection


def abort_connection(sio: socketio.AsyncServer, eio_sid: str) -> bool:
    """Drop engine.io connection `eio_sid` at once (no CLOSE frame); False when it has none."""
    environ = sio.environ.get(eio_sid)
    connection = connection_of(environ) if environ is not None else None
    if connection is None or connection.transport is None:
        return False
    connection.transport.abort()
    return True


def abort_all_connections(sio: socketio.AsyncServer) -> int:
    """Drop every connection of `sio`; how many were dropped."""
    return sum(abort_connection(sio, eio_sid) for eio_sid in list(sio.environ))


# Client input ----------------------------------------------------------------------------


class ClientGuard:
    """Closes the connection of a client that sends what the contract has no place for, or never connects.

    Each refusal is counted (`on_refused`, by reason) and logged, at most once
    per `_REFUSAL_LOG_EVERY_S` across the node: a flood leaves a line, not a
    log full of tracebacks.
    """

    def __init__(self, sio: socketio.AsyncServer, connect_timeout_s: float, on_refused: RefusedSink) -> None:
        self.sio = sio
        self.connect_timeout_s = connect_timeout_s
        self.on_refused = on_refused
        self._throttle = Throttle(_REFUSAL_LOG_EVERY_S)

    def refuse(self, environ: dict[str, Any], reason: str) -> None:
        """Count and log the refusal of the connection `environ` describes; closing it is the caller's."""
        self.on_refused(reason)
        more = self._throttle.allow(reason)
        if more is not None:
            connection = connection_of(environ)
            who = connection.remote if connection is not None and connection.remote else "a client"
            log.warning("closed the connection of %s: %s%s", who, reason, more)

    def _refuse_session(self, eio_sid: str, reason: str) -> None:
        environ = self.sio.environ.get(eio_sid)
        connection = connection_of(environ) if environ is not None else None
        if environ is None or connection is None or connection.refused:
            # Frames it sent before the abort are still being read: it was refused once.
            return
        connection.refused = True
        self.refuse(environ, reason)
        abort_connection(self.sio, eio_sid)

    def _refused(self, eio_sid: str) -> bool:
        environ = self.sio.environ.get(eio_sid)
        connection = environ.get(_CONNECTION) if environ is not None else None
        return connection is not None and connection.refused

    def wrap_message(self, handle: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
        async def guarded(eio_sid: str, data: Any) -> None:
            # Socket.IO packet types 5 and 6 announce binary attachments, which the contract has none of.
            if self._refused(eio_sid):
                return
            if not isinstance(data, str) or data[:1] in ("5", "6"):
                self._refuse_session(eio_sid, "binary packet")
                return
            try:
                await handle(eio_sid, data)
            except Exception:  # noqa: BLE001 - whatever the decoder raised, the packet was malformed
                self._refuse_session(eio_sid, "malformed packet")

        return guarded

    def wrap_connect(self, handle: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
        async def guarded(eio_sid: str, environ: dict[str, Any]) -> Any:
            result = await handle(eio_sid, environ)
            asyncio.get_running_loop().call_later(self.connect_timeout_s, self._check_connected, eio_sid)
            return result

        return guarded

    def _check_connected(self, eio_sid: str) -> None:
        if eio_sid not in self.sio.environ:
            return
        if any(self.sio.manager.sid_from_eio_sid(eio_sid, namespace) for namespace in self.sio.handlers):
            return
        self._refuse_session(eio_sid, f"no Socket.IO CONNECT within {self.connect_timeout_s:g} s")


def _guard_target(sio: socketio.AsyncServer) -> str | None:
    handlers = getattr(sio.eio, "handlers", None)
    if not isinstance(handlers, dict):
        return "engineio AsyncServer.handlers"
    for event, method in (("message", "_handle_eio_message"), ("connect", "_handle_eio_connect")):
        if handlers.get(event) != getattr(sio, method, None):
            return f"socketio AsyncServer.{method} registered as engine.io's {event!r} handler"
    if not callable(getattr(sio.manager, "sid_from_eio_sid", None)):
        return "socketio manager.sid_from_eio_sid"
    return None


# Installing ------------------------------------------------------------------------------


def install(
    sio: socketio.AsyncServer, manager: RoomBroadcaster, settings: Settings, on_refused: RefusedSink
) -> PatchReport:
    """Apply every patch whose target is intact to `sio` (and engine.io's module); report which took effect.

    `on_refused(reason)` counts each client connection closed for what it sent or failed to send.
    """
    active: list[str] = []
    inactive: dict[str, str] = {}

    def check(name: str, missing: str | None) -> bool:
        if missing is None:
            active.append(name)
            return True
        inactive[name] = f"{missing} not found"
        log.warning("patch %s is off: %s not found (installed versions differ from those pinned)", name, missing)
        return False

    driver_ok = check("websocket-driver", _driver_target(sio))
    cork = driver_ok and check("corked-writes", _writer_target())
    guard = ClientGuard(sio, settings.connect_timeout_s, on_refused)
    guarded = driver_ok and check("client-guard", _guard_target(sio))
    if guarded:
        sio.eio.handlers["message"] = guard.wrap_message(sio.eio.handlers["message"])
        sio.eio.handlers["connect"] = guard.wrap_connect(sio.eio.handlers["connect"])
    if driver_ok:
        driver = _websocket_driver(
            settings.ws_compression, settings.ws_send_buffer_bytes, cork, guard.refuse if guarded else None
        )
        sio.eio._async = {**sio.eio._async, "websocket": driver}
    queue_socket = check("queue-socket", _queue_socket_target())
    mixins = (
        *((QueueSocket,) if queue_socket else ()),
        *((LeanSocket,) if check("lean-socket", _lean_socket_target()) else ()),
    )
    if mixins:
        async_server.async_socket.AsyncSocket = _socket_class(mixins)
    if check("send-queue", _send_queue_target(sio)):
        sio.eio.create_queue = SendQueue
    manager.enabled = check("room-broadcast", _broadcast_target())
    if manager.enabled and driver_ok and queue_socket:
        manager.direct = check("direct-writes", _direct_writes_target())
    else:
        inactive["direct-writes"] = "needs websocket-driver, queue-socket and room-broadcast"
    check("early-manager", _early_manager_target(sio))
    if check("json-parse-errors", _request_handler_target()):
        web_server.RequestHandler = JsonErrorRequestHandler
    if check("tls-read-buffer", _tls_buffer_target()):
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
    return PatchReport(tuple(active), inactive)
