"""The `sioplay` command: one Typer app, one sub-app per area."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from sioplay import __version__
from sioplay.commands import bench, cluster, db, node
from sioplay.commands import client as client_commands
from sioplay.commands import token as token_command
from sioplay.commands._common import handles_errors
from sioplay.commands.root_options import (
    ClusterOption,
    ConfigOption,
    DbUrlOption,
    HomeOption,
    RedisUrlOption,
    RootGroup,
    VerboseOption,
    build_state,
)
from sioplay.log import configure_cli_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="sioplay",
    cls=RootGroup,
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
    home: HomeOption = None,
    config: ConfigOption = None,
    db_url: DbUrlOption = None,
    redis_url: RedisUrlOption = None,
    cluster_name: ClusterOption = None,
    verbose: VerboseOption = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Identity-aware room membership across a multi-node Socket.IO cluster.

    The global options may also follow the command: `sioplay cluster start --home X`.
    """
    configure_cli_logging(verbose)
    given = {"home": home, "db_url": db_url, "redis_url": redis_url, "cluster": cluster_name}
    ctx.obj = build_state({key: value for key, value in given.items() if value is not None}, config, verbose)


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
