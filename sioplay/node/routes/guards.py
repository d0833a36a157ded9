"""What every request passes before its route: the access log of writes, the Host check and a UTF-8 path.

- ``write_log``: every ``PUT /users/{id_user}`` is one INFO line with the remote
  address, the user and the status it got, whatever refused it (never the body).
- ``host_check``: a request whose ``Host`` is not a name of this node is answered
  421. A page from a name that an attacker's DNS turns into 127.0.0.1 (DNS
  rebinding) is same-origin with itself, so the browser lets it read and write
  here; its requests still carry the attacker's name in ``Host``, and stop here.
  Allowed: the loopback names, the address the node is bound to (not the
  machine's addresses when it is bound to all of them) and ``allowed_hosts``.
  A request without ``Host`` (HTTP/1.0) names no host to be rebound and passes.
- ``utf8_path``: aiohttp decodes the percent-escapes of a path once, and leaves
  an escape that is not UTF-8 as it was, so ``/rooms/%ff%fe`` would be the room
  named ``%ff%fe``; here such a path is refused with 400.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from sioplay.errors import ValidationError
from sioplay.node.routes.responses import Handler, error_response

__all__ = ["WRITE_ROUTE", "HostNames", "host_check", "utf8_path", "write_log"]

log = logging.getLogger(__name__)

# The name of the route `write_log` logs.
WRITE_ROUTE = "put_user"
LOOPBACK_NAMES = ("localhost", "*.localhost", "127.0.0.1", "::1")
# Bound to these, a node listens on every address of the machine, which it does not enumerate.
ANY_ADDRESS = ("", "0.0.0.0", "::")
# Host values remembered with their verdict; a stranger sending many different ones only empties it.
_MAX_JUDGED = 256


class HostNames:
    """The names a request's Host may carry: exact names, and `*.suffix` patterns for subdomains."""

    def __init__(self, names: Iterable[str]) -> None:
        self.any = False
        self._judged: dict[str, bool] = {}
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for raw in names:
            name = _canonical(raw)
            if name == "*":
                self.any = True
            elif name.startswith("*."):
                self.suffixes.append(name[1:])
            else:
                self.exact.add(name)

    @classmethod
    def for_node(cls, bound_host: str, allowed_hosts: Iterable[str]) -> HostNames:
        bound = () if bound_host in ANY_ADDRESS else (bound_host,)
        return cls((*LOOPBACK_NAMES, *bound, *allowed_hosts))

    def allows(self, host_header: str) -> bool:
        if self.any:
            return True
        # Every request asks, with one of a few Host values: each is judged once.
        known = self._judged.get(host_header)
        if known is None:
            name = _canonical(_without_port(host_header))
            known = name in self.exact or any(name.endswith(suffix) for suffix in self.suffixes)
            if len(self._judged) >= _MAX_JUDGED:
                self._judged.clear()
            self._judged[host_header] = known
        return known


def _without_port(host: str) -> str:
    """`host` without its `:port`; an IPv6 literal is in brackets when it has a port."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _canonical(name: str) -> str:
    """Lower case, no trailing dot, IPv6 without brackets and in its short form."""
    name = name.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return name
    return name


def host_check(names: HostNames) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if host is not None and not names.allows(host):
            return error_response(
                421,
                f"Host {host[:100]!r} is not a name of this node: "
                "use localhost, or add the name to SIOPLAY_ALLOWED_HOSTS",
            )
        return await handler(request)

    return check


@web.middleware
async def utf8_path(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw_path = request.rel_url.raw_path
    try:
        if "%" in raw_path:
            unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeError:
        raise ValidationError("the path is not valid UTF-8 once its %-escapes are decoded") from None
    return await handler(request)


@web.middleware
async def write_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name != WRITE_ROUTE:
        return await handler(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # %r: the id comes from the path, and a line of the log must stay one line.
        log.info("PUT /users/%r from %s: %d", request.match_info.get("id_user"), request.remote, status)
