"""The CLI's side of `--auth token`: `sioplay token`, and join, rename and swarm bringing tokens themselves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sioplay.common.cluster_secret import load_or_create_secret
from sioplay.settings import Settings
from tests.cli_fixtures import Cluster, cli, start_cluster
from tests.helpers import NodeHandle, http_json


@pytest.fixture
def token_cluster(start_node: Callable[..., NodeHandle], seeded_settings: Settings) -> Cluster:
    return start_cluster(start_node, seeded_settings.replace(auth="token"))


def test_join_rename_and_swarm_mint_their_own_tokens(token_cluster: Cluster) -> None:
    home = token_cluster.settings.home
    joined = cli(
        home, "join", "Maths", "--user", "2", "--name", "Marie", "--for", "0.2", "--json", "--url", token_cluster.url
    )
    assert joined.exit_code == 0, joined.output
    events = [json.loads(line)["event"] for line in joined.stdout.splitlines()]
    assert events == ["handshake", "roster", "renamed", "left"]
    renamed = cli(home, "rename", "--user", "3", "--name", "Mikey", "--room", "Maths", "--url", token_cluster.url)
    assert renamed.exit_code == 0, renamed.output
    assert http_json(token_cluster.url + "/users/3")[1]["name"] == "Mikey"
    swarm = cli(home, "swarm", "Maths", "--clients", "4", "--for", "0", "--json", "--url", token_cluster.url)
    assert swarm.exit_code == 0, swarm.output
    assert json.loads(swarm.stdout)["connected"] == 4


def test_a_token_for_another_user_cannot_rename(token_cluster: Cluster) -> None:
    home = token_cluster.settings.home
    minted = cli(home, "token", "--user", "1", "--ttl", "5m", "--json")
    assert minted.exit_code == 0, minted.output
    token = json.loads(minted.stdout)["token"]
    claims = jwt.decode(token, load_or_create_secret(home), algorithms=["HS256"])
    assert claims["sub"] == "1" and claims["exp"] - claims["iat"] == 300
    refused = cli(home, "rename", "--user", "2", "--name", "X", "--token", token, "--url", token_cluster.url)
    assert refused.exit_code == 1
    assert "cannot change user 2" in refused.output and "HTTP 403" in refused.output
    assert token not in refused.output
    assert http_json(token_cluster.url + "/users/2")[1]["name"] == "Mary"


def test_without_the_secret_a_client_says_to_give_a_token(token_cluster: Cluster, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    refused = cli(elsewhere, "rename", "--user", "2", "--name", "X", "--url", token_cluster.url)
    assert refused.exit_code == 1
    assert "runs with --auth token" in refused.output and "give --token" in refused.output


def test_token_refuses_to_mint_for_a_public_key_cluster_without_the_private_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "app.key"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_file = tmp_path / "app.pub"
    public_file.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    monkeypatch.setenv("SIOPLAY_AUTH_PUBLIC_KEY", str(public_file))
    home = tmp_path / "home"
    refused = cli(home, "token", "--user", "1")
    assert refused.exit_code == 1 and "--private-key" in refused.output, refused.output
    minted = cli(home, "token", "--user", "1", "--private-key", str(key_file))
    assert minted.exit_code == 0, minted.output
    claims = jwt.decode(minted.stdout.strip(), private.public_key(), algorithms=["ES256"])
    assert claims["sub"] == "1"
