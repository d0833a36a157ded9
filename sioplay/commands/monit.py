"""`cluster describe NODE` and `cluster monit`: one node in full, and the PM2-like live screen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from sioplay.cluster.launcher import running_state
from sioplay.cluster.logs import format_line, log_sources, merged_tail
from sioplay.cluster.status import StatusCollector, render_status
from sioplay.commands._common import console, handles_errors, print_json, state_of
from sioplay.common.state import is_running, read_state

__all__ = ["register"]

_CPU_SAMPLE_S = 0.2
_MONIT_INTERVAL_S = 1.0
# The screen's rows that are not log lines: the table's frame and title, the Redis/database/UI lines, the panel.
_MONIT_CHROME_ROWS = 12


def register(app: typer.Typer) -> None:
    app.command("describe")(describe)
    app.command("monit")(monit)


@handles_errors
def describe(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node, e.g. node-2 (or its full id).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """NODE in full: command, ports, pid, log paths, restarts with their reasons, memory, sockets."""
    state = running_state(state_of(ctx).settings.home)
    # Imported here: every other command, and `--help`, goes without it.
    from sioplay.cluster.describe import describe_node, render_description, resolve_node

    value = describe_node(state, resolve_node(state, node), StatusCollector(), _CPU_SAMPLE_S)
    if as_json:
        print_json(value)
    else:
        console.print(render_description(value))


@handles_errors
def monit(
    ctx: typer.Context,
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", min=1, help="Log lines to show; default: what fits.")
    ] = None,
) -> None:
    """The status table and the merged log tail on one live screen, like `pm2 monit`; Ctrl-C to quit."""
    home = state_of(ctx).settings.home
    running_state(home)
    collector = StatusCollector()
    if not console.is_terminal:
        # A pipe gets one screen's worth, once: a live screen there would be escape codes.
        console.print(_screen(home, collector, lines or 20))
        return
    try:
        with Live(_screen(home, collector, lines), console=console, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(_MONIT_INTERVAL_S)
                live.update(_screen(home, collector, lines), refresh=True)
    except KeyboardInterrupt:
        return


def _screen(home: Path, collector: StatusCollector, lines: int | None) -> RenderableType:
    state = read_state(home)
    if state is None or not is_running(state):
        return Text(f"no cluster is running from {home} (Ctrl-C to quit)", style="yellow")
    shown = lines or max(3, console.height - len(state.nodes) - len(state.transient) - _MONIT_CHROME_ROWS)
    tail = merged_tail(log_sources(home), shown)[-shown:]
    rows = [format_line(line) for line in tail]
    for row in rows:
        row.no_wrap, row.overflow = True, "ellipsis"
    logs = Group(*rows) if rows else Text("no log lines yet", style="dim")
    title = f"logs · last {shown} lines · Ctrl-C to quit"
    return Group(render_status(collector.collect(state)), Panel(logs, title=title, title_align="left"))
