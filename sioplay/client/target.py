"""Which URL a client command talks to: --url, one node's own port, or the running cluster."""

from __future__ import annotations

from pathlib import Path

from sioplay.common.hints import command_hint
from sioplay.common.state import ClusterState, is_running, read_state, state_path
from sioplay.common.urls import local_url
from sioplay.errors import ClientError, ClusterError

__all__ = ["DEFAULT_TIMEOUT_S", "DEFAULT_URL", "normalize_url", "resolve_url"]

DEFAULT_URL = "http://localhost:5009"
# Of an HTTP request or a handshake, for the client commands.
DEFAULT_TIMEOUT_S = 10.0


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
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


def resolve_url(home: Path, url: str | None = None, node: str | None = None) -> str:
    """The base URL to use: --url, else --node's own port, else the running cluster, else DEFAULT_URL."""
    if url is not None and node is not None:
        raise ClientError("give --url or --node, not both")
    if url is not None:
        return normalize_url(url)
    state = _running_state(home)
    if state is None:
        if node is None:
            return DEFAULT_URL
        raise ClientError(
            f"--node {node}: no running cluster in {home} ({state_path(home)} is missing or stale); "
            f"start one with '{command_hint(home, 'sioplay cluster start')}' or give --url"
        )
    if node is None:
        return local_url(state.host, state.public_port)
    record = state.node(node)
    if record is not None and record.port is not None:
        return local_url(state.host, record.port)
    known = ", ".join(entry.id for entry in state.nodes) or "none"
    raise ClientError(f"no node {node!r} in the running cluster (nodes: {known})")
