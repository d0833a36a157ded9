"""`sioplay cluster`: the supervisor that replaces PM2."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from sioplay.cluster import progress
from sioplay.cluster.launcher import adoptable_nodes, run_attached, running_state, start_detached, stop_cluster
from sioplay.cluster.logs import (
    SUPERVISOR,
    LogLine,
    configure_supervisor_logging,
    format_line,
    stamp,
)
from sioplay.cluster.node_count import MAX_NODES, scale_target
from sioplay.cluster.recovery import (
    ORPHANS_EXIT_CODE,
    Orphan,
    current_state,
    left_running,
    lock_orphans,
    orphans_message,
)
from sioplay.cluster.status import StatusCollector, not_running, render_status
from sioplay.commands import monit
from sioplay.commands._auth import AuthOption, AuthPublicKeyOption
from sioplay.commands._common import console, err_console, handles_errors, print_json, state_of
from sioplay.commands._roster import RosterOption
from sioplay.commands._tls import TlsCertOption, TlsKeyOption, TlsOption, prepare_server_tls
from sioplay.commands.logs_view import LogsRequest, show_logs
from sioplay.common.exposure import exposure_warning
from sioplay.common.hints import command_hint
from sioplay.common.pids import ProcessRef
from sioplay.common.state import ClusterState, is_running, private_home, read_state
from sioplay.common.units import count_of, parse_bytes
from sioplay.errors import ClusterError
from sioplay.settings import Settings

if TYPE_CHECKING:
    from sioplay.cluster import control

__all__ = ["app"]

app = typer.Typer(help="Start, watch and stop an N-node cluster on one port.", no_args_is_help=True)
monit.register(app)

# CPU % needs two readings; this is the pause between them for a one-off table.
_CPU_SAMPLE_S = 0.2
_WATCH_INTERVAL_S = 1.0
# A live supervisor rewrites a corrupt or removed state.json on its next tick.
_STATE_REWRITE_WAIT_S = 3.0
# Per node of a rolling restart or scale, beyond its start and stop timeouts.
_REQUEST_MARGIN_S = 10.0
_DEFAULT_NODES = 4


@app.command("start")
@handles_errors
def start(
    ctx: typer.Context,
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            "-n",
            min=1,
            max=MAX_NODES,
            help="How many node processes; default: `nodes` of the config file, else 4.",
            show_default=False,
        ),
    ] = None,
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
    auth: AuthOption = None,
    auth_public_key: AuthPublicKeyOption = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", "-f", help="Stay attached with merged logs; Ctrl-C stops the cluster.")
    ] = False,
    node: Annotated[
        str | None, typer.Option("--node", help="Start only this node of the running cluster, stopped with --node.")
    ] = None,
    roster: RosterOption = None,
    tls: TlsOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Start Redis, the database and N nodes on one public port; return once every node is healthy."""
    if node is not None:
        _node_request(ctx, "start", node)
        return
    settings = state_of(ctx).settings.replace(
        public_port=port,
        host=host,
        redis_url=redis_url,
        db_url=db_url,
        cluster=cluster,
        name=name,
        max_memory_bytes=parse_bytes(max_memory) if max_memory else None,
        node_port_base=node_port_base,
        auth=auth,
        auth_public_key=auth_public_key.resolve() if auth_public_key else None,
        roster_mode=roster,
        tls=tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    settings.validate()
    nodes = nodes or state_of(ctx).nodes or adoptable_nodes(settings.home) or _DEFAULT_NODES
    prepare_server_tls(settings, console)
    warning = exposure_warning(settings.host, settings.auth)
    if warning is not None:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if foreground:
        _run_foreground(settings, nodes)
        return
    with progress.shown(settings.home, console, f"starting {count_of(nodes, 'node')}"):
        started = start_detached(settings, nodes)
    if started.adopted:
        listed = ", ".join(f"{orphan.role} (pid {orphan.ref.pid})" for orphan in started.adopted)
        console.print(
            Text(f"adopted what the dead supervisor left running, without a restart: {listed}"),
            highlight=False,
            soft_wrap=True,
        )
    _print_status(started.state)
    logs, stop_ = (command_hint(settings.home, f"sioplay cluster {word}") for word in ("logs -f", "stop"))
    console.print(Text(f"logs: {logs} · stop: {stop_}"), highlight=False, soft_wrap=True)


@app.command("supervise", hidden=True)
@handles_errors
def supervise(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=MAX_NODES, help="How many node processes.")] = 4,
) -> None:
    """Run the supervisor in this process (what `start` runs detached)."""
    from sioplay.cluster.supervisor import Supervisor

    settings = state_of(ctx).settings
    _private_files(settings)
    configure_supervisor_logging(settings.home, settings.log_max_bytes, settings.log_backups)
    raise typer.Exit(asyncio.run(Supervisor(settings, nodes).run()))


def _run_foreground(settings: Settings, nodes: int) -> None:
    from sioplay.cluster.supervisor import Supervisor

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
def stop(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Stop only this node and keep it down (until 'cluster start --node')."),
    ] = None,
) -> None:
    """SIGTERM to every node (they drain), SIGKILL after the stop timeout, Redis last."""
    if node is not None:
        _node_request(ctx, "stop", node)
        return
    settings = state_of(ctx).settings
    with progress.shown(settings.home, console, "stopping"):
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
    try:
        state = current_state(home, wait_s=_STATE_REWRITE_WAIT_S)
    except ClusterError:
        if lock_orphans(home) is None:
            raise
        state = None  # unreadable, and its supervisor dead: the lock file names what it left running
    if state is None or not is_running(state):
        left = left_running(home, state)
        if left is not None:
            _report_orphans(home, state, as_json, *left)
            raise typer.Exit(ORPHANS_EXIT_CODE)
        _report_not_running(home, state, as_json)
        raise typer.Exit(1)
    if as_json:
        print_json(collector.collect(state, cpu_sample_s=_CPU_SAMPLE_S))
    else:
        console.print(render_status(collector.collect(state, cpu_sample_s=_CPU_SAMPLE_S)))


def _report_orphans(
    home: Path, state: ClusterState | None, as_json: bool, supervisor: ProcessRef, left: list[Orphan]
) -> None:
    if as_json:
        print_json(
            {**not_running(home, state), "orphans": [{"role": item.role, **item.ref.as_json()} for item in left]}
        )
    else:
        err_console.print(orphans_message(home, supervisor, left), highlight=False, soft_wrap=True)


def _report_not_running(home: Path, state: ClusterState | None, as_json: bool) -> None:
    if as_json:
        print_json({**not_running(home, state), "orphans": []})
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
    action: Annotated[str | None, typer.Argument(help="'flush' empties the log files (like `pm2 flush`).")] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    node: Annotated[str | None, typer.Option("--node", help="Only this node, e.g. node-2; 'redis': Redis's.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines of each log to show first.")] = 15,
    level: Annotated[str | None, typer.Option("--level", help="Only lines at this level or above.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    all_nodes: Annotated[bool, typer.Option("--all", help="Also the logs of nodes scaled away.")] = False,
) -> None:
    """The nodes' logs merged in time order with node prefixes, like `pm2 logs --merge-logs`."""
    home = state_of(ctx).settings.home
    show_logs(LogsRequest(home, action, node, lines, follow_, level, as_json, all_nodes))


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
    if node is not None:
        from sioplay.cluster.describe import resolve_node

        node = resolve_node(state, node)
    count = 1 if node is not None else len(state.nodes)
    from sioplay.cluster.control import Request

    _ask(settings, state, Request("restart", node=node), count)


@app.command("scale", context_settings={"ignore_unknown_options": True})
@handles_errors
def scale(
    ctx: typer.Context,
    nodes: Annotated[
        str,
        typer.Argument(
            metavar="NODES", help="N nodes, +N more or -N fewer (as `pm2 scale`), e.g. 6, +2, -1.", show_default=False
        ),
    ],
) -> None:
    """Set the number of NODES while the cluster runs; added nodes are healthy before it returns, highest go first."""
    settings = state_of(ctx).settings
    state = running_state(settings.home)
    target = scale_target(nodes, len(state.nodes))
    if target == len(state.nodes):
        console.print(f"already {count_of(target, 'node')}", highlight=False)
        return
    from sioplay.cluster.control import Request

    _ask(settings, state, Request("scale", nodes=target), max(target - len(state.nodes), 1))


def _node_request(ctx: typer.Context, action: control.Action, node: str) -> None:
    from sioplay.cluster.control import Request
    from sioplay.cluster.describe import resolve_node

    settings = state_of(ctx).settings
    state = running_state(settings.home)
    _ask(settings, state, Request(action, node=resolve_node(state, node)), 1)


def _ask(settings: Settings, state: ClusterState, request: control.Request, nodes: int) -> None:
    from sioplay.cluster import control

    per_node = settings.start_timeout_s + settings.stop_timeout_s + _REQUEST_MARGIN_S
    with progress.shown(settings.home, console, f"{request.action} {request.node or 'every node'}"):
        reply = control.ask(settings.home, state, request, timeout=per_node * nodes)
    if not reply.ok:
        raise ClusterError(reply.message)
    console.print(reply.message, highlight=False)
    _print_status(running_state(settings.home))


def _print_status(state: ClusterState, cpu_sample_s: float = _CPU_SAMPLE_S) -> None:
    console.print(render_status(StatusCollector().collect(state, cpu_sample_s=cpu_sample_s)))
