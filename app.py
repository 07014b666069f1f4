"""Composition root and the `imp` command line.

Reads Settings once, builds the Engine from them and hands it to the front
doors (CLI commands here, the REST app in bot/). Nothing else wires components.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

# Offline by construction: no model hub, no telemetry, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from core.config import Settings  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.errors import ImpError  # noqa: E402
from core.generate.answering import Answerer  # noqa: E402
from core.generate.base import Generator, make_generator  # noqa: E402
from core.generate.extractive import ExtractiveWriter  # noqa: E402
from core.generate.minutes.base import MinutesDrafter  # noqa: E402
from core.generate.minutes.render import render as render_minutes  # noqa: E402
from core.generate.prompts import clock, locator  # noqa: E402
from core.index.embedders import Embedder, make_embedder  # noqa: E402
from core.index.hybrid import HybridRetriever  # noqa: E402
from core.index.keyword import KeywordIndex  # noqa: E402
from core.index.vectors import ChromaVectorStore  # noqa: E402
from core.ingest.media import Media  # noqa: E402
from core.ingest.pipeline import IngestPipeline  # noqa: E402
from core.speech.base import SpeechConfig  # noqa: E402
from core.speech.export import render  # noqa: E402
from core.speech.transcriber import Transcriber  # noqa: E402
from core.store.feedback import FeedbackStore  # noqa: E402
from core.store.jobs import JobStore  # noqa: E402
from core.store.transcripts import TranscriptStore  # noqa: E402
from bot.schemas import AnswerOut, DocumentOut, FeedbackOut, HitOut, IngestResultOut  # noqa: E402
from core.models import DEFAULT_SCOPE, IngestResult, IngestStatus  # noqa: E402
from core.store.answers import AnswerLog  # noqa: E402
from core.store.registry import DocumentRegistry  # noqa: E402


def build_embedder(settings: Settings) -> Embedder:
    emb = settings.embedder
    return make_embedder(emb.backend, emb.path, device=emb.device, batch_size=emb.batch_size,
                         max_tokens=emb.max_tokens)


def build_engine(settings: Settings, *, embedder: Embedder | None = None) -> Engine:
    """Wire every component of the engine from settings. Cheap: models load on first use.

    ``embedder`` lets one process share a loaded model between engines (tests, benchmarks).
    """
    data = settings.data_dir
    registry = DocumentRegistry(settings.database_url)
    embedder = embedder or build_embedder(settings)
    # One collection per embedding model: vectors of different models never mix.
    collection = f"{settings.chroma.collection}_{_slug(embedder.model_id)}"
    if settings.chroma.url:
        vectors = ChromaVectorStore(collection, url=settings.chroma.url)
    else:
        vectors = ChromaVectorStore(collection, path=data / "chroma")
    keywords = KeywordIndex(registry, data / "bm25")
    transcriber = build_transcriber(settings)
    transcripts = TranscriptStore(registry)
    pipeline = IngestPipeline(
        registry, vectors, keywords, embedder,
        overlap=settings.chunking.overlap, max_tokens=settings.chunking.max_tokens,
        max_file_bytes=int(settings.ingest.max_file_mb * 2**20), max_chars=settings.ingest.max_chars,
        transcriber=transcriber, transcripts=transcripts,
        max_media_bytes=int(settings.speech.max_file_mb * 2**20),
    )
    retriever = HybridRetriever(registry, vectors, keywords, embedder,
                                candidates=settings.search.candidates, rrf_k=settings.search.rrf_k)
    generator = build_generator(settings)
    answerer = Answerer(
        lambda q, k, scopes: retriever.search(q, k, scopes), AnswerLog(registry), ExtractiveWriter(embedder),
        generator=generator, k=settings.answer.k, min_similarity=settings.answer.min_similarity,
        max_new_tokens=settings.llm.max_new_tokens,
    )
    return Engine(registry, pipeline, retriever, answerer, files_dir=data / "files",
                  default_k=settings.search.default_k, transcriber=transcriber, transcripts=transcripts,
                  jobs=JobStore(registry), minutes=build_minutes(embedder, generator),
                  feedback=FeedbackStore(registry))


def build_minutes(embedder: Embedder, generator: Generator | None) -> MinutesDrafter:
    """Extractive minutes without an LLM; with one, map-reduce drafting that falls back on them."""
    from core.generate.minutes.extractive import ExtractiveMinutes

    extractive = ExtractiveMinutes(embedder)
    if generator is None:
        return extractive
    from core.generate.minutes.llm import LLMMinutes

    return LLMMinutes(generator, extractive)


def build_slack(settings: Settings, engine: Engine, *, socket_mode: bool = False):
    """The Slack front door for this engine, or None when no Slack app is configured.

    HTTP mode needs the bot token and the signing secret; Socket Mode the bot token
    and the app-level token. A half configuration is refused rather than ignored.
    """
    from bot.slack.app import SlackOptions, create_slack_bot
    from core.store.chat import ChatState

    sl = settings.slack
    needed = {"IMP_SLACK__BOT_TOKEN": sl.bot_token}
    needed["IMP_SLACK__APP_TOKEN" if socket_mode else "IMP_SLACK__SIGNING_SECRET"] = (
        sl.app_token if socket_mode else sl.signing_secret)
    missing = [name for name, value in needed.items() if value is None]
    if len(missing) == len(needed) and not socket_mode:
        return None
    if missing:
        raise ImpError(f"Slack is half configured: set {' and '.join(missing)}")
    options = SlackOptions(
        bot_token=sl.bot_token.get_secret_value(),
        signing_secret=sl.signing_secret.get_secret_value() if sl.signing_secret else None,
        api_url=sl.api_url, company_scopes=list(sl.company_scopes),
        max_file_bytes=int(min(sl.max_file_mb, max(settings.speech.max_file_mb, settings.ingest.max_file_mb)) * 2**20),
        poll_s=sl.poll_s)
    return create_slack_bot(engine, ChatState(engine.registry), options)


def build_transcriber(settings: Settings) -> Transcriber:
    sp = settings.speech
    config = SpeechConfig(backend=sp.backend, model_path=sp.model_path, device=sp.device,
                          compute_type=sp.compute_type, language=sp.language, beam_size=sp.beam_size, vad=sp.vad)
    return Transcriber(Media(max_duration_s=sp.max_hours * 3600), config, workers=sp.workers,
                       piece_seconds=sp.piece_seconds, diarize=sp.diarize, max_speakers=sp.max_speakers)


def build_generator(settings: Settings) -> Generator | None:
    """The configured LLM, or None for extractive answers."""
    llm = settings.llm
    if llm.backend == "extractive":
        return None
    return make_generator(
        llm.backend, path=llm.path, adapter=llm.adapter, device=llm.device, load_in_4bit=llm.load_in_4bit,
        cache_dir=settings.data_dir / "models", base_url=llm.base_url, model=llm.model, api_key=llm.api_key,
        timeout_s=llm.timeout_s, max_retries=llm.max_retries, context_tokens=llm.context_tokens,
    )


def _slug(model_id: str) -> str:
    import hashlib

    name = model_id.split(":", 1)[-1].split("@", 1)[0]
    clean = "".join(ch if ch.isalnum() else "_" for ch in name)[:40]
    return f"{clean}_{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


# -- CLI --------------------------------------------------------------------------

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="IMP: answers from your company's documents.")
out = Console()
err = Console(stderr=True)


def _engine() -> Engine:
    settings = Settings()
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
) -> None:
    """Index documents so they can be searched."""
    for p in paths:
        if not p.exists():
            err.print(f"[red]error[/red]: no such file or folder: {p}")
            raise typer.Exit(2)
    engine = _engine()
    try:
        files = engine.files_under(paths)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=as_json or not err.is_terminal, transient=True) as bar:
            task = bar.add_task("ingesting", total=len(files))
            step = bar.add_task("", total=None, visible=False)

            def on_step(what: str, done: float, total: float) -> None:
                bar.update(step, description=what, completed=done, total=total, visible=done < total)

            results = engine.ingest(files, scope, on_result=lambda r: bar.advance(task), on_step=on_step)
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


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Run the REST API (OpenAPI docs at /docs)."""
    import uvicorn

    from bot.api import create_app

    settings = Settings()
    host = host or settings.api.host
    port = port or settings.api.port
    if settings.api.token is None and host not in {"127.0.0.1", "localhost", "::1"}:
        err.print(f"[red]refusing[/red] to listen on {host} without IMP_API__TOKEN; set a token or use 127.0.0.1")
        raise typer.Exit(2)
    engine = _engine()
    try:
        slack = build_slack(settings, engine)
    except ImpError as e:
        _fail(e)
    app = create_app(engine, api_token=settings.api.token, slack=slack)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


@cli.command("slack")
def slack_socket_mode() -> None:
    """Run the Slack bot over Socket Mode: no public URL needed (IMP_SLACK__BOT_TOKEN and IMP_SLACK__APP_TOKEN)."""
    import signal

    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.slack.app import web_client

    settings = Settings()
    engine = _engine()
    try:
        bot = build_slack(settings, engine, socket_mode=True)
    except ImpError as e:
        _fail(e)
    assert bot is not None and settings.slack.app_token is not None
    app_token = settings.slack.app_token.get_secret_value()
    handler = SocketModeHandler(bot.app, app_token, web_client=web_client(app_token, settings.slack.api_url))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # finish open work on a plain `kill` too
    engine.recover_jobs()
    bot.start()
    err.print("IMP is connected to Slack (Socket Mode). Ctrl-C stops it.")
    try:
        handler.start()
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


def main() -> None:  # pragma: no cover - console entry
    cli()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli())
