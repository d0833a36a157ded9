"""`sioplay join`: one simulated client that shows the room's events as they arrive."""

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
from sioplay.client.sim import DISCONNECT, RoomEvent, SimClient
from sioplay.errors import ClientError

__all__ = ["EventPrinter", "JsonEventPrinter", "TextEventPrinter", "announce_rename", "join"]


class EventPrinter(Protocol):
    def joined(self, at: float, room: str, id_user: str, name: str | None, handshake: dict[str, Any]) -> None: ...
    def renamed(self, at: float, id_user: str, name: str) -> None: ...
    def event(self, event: RoomEvent, name: str | None) -> None: ...
    def left(self, at: float, room: str) -> None: ...


def _who(id_user: Any, name: str | None) -> str:
    return f"{id_user} ({name})" if name is not None else f"{id_user} (unknown user)"


class TextEventPrinter:
    def __init__(self, console: Console) -> None:
        self.console = console

    def _line(self, at: float, text: str, style: str = "") -> None:
        clock = datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]
        # Names are user input: Text, never markup.
        self.console.print(Text(f"{clock}  ") + Text(text, style=style), highlight=False, soft_wrap=True)

    def joined(self, at: float, room: str, id_user: str, name: str | None, handshake: dict[str, Any]) -> None:
        self._line(
            at,
            f"joined {room} as {_who(id_user, name)} on {handshake.get('node')}, "
            f"socket {handshake.get('id_socket')} (pid {handshake.get('procid')})",
            "bold",
        )

    def renamed(self, at: float, id_user: str, name: str) -> None:
        self._line(at, f"renamed {id_user} to {name!r} and told the room", "cyan")

    def event(self, event: RoomEvent, name: str | None) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        style = {"socket-connected": "green", "socket-disconnected": "yellow", "identity-change": "cyan"}
        self._line(
            event.at,
            f"{event.name:<20} {_who(data.get('id_user'), name)}  socket {data.get('id_socket')}",
            style.get(event.name, ""),
        )

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

    def joined(self, at: float, room: str, id_user: str, name: str | None, handshake: dict[str, Any]) -> None:
        self._write(at, "handshake", data=handshake, room=room, id_user=id_user, name=name)

    def renamed(self, at: float, id_user: str, name: str) -> None:
        self._write(at, "renamed", id_user=id_user, name=name)

    def event(self, event: RoomEvent, name: str | None) -> None:
        self._write(event.at, event.name, data=event.data, name=name)

    def left(self, at: float, room: str) -> None:
        self._write(at, "left", room=room)


async def announce_rename(api: Api, client: SimClient, name: str) -> None:
    """What the browser page does: PUT the new name, then tell the room with identity-change."""
    await api.rename(client.id_user, name)
    # Acknowledged, so the room has been told before the caller can disconnect.
    await client.call("identity-change", {"id_user": client.id_user}, timeout_s=api.timeout_s)


async def join(
    api: Api,
    room: str,
    id_user: str,
    printer: EventPrinter,
    *,
    rename_to: str | None = None,
    duration: float | None = None,
) -> None:
    """Join `room` as `id_user` and print its events until `duration` s have passed (or forever)."""
    await api.health()
    names = NameCache(api)
    queue: asyncio.Queue[RoomEvent] = asyncio.Queue()
    client = SimClient(api.url, id_user, room, http_session=api.session, on_event=queue.put_nowait)
    handshake = await client.connect(timeout_s=api.timeout_s)
    try:
        printer.joined(time.time(), room, id_user, await _name(names, id_user), handshake)
        if rename_to is not None:
            await announce_rename(api, client, rename_to)
            names.forget(id_user)
            printer.renamed(time.time(), id_user, rename_to)
        await _relay(queue, names, printer, duration)
    finally:
        # Also on Ctrl-C or SIGTERM (a cancellation): the last line says the client is out of the room.
        await client.disconnect()
        printer.left(time.time(), room)


async def _name(names: NameCache, id_user: Any) -> str | None:
    """A name for display: a failed lookup shows the user as unknown rather than ending the session."""
    try:
        return await names.get(str(id_user))
    except ClientError:
        return None


async def _relay(
    queue: asyncio.Queue[RoomEvent], names: NameCache, printer: EventPrinter, duration: float | None
) -> None:
    loop = asyncio.get_running_loop()
    end = None if duration is None else loop.time() + duration
    while True:
        try:
            event = await asyncio.wait_for(queue.get(), None if end is None else max(0.0, end - loop.time()))
        except TimeoutError:
            return
        if event.name == DISCONNECT:
            raise ClientError(f"the server closed the connection ({event.data or 'no reason given'})")
        if event.name == "handshake":
            continue
        data = event.data if isinstance(event.data, dict) else {}
        if event.name == "identity-change":
            names.forget(str(data.get("id_user")))
        printer.event(event, await _name(names, data.get("id_user")) if data.get("id_user") is not None else None)
