"""Database URLs: normalise a user's SQLAlchemy URL to the async driver sioplay uses, and show it safely."""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from sioplay.errors import ConfigError

__all__ = ["async_url", "hide_password"]

# Every backend runs on one async driver, whatever driver the user's URL names.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
# libpq spellings people copy from psycopg2 URLs, as asyncpg.connect() keywords.
_LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}
# SQLAlchemy passes the query to asyncpg.connect() as keywords; anything else is a TypeError there.
_ASYNCPG_QUERY_KEYS = frozenset(
    {
        "ssl",
        "direct_tls",
        "timeout",
        "command_timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "prepared_statement_cache_size",
        "target_session_attrs",
        "passfile",
        "service",
        "servicefile",
        "krbsrvname",
        "gsslib",
        "host",
        "port",
        "user",
        "password",
        "database",
    }
)
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
_USERINFO_PASSWORD = re.compile(r"(://[^/:@]*:)[^/@]*@")


def async_url(url: str) -> str:
    """``url`` with the async driver for its backend: aiosqlite for SQLite, asyncpg for PostgreSQL."""
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    driver = _ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ConfigError(
            f"unsupported database {hide_password(url)}: sioplay works with sqlite:// and postgresql:// URLs"
        )
    parsed = parsed.set(drivername=driver)
    if driver == "postgresql+asyncpg":
        parsed = _asyncpg_query(parsed, url)
    return parsed.render_as_string(hide_password=False)


def hide_password(url: str | URL) -> str:
    """``url`` for messages and logs: the password, in the user info or the query, shown as ``***``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return _USERINFO_PASSWORD.sub(r"\1***@", str(url))
    secrets = {key: "***" for key in parsed.query if key.lower() in _SECRET_QUERY_KEYS}
    return parsed.update_query_dict(secrets).render_as_string(hide_password=True)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        # The parser's own message repeats the URL, password included.
        raise ConfigError(
            f"not a database URL: {hide_password(url)!r} (expected sqlite:///path/to/file.db or "
            "postgresql://user:password@host:port/database)"
        ) from exc


def _asyncpg_query(parsed: URL, raw: str) -> URL:
    query = {_LIBPQ_TO_ASYNCPG.get(key, key): value for key, value in parsed.query.items()}
    unknown = sorted(set(query) - _ASYNCPG_QUERY_KEYS)
    if unknown:
        raise ConfigError(
            f"unsupported query parameter {', '.join(map(repr, unknown))} in {hide_password(raw)}: "
            f"asyncpg accepts {', '.join(sorted(_ASYNCPG_QUERY_KEYS))}"
        )
    return parsed.set(query=query)
