"""Retention commands: `imp retention purge|hold|release|holds|runs` (registered by cli.py).

Thin, like the rest of the CLI: app.py builds the retention store over the registry's
database; these commands parse, call it and print. `--json` shapes are stable. Bad input
(a malformed scope, a scope not on hold, days out of range) exits 2 with the reason.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app import build_retention
from core.engine import check_scope
from core.errors import ImpError

retention_cli = typer.Typer(no_args_is_help=True,
                            help="Retention: purge what is older than IMP_RETENTION__DAYS; legal holds per scope.")
out = Console()
err = Console(stderr=True)


def _fail(e: ImpError) -> None:
    err.print(f"[red]error[/red] ({e.code}): {escape(e.detail)}", highlight=False)
    raise typer.Exit(2)


def _retention():  # noqa: ANN202 - core.store.retention.Retention
    from cli import _settings_or_exit

    settings = _settings_or_exit()
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return build_retention(settings), settings


def _scope(scope: str) -> str:
    try:
        return check_scope(scope)
    except ImpError as e:
        _fail(e)
    return scope


@retention_cli.command("purge")
def purge(
    days: Annotated[int | None, typer.Option(min=1, max=36500, help="Purge what is older than this many days "
                                             "(default IMP_RETENTION__DAYS)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go; delete nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Remove answers, feedback, transcripts, stored upload originals and finished jobs older than the cut-off.

    Scopes under legal hold keep theirs; documents stay searchable (only their stored original goes)."""
    retention, settings = _retention()
    try:
        report = retention.purge(days or settings.retention.days, dry_run=dry_run)
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    table = Table("kind", "would go" if dry_run else "purged")
    for kind, n in report.purged.items():
        table.add_row(kind, str(n))
    out.print(table)
    what = "would be purged (dry run: nothing was deleted)" if dry_run else "purged"
    held = f"; kept for legal hold: {', '.join(report.held)}" if report.held else ""
    out.print(f"{report.total} items older than {report.cutoff:%Y-%m-%d %H:%M} UTC ({report.days} days) {what}"
              f"{escape(held)}", highlight=False)


@retention_cli.command("hold")
def hold(
    scope: Annotated[str, typer.Argument(help="The scope to keep whatever its age (a channel id, a label)")],
    reason: Annotated[str, typer.Option(help="Why it is held (a matter, a ticket), at most 500 characters")] = "",
) -> None:
    """Put a scope under legal hold: nothing of it is purged until it is released."""
    _scope(scope)
    retention, _ = _retention()
    try:
        h = retention.hold(scope, reason)
    except ImpError as e:
        _fail(e)
    out.print(f"scope {escape(h.scope)} is under legal hold since {h.since:%Y-%m-%d %H:%M} UTC", highlight=False)


@retention_cli.command("release")
def release(scope: Annotated[str, typer.Argument(help="A scope under legal hold")]) -> None:
    """Lift a scope's legal hold: its old items go at the next purge."""
    _scope(scope)
    retention, _ = _retention()
    try:
        h = retention.release(scope)
    except ImpError as e:
        _fail(e)
    out.print(f"scope {escape(h.scope)} is no longer under legal hold", highlight=False)


@retention_cli.command("holds")
def holds(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the scopes under legal hold."""
    retention, _ = _retention()
    try:
        rows = retention.holds()
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"holds": [h.to_json() for h in rows]}))
        return
    table = Table("scope", "since (UTC)", "reason")
    for h in rows:
        table.add_row(escape(h.scope), f"{h.since:%Y-%m-%d %H:%M}", escape(h.reason))
    out.print(table)


@retention_cli.command("runs")
def runs(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many of the latest purges")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The recorded purges, newest first, with their counts."""
    retention, _ = _retention()
    try:
        rows = retention.runs(limit)
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"runs": [{k: v for k, v in r.to_json().items() if k != "held"} for r in rows]}))
        return
    kinds = list(rows[0].purged) if rows else []
    table = Table("ran at (UTC)", "cut-off", *kinds)
    for r in rows:
        table.add_row(f"{r.ran_at:%Y-%m-%d %H:%M}", f"{r.cutoff:%Y-%m-%d}", *(str(r.purged[k]) for k in kinds))
    out.print(table)
