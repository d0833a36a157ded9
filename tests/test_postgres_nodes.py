"""Nodes that share a PostgreSQL instead of a SQLite file: the "beyond one machine" database setting."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from sioplay.client.sim import SimClient
from sioplay.errors import ClientError
from sioplay.settings import Settings
from tests.helpers import NodeHandle, async_http_json

pytestmark = pytest.mark.postgres


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
    status, users, _ = await async_http_json(node_b.url + "/users")
    assert status == 200 and [user["name"] for user in users][:3] == ["John", "Mary", "Mike"]

    john = SimClient(node_a.url, "1", "Maths")
    mary = SimClient(node_b.url, "2", "Maths")
    clients += [john, mary]
    await john.connect()
    await mary.connect()
    await john.wait_event("socket-connected", id_socket=mary.sid)

    assert (await async_http_json(node_a.url + "/users/2", "PUT", {"name": "Maria"}))[0] == 204
    maria = (await async_http_json(node_b.url + "/users/2"))[1]
    assert maria == {"id_user": "2", "name": "Maria"}, "one database for all nodes"

    stranger = SimClient(node_b.url, "99", "Maths")
    with pytest.raises(ClientError, match="unknown id_user '99'"):
        await stranger.connect()
