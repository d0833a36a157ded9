"""`sioplay join`: one simulated client that shows the room's roster, then its events as they arrive.

When the server closes the connection (its node stopping in a rolling restart),
the client says so and connects again with a capped, doubling back-off, as the
browser page does; the public port hands it to a node that is up, and the new
handshake says which. Given the addresses of several hosts, it connects through
the first that answers and, when the connection drops, tries the next one first
(the host that dropped it may be cut off), then each in turn. Only a refusal (the
server's own "no") or the end of `duration` ends it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from rich.console import Console
from rich.text import Text

from sioplay.client.http import Api
from sioplay.client.ids import typed_ids
from sioplay.client.names import NameCache
from sioplay.client.roster_view import completeness_line, fetch_roster
from sioplay.client.sim import DISCONNECT, RETRY_INITIAL_S, RETRY_MAX_S, RoomEvent, SimClient, rotated
from sioplay.errors import ClientError

__all__ = ["EventPrinter", "JsonEventPrinter", "TextEventPrinter", "announce_rename", "join"]

# The widths of the event, node and user columns: the longest event name, a node id, "id (name)".
_EVENT_W, _NODE_W, _WHO_W = 19, 10, 22


class EventPrinter(Protocol):
    def joined(
        self,
        at: float,
        room: str,
        id_user: str,
        name: str | None,
        handshake: dict[str, Any],
        again: bool,
        via: str | None,
    ) -> None: ...
    def roster(self, at: float, room: str, roster_body: dict[str, Any]) -> None: ...
    def no_roster(self, at: float, room: str, error: str) -> None: ...
    def renamed(self, at: float, id_user: str, name: str) -> None: ...
    def event(self, event: RoomEvent, name: str | None) -> None: ...
    def lost(self, at: float, node: str | None, reason: str, retry_s: float) -> None: ...
    def retrying(self, at: float, attempt: int, error: str, retry_s: float) -> None: ...
    def left(self, at: float, room: str) -> None: ...


def _who(id_user: Any, name: str | None) -> str:
    return f"{id_user} ({name})" if name is not None else f"{id_user} (unknown user)"


class TextEventPrinter:
    """Lines of ``time  event  node  user  socket``, in columns."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _line(self, at: float, text: str, style: str = "") -> None:
        clock = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
        # Names are user input: Text, never markup.
        self.console.print(Text(f"{clock}  ") + Text(text, style=style), highlight=False, soft_wrap=True)

    def _columns(self, at: float, kind: str, node: Any, who: str, socket: Any, style: str = "") -> None:
        node_text = "-" if node is None else str(node)
        self._line(at, f"{kind:<{_EVENT_W}}  {node_text:<{_NODE_W}}  {who:<{_WHO_W}}  socket {socket}", style)

    def joined(
        self,
        at: float,
        room: str,
        id_user: str,
        name: str | None,
        handshake: dict[str, Any],
        again: bool,
        via: str | None,
    ) -> None:
        verb = "rejoined" if again else "joined"
        through = f" via {via}" if via is not None else ""
        self._line(
            at,
            f"{verb} {room} as {_who(id_user, name)} on {handshake.get('node')}{through}, "
            f"socket {handshake.get('id_socket')} (pid {handshake.get('procid')})",
            "bold",
        )

    def roster(self, at: float, room: str, roster_body: dict[str, Any]) -> None:
        self._line(at, f"in {room} now: " + completeness_line(roster_body).plain, "dim")
        for entry in roster_body["users"]:
            who = _who(entry.get("id_user"), entry.get("name"))
            self._columns(at, "member", entry.get("node"), who, entry.get("id_socket"), "dim")

    def no_roster(self, at: float, room: str, error: str) -> None:
        self._line(at, f"who is in {room} is unknown: {error}", "red")

    def renamed(self, at: float, id_user: str, name: str) -> None:
        self._line(at, f"renamed {id_user} to {name!r} and told the room", "cyan")

    def event(self, event: RoomEvent, name: str | None) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        style = {"socket-connected": "green", "socket-disconnected": "yellow", "identity-change": "cyan"}
        who = _who(data.get("id_user"), name)
        self._columns(event.at, event.name, data.get("node"), who, data.get("id_socket"), style.get(event.name, ""))

    def lost(self, at: float, node: str | None, reason: str, retry_s: float) -> None:
        self._line(at, f"disconnected from {node or 'the server'} ({reason}); reconnecting in {retry_s:g} s", "yellow")

    def retrying(self, at: float, attempt: int, error: str, retry_s: float) -> None:
        self._line(at, f"reconnect attempt {attempt} failed ({error}); next in {retry_s:g} s", "yellow")

    def left(self, at: float, room: str) -> None:
        self._line(at, f"left {room}", "bold")


class JsonEventPrinter:
    """One JSON object per line: {"at", "event", ...}; room events keep the server's `data` and add `name`."""

    def _write(self, at: float, event: str, **fields: Any) -> None:
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        if isinstance(fields.get("data"), dict):
            fields["data"] = typed_ids(fields["data"])
        sys.stdout.write(orjson.dumps({"at": stamp, "event": event, **typed_ids(fields)}).decode() + "\n")
        sys.stdout.flush()

    def joined(
        self,
        at: float,
        room: str,
        id_user: str,
        name: str | None,
        handshake: dict[str, Any],
        again: bool,
        via: str | None,
    ) -> None:
        fields = {"room": room, "id_user": id_user, "name": name, "reconnected": again}
        self._write(at, "handshake", data=handshake, **fields, **({"via": via} if via is not None else {}))

    def roster(self, at: float, room: str, roster_body: dict[str, Any]) -> None:
        self._write(at, "roster", room=room, data=roster_body)

    def no_roster(self, at: float, room: str, error: str) -> None:
        self._write(at, "roster-failed", room=room, error=error)

    def renamed(self, at: float, id_user: str, name: str) -> None:
        self._write(at, "renamed", id_user=id_user, name=name)

    def event(self, event: RoomEvent, name: str | None) -> None:
        self._write(event.at, event.name, data=event.data, name=name)

    def lost(self, at: float, node: str | None, reason: str, retry_s: float) -> None:
        self._write(at, "disconnected", node=node, reason=reason, retry_s=retry_s)

    def retrying(self, at: float, attempt: int, error: str, retry_s: float) -> None:
        self._write(at, "reconnect-failed", attempt=attempt, error=error, retry_s=retry_s)

    def left(self, at: float, room: str) -> None:
        self._write(at, "left", room=room)


async def announce_rename(api: Api, client: SimClient, name: str) -> None:
    """What the browser page does: PUT the new name, then tell the room with identity-change."""
    await api.rename(client.id_user, name)
    # Acknowledged, so the room has been told before the caller can disconnect.
    await client.call("identity-change", {"id_user": client.id_user}, timeout_s=api.timeout_s)


class _Session:
    """The current connection, replaced by a new one each time the server closes it.

    `api` is aimed at the host of the current connection: the roster and the names come from a host
    that answers.
    """

    def __init__(
        self, api: Api, urls: list[str], room: str, id_user: str, names: NameCache, printer: EventPrinter
    ) -> None:
        self.api = api
        self.urls = urls
        self.at = 0
        self.room = room
        self.id_user = id_user
        self.names = names
        self.printer = printer
        self.queue: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self.client: SimClient | None = None
        self.node: str | None = None
        self.has_joined = False

    async def connect(self, again: bool) -> None:
        """Connect (after a drop: through the next URL first), print the handshake and the room's roster.

        ClientError if no URL takes it.
        """
        self.queue = asyncio.Queue()
        urls = rotated(self.urls, self.at + 1 if again else self.at)
        client = SimClient(
            urls,
            self.id_user,
            self.room,
            http_session=self.api.session,
            on_event=self.queue.put_nowait,
            token=self._token_at,
        )
        self.client = client
        handshake = await client.connect(timeout_s=self.api.timeout_s)
        self.at = self.urls.index(client.url)
        self.api = self.names.api = self.api.at(client.url)
        self.node = handshake.get("node")
        self.has_joined = True
        # Which host it is on, when there is a choice of hosts.
        via = client.url if len(self.urls) > 1 else None
        name = await _name(self.names, self.id_user)
        self.printer.joined(time.time(), self.room, self.id_user, name, handshake, again, via)
        try:
            self.printer.roster(time.time(), self.room, await fetch_roster(self.api, self.names, self.room))
        except ClientError as exc:
            # The connection stands: a roster that could not be fetched is said, not fatal.
            self.printer.no_roster(time.time(), self.room, str(exc))

    async def reconnect(self, until: float | None) -> bool:
        """Connect again with back-off; False if `until` (loop time) passes first. A refusal raises."""
        loop = asyncio.get_running_loop()
        delay, attempt = RETRY_INITIAL_S, 0
        while True:
            wait = delay if until is None else min(delay, until - loop.time())
            if wait <= 0:
                return False
            await asyncio.sleep(wait)
            attempt += 1
            await self.close()
            try:
                await self.connect(again=True)
                return True
            except ClientError as exc:
                if self.client is not None and self.client.final_refusal is not None:
                    raise
                delay = min(delay * 2, RETRY_MAX_S)
                self.printer.retrying(time.time(), attempt, str(exc), delay)

    async def _token_at(self, url: str) -> str | None:
        """Checked before each connect: the host answers (a clear error if none does), and the token it wants."""
        api = self.api.at(url)
        await api.health()
        return await api.token_for(self.id_user)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


async def join(
    api: Api,
    room: str,
    id_user: str,
    printer: EventPrinter,
    *,
    rename_to: str | None = None,
    duration: float | None = None,
    also: list[str] | None = None,
) -> None:
    """Join `room` as `id_user` and print its events until `duration` s have passed (or forever).

    `also`: the addresses of other hosts of the cluster, to connect through when `api.url` does not answer.
    """
    loop = asyncio.get_running_loop()
    until = None if duration is None else loop.time() + duration
    names = NameCache(api)
    session = _Session(api, [api.url, *(also or [])], room, id_user, names, printer)
    try:
        await session.connect(again=False)
        if rename_to is not None:
            assert session.client is not None
            await announce_rename(session.api, session.client, rename_to)
            names.forget(id_user)
            printer.renamed(time.time(), id_user, rename_to)
        while (reason := await _relay(session.queue, names, printer, until)) is not None:
            printer.lost(time.time(), session.node, reason, RETRY_INITIAL_S)
            if not await session.reconnect(until):
                return
    finally:
        # Also on Ctrl-C or SIGTERM (a cancellation), even while the first roster is fetched: the last line
        # says the client is out of the room, once it was in.
        await session.close()
        if session.has_joined:
            printer.left(time.time(), room)


async def _name(names: NameCache, id_user: Any) -> str | None:
    """A name for display: a failed lookup shows the user as unknown rather than ending the session."""
    try:
        return await names.get(str(id_user))
    except ClientError:
        return None


async def _relay(
    queue: asyncio.Queue[RoomEvent], names: NameCache, printer: EventPrinter, until: float | None
) -> str | None:
    """Print events until `until` (loop time; None: forever); the reason, if the server closed the connection."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), None if until is None else max(0.0, until - loop.time()))
        except TimeoutError:
            return None
        if event.name == DISCONNECT:
            return str(event.data or "no reason given")
        if event.name == "handshake":
            continue
        data = event.data if isinstance(event.data, dict) else {}
        if event.name == "identity-change":
            names.forget(str(data.get("id_user")))
        printer.event(event, await _name(names, data.get("id_user")) if data.get("id_user") is not None else None)
