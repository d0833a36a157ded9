"""The bench's simulated clients: lean wire clients spread round-robin over the nodes' own ports.

Unlike `sioplay swarm`, a bench client never reconnects: a dropped client is
counted with its reason, and the rosters are checked against who is still here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import ssl
from collections import Counter
from collections.abc import Callable

from sioplay.client.wire import WireClient
from sioplay.errors import ClientError
from sioplay.tasks import cancel_all

__all__ = ["BenchClient", "BenchClients"]

USERS = [str(n) for n in range(1, 11)]
CONNECT_TIMEOUT_S = 60.0
CONNECT_ATTEMPTS = 3
CLOSE_TIMEOUT_S = 20.0


@dataclasses.dataclass(slots=True)
class BenchClient:
    """One connected bench client; its `task` holds it until it is dropped, and ends with the reason."""

    client: WireClient
    id_user: str
    room: str
    sid: str
    node: str
    task: asyncio.Task[str] | None = None


class BenchClients:
    """Client i connects to `urls[i % len(urls)]` as user `USERS[i % 10]` in `room_of(i)`."""

    def __init__(
        self,
        urls: list[str],
        room_of: Callable[[int], str],
        concurrency: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        token_for: Callable[[str], str | None] = lambda _: None,
    ) -> None:
        self.urls = urls
        self.ssl_context = ssl_context
        self.token_for = token_for
        self.room_of = room_of
        self.members: list[BenchClient] = []
        self.heard = 0
        self.drops: Counter[str] = Counter()
        self._gate = asyncio.Semaphore(concurrency)
        self._closing = False
        # Set once `heard` reaches the count `wait_heard` is waiting for, or on a drop.
        self._wake = asyncio.Event()
        self._heard_target = math.inf

    def _count_event(self) -> None:
        self.heard += 1
        if self.heard >= self._heard_target:
            self._wake.set()

    async def wait_heard(self, count: int, timeout_s: float) -> None:
        """Until the clients have heard `count` room events in all, or one has dropped; TimeoutError after `timeout_s`.

        A drop ends the wait early: the events meant for that client can never arrive.
        """
        self._heard_target = count
        self._wake.clear()
        try:
            if self.heard < count and self.dropped == 0:
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
        finally:
            self._heard_target = math.inf

    async def grow_to(self, count: int, advance: Callable[[], None] = lambda: None) -> None:
        """Connect clients until there are `count`; ClientError if one cannot connect after a few attempts."""
        await asyncio.gather(*(self._connect(index, advance) for index in range(len(self.members), count)))

    async def _connect(self, index: int, advance: Callable[[], None]) -> None:
        url, id_user, room = self.urls[index % len(self.urls)], USERS[index % len(USERS)], self.room_of(index)
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            client = WireClient(url, id_user, room, self._count_event, self.ssl_context, self.token_for(id_user))
            try:
                async with self._gate, asyncio.timeout(CONNECT_TIMEOUT_S):
                    handshake = await client.connect()
                break
            except (ClientError, TimeoutError) as exc:
                if attempt == CONNECT_ATTEMPTS:
                    raise ClientError(f"client {index} could not connect to {url}: {exc or 'timed out'}") from None
        sid, node = str(handshake.get("id_socket", "")), str(handshake.get("node", "?"))
        member = BenchClient(client, id_user, room, sid, node)
        member.task = asyncio.create_task(self._hold(member))
        self.members.append(member)
        advance()

    async def _hold(self, member: BenchClient) -> str:
        reason = await member.client.run()
        if not self._closing:
            self.drops[reason] += 1
            self._wake.set()
        return reason

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def live(self) -> list[BenchClient]:
        return [member for member in self.members if member.task is not None and not member.task.done()]

    def expected(self, room: str) -> set[tuple[str, str]]:
        """(id_socket, id_user) of every client still connected in `room`."""
        return {(member.sid, member.id_user) for member in self.live() if member.room == room}

    def rooms(self) -> list[str]:
        return sorted({member.room for member in self.members})

    async def close(self) -> None:
        """Leave; whoever has not left after a while is left to the fleet's shutdown."""
        self._closing = True
        await cancel_all([member.task for member in self.members if member.task is not None], CLOSE_TIMEOUT_S)
