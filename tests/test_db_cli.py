"""`sioplay db ...` through the real Typer app, against SQLite files in tmp_path."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sioplay.cli import app
from sioplay.db import SEED_USERS

SEEDED_JSON = [user.as_json() for user in SEED_USERS]

# A fixed width for the tables, and no settings leaking in from the environment of the test run.
runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1", "SIOPLAY_HOME": None, "SIOPLAY_DB_URL": None})


def sioplay(home: Path, *args: str) -> Result:
    return runner.invoke(app, ["--home", str(home), *args])


def users_json(home: Path, *args: str) -> list[dict[str, str]]:
    result = sioplay(home, "db", "users", "--json", *args)
    assert result.exit_code == 0, result.output
    users: list[dict[str, str]] = json.loads(result.stdout)
    return users


def test_reset_then_users_json(tmp_path: Path) -> None:
    result = sioplay(tmp_path, "db", "reset")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert f"{tmp_path}/sioplay.db" in result.stdout and "10 users" in result.stdout
    assert users_json(tmp_path) == SEEDED_JSON


def test_users_table(tmp_path: Path) -> None:
    assert sioplay(tmp_path, "db", "reset").exit_code == 0
    result = sioplay(tmp_path, "db", "users")
    assert result.exit_code == 0, result.output
    assert "id_user" in result.stdout and "name" in result.stdout
    for user in SEED_USERS:
        assert user.name in result.stdout
    assert result.stdout.index("Victoria") > result.stdout.index("Rowan")


def test_migrate_creates_the_table_and_keeps_users(tmp_path: Path) -> None:
    result = sioplay(tmp_path, "db", "migrate")
    assert result.exit_code == 0, result.output
    assert users_json(tmp_path) == []
    assert sioplay(tmp_path, "db", "reset").exit_code == 0
    assert sioplay(tmp_path, "db", "migrate").exit_code == 0
    assert users_json(tmp_path) == SEEDED_JSON


def test_command_db_url_overrides_home(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "other.db"
    result = sioplay(tmp_path / "home", "db", "reset", "--db-url", f"sqlite:///{other}")
    assert result.exit_code == 0, result.output
    assert other.exists()
    assert not (tmp_path / "home" / "sioplay.db").exists()
    assert users_json(tmp_path / "home", "--db-url", f"sqlite:///{other}") == SEEDED_JSON


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["db", "users", "--db-url", "nonsense"], "not a database URL"),
        (["db", "reset", "--db-url", "mysql://u:s3cret@localhost/db"], "unsupported database"),
        (["--db-url", "postgresql://u:s3cret@127.0.0.1:{port}/db", "db", "migrate"], "cannot migrate"),
        (["db", "users", "--db-url", "postgresql://u:s3cret@127.0.0.1:{port}/db"], "cannot read users from"),
    ],
)
def test_bad_db_url_is_one_error_line(tmp_path: Path, args: list[str], says: str) -> None:
    port = _refused_port()
    result = sioplay(tmp_path, *(arg.format(port=port) for arg in args))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert says in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.output
