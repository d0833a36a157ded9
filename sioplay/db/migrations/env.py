"""Alembic environment: sioplay runs its migrations itself, on a connection it hands over in the config."""

from __future__ import annotations

from alembic import context

from sioplay.db.models import Base
from sioplay.db.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("sioplay's migrations run through `sioplay db migrate`, not the alembic command")

context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
