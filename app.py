"""Composition root: builds the Engine and the Slack front door from Settings.

The front doors (the `imp` command line in cli.py, the REST app and Slack in
bot/) receive what is built here. Nothing else wires components. Importing this
module makes the process offline by construction (no model hub, no telemetry).
"""

from __future__ import annotations

import logging
import os

# Offline by construction: no model hub, no telemetry, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from core.config import Settings  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.errors import ImpError  # noqa: E402
from core.generate.answering import Answerer  # noqa: E402
from core.generate.base import Generator, make_generator  # noqa: E402
from core.generate.extractive import ExtractiveWriter  # noqa: E402
from core.generate.minutes.base import MinutesDrafter  # noqa: E402
from core.index.embedders import Embedder, make_embedder  # noqa: E402
from core.index.hybrid import HybridRetriever  # noqa: E402
from core.index.keyword import KeywordIndex  # noqa: E402
from core.index.vectors import ChromaVectorStore  # noqa: E402
from core.ingest.media import Media  # noqa: E402
from core.ingest.pipeline import IngestPipeline  # noqa: E402
from core.speech.base import SpeechConfig  # noqa: E402
from core.speech.transcriber import Transcriber  # noqa: E402
from core.store.feedback import FeedbackStore  # noqa: E402
from core.store.jobs import JobStore  # noqa: E402
from core.store.transcripts import TranscriptStore  # noqa: E402
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
        loader_timeout_s=settings.ingest.loader_timeout_s, loader_max_mb=settings.ingest.loader_max_mb,
        loader_workers=settings.ingest.loader_workers,
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
                  feedback=FeedbackStore(registry), closers=[pipeline.close, vectors.close, registry.close],
                  max_file_bytes=int(settings.ingest.max_file_mb * 2**20),
                  max_media_bytes=int(settings.speech.max_file_mb * 2**20),
                  max_queued_jobs=settings.admission.max_queued_jobs if settings.admission.enabled else None)


def build_gates(settings: Settings) -> dict:
    """The admission gates of the front doors (bot.admission), by class of work; empty when shedding is off."""
    from bot.admission import Gate, GateLimits

    adm = settings.admission
    if not adm.enabled:
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gates = {}
    for name, g in (("search", adm.search), ("answer", adm.answer), ("ingest", adm.ingest)):
        limit = g.limit or cores
        gates[name] = Gate(name, GateLimits(limit=limit, queue=g.queue or g.per_place * limit, max_wait_s=g.max_wait_s))
    return gates


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
    and the app-level token. A half configuration is refused rather than ignored, and
    so is a token Slack refuses: a bot with a wrong token would take events and answer none.
    """
    from slack_sdk.errors import SlackApiError

    from bot.slack.app import SlackOptions, create_slack_bot, web_client
    from core.errors import BackendError, InvalidRequest
    from core.store.chat import ChatState

    sl = settings.slack
    needed = {"IMP_SLACK__BOT_TOKEN": sl.bot_token}
    needed["IMP_SLACK__APP_TOKEN" if socket_mode else "IMP_SLACK__SIGNING_SECRET"] = (
        sl.app_token if socket_mode else sl.signing_secret)
    missing = [name for name, value in needed.items() if value is None]
    if len(missing) == len(needed) and not socket_mode:
        return None
    if missing:
        how = "not configured" if len(missing) == len(needed) else "half configured"
        raise ImpError(f"Slack is {how}: set {' and '.join(missing)}")
    options = SlackOptions(
        bot_token=sl.bot_token.get_secret_value(),
        signing_secret=sl.signing_secret.get_secret_value() if sl.signing_secret else None,
        api_url=sl.api_url, company_scopes=list(sl.company_scopes),
        max_file_bytes=int(min(sl.max_file_mb, max(settings.speech.max_file_mb, settings.ingest.max_file_mb)) * 2**20),
        poll_s=sl.poll_s, workers=sl.workers, max_wait_s=sl.max_wait_s)
    where = {"IMP_SLACK__BOT_TOKEN": "the Bot User OAuth Token, xoxb-…, under OAuth & Permissions",
             "IMP_SLACK__APP_TOKEN": "an app-level token, xapp-…, with connections:write, under Basic Information"}
    checks = {"IMP_SLACK__BOT_TOKEN": lambda: web_client(options.bot_token, sl.api_url, retries=1).auth_test()}
    if socket_mode:
        app_token = sl.app_token.get_secret_value()
        # A connection URL is issued and left unused; connecting asks for a fresh one.
        checks["IMP_SLACK__APP_TOKEN"] = lambda: web_client(app_token, sl.api_url, retries=1).apps_connections_open(
            app_token=app_token)
    for name, check in checks.items():
        try:
            check()
        except SlackApiError as e:
            raise InvalidRequest(f"Slack refused {name} ({e.response.get('error')}); paste it from the app's "
                                 f"settings page ({where[name]})") from e
        except OSError as e:  # unreachable: fatal for Socket Mode, a warning for HTTP (Slack may come back)
            if socket_mode:
                raise BackendError(f"cannot reach Slack at {sl.api_url} ({e}); check IMP_SLACK__API_URL") from e
            logging.getLogger(__name__).warning("cannot reach Slack at %s to check %s: %s", sl.api_url, name, e)
            break
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


if __name__ == "__main__":  # pragma: no cover - `python -m app ...` runs the CLI
    from cli import cli

    cli()
