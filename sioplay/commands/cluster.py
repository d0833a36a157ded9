"""`sioplay cluster`: the supervisor that replaces PM2."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from sioplay.cluster import control
from sioplay.cluster.control import Request
from sioplay.cluster.launcher import run_attached, running_state, start_detached, stop_cluster
from sioplay.cluster.logs import (
    SUPERVISOR,
    LogLine,
    configure_supervisor_logging,
    follow,
    format_line,
    log_sources,
    merged_tail,
    stamp,
)
from sioplay.cluster.status import StatusCollector, not_running, render_status
from sioplay.cluster.supervisor import MAX_NODES, Supervisor
from sioplay.commands._common import console, err_console, handles_errors, print_json, state_of
from sioplay.common.exposure import exposure_warning
from sioplay.common.state import ClusterState, is_running, private_home, read_state
from sioplay.common.units import count_of, parse_bytes
from sioplay.errors import ClusterError
from sioplay.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Start, watch and stop an N-node cluster on one port.", no_args_is_help=True)

# CPU % needs two readings; this is the pause between them for a one-off table.
_CPU_SAMPLE_S = 0.2
_WATCH_INTERVAL_S = 1.0
# Per node of a rolling restart or scale, beyond its start and stop timeouts.
_REQUEST_MARGIN_S = 10.0


@app.command("start")
@handles_errors
def start(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=MAX_NODES, help="How many node processes.")] = 4,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            help="The public port all nodes share; default: 5009 (or SIOPLAY_PUBLIC_PORT).",
            show_default=False,
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis URL; default: an embedded redis-server. One with a password is better in SIOPLAY_REDIS_URL: "
            "arguments are in the process list.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address the nodes listen on; default: 127.0.0.1 (this machine only)."),
    ] = None,
    db_url: Annotated[str | None, typer.Option("--db-url", help="SQLAlchemy URL of the user database.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Cluster name, namespaces Redis channels.")] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="This host's part of the cluster: its nodes are NAME/node-N; default: node-N."),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option("--max-memory", help="Restart a node gracefully above this RSS, e.g. 200MB (1024-based)."),
    ] = None,
    node_port_base: Annotated[
        int | None,
        typer.Option("--node-port-base", help="node-N listens on BASE+N-1 of its own; default: free ports."),
    ] = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", "-f", help="Stay attached with merged logs; Ctrl-C stops the cluster.")
    ] = False,
) -> None:
    """Start Redis, the database and N nodes on one public port; return once every node is healthy."""
    settings = state_of(ctx).settings.replace(
        public_port=port,
        host=host,
        redis_url=redis_url,
        db_url=db_url,
        cluster=cluster,
        name=name,
        max_memory_bytes=parse_bytes(max_memory) if max_memory else None,
        node_port_base=node_port_base,
    )
    settings.validate()
    warning = exposure_warning(settings.host)
    if warning is not None:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if foreground:
        _run_foreground(settings, nodes)
        return
    started = start_detached(settings, nodes)
    _print_status(started.state)
    console.print("logs: sioplay cluster logs -f · stop: sioplay cluster stop", highlight=False, soft_wrap=True)


@app.command("supervise", hidden=True)
@handles_errors
def supervise(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=MAX_NODES, help="How many node processes.")] = 4,
) -> None:
    """Run the supervisor in this process (what `start` runs detached)."""
    settings = state_of(ctx).settings
    _private_files(settings)
    configure_supervisor_logging(settings.home, settings.log_max_bytes, settings.log_backups)
    raise typer.Exit(asyncio.run(Supervisor(settings, nodes).run()))


def _run_foreground(settings: Settings, nodes: int) -> None:
    def print_line(node_id: str, line: str) -> None:
        console.print(format_line(LogLine(node_id, stamp(), line)), soft_wrap=True, highlight=False)

    _private_files(settings)
    configure_supervisor_logging(settings.home, settings.log_max_bytes, settings.log_backups, _ConsoleHandler())
    # No CPU sampling here: it would pause the supervisor's loop.
    supervisor = Supervisor(settings, nodes, on_line=print_line, on_running=lambda state: _print_status(state, 0.0))
    if run_attached(supervisor) != 0:
        raise ClusterError(supervisor.error or "the cluster failed")


def _private_files(settings: Settings) -> None:
    """Every file the supervisor, its Redis and its nodes make is their owner's only: the umask is inherited.

    One umask, early, covers what no single open() call can: the logs, the SQLite
    database and its -wal and -shm, the state and control files, the secrets.
    """
    os.umask(0o077)
    private_home(settings.home)


class _ConsoleHandler(logging.Handler):
    """The supervisor's own records in the merged view, as source `supervisor`."""

    def emit(self, record: logging.LogRecord) -> None:
        line = LogLine(SUPERVISOR, stamp(record.created), record.getMessage())
        console.print(format_line(line), soft_wrap=True, highlight=False)


@app.command("stop")
@handles_errors
def stop(ctx: typer.Context) -> None:
    """SIGTERM to every node (they drain), SIGKILL after the stop timeout, Redis last."""
    settings = state_of(ctx).settings
    stopped = stop_cluster(settings)
    if stopped.cleaned_up:
        pids = ", ".join(str(ref.pid) for ref in stopped.cleaned_up)
        console.print(
            f"stopped {len(stopped.cleaned_up)} process(es) left by a dead supervisor: {pids}", highlight=False
        )
    if stopped.was_running and stopped.state is not None:
        console.print(
            f"stopped cluster {stopped.state.cluster} ({count_of(len(stopped.state.nodes), 'node')})", highlight=False
        )
    elif not stopped.cleaned_up:
        console.print(f"no cluster is running from {settings.home}", highlight=False)


@app.command("status")
@handles_errors
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh the table live until Ctrl-C.")] = False,
) -> None:
    """Nodes, pids, ports, status, restarts, uptime, CPU, memory and sockets, like `pm2 list`."""
    home = state_of(ctx).settings.home
    collector = StatusCollector()
    if watch:
        _watch(home, collector)
        return
    state = read_state(home)
    if state is None or not is_running(state):
        _report_not_running(home, state, as_json)
        raise typer.Exit(1)
    if as_json:
        print_json(collector.collect(state, cpu_sample_s=_CPU_SAMPLE_S))
    else:
        console.print(render_status(collector.collect(state, cpu_sample_s=_CPU_SAMPLE_S)))


def _report_not_running(home: Path, state: ClusterState | None, as_json: bool) -> None:
    if as_json:
        print_json(not_running(home, state))
        return
    err_console.print(f"no cluster is running from {home}", highlight=False)
    if state is not None and state.error:
        err_console.print(Text(f"the last one failed: {state.error}", style="red"))


def _watch(home: Path, collector: StatusCollector) -> None:
    def view() -> RenderableType:
        state = read_state(home)
        if state is None or not is_running(state):
            return Text(f"no cluster is running from {home} (Ctrl-C to quit)", style="yellow")
        return render_status(collector.collect(state))

    try:
        with Live(view(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(_WATCH_INTERVAL_S)
                live.update(view(), refresh=True)
    except KeyboardInterrupt:
        return


@app.command("logs")
@handles_errors
def logs(
    ctx: typer.Context,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    node: Annotated[str | None, typer.Option("--node", help="Only this node, e.g. node-2.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines of each log to show first.")] = 15,
) -> None:
    """The nodes' logs merged in time order with node prefixes, like `pm2 logs --merge-logs`."""
    home = state_of(ctx).settings.home
    sources = log_sources(home, node)
    if not any(path.exists() for _, path in sources):
        raise ClusterError(f"no log of {node} in {home / 'logs'}" if node else f"no logs in {home / 'logs'}")
    for line in merged_tail(sources, lines):
        console.print(format_line(line), soft_wrap=True, highlight=False)
    if not follow_:
        return
    try:
        for line in follow(lambda: log_sources(home, node), should_stop=lambda: False):
            console.print(format_line(line), soft_wrap=True, highlight=False)
    except KeyboardInterrupt:
        return


@app.command("restart")
@handles_errors
def restart(
    ctx: typer.Context,
    node: Annotated[
        str | None, typer.Option("--node", help="Only this node, e.g. node-2; default: every node.")
    ] = None,
) -> None:
    """Rolling restart, one node at a time: the replacement is healthy before the old process stops."""
    settings = state_of(ctx).settings
    state = running_state(settings.home)
    if node is not None and state.node(node) is None:
        raise ClusterError(f"no node {node!r}; the nodes are {', '.join(record.id for record in state.nodes)}")
    count = 1 if node is not None else len(state.nodes)
    _ask(settings, state, Request("restart", node=node), count)


@app.command("scale")
@handles_errors
def scale(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Argument(min=1, max=MAX_NODES, help="The new number of nodes.")],
) -> None:
    """Add or remove nodes while the cluster runs (the highest-numbered go first)."""
    settings = state_of(ctx).settings
    state = running_state(settings.home)
    _ask(settings, state, Request("scale", nodes=nodes), max(nodes - len(state.nodes), 1))


def _ask(settings: Settings, state: ClusterState, request: Request, nodes: int) -> None:
    per_node = settings.start_timeout_s + settings.stop_timeout_s + _REQUEST_MARGIN_S
    reply = control.ask(settings.home, state, request, timeout=per_node * nodes)
    if not reply.ok:
        raise ClusterError(reply.message)
    console.print(reply.message, highlight=False)
    _print_status(running_state(settings.home))


def _print_status(state: ClusterState, cpu_sample_s: float = _CPU_SAMPLE_S) -> None:
    console.print(render_status(StatusCollector().collect(state, cpu_sample_s=cpu_sample_s)))
