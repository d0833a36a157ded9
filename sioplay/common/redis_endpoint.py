"""Where a Redis URL points, parsed honestly, and one blocking command for the supervisor's checks.

Every part of the URL is either used or refused: the user and password go
into AUTH, the database number into SELECT, and the ``rediss://`` options
(``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``) into
the TLS context; an option this module does not know is an error naming it,
never silently dropped. Redis pub/sub channels are shared by every database
number of a server, so it is the cluster name (``--cluster``), not the
number, that keeps two clusters on one Redis apart.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import hiredis

from sioplay.errors import ConfigError, RedisError

__all__ = ["RedisEndpoint", "encode_command"]

_TLS_OPTIONS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def encode_command(*parts: bytes | str) -> bytes:
    """One command in RESP: an array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


@dataclasses.dataclass(frozen=True, slots=True)
class RedisEndpoint:
    host: str = "127.0.0.1"
    port: int = 6379
    # A unix socket path, for unix:// URLs; host and port are then unused.
    path: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"

    @classmethod
    def from_url(cls, url: str) -> RedisEndpoint:
        """The endpoint of a redis://, rediss:// or unix:// URL; ConfigError naming what is wrong."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"not a Redis URL: {exc}") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"a Redis URL starts with redis://, rediss:// or unix://, not {parts.scheme or '?'}://")
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        allowed = (_TLS_OPTIONS if parts.scheme == "rediss" else set()) | ({"db"} if parts.scheme == "unix" else set())
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise ConfigError(f"unsupported option(s) in the Redis URL: {', '.join(unknown)}")
        raw_db = query.get("db") if parts.scheme == "unix" else parts.path.strip("/")
        db = _db_number(raw_db or "0")
        cert_reqs = query.get("ssl_cert_reqs", "required").lower()
        if cert_reqs not in _CERT_REQS:
            raise ConfigError(f"ssl_cert_reqs must be none, optional or required, not {cert_reqs!r}")
        if parts.scheme == "unix" and not parts.path:
            raise ConfigError("a unix:// Redis URL needs the socket's path")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or 6379,
            path=parts.path if parts.scheme == "unix" else None,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=db,
            tls=parts.scheme == "rediss",
            ca_certs=query.get("ssl_ca_certs"),
            certfile=query.get("ssl_certfile"),
            keyfile=query.get("ssl_keyfile"),
            cert_reqs=cert_reqs,
        )

    def url(self, *, with_password: bool = False) -> str:
        """This endpoint as a URL again; without the password unless asked, for the state file and status."""
        secret = with_password and self.password is not None
        user = quote(self.username, safe="") if self.username else ""
        userinfo = f"{user}:{quote(self.password or '', safe='')}@" if secret else (f"{user}@" if user else "")
        if self.path is not None:
            return f"unix://{userinfo}{self.path}" + (f"?db={self.db}" if self.db else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        options = {
            "ssl_ca_certs": self.ca_certs,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_cert_reqs": self.cert_reqs if self.cert_reqs != "required" else None,
        }
        given = {key: value for key, value in options.items() if value is not None}
        query = urlencode(given, safe="/") if self.tls else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{userinfo}{host}:{self.port}/{self.db}" + (f"?{query}" if query else "")

    @property
    def where(self) -> str:
        """Where it is, for messages: never the credentials."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_certs)
        if self.cert_reqs != "required":
            context.check_hostname = False
        context.verify_mode = _CERT_REQS[self.cert_reqs]
        if self.certfile is not None:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def handshake(self) -> bytes:
        """The commands a new connection sends first: AUTH if there is a password, SELECT unless database 0."""
        commands = b""
        if self.password is not None:
            commands += encode_command("AUTH", *([self.username] if self.username else []), self.password)
        if self.db:
            commands += encode_command("SELECT", str(self.db))
        return commands

    @property
    def handshake_replies(self) -> int:
        return (self.password is not None) + (self.db != 0)

    def command(self, *parts: str | bytes, timeout_s: float = 2.0) -> Any:
        """One command on a connection of its own, blocking; RedisError if it fails or Redis refuses it."""
        deadline = time.monotonic() + timeout_s
        try:
            with self._open_blocking(timeout_s) as conn:
                conn.sendall(self.handshake() + encode_command(*parts))
                reader = hiredis.Reader()
                replies: list[Any] = []
                while len(replies) <= self.handshake_replies:
                    conn.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = conn.recv(65536)
                    if not chunk:
                        raise RedisError(f"Redis at {self.where} closed the connection")
                    reader.feed(chunk)
                    while (reply := reader.gets()) is not False:
                        replies.append(reply)
        except (OSError, ssl.SSLError) as exc:
            raise RedisError(f"cannot reach Redis at {self.where}: {exc}") from exc
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RedisError(f"Redis at {self.where} refused: {reply}")
        return replies[-1]

    def listen(
        self, channel: str, duration_s: float, on_subscribed: Callable[[], None] | None = None
    ) -> Iterator[bytes]:
        """What is published on `channel` during the next `duration_s` seconds, on a connection of its own, blocking.

        `on_subscribed` runs once Redis has confirmed the subscription. RedisError if Redis cannot be reached or
        refuses the subscription.
        """
        deadline = time.monotonic() + duration_s
        try:
            with self._open_blocking(duration_s) as conn:
                conn.sendall(self.handshake() + encode_command("SUBSCRIBE", channel))
                reader = hiredis.Reader()
                while (left := deadline - time.monotonic()) > 0:
                    conn.settimeout(left)
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        return
                    if not chunk:
                        raise RedisError(f"Redis at {self.where} closed the connection")
                    reader.feed(chunk)
                    while (reply := reader.gets()) is not False:
                        if isinstance(reply, hiredis.ReplyError):
                            raise RedisError(f"Redis at {self.where} refused: {reply}")
                        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                            yield reply[2]
                        elif isinstance(reply, list) and reply[:1] == [b"subscribe"] and on_subscribed is not None:
                            on_subscribed()
        except (OSError, ssl.SSLError) as exc:
            raise RedisError(f"cannot reach Redis at {self.where}: {exc}") from exc

    def _open_blocking(self, timeout_s: float) -> socket.socket:
        """A connected socket (TLS for rediss://); nothing is left open when connecting fails."""
        if self.path is not None:
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.settimeout(timeout_s)
            try:
                raw.connect(self.path)
            except OSError:
                raw.close()
                raise
        else:
            raw = socket.create_connection((self.host, self.port), timeout=timeout_s)
        context = self.ssl_context()
        if context is None:
            return raw
        try:
            return context.wrap_socket(raw, server_hostname=self.host)
        except (OSError, ssl.SSLError):
            raw.close()
            raise


def _db_number(raw: str) -> int:
    if not raw.isdigit():
        raise ConfigError(f"the Redis database must be a number, not {raw!r}")
    return int(raw)
