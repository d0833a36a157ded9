"""The TLS options of `cluster start`, `node run` and the client commands, and the check before serving."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sioplay.common.tls import server_context
from sioplay.settings import Settings

__all__ = ["CaOption", "TlsCertOption", "TlsKeyOption", "TlsOption", "prepare_server_tls"]

TlsOption = Annotated[
    str | None,
    typer.Option(
        "--tls",
        help="'dev': serve HTTPS/WSS with a development certificate for localhost, made once in the state directory.",
        show_default=False,
    ),
]
TlsCertOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert", help="Serve HTTPS/WSS with this PEM certificate (chain); needs --tls-key.", show_default=False
    ),
]
TlsKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-key", help="The certificate's PEM private key, unencrypted, not readable by others.", show_default=False
    ),
]
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        help="Trust this CA (PEM) for HTTPS; default: the system's and the state directory's dev CA.",
        show_default=False,
    ),
]


def prepare_server_tls(settings: Settings, shown_on: Console | None) -> None:
    """Make the dev certificate if asked and none exists, and check the served files: one ConfigError if wrong.

    With `shown_on`, say which certificate is served and, when the dev CA is new, how to trust it.
    """
    if settings.tls == "dev":
        from sioplay.cluster.dev_ca import ensure_dev_certificate, trust_hint

        dev = ensure_dev_certificate(settings.home)
        if shown_on is not None:
            made = "made now" if dev.created else "reused"
            shown_on.print(
                f"TLS: development certificate for localhost, 127.0.0.1 and ::1 ({made}: {escape(str(dev.cert))})",
                highlight=False,
                soft_wrap=True,
            )
            lines = trust_hint(dev.ca, settings.public_port) if dev.created else [f"trust its CA {dev.ca}"]
            for line in lines:
                shown_on.print(escape(line), highlight=False, soft_wrap=True)
    server_context(settings)
