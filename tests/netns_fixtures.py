"""Hosts made as Linux network namespaces on this machine: one bridge, a veth pair per host.

Every name (namespaces, bridge, veths) and the subnet are unique per fixture, so that runs in
parallel do not meet; everything is deleted at teardown. Where namespaces cannot be made (not
root, no `ip`), the tests skip with the reason, or fail where CI says they must run
(SIOPLAY_REQUIRE_NETNS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

__all__ = ["Hosts", "NetnsHost", "TcpForwarder", "netns_hosts"]

NETNS_REQUIRED = os.environ.get("SIOPLAY_REQUIRE_NETNS") == "1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclasses.dataclass(frozen=True, slots=True)
class NetnsHost:
    name: str  # the supervisor's --name
    netns: str
    veth: str  # the host side, on the bridge: down cuts this host off
    address: str

    def cut(self) -> None:
        ip("link", "set", self.veth, "down")

    def heal(self) -> None:
        ip("link", "set", self.veth, "up")

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *args]


@dataclasses.dataclass(frozen=True, slots=True)
class Hosts:
    bridge: str
    bridge_address: str
    hosts: list[NetnsHost]


def _unavailable(reason: str) -> None:
    if NETNS_REQUIRED:
        pytest.fail(f"network namespaces are required here (SIOPLAY_REQUIRE_NETNS=1): {reason}")
    pytest.skip(f"cannot make network namespaces: {reason}")


def _make(count: int) -> tuple[Hosts, list[list[str]]]:
    tag = secrets.token_hex(3)
    # A /24 of 10.0.0.0/8 picked at random: another run's subnet is very unlikely to be the same one.
    net = f"10.{secrets.randbelow(50) + 200}.{secrets.randbelow(254) + 1}"
    bridge = f"sb{tag}"
    undo: list[list[str]] = []
    ip("link", "add", bridge, "type", "bridge")
    undo.append(["link", "del", bridge])
    ip("addr", "add", f"{net}.1/24", "dev", bridge)
    ip("link", "set", bridge, "up")
    hosts = []
    for index in range(1, count + 1):
        netns, veth, inner = f"sn{tag}{index}", f"sv{tag}{index}", f"si{tag}{index}"
        ip("netns", "add", netns)
        undo.append(["netns", "del", netns])
        ip("link", "add", veth, "type", "veth", "peer", "name", inner)
        undo.append(["link", "del", veth])
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", veth, "master", bridge, "up")
        address = f"{net}.{10 + index}"
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", inner)
        ip("-n", netns, "link", "set", inner, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        hosts.append(NetnsHost(f"host{index}", netns, veth, address))
    return Hosts(bridge, f"{net}.1", hosts), undo


@contextlib.contextmanager
def netns_hosts(count: int) -> Iterator[Hosts]:
    if shutil.which("ip") is None:
        _unavailable("no `ip` command (iproute2)")
    if os.geteuid() != 0:
        _unavailable("not root")
    undo: list[list[str]] = []
    try:
        try:
            made, undo = _make(count)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc.stderr, bytes) else ""
            _unavailable(f"{' '.join(exc.cmd)}: {detail or exc}")
        yield made
    finally:
        for args in reversed(undo):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                ip(*args)


class TcpForwarder:
    """Forwards `listen` to `target` (the loopback-only PostgreSQL), in a thread with its own event loop."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tcp-forwarder", daemon=True)

    def __enter__(self) -> TcpForwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"the forwarder on {self.listen} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._pipe_both, *self.listen)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            piping = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in piping:
                task.cancel()
            await asyncio.gather(*piping, return_exceptions=True)

    async def _pipe_both(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                target_reader, target_writer = await asyncio.open_connection(*self.target)
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
