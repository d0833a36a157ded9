"""`who --watch`: a roster kept current by the room's own events, heard as an observer.

The observer connects to the node's /watch namespace, which hears a room's
events without joining it, so it is never counted in the roster it shows.
Each event triggers a re-fetch; when events stop (observer reconnecting, or a
rename announced nowhere) a timer re-fetches and re-hydrates everyone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from datetime import datetime
from typing import Any, Protocol

import orjson
import socketio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from sioplay.client.http import Api
from sioplay.client.names import NameCache
from sioplay.client.roster_view import fetch_roster, roster_view, same_roster
from sioplay.errors import ClientError

__all__ = ["JsonLinesDisplay", "LiveDisplay", "RosterWatch", "Snapshot", "SnapshotDisplay"]

# The node's observer namespace; spelled out rather than imported so the client needs none of the server's modules.
WATCH_NAMESPACE = "/watch"
WATCHED_EVENTS = ("socket-connected", "socket-disconnected", "identity-change")


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    room: str
    roster_body: dict[str, Any] | None
    reason: str
    at: float
    listening: bool
    error: str | None = None


class Display(Protocol):
    def show(self, snapshot: Snapshot) -> None: ...


class RosterWatch:
    """Re-fetches `room`'s roster on every room event, and every `refresh_s` without one."""

    def __init__(self, api: Api, room: str, display: Display, refresh_s: float = 5.0) -> None:
        self.api = api
        self.room = room
        self.display = display
        self.refresh_s = refresh_s
        self.names = NameCache(api)
        self._dirty = asyncio.Event()
        self._reason = "start"
        self._refusal: str | None = None
        self.sio = socketio.AsyncClient(reconnection=True, http_session=api.session, handle_sigint=False)
        for event in WATCHED_EVENTS:
            self.sio.on(event, self._heard(event), namespace=WATCH_NAMESPACE)
        self.sio.on("connect", self._heard("reconnect"), namespace=WATCH_NAMESPACE)
        self.sio.on("connect_error", self._refused, namespace=WATCH_NAMESPACE)

    def _heard(self, event: str) -> Any:
        def mark(data: Any = None) -> None:
            if event == "identity-change" and isinstance(data, dict) and data.get("id_user") is not None:
                self.names.forget(str(data["id_user"]))
            self._reason = event
            self._dirty.set()

        return mark

    def _refused(self, data: Any = None) -> None:
        self._refusal = data.get("message") if isinstance(data, dict) else str(data)

    async def run(self, duration: float | None = None) -> None:
        """Watch until `duration` seconds have passed, or forever."""
        await self.api.health()
        await self._listen()
        try:
            await self._loop(duration)
        finally:
            await self.sio.disconnect()

    async def _listen(self) -> None:
        try:
            async with asyncio.timeout(self.api.timeout_s):
                await self.sio.connect(
                    self.api.url,
                    namespaces=[WATCH_NAMESPACE],
                    auth={"room": self.room},
                    transports=["websocket"],
                    wait_timeout=self.api.timeout_s,
                )
        except socketio.exceptions.ConnectionError as exc:
            raise ClientError(self._refusal or f"cannot watch {self.room!r} on {self.api.url}: {exc}") from None
        except TimeoutError:
            raise ClientError(f"no answer from {self.api.url} within {self.api.timeout_s:g} s") from None
        # Whatever happened before the observer was listening is in the first fetch.
        self._dirty.clear()
        self._reason = "start"

    async def _loop(self, duration: float | None) -> None:
        loop = asyncio.get_running_loop()
        end = None if duration is None else loop.time() + duration
        first = True
        while True:
            self._dirty.clear()
            reason, self._reason = self._reason, "timer"
            if reason in ("timer", "reconnect"):
                self.names.forget()
            try:
                roster_body = await fetch_roster(self.api, self.names, self.room)
            except ClientError as exc:
                if first:
                    raise
                self.display.show(Snapshot(self.room, None, reason, time.time(), self.sio.connected, str(exc)))
            else:
                self.display.show(Snapshot(self.room, roster_body, reason, time.time(), self.sio.connected))
            first = False
            wait = self.refresh_s if end is None else min(self.refresh_s, end - loop.time())
            if wait <= 0:
                return
            try:
                async with asyncio.timeout(wait):
                    await self._dirty.wait()
            except TimeoutError:
                if end is not None and loop.time() >= end:
                    return


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


class LiveDisplay:
    """A Rich Live table for terminals; keeps the last good roster on screen when a refresh fails."""

    def __init__(self, console: Console, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._last: Snapshot | None = None
        self._live = Live(Text("fetching the roster…"), console=console, auto_refresh=False)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def show(self, snapshot: Snapshot) -> None:
        if snapshot.roster_body is not None:
            self._last = snapshot
        shown = self._last or snapshot
        parts: list[RenderableType] = []
        if shown.roster_body is not None:
            parts.append(roster_view(shown.roster_body))
        events = "events: live"
        if not snapshot.listening:
            events = f"events: reconnecting, refreshing every {self.refresh_s:g} s"
        status = Text(f"updated {_clock(shown.at)} after {shown.reason} · {events}", style="dim")
        parts.append(status)
        if snapshot.error:
            parts.append(Text(f"refresh failed at {_clock(snapshot.at)}: {snapshot.error}", style="red"))
        self._live.update(Group(*parts), refresh=True)


class _ChangesOnly:
    """Shows a snapshot only when its roster differs from the last one shown; failures go to stderr."""

    def __init__(self, err_console: Console) -> None:
        self.err_console = err_console
        self._last: dict[str, Any] | None = None

    def show(self, snapshot: Snapshot) -> None:
        if snapshot.roster_body is None:
            self.err_console.print(Text(f"refresh failed: {snapshot.error}", style="red"))
            return
        if same_roster(self._last, snapshot.roster_body):
            return
        self._last = snapshot.roster_body
        self._print(snapshot, snapshot.roster_body)

    def _print(self, snapshot: Snapshot, roster_body: dict[str, Any]) -> None:
        raise NotImplementedError


class SnapshotDisplay(_ChangesOnly):
    """For pipes and logs: the whole table again, with a time stamp, each time the roster changes."""

    def __init__(self, console: Console, err_console: Console) -> None:
        super().__init__(err_console)
        self.console = console

    def _print(self, snapshot: Snapshot, roster_body: dict[str, Any]) -> None:
        heading = f"{snapshot.room} at {_clock(snapshot.at)} after {snapshot.reason}"
        self.console.print(roster_view(roster_body, heading=heading))


class JsonLinesDisplay(_ChangesOnly):
    """One hydrated roster_body per line, each time the roster changes."""

    def _print(self, snapshot: Snapshot, roster_body: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(roster_body).decode() + "\n")
        sys.stdout.flush()
