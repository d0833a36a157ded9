"""Client-side test fixtures: a 2-node cluster on one public port, CLI runs, CLI processes stopped at teardown."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner, Result

from sioplay.cli import app
from sioplay.client.sim import SimClient
from sioplay.common.ports import free_port
from sioplay.settings import Settings
from tests.helpers import NodeHandle, http_json, wait_until


@dataclasses.dataclass(frozen=True)
class Cluster:
    a: NodeHandle
    b: NodeHandle
    url: str
    settings: Settings


def start_cluster(start_node: Callable[..., NodeHandle], settings: Settings) -> Cluster:
    public_port = free_port()
    a = start_node("node-a", settings, public_port=public_port)
    b = start_node("node-b", settings, public_port=public_port)
    for node in (a, b):
        peers = lambda node=node: len(http_json(node.url + "/cluster")[1]["nodes"]) == 2  # noqa: E731
        wait_until(peers, 5, f"{node.node_id} to see 2 nodes")
    return Cluster(a, b, f"http://127.0.0.1:{public_port}", settings)


@pytest.fixture
def cluster(start_node: Callable[..., NodeHandle], seeded_settings: Settings) -> Cluster:
    return start_cluster(start_node, seeded_settings)


@pytest.fixture
async def clients() -> AsyncIterator[list[SimClient]]:
    made: list[SimClient] = []
    yield made
    await asyncio.gather(*(client.disconnect() for client in made), return_exceptions=True)


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--home", str(home), *args])


# Rich's cursor and colour codes, when a test makes it draw as on a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Output:
    """A `python -m sioplay ...` process whose stdout lines are kept with the time each arrived.

    It runs in a session of its own, so a test's signals reach it alone; `stop` kills it by pid if still running.
    """

    def __init__(self, settings: Settings, *args: str, env: dict[str, str] | None = None, columns: int = 100) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sioplay", *args],
            env={**settings.child_env(), "COLUMNS": str(columns), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._line), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _line(self, line: str) -> None:
        self.lines.append((time.monotonic(), _ANSI.sub("", line.rstrip("\n"))))

    @staticmethod
    def _read(stream: IO[str] | None, keep: Callable[[str], None]) -> None:
        assert stream is not None
        for line in stream:
            keep(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in list(self.lines))

    @property
    def stderr(self) -> str:
        return "".join(self.errors)

    def wait_printed(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` in what it printed; fails if it exits first or `timeout` passes."""

        def printed() -> re.Match[str] | None:
            if self.process.poll() is not None and not re.search(pattern, self.text, re.MULTILINE):
                raise AssertionError(f"exited with {self.process.returncode} first: {self.stderr[-2000:]}")
            return re.search(pattern, self.text, re.MULTILINE)

        return wait_until(printed, timeout, f"{pattern!r} in the output of pid {self.pid}")

    def interrupt(self, timeout: float = 10.0) -> tuple[int, str]:
        """Ctrl-C, then (exit code, stderr)."""
        self.process.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> tuple[int, str]:
        """(exit code, stderr) once the process has ended and its output is read to the end."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code, self.stderr

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def processes() -> Iterator[list[Output]]:
    started: list[Output] = []
    yield started
    for output in started:
        output.stop()
