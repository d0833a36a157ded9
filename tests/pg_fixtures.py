"""The PostgreSQL at SIOPLAY_TEST_PG_URL for the tests of the "beyond one machine" database setting.

A server that does not answer skips those tests with the reason, or fails them
where CI says one runs (SIOPLAY_REQUIRE_PG=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sioplay.db import hide_password, schema

PG_URL = os.environ.get("SIOPLAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# CI sets this where a server runs: a PostgreSQL that does not answer there is a failure, not a skip.
PG_REQUIRED = os.environ.get("SIOPLAY_REQUIRE_PG") == "1"

_unavailable: list[str] = []


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def pg_admin() -> asyncpg.Connection:
    """A plain asyncpg connection to the test server, or a skip (a failure under SIOPLAY_REQUIRE_PG)."""
    if not _unavailable:
        try:
            return await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _unavailable.append(f"{type(exc).__name__}: {exc}")
    reason = f"no PostgreSQL answers at {hide_password(PG_URL)} (SIOPLAY_TEST_PG_URL): {_unavailable[0]}"
    if PG_REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema, dropped afterwards; engines built with it as search_path see nothing else."""
    # Tests may run in parallel against one database, so each gets a schema of its own.
    name = f"sioplay_test_{uuid.uuid4().hex}"
    admin = await pg_admin()
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await pg_admin()
        try:
            await admin.execute(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            await admin.close()


async def _admin_execute(statement: str) -> None:
    admin = await pg_admin()
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of its own on the test server, seeded by sioplay, dropped afterwards (for node processes)."""
    name = f"sioplay_nodes_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(schema.reset(url))
        yield url
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
