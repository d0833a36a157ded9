"""A TCP forwarder the test starts and stops between a node and a server: "the server is down" without stopping it.

It runs its own event loop in a thread, so that a test blocked in a synchronous wait
(a node starting) does not stop the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from sioplay.common.ports import free_port


class TcpForwarder:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="forwarder", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._up(), self._loop).result(5)

    def stall(self) -> None:
        """Cut every forwarded connection, then accept new ones and never answer (a host that drops packets)."""
        asyncio.run_coroutine_threadsafe(self._stall(), self._loop).result(5)

    def down(self) -> None:
        """Stop listening and cut every forwarded connection."""
        asyncio.run_coroutine_threadsafe(self._down(), self._loop).result(5)

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _up(self) -> None:
        await self._down()
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port, reuse_address=True)

    async def _stall(self) -> None:
        await self._down()
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", self.port, reuse_address=True)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await reader.read()

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()
