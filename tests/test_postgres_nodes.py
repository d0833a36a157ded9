"""Nodes that share a PostgreSQL instead of a SQLite file: the "beyond one machine" database setting."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from sioplay.client.sim import SimClient
from sioplay.db import schema
from sioplay.errors import ClientError
from sioplay.settings import Settings
from tests.helpers import NodeHandle, http_json
from tests.test_db import PG_URL, _pg_admin

pytestmark = pytest.mark.postgres


async def _admin_execute(statement: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of its own on the test server, seeded by sioplay, dropped afterwards."""
    name = f"sioplay_nodes_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(schema.reset(url))
        yield url
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_nodes(
    pg_database: str, settings: Settings, start_node: Callable[..., NodeHandle]
) -> tuple[NodeHandle, NodeHandle]:
    on_postgres = dataclasses.replace(settings, db_url=pg_database)
    return start_node("node-a", on_postgres), start_node("node-b", on_postgres)


async def test_nodes_on_postgresql_keep_the_contract(
    pg_nodes: tuple[NodeHandle, NodeHandle], clients: list[SimClient]
) -> None:
    node_a, node_b = pg_nodes
    status, users, _ = http_json(node_b.url + "/users")
    assert status == 200 and [user["name"] for user in users][:3] == ["John", "Mary", "Mike"]

    john = SimClient(node_a.url, "1", "Maths")
    mary = SimClient(node_b.url, "2", "Maths")
    clients += [john, mary]
    await john.connect()
    await mary.connect()
    await john.wait_event("socket-connected", id_socket=mary.sid)

    assert http_json(node_a.url + "/users/2", "PUT", {"name": "Maria"})[0] == 204
    assert http_json(node_b.url + "/users/2")[1] == {"id_user": "2", "name": "Maria"}, "one database for all nodes"

    stranger = SimClient(node_b.url, "99", "Maths")
    with pytest.raises(ClientError, match="unknown id_user '99'"):
        await stranger.connect()
