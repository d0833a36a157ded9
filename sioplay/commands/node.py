"""`sioplay node`: run one node in the foreground."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from sioplay.commands._auth import AuthOption, AuthPublicKeyOption
from sioplay.commands._common import handles_errors, state_of
from sioplay.commands._roster import RosterOption
from sioplay.commands._tls import TlsCertOption, TlsKeyOption, TlsOption, prepare_server_tls
from sioplay.common.exposure import exposure_warning
from sioplay.common.state import private_home
from sioplay.log import configure_node_logging

__all__ = ["app"]

log = logging.getLogger(__name__)

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
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Redis URL of the cluster; one with a password is better in SIOPLAY_REDIS_URL (the process list).",
        ),
    ] = None,
    db_url: Annotated[str | None, typer.Option("--db-url", help="SQLAlchemy URL of the user database.")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Cluster name.")] = None,
    auth: AuthOption = None,
    auth_public_key: AuthPublicKeyOption = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on; default: 127.0.0.1 (this machine only)."),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option("--log-file", help="Log here (rotated by log_max_bytes, log_backups) instead of stderr."),
    ] = None,
    roster: RosterOption = None,
    tls: TlsOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Run one node in the foreground until SIGTERM or Ctrl-C; logs go to stderr, or to --log-file."""
    from sioplay.node.app import run_node

    settings = state_of(ctx).settings.replace(
        redis_url=redis_url,
        db_url=db_url,
        cluster=cluster,
        host=host,
        auth=auth,
        auth_public_key=auth_public_key,
        roster_mode=roster,
        tls=tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    settings.validate()
    # What this node makes (the SQLite database, its -wal and -shm, the cluster secret) is its owner's only.
    os.umask(0o077)
    private_home(settings.home)
    prepare_server_tls(settings, None)
    configure_node_logging(node_id, settings.log_level, log_file, settings.log_max_bytes, settings.log_backups)
    warning = exposure_warning(settings.host, settings.auth)
    if warning is not None:
        log.warning("%s", warning)
    asyncio.run(run_node(settings, node_id=node_id, port=port, public_port=public_port))
