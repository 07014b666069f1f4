"""Monitoring commands: `imp drift check` (registered by cli.py).

Thin, like the rest of the CLI: app.py builds the drift check over the engine; this
command parses, runs it and prints. Drift is not an error: the exit status is 0 whether
or not a signal drifted, and 2 for bad input or settings. The `--json` shape is stable:
``{"signals": [{"name", "score", "threshold", "p_value", "drifted", "detail"}], "alerts": [...]}``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app import build_drift_check
from core.errors import ImpError
from ops.monitor.check import MAX_WINDOW, MIN_WINDOW, CheckReport

drift_cli = typer.Typer(no_args_is_help=True, help="Drift of questions, answers, ratings and ingests; alerts.")
out = Console()
err = Console(stderr=True)


def _fail(e: ImpError) -> None:
    err.print(f"[red]error[/red] ({e.code}): {escape(e.detail)}", highlight=False)
    raise typer.Exit(2)


@drift_cli.command("check")
def check(
    window: Annotated[int | None, typer.Option(min=MIN_WINDOW, max=MAX_WINDOW,
                                               help="Questions per window (default IMP_MONITOR__WINDOW)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the signals and alerts as JSON")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only compute: record nothing, send no alert, "
                                          "request no retraining")] = False,
) -> None:
    """Compare the newest questions with the ones before them; record, alert and ask for retraining on drift."""
    from cli import _engine, _settings_or_exit

    settings = _settings_or_exit()
    engine = _engine(settings)
    try:
        report = build_drift_check(settings, engine).run(window, dry_run=dry_run)
    except ImpError as e:
        _fail(e)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    _print(report)


def _fmt(x: object) -> str:
    return "—" if x is None else str(x)


def _print(report: CheckReport) -> None:
    table = Table("signal", "score", "threshold", "p-value", "drifted", "detail",
                  title=f"drift check: newest {report.window} questions vs the {report.window} before "
                        f"({report.seconds:.2f}s){' — dry run' if report.dry_run else ''}")
    for s in report.signals:
        note = s.detail.get("note") or ", ".join(f"{k} {v}" for k, v in s.detail.items()
                                                 if k in ("recent", "previous", "n_recent", "n_previous"))
        table.add_row(escape(s.name), _fmt(s.score), _fmt(s.threshold), _fmt(s.p_value),
                      "[red]yes[/red]" if s.drifted else "no", escape(str(note)))
    out.print(table)
    for a in report.alerts:
        where = ", ".join(f"{d['to']} {'ok' if d.get('ok') else 'failed: ' + str(d.get('error'))}"
                          for d in a.delivered) or ("not sent (dry run)" if report.dry_run else "no destination")
        out.print(f"alert {escape(a.signal)} {a.event}: {escape(where)}", highlight=False)
    if report.retrain_requested:
        out.print(f"retraining requested: {escape(report.retrain_requested)}", highlight=False)
