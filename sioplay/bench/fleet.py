"""A throw-away cluster for benchmarks: an embedded Redis, a seeded database and N node processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sioplay.client.swarm import raise_open_files_limit
from sioplay.cluster.dev_ca import ensure_dev_certificate
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.cluster.spawn import spawn_node
from sioplay.common.cluster_secret import settings_secret
from sioplay.common.health import is_healthy, read_healthz
from sioplay.common.ports import free_port
from sioplay.common.tls import pinned_context, served_files
from sioplay.common.tokens import mint_token
from sioplay.common.urls import local_url
from sioplay.db import schema
from sioplay.errors import ClusterError, ConfigError
from sioplay.settings import Settings

__all__ = ["Fleet", "bench_progress", "fleet", "shown_fleet"]

_PROBE_TIMEOUT_S = 1.0
_PROBE_INTERVAL_S = 0.05
# Longer than any bench runs, within the nodes' maximum lifetime.
_TOKEN_TTL_S = 3600.0


class Fleet:
    def __init__(self, settings: Settings, redis: EmbeddedRedis | None) -> None:
        self.settings = settings
        self.redis = redis
        self.public_port = free_port()
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._tokens: dict[str, str] = {}

    @property
    def urls(self) -> list[str]:
        return [local_url("127.0.0.1", port, tls=self.settings.tls_enabled) for port in self.ports]

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The nodes' certificate pinned, when they serve TLS (`--tls dev` makes one in the fleet's home)."""
        files = served_files(self.settings)
        return pinned_context(files[0]) if files is not None else None

    def token_for(self, id_user: str) -> str | None:
        """The token a bench client connects with when the nodes want one (`--auth token`), or None."""
        if self.settings.auth != "token":
            return None
        if id_user not in self._tokens:
            if self.settings.auth_public_key is not None:
                raise ConfigError(
                    "a bench mints its clients' tokens with the cluster's secret: run it without a public key"
                )
            self._tokens[id_user] = mint_token(
                settings_secret(self.settings), id_user, ttl_s=min(self.settings.auth_max_ttl_s, _TOKEN_TTL_S)
            )
        return self._tokens[id_user]

    def node_pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def pids(self) -> list[int]:
        """The nodes' and the embedded Redis's: the server side whose CPU a bench counts."""
        pids = self.node_pids()
        if self.redis is not None and self.redis.pid is not None:
            pids.append(self.redis.pid)
        return pids

    def start_nodes(self, count: int, log_dir: Path) -> None:
        for index in range(1, count + 1):
            port = free_port()
            with (log_dir / f"node-{index}.log").open("ab") as log:
                self.processes.append(
                    spawn_node(self.settings, f"node-{index}", port, log, public_port=self.public_port)
                )
            self.ports.append(port)
        asyncio.run(self._wait_ready(count))

    async def _wait_ready(self, count: int) -> None:
        """Until every node is healthy and sees all `count` nodes: a bench measures no cluster still forming."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        connector = aiohttp.TCPConnector(ssl=self.ssl_context or True)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_PROBE_TIMEOUT_S), connector=connector
        ) as session:
            for url, process in zip(self.urls, self.processes, strict=True):
                while not (
                    is_healthy(await read_healthz(session, url), process.pid)
                    and await _sees_every_node(session, url, count)
                ):
                    if process.poll() is not None:
                        raise ClusterError(f"bench node on {url} exited with {process.returncode}")
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"bench node on {url} was not healthy, or did not see {count} nodes, in time"
                        )
                    await asyncio.sleep(_PROBE_INTERVAL_S)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self.ports.clear()


async def _sees_every_node(session: aiohttp.ClientSession, url: str, count: int) -> bool:
    """The bench's condition on top of `is_healthy`: this node's /cluster lists all `count` nodes."""
    with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
        async with session.get(url + "/cluster") as response:
            return response.status == 200 and len((await response.json())["nodes"]) == count
    return False


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def fleet(nodes: int, base: Settings, clients: int) -> Iterator[Fleet]:
    """Redis (embedded unless `base.redis_url`), a fresh SQLite database, and `nodes` nodes; all stopped after.

    `clients` is the most clients the bench will connect at once: the open-files
    limit is raised for them first, so that Redis and the nodes, which hold the
    other end of every socket, inherit it.
    """
    raise_open_files_limit(clients)
    with tempfile.TemporaryDirectory(prefix="sioplay-bench-") as tmp:
        home = Path(tmp)
        redis = None if base.redis_url else EmbeddedRedis(home / "redis", channels=f"{base.cluster}:*")
        if redis is not None:
            redis.start()
        try:
            # Always a fresh SQLite: a benchmark must not rename the users of a real database. The nodes get
            # the embedded Redis's node credential, as the supervisor's nodes do.
            settings = dataclasses.replace(
                base, home=home, db_url=None, redis_url=base.redis_url or (redis.url if redis else None)
            )
            asyncio.run(schema.reset(settings.effective_db_url))
            if settings.tls == "dev":
                ensure_dev_certificate(home)
            running = Fleet(settings, redis)
            try:
                running.start_nodes(nodes, home)
                yield running
            finally:
                running.stop()
        finally:
            if redis is not None:
                redis.stop()


def bench_progress() -> Progress:
    """The bars every bench shows while it works; they are gone once its figures are printed."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    )


@contextlib.contextmanager
def shown_fleet(progress: Progress, nodes: int, base: Settings, clients: int) -> Iterator[Fleet]:
    """`fleet()`, with a line on `progress` while the nodes start."""
    starting = progress.add_task(f"starting {nodes} node(s)", total=None)
    with fleet(nodes, base, clients) as running:
        progress.remove_task(starting)
        yield running
