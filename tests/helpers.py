"""Waiting on conditions with deadlines, and real node processes for tests."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from sioplay.cluster.spawn import spawn_node
from sioplay.common.cluster_secret import load_or_create_secret
from sioplay.common.health import is_alive, is_healthy
from sioplay.common.ports import free_port
from sioplay.common.tls import client_context
from sioplay.node.signing import MessageSigner
from sioplay.settings import Settings

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, interval: float = 0.02) -> T:
    """Poll `predicate` until it returns a truthy value; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the last one is reported if time runs out
            last_error = exc
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]], timeout_s: float, what: str, interval: float = 0.02
) -> T:
    """`wait_until` for async tests: the event loop runs while it waits, and `predicate` may be async."""
    deadline = time.monotonic() + timeout_s
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
            raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what} (last error: {last_error!r})")
        await asyncio.sleep(interval)


HttpAnswer = tuple[int, Any, dict[str, str]]  # (status, decoded JSON or None, headers)
_JSON = {"Content-Type": "application/json"}


def _request_body(body: Any) -> bytes | None:
    return None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())


def http_json(
    url: str,
    method: str = "GET",
    body: Any = None,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """(status, decoded JSON or None, headers) of one HTTP request; error statuses are returned, not raised.

    `headers` are sent as given, `Host` included (urllib only adds its own when there is none).
    """
    sent = {**_JSON, **(headers or {})}
    request = urllib.request.Request(url, data=_request_body(body), method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            raw = response.read()
            status, answered = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, answered = exc.read(), exc.code, dict(exc.headers)
    return status, (json.loads(raw) if raw else None), answered


async def async_http(
    url: str, method: str = "GET", body: Any = None, timeout_s: float = 5.0
) -> tuple[int, bytes, dict[str, str]]:
    """(status, raw body, headers) of one request, on aiohttp: the test's event loop and clients run meanwhile."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
        session.request(method, url, data=_request_body(body), headers=_JSON) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


async def async_http_json(url: str, method: str = "GET", body: Any = None, timeout_s: float = 5.0) -> HttpAnswer:
    """`http_json` for async tests."""
    status, raw, headers = await async_http(url, method, body, timeout_s)
    return status, (json.loads(raw) if raw else None), headers


def signed(settings: Settings, channel: str, payload: bytes) -> bytes:
    """`payload` as a node of `settings`' cluster publishes it on `channel`: signed with the cluster's secret."""
    return MessageSigner(load_or_create_secret(settings.home)).sign(channel.encode(), payload)


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
        return f"{'https' if self.settings.tls_enabled else 'http'}://127.0.0.1:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """What trusts this node's certificate, when it serves TLS."""
        return client_context(self.settings) if self.settings.tls_enabled else None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 20.0, ready: bool = True) -> NodeHandle:
        """Returns once the node is ready, or only alive (answering /healthz) when `ready` is False."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = spawn_node(self.settings, self.node_id, self.port, log, public_port=self.public_port)
        judge = is_healthy if ready else is_alive
        what = "ready" if ready else "alive"
        wait_until(
            lambda: self._answers(judge), timeout_s, f"{self.node_id} to be {what} on /healthz (log: {self.log_path})"
        )
        return self

    def _answers(self, judge: Callable[[Any, int | None], bool]) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.node_id} exited with {self.process.returncode}: {self.log_text()[-2000:]}")
        status, body, _ = http_json(self.url + "/healthz", timeout_s=1.0, context=self.ssl_context)
        return status == 200 and judge(body, self.pid)

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
