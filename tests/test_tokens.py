"""`--auth token` against real node processes: who may connect, live expiry and refresh, authorised writes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sioplay.client.sim import SimClient
from sioplay.common.cluster_secret import load_or_create_secret
from sioplay.common.tokens import mint_token
from sioplay.errors import ClientError
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http_json, async_wait_until, http_json
from tests.test_js_client import js_client_dir  # noqa: F401 - the fixture


@pytest.fixture
def token_settings(seeded_settings: Settings) -> Settings:
    return seeded_settings.replace(auth="token")


@pytest.fixture
def secret(token_settings: Settings) -> bytes:
    return load_or_create_secret(token_settings.home)


@pytest.fixture
def token_node(start_node: Callable[..., NodeHandle], token_settings: Settings) -> NodeHandle:
    return start_node("node-a", token_settings)


def hs256_signed_with(claims: dict[str, object], key: bytes) -> str:
    """An HS256 JWT made by hand: PyJWT itself refuses a PEM key as an HMAC secret."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + part(json.dumps(claims).encode())
    return signing_input + "." + part(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


async def refusal(node: NodeHandle, token: str | None, room: str = "Maths", id_user: str = "") -> str:
    client = SimClient(node.url, id_user, room, token=token)
    with pytest.raises(ClientError) as refused:
        await client.connect(timeout_s=5.0)
    return str(refused.value)


async def test_a_valid_token_connects_as_its_sub(token_node: NodeHandle, secret: bytes) -> None:
    client = SimClient(token_node.url, "", "Maths", token=mint_token(secret, "3", rooms=["Maths"]))
    try:
        handshake = await client.connect()
        _, body, _ = await async_http_json(token_node.url + "/rooms/Maths")
        assert body["users"] == [{"id_socket": handshake["id_socket"], "id_user": "3", "node": "node-a"}]
    finally:
        await client.disconnect()


async def test_tokens_that_prove_nothing_are_refused_saying_why(token_node: NodeHandle, secret: bytes) -> None:
    other_secret = b"x" * 32
    assert await refusal(token_node, None) == "token required"
    assert await refusal(token_node, mint_token(secret, "1", now=time.time() - 7200)) == "token expired"
    assert await refusal(token_node, mint_token(other_secret, "1")) == "bad signature"
    unsigned = jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert "token algorithm 'none' not accepted" in await refusal(token_node, unsigned)
    assert await refusal(token_node, mint_token(secret, "12")) == "unknown user 12"
    assert await refusal(token_node, mint_token(secret, "1", rooms=["Physics"])) == "room Maths not allowed by token"
    assert "lives longer" in await refusal(token_node, mint_token(secret, "1", ttl_s=7 * 24 * 3600))
    assert await refusal(token_node, mint_token(secret, "1"), id_user="2") == "id_user 2 is not the token's user"
    log = token_node.log_text()
    assert secret.hex() not in log


async def test_a_token_in_the_query_string_works_and_is_logged_as_a_warning_without_it(
    token_node: NodeHandle, secret: bytes
) -> None:
    token = mint_token(secret, "2")
    url = f"ws://127.0.0.1:{token_node.port}/socket.io/?EIO=4&transport=websocket&room=Maths&token={token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async with asyncio.timeout(5.0):
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("40")
            connected, handshake = await ws.receive_str(), await ws.receive_str()
    assert connected.startswith("40{"), connected
    assert handshake.startswith('42["handshake"'), handshake
    log = token_node.log_text()
    assert "sent its token in the query string" in log
    assert token not in log and token.split(".")[2] not in log


async def test_a_live_socket_is_dropped_within_a_second_of_exp_and_a_refreshed_one_stays(
    token_node: NodeHandle, secret: bytes
) -> None:
    watcher = SimClient(token_node.url, "", "Maths", token=mint_token(secret, "1"))
    short = SimClient(token_node.url, "", "Maths", token=mint_token(secret, "2", ttl_s=2))
    refreshed = SimClient(token_node.url, "", "Maths", token=mint_token(secret, "3", ttl_s=2))
    try:
        await watcher.connect()
        await short.connect()
        await refreshed.connect()
        short_sid = short.sid
        ack = await refreshed.call("refresh-token", {"token": mint_token(secret, "3", ttl_s=60)})
        assert ack["ok"], ack
        refused = await refreshed.call("refresh-token", {"token": mint_token(secret, "4", ttl_s=60)})
        assert refused == {"ok": False, "error": "token is for another user"}
        exp = jwt.decode(short.token, options={"verify_signature": False})["exp"]
        await short.wait_event("token-expired", timeout_s=6.0, reason="token expired")
        await short.wait_for(lambda: not short.connected, 2.0, "the disconnect")
        gone = await watcher.wait_event("socket-disconnected", timeout_s=2.0, id_socket=short_sid)
        assert gone.at - exp < 1.0, f"disconnected {gone.at - exp:.2f} s after exp"
        await async_wait_until(lambda: time.time() > exp + 1.5, 5.0, "past the first token's expiry")
        assert refreshed.connected
        assert not any(event.name == "token-expired" for event in refreshed.events)
    finally:
        for client in (watcher, short, refreshed):
            await client.disconnect()


def test_put_needs_the_users_own_bearer_token(token_node: NodeHandle, secret: bytes) -> None:
    url = token_node.url + "/users/2"
    status, body, headers = http_json(url, "PUT", {"name": "Maria"})
    assert (status, headers.get("WWW-Authenticate")) == (401, 'Bearer realm="sioplay"'), body
    status, body, headers = http_json(
        url, "PUT", {"name": "Maria"}, headers={"Authorization": "Bearer " + mint_token(b"y" * 32, "2")}
    )
    assert (status, body["error"]) == (401, "bad signature")
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, body, _ = http_json(
        url, "PUT", {"name": "Maria"}, headers={"Authorization": "Bearer " + mint_token(secret, "1")}
    )
    assert status == 403, body
    assert http_json(token_node.url + "/users/2")[1]["name"] == "Mary"
    status, _, _ = http_json(
        url, "PUT", {"name": "Maria"}, headers={"Authorization": "Bearer " + mint_token(secret, "2")}
    )
    assert status == 204
    assert http_json(token_node.url + "/users/2")[1]["name"] == "Maria"
    assert http_json(token_node.url + "/healthz")[1]["auth"] == {"mode": "token", "algorithm": "HS256"}


async def test_with_a_public_key_only_its_algorithm_is_accepted(
    start_node: Callable[..., NodeHandle], token_settings: Settings, tmp_path: Path, secret: bytes
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "app.pub"
    key_file.write_bytes(public_pem)
    node = start_node("node-rs", token_settings.replace(auth_public_key=key_file))
    client = SimClient(node.url, "", "Maths", token=mint_token(private, "4"))
    try:
        await client.connect()
    finally:
        await client.disconnect()
    # HS256 "signed" with the public key's bytes: what a verifier that trusts the token's alg would accept.
    confused = hs256_signed_with({"sub": "1", "exp": int(time.time()) + 60}, public_pem)
    assert "token algorithm 'HS256' not accepted" in await refusal(node, confused)
    assert "not accepted" in await refusal(node, mint_token(secret, "1"))


def test_the_official_js_client_connects_with_its_token_in_auth(
    js_client_dir: Path,  # noqa: F811 - the fixture imported above
    token_node: NodeHandle,
    secret: bytes,
) -> None:
    run = subprocess.run(
        ["node", "token.mjs", token_node.url, mint_token(secret, "5"), mint_token(secret, "5", now=time.time() - 7200)],
        cwd=js_client_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["handshake"] == {"node": "node-a", "procid": token_node.pid, "id_socket": seen["id"]}
    assert seen["refusal"] == "token expired"
