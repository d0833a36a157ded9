"""Sockets admitted by token (`--auth token`): who they are, until when, and their refreshes.

A socket whose token runs out hears `token-expired` `{reason, exp}` and is then
disconnected (its room hears `socket-disconnected` as for any other), unless it
sent `refresh-token` `{token}` with a valid token for the same user first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import socketio

from sioplay.errors import TokenError
from sioplay.node.auth import TokenClaims, TokenVerifier, connect_token
from sioplay.node.token_expiry import TokenExpiry
from sioplay.node.validation import validate_id_user, validate_room

__all__ = ["EXPIRED_EVENT", "REFRESH_EVENT", "TokenSessions"]

log = logging.getLogger(__name__)

EXPIRED_EVENT = "token-expired"
REFRESH_EVENT = "refresh-token"


class TokenSessions:
    def __init__(self, sio: socketio.AsyncServer, verifier: TokenVerifier, namespace: str) -> None:
        self.sio = sio
        self.verifier = verifier
        self.namespace = namespace
        self.expiry = TokenExpiry(self._expired)

    def admit(self, sid: str, query_string: str, auth: object) -> tuple[TokenClaims, str]:
        """(the token's claims, the room) of a connecting socket; TokenError or ValidationError says why not."""
        query = {key: values[0] for key, values in parse_qs(query_string or "", keep_blank_values=True).items()}
        token, in_query = connect_token(auth, query)
        if in_query:
            log.warning(
                "socket %s sent its token in the query string, which proxies and servers log: send it in auth {token}",
                sid,
            )
        claims = self.verifier.verify(token)
        room = validate_room(auth["room"] if isinstance(auth, Mapping) and "room" in auth else query.get("room"))
        said = auth.get("id_user") if isinstance(auth, Mapping) and "id_user" in auth else query.get("id_user")
        if said not in (None, "") and validate_id_user(said) != claims.id_user:
            raise TokenError(f"id_user {str(said)[:64]} is not the token's user")
        if not claims.allows(room):
            raise TokenError(f"room {room} not allowed by token")
        return claims, room

    def started(self, sid: str, expires_at: float) -> None:
        self.expiry.set(sid, expires_at + self.verifier.leeway_s)

    def forget(self, sid: str) -> None:
        self.expiry.forget(sid)

    async def handle_refresh(self, sid: str, data: object = None) -> dict[str, Any]:
        """The acknowledgement: `{ok, exp}` or `{ok: false, error}`; a refused refresh leaves the old deadline."""
        token = data.get("token") if isinstance(data, Mapping) else data
        try:
            session = await self.sio.get_session(sid, namespace=self.namespace)
            claims = self.verifier.verify(token)
            if claims.id_user != session.get("id_user"):
                raise TokenError("token is for another user")
            if not claims.allows(session.get("room", "")):
                raise TokenError(f"room {session.get('room')} not allowed by token")
        except TokenError as exc:
            return {"ok": False, "error": str(exc)}
        except KeyError:
            return {"ok": False, "error": "not connected"}
        if self.expiry.deadline(sid) is None:
            return {"ok": False, "error": "not connected"}
        self.started(sid, claims.expires_at)
        return {"ok": True, "exp": claims.expires_at}

    async def _expired(self, sid: str) -> None:
        log.info("socket %s: token expired, disconnecting", sid)
        await self.sio.emit(
            EXPIRED_EVENT, {"reason": "token expired"}, to=sid, namespace=self.namespace, ignore_queue=True
        )
        await self.sio.disconnect(sid, namespace=self.namespace, ignore_queue=True)
