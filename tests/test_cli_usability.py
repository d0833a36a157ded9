"""The CLI a PM2 user expects (issue 15): scale +N, one home per user, options anywhere, hints that work as
printed, Redis checked first, who --strict/--group, one JSON shape, quick imports, plain help, sioplay.toml."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from sioplay.cli import app
from sioplay.client.sim import SimClient
from sioplay.cluster.redis_server import EmbeddedRedis
from sioplay.common.ports import free_port
from sioplay.settings import ENV_PREFIX, Settings, default_home
from tests.cli_fixtures import Cluster, cli, start_cluster
from tests.cluster_fixtures import Clusters, short_timer_settings
from tests.helpers import NodeHandle

runner = CliRunner()

# The short timers of the test clusters, as a config file and as variables.
_TIMERS = (
    "heartbeat_interval_s",
    "heartbeat_misses",
    "roster_timeout_s",
    "redis_retry_max_s",
    "shutdown_grace_s",
    "stop_timeout_s",
    "start_timeout_s",
    "health_interval_s",
    "health_timeout_s",
)


def sioplay(*args: str, cwd: Path, env: dict[str, str], timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sioplay", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bare_env() -> dict[str, str]:
    """This process's environment without any SIOPLAY_* variable (XDG_STATE_HOME is the test's, see conftest)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}


def timers_toml(settings: Settings) -> str:
    return "".join(f"{name} = {getattr(settings, name)!r}\n" for name in _TIMERS)


# 1. scale +N / -N / N


def test_scale_adds_and_removes_relative_to_the_running_count(clusters: Clusters) -> None:
    cluster = clusters.start(nodes=1)
    home = ["--home", str(cluster.home)]

    added = runner.invoke(app, [*home, "cluster", "scale", "+2"], terminal_width=200)
    assert added.exit_code == 0, added.output
    assert [node.id for node in cluster.state().nodes] == ["node-1", "node-2", "node-3"]

    removed = runner.invoke(app, [*home, "cluster", "scale", "-1"], terminal_width=200)
    assert removed.exit_code == 0, removed.output
    assert [node.id for node in cluster.state().nodes] == ["node-1", "node-2"]

    same = runner.invoke(app, [*home, "cluster", "scale", "2"])
    assert same.exit_code == 0 and same.stdout.strip() == "already 2 nodes", same.output

    for spec, message in (("-2", "at least 1 node"), ("-5", "at least 1 node"), ("+99", "at most 64"), ("x", "N, +N")):
        refused = runner.invoke(app, [*home, "cluster", "scale", spec])
        assert refused.exit_code == 1 and message in refused.stderr, (spec, refused.output)
    assert [node.status for node in cluster.state().nodes] == ["online", "online"], "a refusal changes nothing"


# 2. one default home per user: every command finds the cluster from any directory; 8. sioplay.toml


def test_the_default_home_is_per_user_and_a_config_file_starts_the_cluster(clusters: Clusters, tmp_path: Path) -> None:
    settings = short_timer_settings(default_home())
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "sioplay.toml").write_text(
        f'nodes = 2\npublic_port = {settings.public_port}\ncluster = "{settings.cluster}"\n'
        f'host = "127.0.0.1"\nmax_memory_bytes = "1GB"\n' + timers_toml(settings)
    )
    clusters.track(settings)
    clusters.track(settings.replace(home=project / ".sioplay"))  # where the current main would put it
    env = bare_env()

    started = sioplay("cluster", "start", cwd=project, env=env)
    assert started.returncode == 0, started.stderr
    # No --home given, none needed: the hints are the plain commands.
    assert "logs: sioplay cluster logs -f · stop: sioplay cluster stop" in started.stdout

    status = sioplay("cluster", "status", "--json", cwd=elsewhere, env=env)
    assert status.returncode == 0, status.stderr
    running = json.loads(status.stdout)
    assert running["running"] is True and running["home"] == str(default_home().resolve())
    assert running["public_port"] == settings.public_port and running["max_memory_bytes"] == 1024**3
    assert [node["status"] for node in running["nodes"]] == ["online", "online"], "nodes = 2 from the file"

    # `who` takes the public port from the discovered cluster's state: it is not 5009.
    who = sioplay("who", "Maths", "--json", cwd=elsewhere, env=env)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["complete"] is True
    logs = sioplay("cluster", "logs", "--lines", "3", cwd=elsewhere, env=env)
    assert logs.returncode == 0 and "node-1" in logs.stdout, logs.stderr

    stopped = sioplay("cluster", "stop", cwd=elsewhere, env=env)
    assert stopped.returncode == 0 and "stopped cluster" in stopped.stdout, stopped.stderr

    # 5. one JSON shape whatever the state.
    after = sioplay("cluster", "status", "--json", cwd=elsewhere, env=env)
    assert after.returncode == 1
    idle = json.loads(after.stdout)
    assert idle["running"] is False and set(idle) == set(running)
    assert set(idle["nodes"][0]) == set(running["nodes"][0]) and set(idle["redis"]) == set(running["redis"])


# 3. root options after the command, and hints that work as printed


def test_options_after_the_command_and_hints_that_carry_home(clusters: Clusters, tmp_path: Path) -> None:
    settings = clusters.settings()
    clusters.track(settings)
    home = str(settings.home)
    env = {**bare_env(), **{ENV_PREFIX + name.upper(): str(getattr(settings, name)) for name in _TIMERS}}
    port = str(settings.public_port)

    started = sioplay(
        "cluster", "start", "--nodes", "1", "--port", port, "--home", home, "--cluster", settings.cluster, "-v",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    hint = next(line for line in started.stdout.splitlines() if line.startswith("logs: "))
    logs, stop = (part.split(": ", 1)[1] for part in hint.split(" · "))
    assert stop == f"sioplay --home {shlex.quote(home)} cluster stop", hint

    again = sioplay("cluster", "start", "--home", home, "--port", port, cwd=tmp_path, env=env)
    assert again.returncode == 1 and f"'sioplay --home {shlex.quote(home)} cluster stop' stops it" in again.stderr

    status = sioplay("cluster", "status", "--json", "--home", home, cwd=tmp_path, env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["cluster"] == settings.cluster, status.stderr
    shown = sioplay(*shlex.split(logs)[1:-1], "--lines", "2", cwd=tmp_path, env=env)
    assert shown.returncode == 0 and "node-1" in shown.stdout, shown.stderr
    stopped = sioplay(*shlex.split(stop)[1:], cwd=tmp_path, env=env)
    assert stopped.returncode == 0 and "stopped cluster" in stopped.stdout, stopped.stderr

    bad = runner.invoke(app, ["cluster", "status", "--redis-url", "http://nope"])
    assert bad.exit_code == 2 and "redis://" in bad.output


# 4. Redis is checked before anything starts


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_a_redis_that_does_not_answer_fails_the_start_in_one_line_before_anything_runs(
    tmp_path: Path, silent_port: int, redis_server: EmbeddedRedis
) -> None:
    wrong_password = redis_server.url.replace("@", "x@", 1)
    cases = [
        (f"redis://127.0.0.1:{free_port()}/0", "cannot reach Redis at 127.0.0.1:"),
        (f"redis://127.0.0.1:{silent_port}/0", f"Redis at 127.0.0.1:{silent_port} did not answer within 3 s"),
        (wrong_password, "refused: WRONGPASS"),
    ]
    for index, (url, message) in enumerate(cases):
        home = tmp_path / f"home{index}"
        began = time.monotonic()
        result = sioplay(
            "--home", str(home), "cluster", "start", "--nodes", "1", "--port", str(free_port()), "--redis-url", url,
            cwd=tmp_path, env=bare_env(),
        )  # fmt: skip
        assert result.returncode == 1, (url, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (url, result.stderr)
        assert time.monotonic() - began < 20, "a few seconds, not the nodes' start timeout"
        assert not (home / "cluster").exists(), "no supervisor was started"


# 5. who --strict and --group, id_user an integer, errors as JSON


async def test_who_strict_group_and_typed_ids(
    start_node: Callable[..., NodeHandle], seeded_settings: Settings, clients: list[SimClient]
) -> None:
    # A suspended node stays expected for 10 s, and the roster gives up on it after 0.5 s.
    patient = dataclasses.replace(seeded_settings, heartbeat_interval_s=1.0, heartbeat_misses=10, roster_timeout_s=0.5)
    cluster = await asyncio.to_thread(start_cluster, start_node, patient)
    for id_user in ("1", "1", "2"):
        client = SimClient(cluster.a.url, id_user, "Maths")
        clients.append(client)
        await client.connect()
    home = cluster.settings.home

    grouped = await asyncio.to_thread(cli, home, "who", "Maths", "--json", "--group", "--strict", "--url", cluster.url)
    assert grouped.exit_code == 0, grouped.output
    users = json.loads(grouped.stdout)["users"]
    assert sorted((user["id_user"], user["name"], len(user["sockets"])) for user in users) == [
        (1, "John", 2),
        (2, "Mary", 1),
    ]
    flat = json.loads((await asyncio.to_thread(cli, home, "who", "Maths", "--json", "--url", cluster.url)).stdout)
    assert {type(entry["id_user"]) for entry in flat["users"]} == {int}

    suspended = psutil.Process(cluster.b.pid)
    suspended.suspend()
    try:
        partial = await asyncio.to_thread(cli, home, "who", "Maths", "--strict", "--url", cluster.a.url)
    finally:
        suspended.resume()
    assert partial.exit_code == 3, partial.output
    assert "PARTIAL" in partial.stdout

    error = await asyncio.to_thread(cli, home, "who", "x" * 65, "--json", "--url", cluster.url)
    assert error.exit_code == 1 and error.stdout == ""
    assert json.loads(error.stderr) == {
        "error": "room name is longer than 64 characters (65)",
        "kind": "ValidationError",
        "exit_code": 1,
    }


# 6. lazy imports


def test_help_and_status_import_neither_the_web_stack_nor_the_supervisor(tmp_path: Path) -> None:
    heavy = ("aiohttp", "sqlalchemy", "socketio", "sioplay.cluster.supervisor", "sioplay.db.engine")
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom sioplay.cli import app\n"
        f"for args in (['--help'], ['--home', {str(tmp_path)!r}, 'cluster', 'status']):\n"
        "    CliRunner().invoke(app, args)\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# 7. help text


def test_help_shows_flags_without_a_type_and_arguments_by_one_name() -> None:
    root = runner.invoke(app, ["--help"], terminal_width=200)
    assert root.exit_code == 0
    assert "<bool>" not in root.stdout
    verbose = next(line for line in root.stdout.splitlines() if "--verbose" in line)
    assert "Debug logs" in verbose and "<" not in verbose

    who = runner.invoke(app, ["who", "--help"], terminal_width=200)
    assert "{room}" not in who.stdout and "ROOM" in who.stdout.split("\n\n")[0] + who.stdout, who.stdout
    assert "<bool>" not in who.stdout and "--strict" in who.stdout and "--home" in who.stdout

    flag_value = runner.invoke(app, ["--verbose", "true"])
    assert flag_value.exit_code == 2
    words = " ".join(flag_value.output.replace("│", " ").split())
    assert "No such command" not in words and "flags such as --verbose take no value" in words, words


def test_unknown_users_are_summarised_as_ranges(cluster: Cluster) -> None:
    result = cli(cluster.settings.home, "swarm", "Maths", "--clients", "1", "--users", "1-99,200", "--url", cluster.url)
    assert result.exit_code == 1
    assert "--users: 11-99, 200 are unknown" in result.stderr, result.stderr


# 8. the config file: generic over Settings, errors name the key and the file


def test_config_file_keys_types_precedence_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "sioplay.toml"

    def status_home(*args: str) -> str:
        result = runner.invoke(app, [*args, "cluster", "status", "--json"])
        assert result.exit_code == 1, result.output
        return json.loads(result.stdout)["home"]

    config.write_text('home = "state"\nroster_timeout_s = 3\nallowed_hosts = ["a.example"]\n')
    assert status_home() == str(tmp_path / "state"), "relative to the file"
    assert status_home("--home", str(tmp_path / "cli")) == str(tmp_path / "cli"), "the command line wins"
    monkeypatch.setenv("SIOPLAY_HOME", str(tmp_path / "env"))
    assert status_home() == str(tmp_path / "env"), "then the environment"
    monkeypatch.delenv("SIOPLAY_HOME")

    for text, message in (
        ("nodez = 3\n", f"{config}: unknown key 'nodez'"),
        ('public_port = "5009"\n', f"{config}: public_port must be int, not str '5009'"),
        ("nodes = 0\n", f"{config}: nodes must be a whole number of at least 1"),
        ("ws_compression = 1\n", f"{config}: ws_compression must be bool"),
        ("home = \n", f"{config} is not valid TOML"),
    ):
        config.write_text(text)
        result = runner.invoke(app, ["cluster", "status"])
        assert result.exit_code == 1 and message in result.stderr, (text, result.output)

    config.unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.sioplay]\nhome = "from-pyproject"\n')
    assert status_home() == str(tmp_path / "from-pyproject")
    other = tmp_path / "other.toml"
    other.write_text('home = "from-option"\n')
    assert status_home("--config", str(other)) == str(tmp_path / "from-option")
    missing = runner.invoke(app, ["cluster", "status", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "no config file" in missing.output
