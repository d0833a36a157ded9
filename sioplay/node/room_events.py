"""The Socket.IO side of a node: who may connect, and the room events of the original."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import socketio

from sioplay.db.store import UserStore
from sioplay.errors import DatabaseError, TokenError, UnknownUserError, ValidationError
from sioplay.node.part_feed import PartFeed
from sioplay.node.patches import connected_session
from sioplay.node.rate_limit import TokenBuckets
from sioplay.node.sockets import LocalSocket, LocalSockets
from sioplay.node.token_sessions import REFRESH_EVENT, TokenSessions
from sioplay.node.validation import connect_params, watch_params
from sioplay.settings import Settings

__all__ = ["NAMESPACE", "WATCH_NAMESPACE", "RoomEvents"]

log = logging.getLogger(__name__)

NAMESPACE = "/"
# Observers (`sioplay who --watch`) hear a room's events here without being members of it.
WATCH_NAMESPACE = "/watch"
KNOWN_USER_TTL_S = 5.0
MAX_KNOWN_USERS = 10_000


class RoomEvents:
    """Handlers for connect, disconnect and identity-change on the default namespace."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: UserStore,
        sockets: LocalSockets,
        node_id: str,
        settings: Settings,
        on_refused: Callable[[str], None],
        not_ready: Callable[[], str | None] = lambda: None,
        tokens: TokenSessions | None = None,
        part_feed: PartFeed | None = None,
    ) -> None:
        self.sio = sio
        # Why the node takes no new client now (a dependency is down: see node/readiness.py); None when it does.
        self.not_ready = not_ready
        self.store = store
        self.sockets = sockets
        self.node_id = node_id
        self.on_refused = on_refused
        # None: `--auth none`, the client's own id_user is trusted.
        self.tokens = tokens
        # The `replica` roster mode's deltas: a join's is taken by Redis before the client hears its handshake.
        self.part_feed = part_feed
        self.part_wait_s = settings.roster_timeout_s
        # One bucket per socket: a client's burst of identity-change would otherwise make every page in the
        # room fetch that user and the roster again, once per event.
        self._identity_changes = TokenBuckets(settings.identity_change_rate_per_s, settings.identity_change_burst)
        # id_user -> until when it is known to exist: a join storm asked the database once per socket.
        self._known_users: dict[str, float] = {}

    def register(self) -> None:
        self.sio.on("connect", self.handle_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self.handle_disconnect, namespace=NAMESPACE)
        self.sio.on("identity-change", self.handle_identity_change, namespace=NAMESPACE)
        self.sio.on("connect", self.handle_watch_connect, namespace=WATCH_NAMESPACE)
        if self.tokens is not None:
            self.sio.on(REFRESH_EVENT, self.tokens.handle_refresh, namespace=NAMESPACE)

    async def handle_watch_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        try:
            room = watch_params(environ.get("QUERY_STRING", ""), auth)
        except ValidationError as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        await self.sio.enter_room(sid, room, namespace=WATCH_NAMESPACE)

    def _member(self, entry: LocalSocket) -> dict[str, str]:
        """The event's member with the node that holds the socket: the original's fields, and one more."""
        return {**entry.as_member(), "node": self.node_id}

    async def _tell_room(self, event: str, data: dict[str, Any], room: str, skip_sid: str) -> None:
        await self.sio.emit(event, data, room=room, skip_sid=skip_sid, namespace=NAMESPACE)
        await self.sio.emit(event, data, room=room, namespace=WATCH_NAMESPACE)

    async def handle_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Refuse with a message the client can show, or remember who this socket is.

        Nothing is registered here but the session: the socket joins its room
        and is announced in `handle_connected`, once its CONNECT went out.
        """
        refusal = self.not_ready()
        if refusal is not None:
            self.on_refused("not ready")
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        try:
            session = await self._identify(sid, environ.get("QUERY_STRING", ""), auth)
            await self.sio.save_session(sid, session, namespace=NAMESPACE)
        except (ValidationError, UnknownUserError) as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        except DatabaseError as exc:
            log.error("refusing %s: %s", sid, exc)
            raise socketio.exceptions.ConnectionRefusedError("user database unavailable, try again") from None
        except Exception:
            log.exception("refusing %s: unexpected error in the connect handler", sid)
            raise socketio.exceptions.ConnectionRefusedError("internal server error") from None

    async def _identify(self, sid: str, query_string: str, auth: object) -> dict[str, Any]:
        """The session of a connecting socket: its id_user and room, and with a token until when it holds."""
        if self.tokens is None:
            id_user, room = connect_params(query_string, auth)
            await self._check_user(id_user)
            return {"id_user": id_user, "room": room}
        claims, room = self.tokens.admit(sid, query_string, auth)
        try:
            await self._check_user(claims.id_user)
        except UnknownUserError:
            raise TokenError(f"unknown user {claims.id_user}") from None
        return {"id_user": claims.id_user, "room": room, "expires_at": claims.expires_at}

    async def _check_user(self, id_user: str) -> None:
        """UnknownUserError unless the user exists; users seen recently are not looked up again.

        Only existence is remembered, for a few seconds: there is no way to delete
        a user but `db reset`, and a user just created is found at once.
        """
        now = time.monotonic()
        if self._known_users.get(id_user, 0.0) > now:
            return
        await self.store.get(id_user)
        if len(self._known_users) >= MAX_KNOWN_USERS:
            self._known_users.clear()
        self._known_users[id_user] = now + KNOWN_USER_TTL_S

    async def handle_connected(self, sid: str, namespace: str) -> None:
        if namespace != NAMESPACE:
            return
        session = connected_session(self.sio, sid, namespace)
        if session is None:
            # The client left while its identity was being checked.
            self.sio.manager.basic_disconnect(sid, namespace)
            return
        entry = LocalSocket(id_socket=sid, id_user=session["id_user"], room=session["room"])
        try:
            await self.sio.enter_room(sid, entry.room, namespace=namespace)
            self.sockets.add(entry)
            if self.tokens is not None:
                self.tokens.started(sid, session["expires_at"])
            log.info("socket %s connected as id_user %s in room %r", sid, entry.id_user, entry.room)
            if self.part_feed is not None:
                # Read-your-join: a query on any node after the handshake finds this socket in its replica.
                await self.part_feed.published(self.part_wait_s)
            await self.sio.emit(
                "handshake",
                {"node": self.node_id, "procid": os.getpid(), "id_socket": sid},
                to=sid,
                namespace=namespace,
                ignore_queue=True,
            )
            await self._tell_room("socket-connected", self._member(entry), entry.room, skip_sid=sid)
        except Exception:
            # A socket the room was not told about must not stay: it would be in rosters nobody announced.
            log.exception("dropping socket %s: registering it failed", sid)
            self.sockets.remove(sid)
            await self.sio.disconnect(sid, namespace=namespace, ignore_queue=True)

    async def handle_disconnect(self, sid: str, reason: object = None) -> None:
        self._identity_changes.forget(sid)
        if self.tokens is not None:
            self.tokens.forget(sid)
        entry = self.sockets.remove(sid)
        if entry is None:
            return
        log.info("socket %s (id_user %s) left room %r: %s", sid, entry.id_user, entry.room, reason)
        await self._tell_room("socket-disconnected", self._member(entry), entry.room, skip_sid=sid)

    async def handle_identity_change(self, sid: str, data: object = None) -> None:
        # The payload is ignored on purpose: a client may only announce a change of its own identity.
        entry = self.sockets.get(sid)
        if entry is None:
            return
        if not self._identity_changes.take(sid):
            self.on_refused("identity-change over the rate limit")
            return
        change = {"id_user": entry.id_user, "id_socket": sid, "node": self.node_id}
        await self._tell_room("identity-change", change, entry.room, skip_sid=sid)
