"""What a node's Python heap keeps per connected client, by where it was allocated (tracemalloc).

`python -m sioplay.bench.retained [--clients 2000] [--top 25]` runs one node in
this process under tracemalloc, with an embedded Redis and a fresh database,
and connects the clients from a child process (whose allocations are not
counted): `WARM` clients first, so that what the first connections make once
(caches, pools) is out of the figure, then `--clients` more. It prints the heap
kept per client between the two snapshots, in all and by allocation site, and
the node's RSS growth per client over the same step.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

from sioplay.bench.clients import BenchClients
from sioplay.bench.memory import rss_bytes
from sioplay.client.swarm import raise_open_files_limit
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.common.ports import free_port
from sioplay.db import schema
from sioplay.node.app import Node
from sioplay.settings import Settings

__all__ = ["main"]

WARM = 200
ROOMS = 100
FRAMES = 10
# Few at a time: under tracemalloc the node is several times slower, and its readiness checks must keep up.
CONCURRENCY = 10
STEP_TIMEOUT_S = 600.0


async def _clients(url: str) -> None:
    """The child's part: on each line `N` from stdin, grow to N connected clients, then print N."""
    pool = BenchClients([url], room_of=lambda index: f"room-{index % ROOMS}", concurrency=CONCURRENCY)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            await pool.grow_to(int(line))
            print(len(pool.live()), flush=True)
    finally:
        await pool.close()


class _ClientProcess:
    def __init__(self, url: str) -> None:
        self.url = url
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sioplay.bench.retained",
            "--serve-clients",
            self.url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )

    async def grow_to(self, count: int) -> None:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{count}\n".encode())
        await self.process.stdin.drain()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            answer = await self.process.stdout.readline()
        if answer.strip() != str(count).encode():
            raise RuntimeError(f"the client process holds {answer!r} clients, not {count}")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(30):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def _measure(clients: int, top: int) -> None:
    raise_open_files_limit(clients + WARM)
    with tempfile.TemporaryDirectory(prefix="sioplay-retained-") as tmp:
        home = Path(tmp)
        redis = EmbeddedRedis(home / "redis", channels="sioplay:*")
        redis.start()
        try:
            settings = Settings.from_env({}, home=home, redis_url=redis.url)
            await schema.reset(settings.effective_db_url)
            node = Node(settings, "node-1", free_port())
            await node.start()
            fleet = _ClientProcess(f"http://127.0.0.1:{node.port}")
            try:
                await fleet.start()
                await fleet.grow_to(WARM)
                gc.collect()
                tracemalloc.start(FRAMES)
                before, rss_before = tracemalloc.take_snapshot(), rss_bytes([os.getpid()])
                await fleet.grow_to(WARM + clients)
                # Let the joins' broadcasts drain: what stays is what each connection holds.
                await asyncio.sleep(2)
                gc.collect()
                after, rss_after = tracemalloc.take_snapshot(), rss_bytes([os.getpid()])
                tracemalloc.stop()
                _report(before, after, clients, rss_after - rss_before, top)
            finally:
                await fleet.stop()
                await node.stop()
        finally:
            redis.stop()


def _report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, clients: int, rss_growth: int, top: int) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    count = sum(stat.count_diff for stat in after.compare_to(before, "filename"))
    print(f"{clients} clients: Python heap {total / clients / 1024:.2f} KiB, {count / clients:.1f} blocks per client")
    print(f"RSS growth {rss_growth / clients / 1024:.2f} KiB per client (tracemalloc's own included)")
    print(f"\nby line (KiB per client, blocks per client), top {top}:")
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        print(f"  {stat.size_diff / clients / 1024:7.3f} {stat.count_diff / clients:6.1f}  {where}")
    print(f"\nby traceback (KiB per client), top {top}:")
    for stat in after.compare_to(before, "traceback")[:top]:
        print(f"  {stat.size_diff / clients / 1024:7.3f} {stat.count_diff / clients:6.1f}")
        for frame in list(stat.traceback)[-6:]:
            print(f"      {_short(frame.filename)}:{frame.lineno}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/sioplay/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sioplay.bench.retained", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--serve-clients", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_clients:
        asyncio.run(_clients(args.serve_clients))
    else:
        asyncio.run(_measure(args.clients, args.top))


if __name__ == "__main__":
    main()
