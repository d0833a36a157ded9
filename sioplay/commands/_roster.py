"""The `--roster` option of `cluster start` and `node run`."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["RosterOption"]

RosterOption = Annotated[
    str | None,
    typer.Option(
        "--roster",
        help="ask: every roster query asks the other nodes (default); replica: each node keeps the others' parts "
        "from their join/leave deltas and answers from memory while every part is current.",
    ),
]
