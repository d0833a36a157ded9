"""Membership from heartbeats, goodbyes and silence, on a fake clock."""

from __future__ import annotations

from sioplay.node.membership import Membership, Peer


def test_peers_come_refresh_and_expire() -> None:
    gone: list[tuple[str, str]] = []
    members = Membership(silence_s=3.0, on_gone=lambda peer, why: gone.append((peer.node_id, why)))
    assert members.seen("node-1", "i1", now=0.0, sockets=2) is True
    assert members.seen("node-2", "i2", now=1.0) is True
    assert members.seen("node-1", "i1", now=2.5) is False
    assert [p.node_id for p in members.peers()] == ["node-1", "node-2"]
    assert members.peers()[0].sockets == 2

    assert members.expire(now=4.0) == []
    expired = members.expire(now=4.01)
    assert [p.node_id for p in expired] == ["node-2"] and gone == [("node-2", "silent")]
    assert "i1" in members and "i2" not in members


def test_goodbye_drops_at_once_and_only_once() -> None:
    gone: list[Peer] = []
    members = Membership(silence_s=3.0, on_gone=lambda peer, why: gone.append(peer))
    members.seen("node-1", "i1", now=0.0)
    assert members.gone("i1", "goodbye") is not None
    assert members.gone("i1", "goodbye") is None
    assert len(gone) == 1 and len(members) == 0


def test_touch_all_forgives_silence_during_our_own_outage() -> None:
    members = Membership(silence_s=1.0)
    members.seen("node-1", "i1", now=0.0)
    members.touch_all(now=10.0)
    assert members.expire(now=10.5) == []
    assert [p.node_id for p in members.expire(now=11.5)] == ["node-1"]


def test_a_silent_peer_is_down_until_heard_again_and_a_departed_one_is_not() -> None:
    members = Membership(silence_s=3.0)
    members.seen("node-1", "i1", now=0.0)
    members.seen("node-2", "i2", now=0.0)
    members.seen("node-2", "i2", now=3.5)
    members.expire(now=4.0)
    assert members.down() == {"i1": "node-1"}
    members.gone("i2", "goodbye")
    assert members.down() == {"i1": "node-1"}, "a goodbye unsubscribed first: it is not counted by Redis"
    members.seen("node-1", "i1", now=5.0)
    assert members.down() == {} and "i1" in members
