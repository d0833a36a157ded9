"""Where to reach a node or the cluster from this machine."""

from __future__ import annotations

__all__ = ["local_url", "scheme", "ui_url"]

# A node bound to every address is reached on loopback.
_ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def scheme(tls: bool) -> str:
    return "https" if tls else "http"


def local_url(host: str, port: int, tls: bool = False) -> str:
    address = _ANY.get(host, host)
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme(tls)}://{address}:{port}"


def ui_url(public_port: int, room: str = "Maths", id_user: str = "1", tls: bool = False) -> str:
    return f"{scheme(tls)}://localhost:{public_port}/ui/{room}?id_user={id_user}"
