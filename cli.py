"""The `imp` command line: thin commands over the Engine that app.py builds.

Output for people goes through rich; `--json` output is stable (other tools rely
on its shapes). Errors print a reason and exit 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

from app import (  # first: makes the process offline before any model library loads
    build_engine, build_gates, build_ray_ingest, build_registry_reader, build_retrain_scheduler, build_slack,
    build_teams,
)

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from bot.schemas import AnswerOut, DocumentOut, FeedbackOut, HitOut, IngestResultOut  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.errors import ImpError  # noqa: E402
from core.formats.minutes import render as render_minutes  # noqa: E402
from core.formats.locations import clock, locator  # noqa: E402
from core.models import DEFAULT_SCOPE, IngestResult, IngestStatus  # noqa: E402
from core.formats.transcripts import render  # noqa: E402

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="IMP: answers from your company's documents.")
out = Console()
err = Console(stderr=True)


def _settings_or_exit() -> Settings:
    """Settings, or exit 2 naming each bad variable; never its value, which may be a secret."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as e:
        for problem in e.errors():
            name = "IMP_" + "__".join(str(part).upper() for part in problem["loc"])
            err.print(f"[red]error[/red]: {name}: {escape(problem['msg'].removeprefix('Value error, '))}",
                      highlight=False)
        raise typer.Exit(2) from None


def _engine(settings: Settings | None = None) -> Engine:
    settings = settings or _settings_or_exit()
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    return build_engine(settings)


def _quiet_libraries() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _fail(e: ImpError) -> None:
    err.print(f"[red]error[/red] ({e.code}): {e.detail}")
    raise typer.Exit(2)


@cli.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively)")],
    scope: Annotated[str, typer.Option(help="Access label of the documents")] = DEFAULT_SCOPE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Prepare files on Ray workers (IMP_RAY__ADDRESS, or a local "
                                                    "cluster); this process commits them")] = False,
    workers: Annotated[int | None, typer.Option(min=1, max=1024, help="Ray workers (default IMP_RAY__WORKERS)")]
    = None,
) -> None:
    """Index documents so they can be searched."""
    for p in paths:
        if not p.exists():
            err.print(f"[red]error[/red]: no such file or folder: {p}")
            raise typer.Exit(2)
    if workers is not None and not ray:
        err.print("[red]error[/red]: --workers needs --ray")
        raise typer.Exit(2)
    settings = _settings_or_exit()
    engine = _engine(settings)
    fan_out = build_ray_ingest(settings, workers or settings.ray.workers) if ray else None
    try:
        files = engine.files_under(paths)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=as_json or not err.is_terminal, transient=True) as bar:
            task = bar.add_task("ingesting", total=len(files))
            step = bar.add_task("", total=None, visible=False)

            def on_step(what: str, done: float, total: float) -> None:
                bar.update(step, description=what, completed=done, total=total, visible=done < total)

            results = engine.ingest(files, scope, on_result=lambda r: bar.advance(task), on_step=on_step,
                                    fan_out=fan_out)
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"documents": [IngestResultOut.of(r).model_dump() for r in results]}))
    else:
        _print_results(results)
    if results and all(r.status == IngestStatus.FAILED for r in results):
        raise typer.Exit(1)


def _print_results(results: list[IngestResult]) -> None:
    colour = {"indexed": "green", "unchanged": "cyan", "failed": "red"}
    for r in results:
        s = r.status.value
        tail = f"{r.chunks} chunks" if r.status != IngestStatus.FAILED else r.error
        out.print(f"[{colour[s]}]{s:>9}[/{colour[s]}]  {r.source}  ({tail})", highlight=False)
    counts = {s: sum(r.status.value == s for r in results) for s in colour}
    out.print(f"{counts['indexed']} indexed, {counts['unchanged']} unchanged, {counts['failed']} failed")


@cli.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int, typer.Option("-k", help="Number of hits")] = 5,
    scope: Annotated[list[str] | None, typer.Option(help="Scopes to search (repeatable)")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or keyword")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Search indexed documents."""
    if mode not in ("hybrid", "dense", "keyword"):
        err.print("[red]error[/red]: --mode must be hybrid, dense or keyword")
        raise typer.Exit(2)
    engine = _engine()
    try:
        hits = engine.search(query, k, scope or [DEFAULT_SCOPE], mode=mode)  # type: ignore[arg-type]
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps({"hits": [HitOut.of(h).model_dump() for h in hits]}))
        return
    if not hits:
        out.print("No matching passages.")
    for h in hits:
        c = h.chunk
        out.print(f"[bold]{h.rank}.[/bold] {escape(locator(c))}  [dim]{h.score:.4f}[/dim]", highlight=False)
        snippet = c.text[:300].replace("\n", " ") + ("…" if len(c.text) > 300 else "")
        out.print("   " + snippet, highlight=False, markup=False)


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question")],
    scope: Annotated[list[str] | None, typer.Option(help="Scopes to answer from (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it is written")] = False,
) -> None:
    """Answer a question from the indexed documents, with citations."""
    engine = _engine()
    try:
        if stream and not as_json:
            answer = None
            for event in engine.ask_stream(question, scope or [DEFAULT_SCOPE]):
                if event.kind == "token":
                    out.print(event.text, end="", highlight=False, markup=False)
                answer = event.answer or answer
            out.print("\n")
            assert answer is not None
            out.print("[dim]validated answer:[/dim]")
        else:
            answer = engine.ask(question, scope or [DEFAULT_SCOPE])
    except ImpError as e:
        _fail(e)
    if as_json:
        typer.echo(AnswerOut.of(answer).model_dump_json())
        return
    out.print(answer.text, highlight=False, markup=False)
    for c in answer.citations:
        out.print(f"  [{c.n}] {locator(c.chunk)}", highlight=False, markup=False)


@cli.command()
def transcribe(
    path: Annotated[Path, typer.Argument(help="An audio or video file")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON with segments and words (the default)")] = False,
    vtt: Annotated[bool, typer.Option("--vtt", help="WebVTT subtitles")] = False,
    srt: Annotated[bool, typer.Option("--srt", help="SRT subtitles")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout")] = None,
) -> None:
    """Transcribe a recording with timestamps and speakers, without indexing it."""
    fmt = _transcript_format(as_json, vtt, srt)
    engine = _engine()
    try:
        with Progress(TextColumn("transcribing"), BarColumn(), TextColumn("{task.fields[at]}"), TimeElapsedColumn(),
                      console=err, disable=not err.is_terminal, transient=True) as bar:
            task = bar.add_task("", total=None, at="")
            transcript = engine.transcribe(path, lambda done, total: bar.update(
                task, completed=done, total=total, at=f"{clock(done)} / {clock(total)}"))
    except ImpError as e:
        _fail(e)
    _write(render(transcript, fmt), output)


@cli.command()
def transcript(
    doc_id: Annotated[str, typer.Argument(help="Document id of an indexed recording (see `imp docs`)")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON (the default)")] = False,
    vtt: Annotated[bool, typer.Option("--vtt", help="WebVTT subtitles")] = False,
    srt: Annotated[bool, typer.Option("--srt", help="SRT subtitles")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout")] = None,
) -> None:
    """Print the stored transcript of an indexed recording."""
    fmt = _transcript_format(as_json, vtt, srt)
    try:
        text = render(_engine().transcript(doc_id), fmt)
    except ImpError as e:
        _fail(e)
    _write(text, output)


def _transcript_format(as_json: bool, vtt: bool, srt: bool) -> str:
    if as_json + vtt + srt > 1:
        err.print("[red]error[/red]: choose one of --json, --vtt, --srt")
        raise typer.Exit(2)
    return "vtt" if vtt else "srt" if srt else "json"


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


@cli.command()
def minutes(
    source: Annotated[str, typer.Argument(help="A recording, a transcript file (VTT, SRT, imp transcribe JSON, "
                                          "'Speaker: text' lines), or the id of an ingested one")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON (the default)")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown for people")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--out", help="Write here instead of stdout")] = None,
) -> None:
    """Write meeting minutes: summary, decisions and action items, each with the words and time behind it."""
    if as_json and markdown:
        err.print("[red]error[/red]: choose one of --json, --markdown")
        raise typer.Exit(2)
    engine = _engine()
    try:
        with Progress(TextColumn("writing minutes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not err.is_terminal, transient=True) as bar:
            task = bar.add_task("", total=None)
            result = engine.minutes(source, progress=lambda done, total: bar.update(task, completed=done, total=total))
    except ImpError as e:
        _fail(e)
    _write(render_minutes(result, "markdown" if markdown else "json"), output)


@cli.command()
def docs(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List indexed documents and their status."""
    records = _engine().documents()
    if as_json:
        typer.echo(json.dumps({"documents": [DocumentOut.of(d).model_dump() for d in records]}))
        return
    table = Table("doc_id", "status", "scope", "chunks", "source", "error")
    for d in records:
        table.add_row(d.doc_id, d.status.value, d.scope, str(d.chunks), d.source, d.error or "")
    out.print(table)


@cli.command()
def delete(doc_id: Annotated[str, typer.Argument(help="Document id (see `imp docs`)")]) -> None:
    """Remove a document from the index."""
    try:
        record = _engine().delete(doc_id)
    except ImpError as e:
        _fail(e)
    out.print(f"deleted {record.doc_id} ({record.source})", highlight=False)


def _freeze_heap() -> None:
    """Keep the loaded models' objects out of the garbage collector's full passes.

    Those passes walk every object; with the models loaded they stall the whole
    process for a few hundred milliseconds, long enough to delay Slack's acks.
    """
    import gc

    gc.collect()
    gc.freeze()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Run the REST API (OpenAPI docs at /docs), Slack's HTTP endpoints when IMP_SLACK__* are set, and Teams'
    (POST /api/messages) when IMP_TEAMS__APP_ID and IMP_TEAMS__APP_PASSWORD are."""
    import uvicorn

    from bot.api import create_app

    settings = _settings_or_exit()
    host = host or settings.api.host
    port = port or settings.api.port
    tokens = settings.api.grants()
    if not tokens and host not in {"127.0.0.1", "localhost", "::1"}:
        err.print(f"[red]refusing[/red] to listen on {escape(host)} without IMP_API__TOKEN or IMP_API__TOKENS; "
                  "set a token or use 127.0.0.1", highlight=False)
        raise typer.Exit(2)
    engine = _engine(settings)
    try:
        slack = build_slack(settings, engine)
        teams = build_teams(settings, engine)
        if (slack is not None or teams is not None) and not tokens:
            # the API would be open to anyone who can reach the chat endpoints
            err.print(f"[red]refusing[/red] to serve {'Slack' if slack is not None else 'Teams'} with an open REST "
                      "API; set IMP_API__TOKEN or IMP_API__TOKENS", highlight=False)
            raise typer.Exit(2)
        engine.warm_up()  # models load before the port opens, not on the first question
        _freeze_heap()
    except ImpError as e:
        _fail(e)
    app = create_app(engine, tokens=tokens, allowed_hosts=settings.api.hosts(host), gates=build_gates(settings),
                     slack=slack, teams=teams, model_registry=build_registry_reader(settings))
    scheduler = None
    if settings.scheduler.enabled:  # retraining inside the service (else: run `imp worker` beside it)
        try:
            scheduler = build_retrain_scheduler(settings, engine, background=True)
        except ImpError as e:
            _fail(e)
        scheduler.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


@cli.command("slack")
def slack_socket_mode() -> None:
    """Run the Slack bot over Socket Mode: no public URL needed (IMP_SLACK__BOT_TOKEN and IMP_SLACK__APP_TOKEN)."""
    import signal
    import threading

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.slack.app import web_client

    settings = _settings_or_exit()
    engine = _engine(settings)
    try:
        bot = build_slack(settings, engine, socket_mode=True)
        engine.warm_up()  # Slack sends events as soon as we connect: be ready to answer the first one
        _freeze_heap()
    except ImpError as e:
        _fail(e)
    assert bot is not None and settings.slack.app_token is not None
    app_token = settings.slack.app_token.get_secret_value()
    handler = SocketModeHandler(bot.app, app_token, web_client=web_client(app_token, settings.slack.api_url))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # finish open work on a plain `kill` too
    engine.recover_jobs()
    bot.start()
    try:
        handler.connect()
        if handler.client.is_connected():
            err.print("IMP is connected to Slack (Socket Mode). Ctrl-C stops it.")
        else:  # slack_sdk keeps trying in the background
            err.print("[yellow]not connected to Slack yet[/yellow]; retrying (see the log). Ctrl-C stops it.")
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        bot.close()
        engine.close()


@cli.command()
def feedback(
    answer_id: Annotated[str | None, typer.Option(help="Only the ratings of this answer")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the 👍/👎 ratings people gave answers (retracted ones left out)."""
    rows = [FeedbackOut.of(f).model_dump() for f in _engine().feedback(answer_id)]
    if as_json:
        typer.echo(json.dumps({"feedback": rows}))
        return
    table = Table("created_at", "rating", "answer_id", "user", "channel")
    for r in rows:
        table.add_row(r["created_at"], "👍" if r["rating"] > 0 else "👎", r["answer_id"], r["user"], r["channel"])
    out.print(table)
    up = sum(r["rating"] > 0 for r in rows)
    out.print(f"{up} 👍, {len(rows) - up} 👎")


from cli_db import db_cli  # noqa: E402  (imp db upgrade|current)
from cli_models import models_cli, train_cli, worker  # noqa: E402  (after cli: it reuses cli's helpers)
from cli_monitor import drift_cli  # noqa: E402  (imp drift check)
from cli_retention import retention_cli  # noqa: E402  (imp retention purge|hold|release|holds|runs)
from cli_teams import teams_cli  # noqa: E402  (imp teams manifest)

cli.add_typer(train_cli, name="train")
cli.add_typer(models_cli, name="models")
cli.add_typer(drift_cli, name="drift")
cli.add_typer(retention_cli, name="retention")
cli.add_typer(teams_cli, name="teams")
cli.add_typer(db_cli, name="db")
cli.command()(worker)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
