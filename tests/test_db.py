"""The user database against real SQLite files and a real PostgreSQL (one schema per test)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sioplay.db import (
    SEED_USERS,
    User,
    UserRecord,
    UserStore,
    async_url,
    create_engine,
    ensure,
    hide_password,
    migrate,
    reset,
    validate_name,
)
from sioplay.db.engine import SQLITE_BUSY_TIMEOUT_MS
from sioplay.db.schema import _LOCK_KEY, VERSION_TABLE
from sioplay.errors import ConfigError, DatabaseError, UnknownUserError, ValidationError
from tests.helpers import async_wait_until
from tests.pg_fixtures import PG_URL, pg_admin, pg_schema

SEEDED = list(SEED_USERS)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite_engine = create_engine(f"sqlite:///{tmp_path}/sioplay.db")
        yield sqlite_engine
        await sqlite_engine.dispose()
    else:
        async with pg_schema() as schema:
            pg_engine = create_engine(PG_URL, search_path=schema)
            yield pg_engine
            await pg_engine.dispose()


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[UserStore]:
    await reset(engine)
    async with UserStore(engine) as user_store:
        yield user_store


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql+asyncpg://u:p%40ss@h/db?ssl=require"),
    ],
)
def test_async_url_picks_the_async_driver(given: str, expected: str) -> None:
    assert async_url(given) == expected


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u:s3cret@h/db", "unsupported database"),
        ("postgresql://u:s3cret@h:notaport/db", "not a database URL"),
        ("postgresql://u:s3cret@h/db?application_name=x", "unsupported query parameter 'application_name'"),
    ],
)
def test_async_url_refuses_what_it_cannot_use(bad: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        async_url(bad)
    assert "s3cret" not in str(caught.value)


def test_hide_password() -> None:
    assert hide_password("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    assert hide_password("postgresql://h/db") == "postgresql://h/db"
    assert "s3cret" not in hide_password("postgresql://u@h/db?password=s3cret")
    assert "s3cret" not in hide_password("garbage://u:s3cret@h:port/db")


# --- models ---------------------------------------------------------------------------------------


def test_seed_users() -> None:
    assert [(user.id_user, user.name) for user in SEED_USERS] == [
        ("1", "John"),
        ("2", "Mary"),
        ("3", "Mike"),
        ("4", "Frank"),
        ("5", "Stephanie"),
        ("6", "Richard"),
        ("7", "Sonia"),
        ("8", "Charlie"),
        ("9", "Rowan"),
        ("10", "Victoria"),
    ]
    assert UserRecord("1", "John").as_json() == {"id_user": "1", "name": "John"}


def test_validate_name_trims() -> None:
    assert validate_name("  Zoë 🙂 ") == "Zoë 🙂"
    assert validate_name("x" * 255) == "x" * 255


BAD_NAMES = ["", "   ", "x" * 256, 42, None, ["John"], "Jo\x00hn", "Jo\nhn", "Jo\thn", "Jo\x7fhn", "Jo\u2028hn"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_validate_name_refuses(bad: object) -> None:
    with pytest.raises(ValidationError, match="name must"):
        validate_name(bad)


# --- schema and store, on both backends -----------------------------------------------------------


async def test_reset_seeds_exactly_the_ten_users(store: UserStore) -> None:
    assert await store.list() == SEEDED


async def test_reset_is_idempotent(engine: AsyncEngine, store: UserStore) -> None:
    await store.rename("1", "Johnny")
    async with engine.begin() as conn:
        await conn.execute(insert(User).values(id_user="11", name="Extra"))
    await reset(engine)
    await reset(engine)
    assert await store.list() == SEEDED


async def test_get(store: UserStore) -> None:
    assert await store.get("5") == UserRecord("5", "Stephanie")
    for unknown in ("99", "", "0"):
        with pytest.raises(UnknownUserError) as caught:
            await store.get(unknown)
        assert caught.value.id_user == unknown


async def test_list_orders_numeric_ids_numerically_then_the_others(engine: AsyncEngine, store: UserStore) -> None:
    extra = [("b", "B"), ("11", "Eleven"), ("02", "Two again"), ("a", "A"), ("2x", "Mixed")]
    async with engine.begin() as conn:
        await conn.execute(insert(User), [{"id_user": id_user, "name": name} for id_user, name in extra])
    ids = [user.id_user for user in await store.list()]
    assert ids == ["1", "02", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "2x", "a", "b"]


async def test_rename_trims_commits_and_is_seen_by_another_store(engine: AsyncEngine, store: UserStore) -> None:
    await store.rename("2", "  Maria Zoë 🙂 ")
    async with UserStore(engine) as other:
        assert await other.get("2") == UserRecord("2", "Maria Zoë 🙂")
    await store.rename("3", "m" * 255)
    assert (await store.get("3")).name == "m" * 255


@pytest.mark.parametrize("bad", BAD_NAMES)
async def test_rename_refuses_bad_names_and_changes_nothing(store: UserStore, bad: object) -> None:
    with pytest.raises(ValidationError):
        await store.rename("1", bad)
    assert await store.list() == SEEDED


async def test_rename_of_an_unknown_user_raises_and_changes_nothing(store: UserStore) -> None:
    with pytest.raises(UnknownUserError):
        await store.rename("42", "Nobody")
    assert await store.list() == SEEDED


async def test_ensure_creates_and_seeds_once(engine: AsyncEngine) -> None:
    assert await ensure(engine) is True
    async with UserStore(engine) as user_store:
        assert await user_store.list() == SEEDED
        await user_store.rename("7", "Sonja")
        assert await ensure(engine) is False
        assert (await user_store.get("7")).name == "Sonja"
        assert len(await user_store.list()) == 10


async def test_migrate_creates_an_empty_table_then_is_a_no_op(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with UserStore(engine) as user_store:
        assert await user_store.list() == []
        async with engine.begin() as conn:
            await conn.execute(insert(User).values(id_user="1", name="Kept"))
        await migrate(engine)
        await migrate(engine)
        assert await user_store.list() == [UserRecord("1", "Kept")]
    async with engine.connect() as conn:
        versions = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()
        tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    assert versions == ["0001"]
    assert tables == {"users", VERSION_TABLE}


async def test_a_store_without_the_users_table_gives_database_error(engine: AsyncEngine) -> None:
    user_store = UserStore(engine)
    with pytest.raises(DatabaseError, match="users"):
        await user_store.list()
    await reset(engine)
    assert await user_store.list() == SEEDED
    await user_store.close()


# --- SQLite only ----------------------------------------------------------------------------------


async def test_sqlite_creates_the_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "sioplay.db"
    sqlite_engine = create_engine(f"sqlite:///{path}")
    try:
        async with sqlite_engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        await sqlite_engine.dispose()
    assert path.exists()


async def test_sqlite_from_plain_urls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/plain.db"
    assert await ensure(url) is True
    assert await ensure(url) is False
    store = UserStore(url)
    try:
        assert await store.list() == SEEDED
    finally:
        await store.close()


async def test_sqlite_writers_in_several_engines_wait_for_each_other(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    await reset(url)
    stores = [UserStore(url) for _ in range(3)]
    try:
        await asyncio.gather(*(store.rename(str(1 + n % 10), f"name {n}") for n, store in enumerate(stores * 10)))
        assert len(await stores[0].list()) == 10
    finally:
        for store in stores:
            await store.close()


async def test_sqlite_concurrent_ensure_in_one_loop(tmp_path: Path) -> None:
    results = await asyncio.gather(*(ensure(f"sqlite:///{tmp_path}/{n % 2}.db") for n in range(4)))
    assert sorted(results) == [False, False, True, True]


async def test_sqlite_search_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        create_engine(f"sqlite:///{tmp_path}/x.db", search_path="elsewhere")


async def test_sqlite_path_that_cannot_exist(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DatabaseError, match="file/sioplay.db"):
        await reset(f"sqlite:///{tmp_path}/file/sioplay.db")


# --- errors name the URL without its password -----------------------------------------------------


async def test_unreachable_server_gives_database_error_without_password() -> None:
    url = f"postgresql://sioplay:s3cret@127.0.0.1:{_refused_port()}/sioplay"
    for attempt in (migrate(url), reset(url), ensure(url), UserStore(url).list()):
        with pytest.raises(DatabaseError) as caught:
            await attempt
        message = str(caught.value)
        assert "127.0.0.1" in message
        assert "sioplay:***@" in message
        assert "s3cret" not in message
        assert "\n" not in message
    async with UserStore(url) as store:
        with pytest.raises(DatabaseError, match="read users from"):
            await store.get("1")
        with pytest.raises(DatabaseError, match="rename a user in"):
            await store.rename("1", "Valid")


# --- PostgreSQL only ------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgresql_unknown_database() -> None:
    await (await pg_admin()).close()
    url = make_url(PG_URL).set(password="s3cret", database=f"sioplay_missing_{uuid.uuid4().hex}")
    with pytest.raises(DatabaseError, match="sioplay_missing_") as caught:
        await migrate(url.render_as_string(hide_password=False))
    assert "s3cret" not in str(caught.value)


@pytest.mark.postgres
async def test_postgresql_concurrent_ensure_seeds_once() -> None:
    # Two supervisors starting at once against one fresh database (threads with loops of their
    # own stand in for processes on two hosts): one creates and seeds, the other waits and finds it.
    async with pg_schema() as schema:
        results = await asyncio.gather(*(asyncio.to_thread(asyncio.run, _ensure_in(schema)) for _ in range(2)))
        assert sorted(results) == [False, True]
        pg_engine = create_engine(PG_URL, search_path=schema)
        try:
            async with UserStore(pg_engine) as store:
                assert await store.list() == SEEDED
        finally:
            await pg_engine.dispose()


async def _ensure_in(schema: str) -> bool:
    pg_engine = create_engine(PG_URL, search_path=schema)
    try:
        return await ensure(pg_engine)
    finally:
        await pg_engine.dispose()


@pytest.mark.postgres
async def test_postgresql_schema_changes_wait_for_the_advisory_lock() -> None:
    async with pg_schema() as schema:
        pg_engine = create_engine(PG_URL, search_path=schema)
        admin = await pg_admin()
        try:
            # The pool keeps this one connection, so ensure() below runs on this backend.
            async with pg_engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await admin.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
            try:
                ensuring = asyncio.create_task(ensure(pg_engine))
                await async_wait_until(
                    lambda: _waits_for_advisory_lock(admin, pid), 10, "ensure() to wait for the advisory lock"
                )
                assert not ensuring.done()
            finally:
                await admin.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
            assert await asyncio.wait_for(ensuring, 10) is True
        finally:
            await admin.close()
            await pg_engine.dispose()


async def _waits_for_advisory_lock(admin: asyncpg.Connection, pid: int) -> bool:
    granted = await admin.fetchval("SELECT granted FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid)
    return granted is False


@pytest.mark.postgres
async def test_postgresql_tables_are_created_in_the_search_path_schema() -> None:
    async with pg_schema() as schema:
        pg_engine = create_engine(PG_URL, search_path=schema)
        try:
            await reset(pg_engine)
        finally:
            await pg_engine.dispose()
        admin = await pg_admin()
        try:
            rows = await admin.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name = ANY($1)",
                ["users", VERSION_TABLE],
            )
        finally:
            await admin.close()
        assert {(row["table_schema"], row["table_name"]) for row in rows if row["table_schema"] == schema} == {
            (schema, "users"),
            (schema, VERSION_TABLE),
        }
