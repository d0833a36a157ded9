"""Whether the nodes listen beyond this machine, and the warning that says what that exposes."""

from __future__ import annotations

import ipaddress

__all__ = ["exposure_warning", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; every other address or name may be reached from elsewhere."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth: str = "none") -> str | None:
    """What listening on `host` exposes, or None on loopback or when tokens prove who clients are."""
    if is_loopback(host) or auth == "token":
        return None
    return (
        f"listening on {host or 'every address'}, beyond this machine's loopback, without authentication: "
        "anyone who reaches these ports can join any room as any user and rename anyone. "
        "'--host 127.0.0.1' keeps the cluster local, '--auth token' makes clients prove who they are."
    )
