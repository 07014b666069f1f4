"""Alembic's environment for IMP's relational schema (core/store/schema.py).

IMP runs migrations itself (core/store/migrate.py) on a connection it opened, under a lock;
the ``alembic`` command line is not needed. Offline SQL generation is not offered.
"""

from alembic import context

from core.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("IMP's migrations run through core.store.migrate (imp db upgrade), on a given connection")

context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
