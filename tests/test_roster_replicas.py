"""The replica of another node's part, as plain logic: deltas, gaps, heartbeats, fetches, relinks."""

from __future__ import annotations

import asyncio
from typing import Any

from sioplay.node.bus_message import BusMessage
from sioplay.node.roster_protocol import part_delta
from sioplay.node.roster_replicas import RosterReplicas
from tests.helpers import async_wait_until

INSTANCE = "0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """The other node: its part as the fetches see it, and the fetches asked of it."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, str]] = {}
        self.seq = 0
        self.fetched = 0
        self.answering = asyncio.Event()
        self.answering.set()

    def change(self, room: str, id_socket: str, id_user: str, joined: bool) -> BusMessage:
        self.seq += 1
        members = self.rooms.setdefault(room, {})
        if joined:
            members[id_socket] = id_user
        else:
            members.pop(id_socket)
        body = part_delta(self.seq, room, id_socket, id_user, joined)
        return BusMessage(kind="part-delta", origin="node-b", instance=INSTANCE, body=body)

    async def fetch(self, node_id: str, instance: str) -> dict[str, Any] | None:
        """The part as it is when asked (a node answers at once), arriving once `answering` is set."""
        self.fetched += 1
        seq = self.seq
        rooms = {
            room: {"version": self.seq, "members": [[sid, user] for sid, user in members.items()]}
            for room, members in self.rooms.items()
            if members
        }
        await self.answering.wait()
        return {"seq": seq, "rooms": rooms}


def users(replicas: RosterReplicas, room: str) -> list[str] | None:
    part = replicas.part(INSTANCE, room)
    return None if part is None else [entry[2] for entry in part.entries]


async def test_a_node_that_never_changed_is_current_at_once_and_deltas_follow() -> None:
    peer, clock = Peer(), Clock()
    replicas = RosterReplicas(peer.fetch, max_silence_s=0.4, clock=clock)
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    assert users(replicas, "Maths") == []
    replicas.delta(peer.change("Maths", "s1", "1", True), clock.now)
    replicas.delta(peer.change("Maths", "s2", "2", True), clock.now)
    replicas.delta(peer.change("Maths", "s1", "1", False), clock.now)
    assert users(replicas, "Maths") == ["2"]
    assert peer.fetched == 0, "nothing to fetch while every delta arrives"


async def test_a_heartbeat_ahead_of_the_deltas_makes_the_part_fetched_before_it_is_served() -> None:
    peer, clock = Peer(), Clock()
    replicas = RosterReplicas(peer.fetch, max_silence_s=0.4, clock=clock)
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    peer.change("Maths", "s1", "1", True)  # its delta is lost
    peer.answering.clear()
    replicas.presence("node-b", INSTANCE, peer.seq, clock.now)
    assert users(replicas, "Maths") is None, "behind its heartbeat: not served"
    assert replicas.gaps == 1
    peer.answering.set()
    await async_wait_until(lambda: users(replicas, "Maths") is not None, 1, "the fetched part")
    assert users(replicas, "Maths") == ["1"] and peer.fetched == 1


async def test_a_skipped_number_is_a_gap_and_deltas_heard_during_the_fetch_are_applied_after_it() -> None:
    peer, clock = Peer(), Clock()
    replicas = RosterReplicas(peer.fetch, max_silence_s=0.4, clock=clock)
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    peer.change("Maths", "s1", "1", True)  # lost
    peer.answering.clear()
    replicas.delta(peer.change("Maths", "s2", "2", True), clock.now)
    assert users(replicas, "Maths") is None and replicas.gaps == 1
    await async_wait_until(lambda: peer.fetched, 1, "the gap's fetch")
    assert peer.fetched == 1, "the gap sent a fetch, answered at seq 2"
    # Heard before the fetch's answer, though made after it: applied on top of the part it brings.
    replicas.delta(peer.change("Maths", "s3", "3", True), clock.now)
    peer.answering.set()
    await async_wait_until(lambda: users(replicas, "Maths") is not None, 1, "the fetched part")
    assert users(replicas, "Maths") == ["1", "2", "3"] and peer.fetched == 1


async def test_a_relink_forgets_every_part_until_fetched_again() -> None:
    peer, clock = Peer(), Clock()
    replicas = RosterReplicas(peer.fetch, max_silence_s=0.4, clock=clock)
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    replicas.delta(peer.change("Maths", "s1", "1", True), clock.now)
    peer.change("Maths", "s2", "2", True)  # published while this node was not subscribed
    peer.answering.clear()
    replicas.relinked()
    assert users(replicas, "Maths") is None
    peer.answering.set()
    await async_wait_until(lambda: users(replicas, "Maths") is not None, 1, "the fetched part")
    assert users(replicas, "Maths") == ["1", "2"] and peer.fetched == 1


async def test_a_silent_node_is_not_served_and_a_node_without_deltas_is_never_replicated() -> None:
    peer, clock = Peer(), Clock()
    replicas = RosterReplicas(peer.fetch, max_silence_s=0.4, clock=clock)
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    clock.now += 0.5
    assert users(replicas, "Maths") is None, "not heard within the silence: asked instead"
    replicas.presence("node-b", INSTANCE, 0, clock.now)
    assert users(replicas, "Maths") == []
    replicas.presence("node-b", INSTANCE, None, clock.now)
    assert users(replicas, "Maths") is None
    replicas.delta(peer.change("Maths", "s1", "1", True), clock.now)
    assert users(replicas, "Maths") is None and peer.fetched == 0
