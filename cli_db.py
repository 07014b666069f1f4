"""Database commands: `imp db upgrade|current` (registered by cli.py).

Every IMP process brings the schema up to date on first use, under a lock, so these are for
operators: run the migration as a deployment step before new replicas start, or see where a
database stands. The URL is printed without its password.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from app import database_revision, upgrade_database

db_cli = typer.Typer(no_args_is_help=True, help="The relational database (IMP_DB__URL): schema migrations.")
out = Console()
err = Console(stderr=True)


def _settings():  # noqa: ANN202 - core.config.Settings
    from cli import _settings_or_exit

    return _settings_or_exit()


def _fail(what: str, e: Exception) -> NoReturn:
    """The server is away, refuses the login, ...: say so in one line, without a traceback."""
    err.print(f"[red]error[/red]: {what}: {escape(type(e).__name__)}: "
              f"{escape(str(e).splitlines()[0] if str(e) else '')}", highlight=False)
    raise typer.Exit(1) from None


@db_cli.command()
def upgrade() -> None:
    """Migrate the database to the newest schema (Alembic); does nothing when it is there already."""
    settings = _settings()
    try:
        url, done = upgrade_database(settings)
    except Exception as e:
        _fail("could not upgrade the database", e)
    out.print(f"{escape(url)}: {escape(done)}", highlight=False)


@db_cli.command()
def current() -> None:
    """Print the database's schema revision and the newest one this IMP knows; exit 1 when behind."""
    settings = _settings()
    try:
        url, revision, newest = database_revision(settings)
    except Exception as e:
        _fail("could not read the database", e)
    out.print(f"{escape(url)}: revision {revision or 'none'} (newest {newest})", highlight=False)
    if revision != newest:
        raise typer.Exit(1)
