"""Which URL a client command talks to (--url, one node's own port, or the running cluster), and what TLS it trusts."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

from sioplay.common.hints import command_hint
from sioplay.common.state import ClusterState, is_running, read_state, state_path
from sioplay.common.tls import client_context
from sioplay.common.urls import local_url, scheme
from sioplay.errors import ClientError, ClusterError
from sioplay.settings import Settings

__all__ = ["DEFAULT_TIMEOUT_S", "DEFAULT_URL", "Target", "normalize_url", "resolve_target", "resolve_url"]

DEFAULT_URL = "http://localhost:5009"
# Of an HTTP request or a handshake, for the client commands.
DEFAULT_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A base URL and, for https, the context its certificate is verified with."""

    url: str
    ssl: ssl.SSLContext | None = None


def resolve_target(settings: Settings, url: str | None = None, node: str | None = None) -> Target:
    """`resolve_url`, trusting --ca, else the running cluster's own certificate, else the system and the dev CA."""
    base = resolve_url(settings.home, url, node, tls=settings.tls_enabled)
    if not base.startswith("https://"):
        return Target(base)
    state = _running_state(settings.home) if url is None else None
    served = Path(state.tls_cert) if state is not None and state.tls_cert else None
    return Target(base, client_context(settings, served))


def normalize_url(url: str, tls: bool = False) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"{scheme(tls)}://{url}"
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"--url must be an http:// or https:// URL, not {url!r}")
    return url


def _running_state(home: Path) -> ClusterState | None:
    """The state of the cluster running from `home`; None if none runs or its state file cannot be read.

    An unreadable state file is no running cluster to a client: it falls back to the
    default URL, and leaves the repair to 'sioplay cluster' commands.
    """
    try:
        state = read_state(home)
    except ClusterError:
        return None
    return state if state is not None and is_running(state) else None


def resolve_url(home: Path, url: str | None = None, node: str | None = None, tls: bool = False) -> str:
    """The base URL to use: --url, else --node's own port, else the running cluster, else DEFAULT_URL.

    `tls` (the settings') picks https for a --url without a scheme and for the default.
    """
    if url is not None and node is not None:
        raise ClientError("give --url or --node, not both")
    if url is not None:
        return normalize_url(url, tls)
    state = _running_state(home)
    if state is None:
        if node is None:
            return DEFAULT_URL.replace("http://", f"{scheme(tls)}://", 1)
        raise ClientError(
            f"--node {node}: no running cluster in {home} ({state_path(home)} is missing or stale); "
            f"start one with '{command_hint(home, 'sioplay cluster start')}' or give --url"
        )
    if node is None:
        return local_url(state.host, state.public_port, tls=state.tls_cert is not None)
    record = state.node(node)
    if record is not None and record.port is not None:
        return local_url(state.host, record.port, tls=state.tls_cert is not None)
    known = ", ".join(entry.id for entry in state.nodes) or "none"
    raise ClientError(f"no node {node!r} in the running cluster (nodes: {known})")
