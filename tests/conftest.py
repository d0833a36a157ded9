"""Fixtures that start real parts: a redis-server, a seeded database, node processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.db import schema
from sioplay.settings import Settings
from tests.helpers import NodeHandle

# Shared fixtures: supervised clusters, the CLI side, and the PostgreSQL of the "beyond one machine" tests.
pytest_plugins = ["tests.cluster_fixtures", "tests.cli_fixtures", "tests.pg_fixtures"]


@pytest.fixture(autouse=True)
def _no_real_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default state directory is per user (~/.local/state/sioplay): a test that gives no --home uses its own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.delenv("SIOPLAY_HOME", raising=False)


@pytest.fixture
def cluster_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_server(tmp_path: Path, cluster_name: str) -> Iterator[EmbeddedRedis]:
    """The authenticated embedded Redis; its node user may use the channels of `cluster_name` and of names
    that extend it (a test runs a second cluster, `cluster_name + "x"`, on the same Redis)."""
    server = EmbeddedRedis(tmp_path / "redis", channels=f"{cluster_name}*")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(tmp_path: Path, redis_server: EmbeddedRedis, cluster_name: str) -> Settings:
    """Settings for one test: its own state directory, Redis (the nodes' credential), cluster name, short timers."""
    home = tmp_path / "home"
    home.mkdir()
    return Settings(
        home=home,
        redis_url=redis_server.url,
        cluster=cluster_name,
        host="127.0.0.1",
        heartbeat_interval_s=0.2,
        heartbeat_misses=3,
        roster_timeout_s=1.0,
        redis_retry_max_s=0.5,
        shutdown_grace_s=2.0,
    )


@pytest.fixture
def seeded_settings(settings: Settings) -> Settings:
    # In a thread of its own: a sync test may already run an event loop here (Playwright's does).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, schema.reset(settings.effective_db_url)).result()
    return settings


@pytest.fixture
def start_node(seeded_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., NodeHandle]]:
    """Start real `sioplay node run` processes; every one is stopped by PID at teardown."""
    started: list[NodeHandle] = []

    def start(
        node_id: str, settings: Settings | None = None, public_port: int | None = None, ready: bool = True
    ) -> NodeHandle:
        handle = NodeHandle(settings or seeded_settings, node_id, tmp_path / "logs", public_port=public_port)
        started.append(handle)
        return handle.start(ready=ready)

    try:
        yield start
    finally:
        for handle in started:
            handle.stop()
