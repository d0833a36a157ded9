"""`sioplay join | who | rename | swarm`: simulated clients and roster views."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the client commands to the top-level app."""
