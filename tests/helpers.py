"""Waiting on conditions with deadlines, and real node processes for tests."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sioplay.cluster.ports import free_port
from sioplay.cluster.process import node_command
from sioplay.settings import Settings

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `predicate` until it returns a truthy value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the last one is reported if time runs out
            last_error = exc
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.02
) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
            if value:
                return value  # type: ignore[return-value]
        except Exception as exc:  # noqa: BLE001
            last_error = exc
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last error: {last_error!r})")
        await asyncio.sleep(interval)


def http_json(
    url: str, method: str = "GET", body: Any = None, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON or None, headers) of one HTTP request; errors are returned, not raised.

    `headers` are sent as given, `Host` included (urllib only adds its own when there is none).
    """
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    return status, (json.loads(raw) if raw else None), headers


class NodeHandle:
    """One `sioplay node run` process, stopped by PID."""

    def __init__(self, settings: Settings, node_id: str, log_dir: Path, public_port: int | None = None) -> None:
        self.settings = settings
        self.node_id = node_id
        self.port = free_port()
        self.public_port = public_port
        self.log_path = log_dir / f"{node_id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 20.0) -> NodeHandle:
        args = node_command(self.node_id, self.port, self.public_port)
        env = self.settings.child_env()
        if self.settings.redis_url is not None:
            # The flag, not the environment: it is what a person types.
            args += ["--redis-url", env.pop("SIOPLAY_REDIS_URL")]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, timeout, f"{self.node_id} to answer /healthz (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.node_id} exited with {self.process.returncode}: {self.log_text()[-2000:]}")
        status, body, _ = http_json(self.url + "/healthz", timeout=1.0)
        return status == 200 and body["redis"]["ok"]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
