"""The Socket.IO side of a node: who may connect, and the room events of the original."""

from __future__ import annotations

import logging
import os
from typing import Any

import socketio

from sioplay.db.store import UserStore
from sioplay.errors import DatabaseError, UnknownUserError, ValidationError
from sioplay.node.sockets import LocalSocket, LocalSockets
from sioplay.node.validation import connect_params

__all__ = ["RoomEvents"]

log = logging.getLogger(__name__)

NAMESPACE = "/"


class RoomEvents:
    """Handlers for connect, disconnect and identity-change on the default namespace."""

    def __init__(self, sio: socketio.AsyncServer, store: UserStore, sockets: LocalSockets, node_id: str) -> None:
        self.sio = sio
        self.store = store
        self.sockets = sockets
        self.node_id = node_id

    def register(self) -> None:
        self.sio.on("connect", self.handle_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self.handle_disconnect, namespace=NAMESPACE)
        self.sio.on("identity-change", self.handle_identity_change, namespace=NAMESPACE)

    async def handle_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Refuse with a message the client can show, or remember who this socket is.

        Nothing is registered here but the session: the socket joins its room
        and is announced in `handle_connected`, once its CONNECT went out.
        """
        try:
            id_user, room = connect_params(environ.get("QUERY_STRING", ""), auth)
            await self.store.get(id_user)
            await self.sio.save_session(sid, {"id_user": id_user, "room": room}, namespace=NAMESPACE)
        except (ValidationError, UnknownUserError) as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        except DatabaseError as exc:
            log.error("refusing %s: %s", sid, exc)
            raise socketio.exceptions.ConnectionRefusedError("user database unavailable, try again") from None
        except Exception:
            log.exception("refusing %s: unexpected error in the connect handler", sid)
            raise socketio.exceptions.ConnectionRefusedError("internal server error") from None

    async def handle_connected(self, sid: str, namespace: str) -> None:
        if namespace != NAMESPACE:
            return
        manager = self.sio.manager
        eio_sid = manager.eio_sid_from_sid(sid, namespace)
        eio_socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        if eio_socket is None or eio_socket.closed:
            # The client left while its identity was being checked.
            manager.basic_disconnect(sid, namespace)
            return
        session = eio_socket.session.get(namespace, {})
        entry = LocalSocket(id_socket=sid, id_user=session["id_user"], room=session["room"])
        await self.sio.enter_room(sid, entry.room, namespace=namespace)
        self.sockets.add(entry)
        log.info("socket %s connected as id_user %s in room %r", sid, entry.id_user, entry.room)
        await self.sio.emit(
            "handshake",
            {"node": self.node_id, "procid": os.getpid(), "id_socket": sid},
            to=sid,
            namespace=namespace,
            ignore_queue=True,
        )
        await self.sio.emit("socket-connected", entry.as_member(), room=entry.room, skip_sid=sid, namespace=namespace)

    async def handle_disconnect(self, sid: str, reason: object = None) -> None:
        entry = self.sockets.remove(sid)
        if entry is None:
            return
        log.info("socket %s (id_user %s) left room %r: %s", sid, entry.id_user, entry.room, reason)
        await self.sio.emit("socket-disconnected", entry.as_member(), room=entry.room, skip_sid=sid, namespace=NAMESPACE)

    async def handle_identity_change(self, sid: str, data: object = None) -> None:
        # The payload is ignored on purpose: a client may only announce a change of its own identity.
        entry = self.sockets.get(sid)
        if entry is None:
            return
        await self.sio.emit(
            "identity-change",
            {"id_user": entry.id_user, "id_socket": sid},
            room=entry.room,
            skip_sid=sid,
            namespace=NAMESPACE,
        )
