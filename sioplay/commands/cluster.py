"""`sioplay cluster`: the supervisor that replaces PM2."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Start, watch and stop an N-node cluster on one port.", no_args_is_help=True)
