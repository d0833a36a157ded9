"""The `--auth` options of `cluster start` and `node run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["AuthOption", "AuthPublicKeyOption"]

AuthOption = Annotated[
    str | None,
    typer.Option("--auth", help="none: trust the id_user a client sends (default); token: a signed JWT proves it."),
]
AuthPublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--auth-public-key",
        help="PEM public key (RSA or EC P-256) tokens are checked with; default: HS256 with the cluster's secret.",
    ),
]
