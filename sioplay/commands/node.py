"""`sioplay node`: run one node in the foreground."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from sioplay.commands._common import handles_errors, state_of
from sioplay.log import configure_node_logging

__all__ = ["app"]

app = typer.Typer(help="Run a single Socket.IO node.", no_args_is_help=True)


@app.command("run")
@handles_errors
def run(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="This node's own port.")] = 5009,
    node_id: Annotated[
        str, typer.Option("--node-id", help="Name of this node in logs, handshakes and rosters.")
    ] = "node-1",
    public_port: Annotated[
        int | None,
        typer.Option("--public-port", min=1, max=65535, help="A port shared with the other nodes (SO_REUSEPORT)."),
    ] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Redis URL of the cluster.")] = None,
    db_url: Annotated[str | None, typer.Option("--db-url", help="SQLAlchemy URL of the user database.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Cluster name.")] = None,
) -> None:
    """Run one node in the foreground until SIGTERM or Ctrl-C; logs go to stderr."""
    from sioplay.node.app import run_node

    settings = state_of(ctx).settings.replace(redis_url=redis_url, db_url=db_url, cluster=cluster)
    settings.validate()
    configure_node_logging(node_id, settings.log_level)
    asyncio.run(run_node(settings, node_id=node_id, port=port, public_port=public_port))
