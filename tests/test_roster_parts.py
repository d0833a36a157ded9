"""The roster's order and the cache of each node's part of a room."""

from __future__ import annotations

from sioplay.node.roster_parts import (
    RemotePart,
    RoomCache,
    RoomCaches,
    merge,
    order_key,
    sorted_entries,
)


def test_order_is_numeric_users_by_value_then_the_others_then_socket() -> None:
    pairs = [("b", "10"), ("a", "x"), ("c", "2"), ("d", "10"), ("e", "007"), ("f", "ab"), ("g", "²")]
    ordered = [id_user for _, _, id_user, _ in sorted_entries(pairs, "node-1")]
    assert ordered == ["2", "007", "10", "10", "ab", "x", "²"]
    assert order_key("10", "b") < order_key("10", "d")


def test_merge_of_sorted_parts_is_sorted() -> None:
    local = sorted_entries([("s1", "3"), ("s2", "1")], "node-a")
    remote = RemotePart(7, sorted_entries([("s3", "2"), ("s4", "12")], "node-b"))
    merged = merge(local, [remote])
    assert [(id_user, node) for _, _, id_user, node in merged] == [
        ("1", "node-a"),
        ("2", "node-b"),
        ("3", "node-a"),
        ("12", "node-b"),
    ]


def test_local_part_is_recomputed_only_when_the_version_changes() -> None:
    cache = RoomCache()
    first = cache.local_part(4, lambda: [("s1", "1")], "node-a")
    assert cache.local_part(4, lambda: [("ignored", "9")], "node-a") is first
    second = cache.local_part(5, lambda: [("s1", "1"), ("s2", "2")], "node-a")
    assert [id_socket for _, id_socket, _, _ in second.entries] == ["s1", "s2"]


def test_a_slower_reply_does_not_replace_a_newer_part() -> None:
    cache = RoomCache()
    cache.keep_remote("i1", RemotePart(9, []))
    cache.keep_remote("i1", RemotePart(8, []))
    assert cache.remote["i1"].version == 9
    cache.forget_except({"i2"})
    assert cache.remote == {}


def test_least_recently_asked_rooms_are_forgotten_first() -> None:
    caches = RoomCaches(limit=2)
    kept, dropped = caches["A"], caches["B"]
    assert caches["A"] is kept
    caches["C"]
    assert len(caches) == 2 and caches["A"] is kept and caches["B"] is not dropped
