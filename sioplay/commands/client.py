"""`sioplay join | who | rename | swarm`: simulated clients and roster views."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text

from sioplay.client.target import DEFAULT_TIMEOUT_S, Target, normalize_url, resolve_target
from sioplay.commands._common import console, err_console, handles_errors, print_json, state_of
from sioplay.commands._tls import CaOption
from sioplay.errors import ClientError
from sioplay.node.validation import validate_room

if TYPE_CHECKING:
    from sioplay.client.credentials import Credentials

# The Socket.IO client and aiohttp are imported by the commands that use them: `sioplay --help` and the
# cluster commands do without.
__all__ = ["join", "register", "rename", "swarm", "who"]

T = TypeVar("T")

# `who --strict` when a node did not answer: not 1, so that a script tells a partial answer from an error.
PARTIAL_EXIT_CODE = 3

RoomArgument = Annotated[str, typer.Argument(help="Room name, e.g. Maths.", show_default=False)]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="A node or the cluster's public port; default: the running cluster's, else http://localhost:5009.",
        show_default=False,
    ),
]
UrlsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--url",
        help="A node or a host's public port; repeat it, or give a comma-separated list, for the hosts of a cluster: "
        "join connects through the first that answers and, when its connection drops, through the next. "
        "Default: the running cluster's, else http://localhost:5009.",
        show_default=False,
    ),
]
NodeOption = Annotated[
    str | None,
    typer.Option("--node", help="Aim at this node's own port, from the running cluster's state.", show_default=False),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Give up on an HTTP request or a handshake after this many seconds."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of tables and text.")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="JWT to connect and write with; default: minted from the state directory's cluster secret when the "
        "cluster runs with --auth token. \\[env: SIOPLAY_TOKEN]",
        envvar="SIOPLAY_TOKEN",
        show_default=False,
    ),
]
ForOption = Annotated[
    float | None,
    typer.Option("--for", min=0, help="Stop after this many seconds (default: until Ctrl-C).", show_default=False),
]


def register(app: typer.Typer) -> None:
    """Add the client commands to the top-level app."""
    for name, command in (("join", join), ("who", who), ("rename", rename), ("swarm", swarm)):
        app.command(name, rich_help_panel="Clients")(command)


@handles_errors
def join(
    ctx: typer.Context,
    room: RoomArgument,
    user: Annotated[str, typer.Option("--user", "-u", help="id_user to connect as.", show_default=False)],
    name: Annotated[
        str | None, typer.Option("--name", help="Change this user's name once joined, and tell the room.")
    ] = None,
    duration: ForOption = None,
    as_json: JsonOption = False,
    url: UrlsOption = None,
    node: NodeOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Join ROOM as one simulated client and print the room's events as they arrive."""
    from sioplay.client import join as join_room
    from sioplay.client.credentials import Credentials
    from sioplay.client.http import open_api

    settings = state_of(ctx).settings
    urls = [entry.strip() for given in url or [] for entry in given.split(",") if entry.strip()]
    target = _target(ctx, urls[0] if urls else None, node, ca)
    also = [normalize_url(entry, settings.tls_enabled) for entry in urls[1:]]
    printer = join_room.JsonEventPrinter() if as_json else join_room.TextEventPrinter(console)

    async def run() -> None:
        credentials = Credentials(settings.home, token)
        async with open_api(target.url, timeout, credentials=credentials, ssl_context=target.ssl) as api:
            await join_room.join(api, room, user, printer, rename_to=name, duration=duration, also=also)

    _run(run())


@handles_errors
def who(
    ctx: typer.Context,
    room: RoomArgument,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table current as the room changes.")] = False,
    duration: ForOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with code 3 when the answer is partial (a node did not answer).")
    ] = False,
    group: Annotated[
        bool, typer.Option("--group", help="With --json: one entry per user with its sockets, as ?group=user.")
    ] = False,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.1, help="With --watch: refresh at least this often (seconds).")
    ] = 5.0,
    url: UrlOption = None,
    node: NodeOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    ca: CaOption = None,
) -> None:
    """Who is in ROOM, across all nodes, with names; partial answers are marked (and exit 3 with --strict)."""
    from sioplay.client.http import open_api
    from sioplay.client.roster_view import group_by_user, roster_view
    from sioplay.client.watch import JsonLinesDisplay, LiveDisplay, RosterWatch, SnapshotDisplay

    # The server's rules, checked here: an empty name would ask another route (/rooms/) and get a bare 404.
    validate_room(room)
    if watch and strict:
        raise ClientError("--strict is for one answer: leave out --watch")
    target = _target(ctx, url, node, ca)
    if not watch:
        roster_body = _run(_fetch_once(target, room, timeout))
        if as_json:
            print_json(group_by_user(roster_body) if group else roster_body)
        else:
            console.print(roster_view(roster_body))
        if strict and roster_body.get("complete") is not True:
            raise typer.Exit(PARTIAL_EXIT_CODE)
        return

    async def run_watch() -> None:
        async with open_api(target.url, timeout, ssl_context=target.ssl) as api:
            if as_json:
                await RosterWatch(api, room, JsonLinesDisplay(err_console), refresh).run(duration)
            elif console.is_terminal:
                with LiveDisplay(console, refresh) as display:
                    await RosterWatch(api, room, display, refresh).run(duration)
            else:
                await RosterWatch(api, room, SnapshotDisplay(console, err_console), refresh).run(duration)

    _run(run_watch())


async def _fetch_once(target: Target, room: str, timeout_s: float) -> dict[str, Any]:
    from sioplay.client.http import open_api
    from sioplay.client.names import NameCache
    from sioplay.client.roster_view import fetch_roster

    async with open_api(target.url, timeout_s, ssl_context=target.ssl) as api:
        return await fetch_roster(api, NameCache(api), room)


@handles_errors
def rename(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="id_user to rename.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The new name.", show_default=False)],
    room: Annotated[
        str | None, typer.Option("--room", help="Tell this room (connect as the user, identity-change, leave).")
    ] = None,
    url: UrlOption = None,
    node: NodeOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT_S,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Change a user's name and, with --room, tell that room as the browser page does."""
    from sioplay.client.credentials import Credentials

    home = state_of(ctx).settings.home
    target = _target(ctx, url, node, ca)
    told = _run(_rename(target, user, name, room, timeout, Credentials(home, token)))
    line = f"renamed {user} to {name!r}"
    line += f" and told room {room!r} (via {told})" if told else " (no room told: give --room to announce it)"
    console.print(Text(line), highlight=False, soft_wrap=True)


async def _rename(
    target: Target, user: str, name: str, room: str | None, timeout_s: float, credentials: Credentials
) -> str | None:
    """The node that relayed the identity-change, if a room was told."""
    from sioplay.client.http import open_api
    from sioplay.client.join import announce_rename
    from sioplay.client.sim import SimClient

    async with open_api(target.url, timeout_s, credentials=credentials, ssl_context=target.ssl) as api:
        if room is None:
            await api.rename(user, name)
            return None
        await api.health()
        # Connect first: a refused user or room then changes nothing.
        client = SimClient(api.url, user, room, http_session=api.session, token=await api.token_for(user))
        handshake = await client.connect(timeout_s=api.timeout_s)
        try:
            await announce_rename(api, client, name)
        finally:
            await client.disconnect()
        return str(handshake.get("node"))


@handles_errors
def swarm(
    ctx: typer.Context,
    room: RoomArgument,
    clients: Annotated[int, typer.Option("--clients", "-n", min=1, help="How many clients.", show_default=False)],
    users: Annotated[
        str, typer.Option("--users", help="id_users to give out round-robin: '1-10' or '1,4,7'.")
    ] = "1-10",
    ramp: Annotated[
        float | None, typer.Option("--ramp", min=0.1, help="Start at most this many clients per second.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--for", min=0, help="Hold this many seconds once all are connected (default: until Ctrl-C)."),
    ] = None,
    as_json: JsonOption = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Handshakes in flight at once.")] = 100,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", min=0.1, help="Stop waiting for everyone to connect after this many s."),
    ] = 600.0,
    url: UrlOption = None,
    node: NodeOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Hold --clients simulated clients in ROOM from one process: progress, a live summary, then a table per node."""
    from sioplay.client import swarm as swarming
    from sioplay.client.credentials import Credentials
    from sioplay.client.http import open_api
    from sioplay.client.swarm_view import SwarmDisplay, summary_table

    home = state_of(ctx).settings.home
    target = _target(ctx, url, node, ca)
    ids = swarming.parse_users(users)
    swarming.raise_open_files_limit(clients)
    shown_on = err_console if as_json else console
    title = f"swarm in {room}"

    async def run() -> dict[str, Any]:
        async with open_api(target.url, credentials=Credentials(home, token), ssl_context=target.ssl) as api:
            await swarming.preflight(api, room, ids)
            crowd = swarming.Swarm(api, room, ids, clients, ramp=ramp, concurrency=concurrency)
            stop = asyncio.Event()
            with swarming.stop_on_signals(stop), SwarmDisplay(shown_on, title, target.url) as display:
                return await swarming.run(
                    crowd, stop=stop, connect_timeout_s=connect_timeout, duration=duration, tick=display
                )

    summary = _run(run())
    if as_json:
        print_json(summary)
    else:
        console.print(summary_table(summary, title, target.url))
    if summary["connected"] < clients:
        raise ClientError(
            f"only {summary['connected']} of {clients} clients were connected at the end "
            f"(errors: {summary['errors']}, last: {summary['last_error'] or 'none'})"
        )


def _target(ctx: typer.Context, url: str | None, node: str | None, ca: Path | None) -> Target:
    return resolve_target(state_of(ctx).settings.replace(tls_ca=ca), url, node)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except asyncio.CancelledError:
        # A second Ctrl-C cancels the command outright: report it as an interrupt, not a traceback.
        raise KeyboardInterrupt from None
