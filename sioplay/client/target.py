"""Which URL a client command talks to: --url, one node's own port, or the running cluster.

The supervisor's state file is read here directly, tolerant of missing keys, so
that the client commands do not depend on the supervisor's own code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from sioplay.errors import ClientError

__all__ = ["DEFAULT_URL", "cluster_running", "normalize_url", "read_cluster_state", "resolve_url", "state_path"]

DEFAULT_URL = "http://localhost:5009"
# A node bound to every address is dialled on loopback.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
_LIVE_PHASES = {"starting", "running", "stopping"}


def state_path(home: Path) -> Path:
    return home / "cluster" / "state.json"


def read_cluster_state(home: Path) -> dict[str, Any] | None:
    """The supervisor's state, or None when there is none or it cannot be read."""
    try:
        state = json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def cluster_running(state: dict[str, Any]) -> bool:
    """True while the supervisor that wrote `state` runs and has not finished.

    Same pid and same start time: a pid reused by another process does not count.
    """
    if state.get("phase", "running") not in _LIVE_PHASES:
        return False
    supervisor = state.get("supervisor")
    if not isinstance(supervisor, dict):
        return False
    pid, created = supervisor.get("pid"), supervisor.get("create_time")
    if not isinstance(pid, int) or not isinstance(created, int | float):
        return False
    try:
        process = psutil.Process(pid)
        return process.is_running() and abs(process.create_time() - created) < 1.0
    except psutil.Error:
        return False


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"--url must be an http:// or https:// URL, not {url!r}")
    return url


def _url(state: dict[str, Any], port: int) -> str:
    host = state.get("host")
    address = _LOOPBACK.get(host, host) if isinstance(host, str) else "127.0.0.1"
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def resolve_url(home: Path, url: str | None = None, node: str | None = None) -> str:
    """The base URL to use: --url, else --node's own port, else the running cluster, else DEFAULT_URL."""
    if url is not None and node is not None:
        raise ClientError("give --url or --node, not both")
    if url is not None:
        return normalize_url(url)
    state = read_cluster_state(home)
    if state is None or not cluster_running(state):
        if node is None:
            return DEFAULT_URL
        raise ClientError(
            f"--node {node}: no running cluster in {home} ({state_path(home)} is missing or stale); "
            "start one with 'sioplay cluster start' or give --url"
        )
    if node is None:
        public_port = state.get("public_port")
        return _url(state, public_port) if isinstance(public_port, int) else DEFAULT_URL
    nodes = [entry for entry in state.get("nodes") or [] if isinstance(entry, dict)]
    for entry in nodes:
        if entry.get("id") == node and isinstance(entry.get("port"), int):
            return _url(state, entry["port"])
    known = ", ".join(str(entry.get("id")) for entry in nodes) or "none"
    raise ClientError(f"no node {node!r} in the running cluster (nodes: {known})")
