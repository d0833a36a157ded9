"""`sioplay db`: create, migrate and inspect the user database."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sioplay.commands._common import console, handles_errors, print_json, state_of
from sioplay.common.state import private_home

if TYPE_CHECKING:
    from sioplay.db import UserRecord

__all__ = ["app"]

app = typer.Typer(help="Create, migrate and inspect the user database.", no_args_is_help=True)

DbUrlOption = Annotated[
    str | None,
    typer.Option("--db-url", help="SQLAlchemy URL of the user database; default: SQLite in the state directory."),
]


@app.command("reset")
@handles_errors
def reset_command(ctx: typer.Context, db_url: DbUrlOption = None) -> None:
    """Drop, recreate and seed the 10 users."""
    from sioplay.db import SEED_USERS, hide_password, reset

    url = _url(ctx, db_url)
    asyncio.run(reset(url))
    _say(f"reset {hide_password(url)}: {len(SEED_USERS)} users")


@app.command("migrate")
@handles_errors
def migrate_command(ctx: typer.Context, db_url: DbUrlOption = None) -> None:
    """Upgrade the database schema to the newest version, keeping the users."""
    from sioplay.db import hide_password, migrate

    url = _url(ctx, db_url)
    asyncio.run(migrate(url))
    _say(f"migrated {hide_password(url)} to the newest schema")


@app.command("users")
@handles_errors
def users_command(
    ctx: typer.Context,
    db_url: DbUrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List the users."""
    users = asyncio.run(_list_users(_url(ctx, db_url)))
    if as_json:
        print_json([user.as_json() for user in users])
        return
    table = Table("id_user", "name")
    for user in users:
        # Names are user input: never let them be read as Rich markup.
        table.add_row(Text(user.id_user), Text(user.name))
    console.print(table)


def _url(ctx: typer.Context, db_url: str | None) -> str:
    settings = state_of(ctx).settings.replace(db_url=db_url)
    if settings.db_url is None:
        # The state directory's SQLite file is made private before SQLite opens it: its -wal and -shm take its mode.
        private_home(settings.home)
        os.close(os.open(settings.default_db_path, os.O_WRONLY | os.O_CREAT, 0o600))
    return settings.effective_db_url


def _say(line: str) -> None:
    console.print(escape(line), highlight=False, soft_wrap=True)


async def _list_users(url: str) -> list[UserRecord]:
    from sioplay.db import UserStore

    async with UserStore(url) as store:
        return await store.list()
