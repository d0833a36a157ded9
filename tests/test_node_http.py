"""A node's HTTP side as an attacker meets it: foreign Hosts, spoofing names, malformed requests, the page's headers.

Real node processes on a real Redis; raw sockets where a request must be one
that no well-behaved client library would send.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Callable
from urllib.parse import quote

import pytest

from sioplay.client.sim import SimClient
from sioplay.db.models import validate_name
from sioplay.errors import ClientError, ValidationError
from sioplay.node.routes.guards import HostNames
from sioplay.node.validation import validate_id_user, validate_room
from sioplay.settings import Settings
from tests.helpers import NodeHandle, http_json, wait_until

SPOOFING_ROOMS = [
    ("\u202eevil", "room name contains U+202E (a format character)"),
    ("\u200b", "room name contains U+200B (a format character)"),
    ("\u202eadmin\u200b\ufeff", "room name contains U+202E (a format character)"),
    ("Ma\ue000ths", "room name contains U+E000 (a private-use character)"),
    ("Ma\u0378ths", "room name contains U+0378 (an unassigned code point)"),
    (" Maths ", "room name ' Maths ' starts or ends with whitespace"),
]


@pytest.fixture
def node(start_node: Callable[..., NodeHandle]) -> NodeHandle:
    return start_node("node-a")


def raw_http(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer to `request`, sent as the bytes given; the node closes after it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return len(head) + 4 + (int(found[1]) if found else 0)


# The Host check -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:5009", True),
        ("LOCALHOST.", True),
        ("app.localhost:5009", True),
        ("127.0.0.1:80", True),
        ("[::1]:5009", True),
        ("::1", True),
        ("[0:0:0:0:0:0:0:1]", True),
        ("evil.example:5009", False),
        ("localhost.evil.example", False),
        ("evillocalhost", False),
        ("127.0.0.2", False),
        ("[::2]:5009", False),
    ],
)
def test_host_names_allow_loopback_names_only(host: str, allowed: bool) -> None:
    assert HostNames.for_node("0.0.0.0", ()).allows(host) is allowed


def test_host_names_add_the_bound_address_and_the_setting() -> None:
    names = HostNames.for_node("192.0.2.7", ("sioplay.test", "*.lab.test"))
    assert names.allows("192.0.2.7:5009") and names.allows("sioplay.test") and names.allows("a.b.lab.test:1")
    assert not names.allows("lab.test") and not names.allows("192.0.2.8")
    assert HostNames.for_node("::", ("*",)).allows("anything.example")
    assert Settings.from_env({"SIOPLAY_ALLOWED_HOSTS": "a.test, *.b.test"}).allowed_hosts == ("a.test", "*.b.test")


def test_a_write_from_a_foreign_host_is_misdirected_and_changes_nothing(node: NodeHandle) -> None:
    evil = {"Host": f"evil.example:{node.port}", "Origin": f"http://evil.example:{node.port}"}
    status, body, _ = http_json(node.url + "/users/2", "PUT", {"name": "Hacked"}, headers=evil)
    assert status == 421, body
    assert body["status"] == 421 and "evil.example" in body["error"] and "SIOPLAY_ALLOWED_HOSTS" in body["error"]
    assert http_json(node.url + "/users/2")[1] == {"id_user": "2", "name": "Mary"}
    assert http_json(node.url + "/rooms/Maths", headers=evil)[0] == 421, "reads are refused too"

    local = {"Host": f"localhost:{node.port}", "Origin": f"http://localhost:{node.port}"}
    assert http_json(node.url + "/users/2", "PUT", {"name": "Maria"}, headers=local)[0] == 204
    assert http_json(node.url + "/users/2", headers={"Host": f"[::1]:{node.port}"})[1]["name"] == "Maria"
    _, _, headers = http_json(node.url + "/users/2", headers={"Origin": "http://evil.example"})
    assert not [name for name in headers if name.lower().startswith("access-control-")], "no CORS"


def websocket_upgrade(port: int, host: str, origin: str | None = None) -> bytes:
    return (
        f"GET /socket.io/?EIO=4&transport=websocket&id_user=1&room=Maths HTTP/1.1\r\nHost: {host}\r\n"
        f"Origin: {origin or 'http://' + host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def test_a_websocket_from_a_foreign_host_is_misdirected(node: NodeHandle) -> None:
    status, _, body = raw_http(node.port, websocket_upgrade(node.port, f"evil.example:{node.port}"))
    assert status == 421 and json.loads(body)["status"] == 421
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(websocket_upgrade(node.port, f"localhost:{node.port}"))
        assert sock.recv(100).startswith(b"HTTP/1.1 101 "), "the same upgrade from localhost is taken"
    status, _, body = raw_http(node.port, websocket_upgrade(node.port, f"localhost:{node.port}", "http://evil.example"))
    refusal = {"error": "http://evil.example is not an accepted origin.", "status": 400}
    assert status == 400 and json.loads(body) == refusal, "still refused"


def test_allowed_hosts_adds_names(start_node: Callable[..., NodeHandle], seeded_settings: Settings) -> None:
    node = start_node("node-h", seeded_settings.replace(allowed_hosts=("sioplay.test",)))
    assert http_json(node.url + "/users/1", headers={"Host": f"sioplay.test:{node.port}"})[0] == 200
    assert http_json(node.url + "/users/1", headers={"Host": f"other.test:{node.port}"})[0] == 421


# Names that cannot spoof --------------------------------------------------------------------


@pytest.mark.parametrize(("room", "message"), SPOOFING_ROOMS)
def test_spoofing_room_names_are_refused(room: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        validate_room(room)


def test_names_are_nfc_and_refuse_invisible_characters() -> None:
    assert validate_room("Mathe\u0301") == validate_room("Math\u00e9") == "Math\u00e9"
    assert validate_name("  Jose\u0301 ") == "Jos\u00e9"
    assert validate_id_user(" 1 ") == "1"
    for bad, code in (("\u202eadmin", "U+202E"), ("Jo\u200bhn", "U+200B"), ("\ufeffJohn", "U+FEFF")):
        with pytest.raises(ValidationError, match=re.escape(f"name must not contain {code} (a format character)")):
            validate_name(bad)
    with pytest.raises(ValidationError, match="id_user contains U\\+202E"):
        validate_id_user("\u202e1")


@pytest.mark.parametrize(("room", "message"), SPOOFING_ROOMS)
def test_spoofing_room_paths_are_refused(node: NodeHandle, room: str, message: str) -> None:
    for path in (f"/rooms/{quote(room)}", f"/{quote(room)}/users", f"/ui/{quote(room)}?id_user=1"):
        status, body, _ = http_json(node.url + path)
        assert (status, body["status"]) == (400, 400), path
        assert message in body["error"], path


async def test_spoofing_rooms_are_refused_on_connect(node: NodeHandle) -> None:
    for room, message in SPOOFING_ROOMS:
        client = SimClient(node.url, "1", room)
        with pytest.raises(ClientError, match=re.escape(message)):
            await client.connect()


def test_spoofing_user_names_are_refused_and_change_nothing(node: NodeHandle) -> None:
    for name, code in (("\u202eevil", "U+202E"), ("\u200b", "U+200B"), ("\u202eadmin\u200b\ufeff", "U+202E")):
        status, body, _ = http_json(node.url + "/users/3", "PUT", {"name": name})
        assert status == 400 and f"name must not contain {code} (a format character)" in body["error"], body
    assert http_json(node.url + "/users/3")[1] == {"id_user": "3", "name": "Mike"}


def test_a_path_that_is_not_utf8_is_refused(node: NodeHandle) -> None:
    for path in ("/rooms/%ff%fe", "/%ff%fe/users", "/ui/%C3?id_user=1", "/users/%ff"):
        status, body, _ = http_json(node.url + path)
        assert status == 400 and body == {
            "error": "the path is not valid UTF-8 once its %-escapes are decoded",
            "status": 400,
        }, path
    status, body, _ = http_json(node.url + "/rooms/%2525")
    assert status == 200 and body["room"] == "%25", "decoded once: %2525 is the room '%25'"


async def test_composed_and_decomposed_names_are_one_room(start_node, clients) -> None:
    node = start_node("node-a")
    composed = SimClient(node.url, "1", "Math\u00e9")
    decomposed = SimClient(node.url, "2", "Mathe\u0301")
    clients += [composed, decomposed]
    await composed.connect()
    await decomposed.connect()
    await composed.wait_event("socket-connected", id_socket=decomposed.sid)
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for path in ("/rooms/Math%C3%A9", "/rooms/Mathe%CC%81"):
            async with session.get(node.url + path) as response:
                body = await response.json()
            assert body["room"] == "Math\u00e9" and body["sockets"] == 2, (path, body)


# Every error is JSON ------------------------------------------------------------------------


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict:
    assert status == expected, body
    assert headers["content-type"].startswith("application/json"), headers
    decoded = json.loads(body)
    assert decoded["status"] == expected and decoded["error"], decoded
    return decoded


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (b"GET /users HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 400, "bytes"),
        (b"GET /users HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n", 400, "malformed HTTP request"),
        (b"G(T /users HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET /r\xc3\xa9 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET /users HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n", 400, "malformed HTTP request"),
    ],
)
def test_requests_aiohttp_cannot_parse_get_json(node: NodeHandle, request_bytes: bytes, status: int, message: str):
    decoded = assert_json_error(*raw_http(node.port, request_bytes), status)
    assert message in decoded["error"]
    assert "aaaa" not in decoded["error"], "the request is not echoed back"
    line = f"bad request from 127.0.0.1: {decoded['error']}"
    wait_until(lambda: line in node.log_text(), 5, "the malformed request's log line")
    assert "Traceback" not in node.log_text(), "a malformed request is one log line, not a traceback"


def test_every_error_route_answers_json(node: NodeHandle) -> None:
    host = f"Host: localhost:{node.port}\r\n".encode()
    cases = [
        (b"GET /no/such/route HTTP/1.1\r\n", 404),
        (b"GET /assets/no-such-file.js HTTP/1.1\r\n", 404),
        (b"GET /assets/ HTTP/1.1\r\n", 404),
        (b"GET /assets/%2e%2e/validation.py HTTP/1.1\r\n", 404),
        (b"GET /assets/../routes/ui.py HTTP/1.1\r\n", 404),
        (b"GET /assets/x%0D%0ASet-Cookie:%20a=b HTTP/1.1\r\n", 404),
        (b"DELETE /users/1 HTTP/1.1\r\n", 405),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n", 405),
        (b"GET /socket.io/?EIO=4&transport=nope HTTP/1.1\r\n", 400),
        (b"PUT /users/1 HTTP/1.1\r\nContent-Length: 70000\r\n", 413),
    ]
    for start, expected in cases:
        request = start + host + b"Connection: close\r\n\r\n"
        if expected == 413:
            request += b"{" + b" " * 69_998 + b"}"
        status, headers, body = raw_http(node.port, request)
        decoded = assert_json_error(status, headers, body, expected)
        if expected == 405:
            assert "allowed: " in decoded["error"] and headers["allow"], (decoded, headers)
    assert http_json(node.url + "/users/1")[1]["name"] == "John"


# The page and its assets --------------------------------------------------------------------


def test_the_page_carries_its_security_headers_and_no_inline_code(node: NodeHandle) -> None:
    with urllib.request.urlopen(node.url + "/ui/" + quote('"><b>x') + "?id_user=1", timeout=5) as page:
        headers, html = page.headers, page.read().decode()
    policy = {part.split()[0]: part.split()[1:] for part in headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'self'"] and policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["object-src"] == ["'none'"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == [] and "<style" not in html, "no inline script or style"
    assert re.search(r"\son\w+=", html) is None, "no inline event handlers"
    assert 'data-room="&quot;&gt;&lt;b&gt;x"' in html and "<b>x" not in html, "the room is escaped in its attribute"
    for asset, kind in (("ui.js", "javascript"), ("ui.css", "text/css"), ("socket.io.min.js", "javascript")):
        with urllib.request.urlopen(node.url + "/assets/" + asset, timeout=5) as response:
            assert kind in response.headers["Content-Type"] and response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_without_id_user_says_what_to_add(node: NodeHandle) -> None:
    for path in ("/ui/Maths", "/ui/Maths?id_user=", "/ui/Maths?id_user=%20"):
        with urllib.request.urlopen(node.url + path, timeout=5) as page:
            headers, html = page.headers, page.read().decode()
        assert headers["Content-Type"].startswith("text/html"), (path, headers)
        assert headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
        assert "add <code>?id_user=N</code>" in html and 'href="/ui/Maths?id_user=1"' in html, html
        assert '<form id="choose" method="get" action="/ui/Maths">' in html and 'name="id_user"' in html
        assert re.findall(r"<script", html) == [], "nothing to run"
    with urllib.request.urlopen(node.url + "/ui/" + quote('"><b>x y'), timeout=5) as page:
        html = page.read().decode()
    assert "<b>x" not in html and "/ui/%22%3E%3Cb%3Ex%20y?id_user=1" in html, "the room is escaped, in text and URL"
    assert http_json(node.url + "/ui/Maths?id_user=abc%00")[0] == 400, "a bad id_user is still a JSON error"


def test_the_page_starts_in_its_loading_state(node: NodeHandle) -> None:
    with urllib.request.urlopen(node.url + "/ui/Maths?id_user=1", timeout=5) as page:
        html = page.read().decode()
    assert '<p id="roster-note" class="note loading" aria-live="polite">loading the room…</p>' in html


# The access log of writes -------------------------------------------------------------------


def test_every_write_is_one_access_log_line(node: NodeHandle) -> None:
    secret_name = "Secret Body 1234"
    writes = [
        ("/users/2", {"name": secret_name}, {}, 204),
        ("/users/2", {"name": ""}, {}, 400),
        ("/users/99", {"name": secret_name}, {}, 404),
        ("/users/2", {"name": secret_name}, {"Host": "evil.example"}, 421),
    ]
    for path, body, headers, status in writes:
        assert http_json(node.url + path, "PUT", body, headers=headers)[0] == status

    def write_lines() -> list[str]:
        return [line for line in node.log_text().splitlines() if "PUT /users/" in line]

    wait_until(lambda: len(write_lines()) >= len(writes), 5, "one log line per write")
    lines = write_lines()
    assert len(lines) == len(writes), lines
    for line, (path, _, _, status) in zip(lines, writes, strict=True):
        assert "INFO" in line and f"PUT /users/'{path.rsplit('/', 1)[1]}' from 127.0.0.1: {status}" in line, line
    assert secret_name not in node.log_text(), "the body never reaches the log"
