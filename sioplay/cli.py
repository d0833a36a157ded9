"""The `sioplay` command: one Typer app, one sub-app per area."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from sioplay import __version__
from sioplay.commands import bench, cluster, db, node
from sioplay.commands import client as client_commands
from sioplay.commands import token as token_command
from sioplay.commands._common import CliState, handles_errors
from sioplay.log import configure_cli_logging
from sioplay.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="sioplay",
    help="Identity-aware room membership across a multi-node Socket.IO cluster.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")
app.add_typer(node.app, name="node")
app.add_typer(cluster.app, name="cluster")
app.add_typer(bench.app, name="bench")
client_commands.register(app)
token_command.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sioplay {__version__}")
        raise typer.Exit()


@app.callback()
@handles_errors
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="State directory (database, pids, logs). \\[env: SIOPLAY_HOME]", show_default=False
        ),
    ] = None,
    db_url: Annotated[
        str | None, typer.Option("--db-url", help="SQLAlchemy URL of the user database. \\[env: SIOPLAY_DB_URL]")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option("--redis-url", help="Redis URL; default: the embedded Redis. \\[env: SIOPLAY_REDIS_URL]"),
    ] = None,
    cluster_name: Annotated[
        str | None, typer.Option("--cluster", help="Cluster name, namespaces Redis channels. \\[env: SIOPLAY_CLUSTER]")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    configure_cli_logging(verbose)
    settings = Settings.from_env(home=home, db_url=db_url, redis_url=redis_url, cluster=cluster_name)
    ctx.obj = CliState(settings=settings, verbose=verbose)


def _stop_like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    # Whatever Ctrl-C would do now: asyncio.run's handler cancels the main task so that it can clean up.
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    if callable(on_ctrl_c):
        on_ctrl_c(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main() -> None:
    # `kill`, `timeout` and service managers send SIGTERM: a command then ends as on Ctrl-C,
    # leaving its room and restoring the terminal. Nodes and the supervisor install their own handlers.
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    app()
