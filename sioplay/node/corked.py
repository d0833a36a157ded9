"""A transport wrapper that sends everything written to it during one event-loop tick in one write.

engine.io's writer sends each queued packet as its own websocket frame, and
aiohttp writes each frame straight to the socket: one system call per frame.
In a join storm a socket has several room events queued at once, and the
profile of a node showed a third of its time in those writes. Frames written
here within a tick go out together at the end of it, in the order written,
through the real transport, whose buffer and flow control are unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CorkedTransport"]


class CorkedTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        # A bytearray or view may be reused by the writer before the flush.
        self._pending.append(data if isinstance(data, bytes) else bytes(data))

    def writelines(self, lines: list[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
