"""Bus messages: what is accepted, and why the rest is refused."""

from __future__ import annotations

import orjson
import pytest

from sioplay.errors import BusError
from sioplay.node.bus_message import PROTOCOL_VERSION, BusMessage, decode, encode

LIMIT = 4096
INSTANCE = "0123456789abcdef"
OTHER = "fedcba9876543210"
RID = "9a" * 16


def raw(**fields: object) -> bytes:
    message = {
        "v": PROTOCOL_VERSION,
        "kind": "heartbeat",
        "origin": "node-1",
        "instance": INSTANCE,
        "body": {"sockets": 2},
    }
    message.update(fields)
    return orjson.dumps(message)


def test_round_trip() -> None:
    message = BusMessage("roster-request", "web1/node-1", INSTANCE, {"room": "Maths"}, request_id=RID)
    assert decode(encode(message), LIMIT) == message


def test_reply_members_are_checked() -> None:
    good = raw(kind="roster-reply", request_id=RID, body={"room": "Maths", "version": 3, "members": [["s1", "1"]]})
    assert decode(good, LIMIT).body["members"] == [["s1", "1"]]


def test_a_reply_may_say_its_part_is_unchanged() -> None:
    unchanged = raw(kind="roster-reply", request_id=RID, body={"room": "Maths", "version": 3, "unchanged": True})
    assert decode(unchanged, LIMIT).body == {"room": "Maths", "version": 3, "unchanged": True}


def test_a_request_says_which_versions_it_holds() -> None:
    request = raw(kind="roster-request", request_id=RID, body={"room": "Maths", "have": {INSTANCE: 4, OTHER: 0}})
    assert decode(request, LIMIT).body["have"] == {INSTANCE: 4, OTHER: 0}


def test_presence_names_its_machine_and_whom_it_refuses() -> None:
    body = {"sockets": 2, "pid": 7, "host": "web1.example.com", "refusing": [OTHER]}
    assert decode(raw(body=body), LIMIT).body == body


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x80\x04pickle", "not JSON"),
        (b'"just a string"', "not a JSON object"),
        (raw(v=1), "unsupported protocol version 1"),
        (raw(kind="reboot"), "unknown kind 'reboot'"),
        (raw(origin=""), "origin is not a valid origin"),
        (raw(origin="x" * 65), "origin is not a valid origin"),
        (raw(origin="node-1\r\nSet-Cookie: a=b"), "origin is not a valid origin"),
        (raw(origin="node 1"), "origin is not a valid origin"),
        (raw(origin="a/b/c"), "origin is not a valid origin"),
        (raw(instance=None), "instance is not a valid instance"),
        (raw(instance="abc"), "instance is not a valid instance"),
        (raw(instance=INSTANCE + "\n"), "instance is not a valid instance"),
        (raw(kind="roster-request", body={"room": "Maths"}), "request_id is not a valid request_id"),
        (raw(kind="roster-request", request_id="r", body={"room": "Maths"}), "request_id is not a valid"),
        (raw(request_id=RID), "heartbeat carries a request_id"),
        (raw(body=[]), "body is not an object"),
        (raw(body={"sockets": "many"}), "sockets must be"),
        (raw(body={"host": "web1\nevil"}), "host must be a host name"),
        (raw(body={"host": 7}), "host must be a host name"),
        (raw(body={"refusing": OTHER}), "refusing must be a list"),
        (raw(body={"refusing": [OTHER] * 65}), "refusing must be a list of at most 64"),
        (raw(body={"refusing": ["x"]}), "refusing is not a valid refusing"),
        (raw(kind="roster-request", request_id=RID, body={"room": "a\x00b"}), "bad room"),
        (
            raw(kind="roster-reply", request_id=RID, body={"room": "M", "version": 1, "members": [["s1"]]}),
            "each member",
        ),
        (
            raw(kind="roster-reply", request_id=RID, body={"room": "M", "version": 1, "members": [["s", 7]]}),
            "id_user is not a valid id_user",
        ),
        (
            raw(kind="roster-reply", request_id=RID, body={"room": "M", "version": 1, "members": [["s 1", "7"]]}),
            "id_socket is not a valid id_socket",
        ),
        (
            raw(kind="roster-reply", request_id=RID, body={"room": "M", "version": 1, "members": [["s", " 7"]]}),
            "id_user is not a valid id_user",
        ),
        (raw(kind="roster-reply", request_id=RID, body={"room": "M", "members": []}), "version must be"),
        (
            raw(kind="roster-reply", request_id=RID, body={"room": "M", "version": -1, "unchanged": True}),
            "version must",
        ),
        (raw(kind="roster-request", request_id=RID, body={"room": "M", "have": []}), "have must be"),
        (raw(kind="roster-request", request_id=RID, body={"room": "M", "have": {INSTANCE: "3"}}), "version must be"),
        (raw(kind="roster-request", request_id=RID, body={"room": "M", "have": {"": 3}}), "instance is not a valid"),
        (raw(kind="rooms-reply", request_id=RID, body={"rooms": {"M": "1"}}), "each room must list"),
        (b" " * (LIMIT + 1), "oversized message"),
    ],
)
def test_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(BusError, match=reason.replace("(", r"\(")):
        decode(payload, LIMIT)
