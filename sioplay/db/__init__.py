"""The user database: models, async engines, Alembic migrations, the store the nodes use, and its liveness check."""

from sioplay.db.engine import create_engine, database_errors
from sioplay.db.models import SEED_USERS, User, UserRecord, validate_name
from sioplay.db.schema import ensure, migrate, reset
from sioplay.db.store import UserStore
from sioplay.db.url import async_url, hide_password

__all__ = [
    "SEED_USERS",
    "User",
    "UserRecord",
    "UserStore",
    "async_url",
    "create_engine",
    "database_errors",
    "ensure",
    "hide_password",
    "migrate",
    "reset",
    "validate_name",
]
