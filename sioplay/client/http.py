"""A small JSON client for a node's HTTP routes; every failure becomes one ClientError line."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from sioplay.client.credentials import Credentials
from sioplay.client.target import DEFAULT_TIMEOUT_S
from sioplay.errors import ClientError

__all__ = ["DEFAULT_TIMEOUT_S", "Api", "open_api"]


NOT_RUNNING_HINT = (
    "is a cluster running? start one with 'sioplay cluster start', give its state directory with --home, or give --url"
)


class Api:
    """GET/PUT JSON against one base URL, on the caller's aiohttp session."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        credentials: Credentials | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout_s = timeout_s
        self.credentials = credentials
        # What the session verifies https with; raw websockets (swarm members) take it too.
        self.ssl_context = ssl_context

    def at(self, url: str) -> Api:
        """The same client (session, timeout, credentials, TLS) aimed at another base URL."""
        return Api(url, self.session, self.timeout_s, self.credentials, self.ssl_context)

    async def token_for(self, id_user: str) -> str | None:
        """The token to act as `id_user` (`--auth token` clusters), or None."""
        return None if self.credentials is None else await self.credentials.for_user(self, id_user)

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/healthz")

    async def roster(self, room: str) -> dict[str, Any]:
        return await self._request("GET", f"/rooms/{quote(room, safe='')}")

    async def user(self, id_user: str) -> dict[str, Any] | None:
        """The user, or None when there is no such user."""
        try:
            return await self._request("GET", f"/users/{quote(id_user, safe='')}")
        except _NotFound:
            return None

    async def rename(self, id_user: str, name: str) -> None:
        """PUT the name; a cluster that wants a token says so with a 401, and gets one on the second try."""
        path, body = f"/users/{quote(id_user, safe='')}", {"name": name}
        explicit = self.credentials.token if self.credentials is not None else None
        try:
            await self._request("PUT", path, body, _bearer(explicit))
            return
        except _Unauthorized:
            if explicit is not None or self.credentials is None:
                raise
        await self._request("PUT", path, body, _bearer(await self.token_for(id_user)))

    async def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        url = self.url + path
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        with _mapped(method, url, self.timeout_s):
            async with self.session.request(
                method,
                url,
                data=None if body is None else orjson.dumps(body),
                headers=sent or None,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise _http_error(method, path, response.status, raw)
                return orjson.loads(raw) if raw else None


class _NotFound(ClientError):
    """The resource does not exist (HTTP 404)."""


class _Unauthorized(ClientError):
    """The route wants a token (HTTP 401)."""


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http_error(method: str, path: str, status: int, raw: bytes) -> ClientError:
    try:
        message = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    if not isinstance(message, str):
        message = raw[:200].decode(errors="replace").strip() or "no message"
    error = {404: _NotFound, 401: _Unauthorized}.get(status, ClientError)
    return error(f"{message} ({method} {path}: HTTP {status})")


@contextlib.contextmanager
def _mapped(method: str, url: str, timeout_s: float) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ClientError(
            f"cannot reach {url}: its certificate is not trusted ({exc.certificate_error.verify_message}); "
            "give --ca FILE with the CA that signed it"
        ) from exc
    except aiohttp.ClientConnectorSSLError as exc:
        raise ClientError(f"cannot reach {url}: TLS failed ({exc.os_error}); is it serving HTTPS?") from exc
    except aiohttp.ClientConnectorError as exc:
        raise ClientError(f"cannot reach {url}: {exc.os_error.strerror or exc}; {NOT_RUNNING_HINT}") from exc
    except TimeoutError as exc:
        raise ClientError(f"{method} {url}: no answer within {timeout_s:g} s") from exc
    except orjson.JSONDecodeError as exc:
        raise ClientError(f"{method} {url}: the answer is not JSON") from exc
    except aiohttp.ServerDisconnectedError as exc:
        hint = "; if it serves HTTPS, use https://" if url.startswith("http://") else ""
        raise ClientError(f"{method} {url}: {exc}{hint}") from exc
    except aiohttp.ClientError as exc:
        raise ClientError(f"{method} {url}: {exc}") from exc


@contextlib.asynccontextmanager
async def open_api(
    url: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    credentials: Credentials | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Api]:
    """An Api with a session of its own, closed on exit.

    The session carries one command's HTTP calls and the websockets of its
    python-socketio clients (join, rename --room, the who --watch observer): a
    handful of connections. Swarm members do not use it: each is a WireClient
    on a raw connection of its own.
    """
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(url, session, timeout_s, credentials, ssl_context)
