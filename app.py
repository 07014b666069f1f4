"""Composition root: builds the Engine and the Slack front door from Settings.

The front doors (the `imp` command line in cli.py, the REST app and Slack in
bot/) receive what is built here. Nothing else wires components. Importing this
module makes the process offline by construction (no model hub, no telemetry).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

# Offline by construction: no model hub, no telemetry, whatever the environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


from core.answer.answering import Answerer  # noqa: E402
from core.answer.extractive import ExtractiveWriter  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.errors import ImpError  # noqa: E402
from core.index.embedders import Embedder, make_embedder  # noqa: E402
from core.index.hybrid import HybridRetriever  # noqa: E402
from core.index.keyword import KeywordIndex  # noqa: E402
from core.index.serving import (  # noqa: E402
    ChromaCollection, Served, ServingFactory, ServingSet, collection_name, scope_lookup, slug,
)
from core.ingest.media import Media  # noqa: E402
from core.ingest.pipeline import IngestPipeline  # noqa: E402
from core.llm.base import Generator, make_generator  # noqa: E402
from core.minutes.base import MinutesDrafter  # noqa: E402
from core.observe import Observer, Observers  # noqa: E402
from core.speech.base import SpeechConfig  # noqa: E402
from core.speech.transcriber import Transcriber  # noqa: E402
from core.store.feedback import FeedbackStore  # noqa: E402
from core.store.jobs import JobStore  # noqa: E402
from core.store.transcripts import TranscriptStore  # noqa: E402
from core.store.answers import AnswerLog  # noqa: E402
from core.store.database import Database  # noqa: E402
from core.store.registry import DocumentRegistry  # noqa: E402
from core.store.served import ADAPTER, BASE, CHAMPION, ServedModels  # noqa: E402


def build_embedder(settings: Settings, path: Path | None = None) -> Embedder:
    """The configured embedder, or the one in ``path``: a trained version, which the learning loop
    writes as a sentence-transformers folder whatever the base model's backend."""
    emb = settings.embedder
    backend = "sentence-transformers" if path is not None and (path / "modules.json").is_file() else emb.backend
    return make_embedder(backend, path or emb.path, device=emb.device, batch_size=emb.batch_size,
                         max_tokens=emb.max_tokens, quantize=emb.quantize, query_threads=emb.query_threads,
                         cache=emb.query_cache)


def build_engine(settings: Settings, *, embedder: Embedder | None = None,
                 observer: Observer | None = None) -> Engine:
    """Wire every component of the engine from settings. Cheap: models load on first use.

    ``embedder`` lets one process share a loaded model between engines (tests, benchmarks).
    ``observer`` is told what the engine does (core.observe); front doors add theirs later
    (``Engine.add_observer``: the REST app adds its Prometheus metrics).
    """
    observers = Observers(*([observer] if observer is not None else []))
    data = settings.data_dir
    database = Database(settings.database_url)
    registry = DocumentRegistry(database)
    embedder = embedder or build_embedder(settings)
    served = ServedModels(database)
    serving = build_serving(settings, registry, served, embedder)
    keywords = KeywordIndex(registry, data / "bm25")
    transcriber = build_transcriber(settings, observer=observers)
    transcripts = TranscriptStore(database)
    pipeline = IngestPipeline(
        registry, None, keywords, embedder,
        overlap=settings.chunking.overlap, max_tokens=settings.chunking.max_tokens,
        max_file_bytes=int(settings.ingest.max_file_mb * 2**20), max_chars=settings.ingest.max_chars,
        transcriber=transcriber, transcripts=transcripts,
        max_media_bytes=int(settings.speech.max_file_mb * 2**20),
        loader_timeout_s=settings.ingest.loader_timeout_s, loader_max_mb=settings.ingest.loader_max_mb,
        loader_workers=settings.ingest.loader_workers, serving=serving, pdf_text=settings.ingest.pdf_text,
        observer=observers, embedder_at=partial(build_embedder, settings),
    )
    retriever = HybridRetriever(registry, None, keywords, None, candidates=settings.search.candidates,
                                rrf_k=settings.search.rrf_k, keyword_weight=settings.search.keyword_weight,
                                doc_weight=settings.search.doc_weight,
                                serving=serving, observer=observers)
    adapter_path, adapter_version = served_adapter(settings, served)
    generator = build_generator(settings, adapter=adapter_path)
    answerer = Answerer(
        retriever, AnswerLog(database, registry), ExtractiveWriter(embedder),
        generator=generator, k=settings.answer.k, min_similarity=settings.answer.min_similarity,
        max_new_tokens=settings.llm.max_new_tokens,
        canary_share=settings.models.canary_share, adapter=adapter_version if generator is not None else None,
        observer=observers,
    )
    return Engine(registry, pipeline, retriever, answerer, files_dir=data / "files",
                  default_k=settings.search.default_k, transcriber=transcriber, transcripts=transcripts,
                  jobs=JobStore(database), minutes=build_minutes(embedder, generator),
                  feedback=FeedbackStore(database), closers=[pipeline.close, serving.close, database.close],
                  max_file_bytes=int(settings.ingest.max_file_mb * 2**20),
                  max_media_bytes=int(settings.speech.max_file_mb * 2**20),
                  max_queued_jobs=settings.admission.max_queued_jobs if settings.admission.enabled else None,
                  job_lease_s=settings.db.job_lease_s, serving=serving, served=served, observers=observers)


def build_serving(settings: Settings, registry: DocumentRegistry, served: ServedModels,
                  embedder: Embedder) -> ServingSet:
    """The served embedders: the champion the pointer table names (base when it names none, or when
    its folder is gone: never a failed start), and a challenger if one is served."""

    def store(name: str) -> ChromaCollection:
        if settings.chroma.url:
            return ChromaCollection(name, url=settings.chroma.url, scope_of=scope_lookup(registry))
        return ChromaCollection(name, path=settings.data_dir / "chroma", scope_of=scope_lookup(registry))

    # One collection per embedding model: vectors of different models never mix.
    base_collection = collection_name(settings.chroma.collection, embedder.model_id, BASE)
    base = Served(BASE, embedder, store(base_collection), base_collection)
    serving = ServingSet(base, registry=registry, pointers=served,
                         factory=ServingFactory(lambda path: build_embedder(settings, path), store,
                                                        settings.chroma.collection))
    try:
        serving.load()
    except ImpError as e:  # the database unreadable: answer with the base model rather than not at all
        logging.getLogger(__name__).error("cannot read which embedder to serve (%s); serving the base one", e)
    return serving


def served_adapter(settings: Settings, served: ServedModels | None) -> tuple[Path | None, str | None]:
    """The answer adapter to load and its version: the champion the pointer table names (transformers
    backend only), else IMP_LLM__ADAPTER as version "base"."""
    llm = settings.llm
    if llm.backend != "transformers":
        return llm.adapter, None
    row = served.get(ADAPTER, CHAMPION) if served is not None else None
    if row is None or row.path is None:
        return llm.adapter, BASE if row is None else row.version
    if not Path(row.path).is_dir():
        log = logging.getLogger(__name__)
        log.error("the champion answer adapter, version %s, is missing: no folder at %s", row.version, row.path)
        log.warning("ANSWERING WITH THE BASE ADAPTER (IMP_LLM__ADAPTER) instead of version %s", row.version)
        return llm.adapter, BASE
    return Path(row.path), row.version


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
    from core.minutes.extractive import ExtractiveMinutes

    extractive = ExtractiveMinutes(embedder)
    if generator is None:
        return extractive
    from core.minutes.llm import LLMMinutes

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
    from bot.chat.state import ChatState

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
    return create_slack_bot(engine, ChatState(engine.database), options)


def build_teams(settings: Settings, engine: Engine):
    """The Teams front door for this engine, or None when no Teams app is configured (IMP_TEAMS__APP_ID).

    The app id needs its client secret (IMP_TEAMS__APP_PASSWORD): a half configuration is refused.
    IMP_TEAMS__EXTRA_HOSTS adds hosts to the connector's, the file downloads' and Microsoft Graph's allow-lists;
    IMP_TEAMS__GRAPH_URL is where files posted in channels and group chats are looked up (a second token of
    the same app, for Graph).
    """
    from bot.chat.state import ChatState
    from bot.teams.auth import BotFrameworkAuthenticator
    from bot.teams.bot import TeamsBot, TeamsOptions
    from bot.teams.connector import DEFAULT_SERVICE_HOSTS, ConnectorClient
    from bot.teams.files import TeamsFiles
    from bot.teams.graph import GRAPH_SCOPE, GraphFiles
    from bot.teams.signing_keys import SigningKeys
    from bot.teams.token import BotTokenProvider

    tm = settings.teams
    if not tm.app_id:
        if tm.app_password is not None:
            raise ImpError("Teams is half configured: set IMP_TEAMS__APP_ID")
        return None
    if tm.app_password is None:
        raise ImpError("Teams is half configured: set IMP_TEAMS__APP_PASSWORD (the app registration's client secret)")
    tokens = BotTokenProvider(tm.app_id, tm.app_password.get_secret_value(), tenant_id=tm.tenant_id,
                              token_url=tm.token_url)
    extra = tuple(tm.extra_hosts)
    loopback = tuple(h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in extra)  # the connector's: no ports
    connector = ConnectorClient(tokens, allowed_hosts=(*DEFAULT_SERVICE_HOSTS, *loopback))
    max_bytes = int(max(settings.speech.max_file_mb, settings.ingest.max_file_mb) * 2**20)
    files = TeamsFiles(settings.data_dir / "teams-staging", max_bytes, tokens=tokens, extra_hosts=extra)
    graph_tokens = BotTokenProvider(tm.app_id, tm.app_password.get_secret_value(), tenant_id=tm.tenant_id,
                                    token_url=tm.token_url, scope=GRAPH_SCOPE)
    graph = GraphFiles(graph_tokens, tm.graph_url, extra_hosts=extra)
    authenticator = BotFrameworkAuthenticator(tm.app_id, SigningKeys(tm.openid_metadata_url), tenant_id=tm.tenant_id)
    options = TeamsOptions(app_id=tm.app_id, tenant_id=tm.tenant_id, company_scopes=list(tm.company_scopes),
                           max_file_bytes=max_bytes, poll_s=tm.poll_s, workers=tm.workers,
                           loopback_http=any(h.startswith(("127.", "localhost", "[::1]")) for h in extra))
    return TeamsBot(engine, ChatState(engine.database), connector, files, authenticator, options, graph=graph)


def build_transcriber(settings: Settings, *, observer: Observer | None = None) -> Transcriber:
    sp = settings.speech
    config = SpeechConfig(backend=sp.backend, model_path=sp.model_path, device=sp.device,
                          compute_type=sp.compute_type, language=sp.language, beam_size=sp.beam_size, vad=sp.vad,
                          batch_size=sp.batch_size)
    return Transcriber(Media(max_duration_s=sp.max_hours * 3600), config, workers=sp.workers,
                       piece_seconds=sp.piece_seconds, diarize=sp.diarize, max_speakers=sp.max_speakers,
                       observer=observer)


def build_generator(settings: Settings, *, adapter: Path | None = None) -> Generator | None:
    """The configured LLM, or None for extractive answers; ``adapter`` replaces IMP_LLM__ADAPTER."""
    llm = settings.llm
    if llm.backend == "extractive":
        return None
    return make_generator(
        llm.backend, path=llm.path, adapter=adapter or llm.adapter, device=llm.device, load_in_4bit=llm.load_in_4bit,
        cache_dir=settings.data_dir / "models", base_url=llm.base_url, model=llm.model, api_key=llm.api_key,
        timeout_s=llm.timeout_s, max_retries=llm.max_retries, context_tokens=llm.context_tokens,
    )


# -- the learning loop (training/) -------------------------------------------------


def build_model_registry(settings: Settings):
    """MLflow tracking and registry: a SQLite store under the data folder unless IMP_MLFLOW__TRACKING_URI is set."""
    from training.registry import ModelRegistry

    local = settings.mlflow.tracking_uri is None
    return ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow.experiment,
                         artifacts=settings.data_dir / "mlflow" / "artifacts" if local else None,
                         models_dir=settings.data_dir / "models")


def build_ray_config(settings: Settings):
    from training.embedder import RayConfig

    r = settings.ray
    return RayConfig(address=r.address, workers=r.workers, cpus_per_worker=r.cpus_per_worker, use_gpu=r.use_gpu,
                     storage=settings.data_dir / "ray")


def build_ray_ingest(settings: Settings, workers: int):
    """`imp ingest --ray`: Ray started or joined as training does (IMP_RAY__*), each worker's preparer
    built by build_worker_preparer; this process commits what they prepare."""
    from core.ingest.distributed import RayIngest, RayIngestOptions
    from training.raycluster import ray_session

    r = settings.ray
    return RayIngest(RayIngestOptions(build=partial(build_worker_preparer, settings),
                                      session=partial(ray_session, storage=settings.data_dir / "ray"),
                                      address=r.address, workers=workers, cpus_per_worker=r.cpus_per_worker,
                                      use_gpu=r.use_gpu))


def build_worker_preparer(settings: Settings, cpus: int):
    """Runs in each Ray worker: the preparer build_engine wires, sized to the worker's ``cpus``.

    Speech recognisers: IMP_SPEECH__WORKERS, or (0, one per core) the worker's share of cores, so
    workers on one machine do not each start one per core. One loader process: a worker reads one file at a time.
    """
    speech = settings.speech.model_copy(update={"workers": settings.speech.workers or cpus})
    ingest = settings.ingest.model_copy(update={"loader_workers": min(settings.ingest.loader_workers, 1)})
    mine = settings.model_copy(update={"speech": speech, "ingest": ingest})
    return build_engine(mine).preparer


def eval_engine_factory(settings: Settings):
    """Engines for the evaluation gate: built like the serving one (chunking, search), on a scratch folder."""

    def make(folder, embedder):  # noqa: ANN001, ANN202
        scratch = settings.model_copy(update={
            "data_dir": folder, "chroma": settings.chroma.model_copy(update={"url": None}),
            "ingest": settings.ingest.model_copy(update={"loader_workers": 0}),  # our own text files
            "speech": settings.speech.model_copy(update={"diarize": False})})
        return build_engine(scratch, embedder=embedder)

    return make


def build_embedder_loop(settings: Settings, engine: Engine, *, trials: int = 1, epochs: int | None = None,
                        canary: bool | None = None, feedback: bool = True):
    """One turn of the embedder's learning loop over this engine (training/loop.py)."""
    from training.loop import EmbedderLoop, LoopConfig

    t = settings.train
    config = LoopConfig(min_gain=t.min_gain, held_out=t.held_out, epochs=epochs or t.epochs,
                        learning_rate=t.learning_rate, batch_size=t.batch_size, hard_negatives=t.hard_negatives,
                        max_positives=t.max_positives or None,
                        seed=t.seed, trials=trials, feedback=feedback,
                        canary=settings.models.canary_share > 0 if canary is None else canary,
                        chunk_max_tokens=settings.chunking.max_tokens, chunk_overlap=settings.chunking.overlap)
    from core.index.embedders import bundled_minilm_path

    workdir = settings.data_dir / "training"
    workdir.mkdir(parents=True, exist_ok=True)
    return EmbedderLoop(engine, build_model_registry(settings), eval_engine_factory(settings),
                        make_embedder=lambda path: build_embedder(settings, path),
                        base_path=settings.embedder.path or bundled_minilm_path(),
                        ray=build_ray_config(settings), config=config, workdir=workdir)


def build_adapter_loop(settings: Settings, engine: Engine, *, feedback: bool = True):
    """One turn of the answer adapter's learning loop (training/adapter_loop.py)."""
    from training.adapter_loop import AdapterLoop, AdapterLoopConfig

    workdir = settings.data_dir / "training"
    workdir.mkdir(parents=True, exist_ok=True)
    llm = settings.llm
    return AdapterLoop(engine, build_model_registry(settings), base=llm.path, configured_adapter=llm.adapter,
                       device=llm.device, ray=build_ray_config(settings),
                       config=AdapterLoopConfig(held_out=settings.train.held_out, seed=settings.train.seed,
                                                feedback=feedback, max_new_tokens=llm.max_new_tokens),
                       workdir=workdir)


def build_retrain_scheduler(settings: Settings, engine: Engine, *, background: bool):
    """The scheduled jobs (ops/scheduler.py): the nightly retraining check, which settles a running canary,
    then retrains when enough new ratings arrived (IMP_TRAIN__MIN_NEW_FEEDBACK) or the drift check asked for it;
    the drift check every IMP_MONITOR__INTERVAL_S; the retention purge on IMP_RETENTION__CRON."""
    from core.store.claims import ClaimStore
    from ops.scheduler import RetrainPolicy, build_scheduler, ratings_counter

    def retrain(reason: str) -> dict:
        from training.promotion import served_version, settle_canary
        from training.registry import CHALLENGER, EMBEDDER

        done: dict = {"reason": reason}
        if settings.models.canary_auto_promote and served_version(engine, EMBEDDER, CHALLENGER):
            v = settle_canary(engine, build_model_registry(settings), EMBEDDER,
                              min_ratings=settings.models.canary_min_ratings)
            done["canary"] = {"decision": v.decision, "reason": v.reason}
        outcome = build_embedder_loop(settings, engine).run(settings.train.data, settings.train.eval)
        return done | {k: v for k, v in outcome.to_json().items()
                       if k in ("run_id", "version", "metrics", "promoted", "reason", "served_as")}

    drift = build_drift_check(settings, engine)

    def drift_check() -> dict:
        report = drift.run()
        return {"drifted": report.drifted, "alerts": [f"{a.signal} {a.event}" for a in report.alerts],
                "retrain_requested": report.retrain_requested is not None, "seconds": report.seconds}

    return build_scheduler(settings.scheduler, settings.database_url, claims=ClaimStore(engine.database),
                           policy=RetrainPolicy(settings.train.min_new_feedback), retrain=retrain,
                           count_new_ratings=ratings_counter(engine), background=background,
                           drift_check=drift_check, drift_interval_s=settings.monitor.interval_s,
                           purge=build_purge(settings, engine), purge_cron=settings.retention.cron)


# -- monitoring (ops/monitor) ----------------------------------------------------------


def build_alerter(settings: Settings):
    """Where drift alerts go: the webhook and/or the Slack channel (IMP_MONITOR__ALERT_*); none when unset."""
    from ops.monitor.alerts import Alerter, SlackChannelNotifier, WebhookNotifier

    m, notifiers, problems = settings.monitor, [], []
    if m.alert_webhook_url is not None and m.alert_webhook_url.get_secret_value():
        notifiers.append(WebhookNotifier(m.alert_webhook_url.get_secret_value()))
    if m.alert_channel:
        if settings.slack.bot_token is None:
            problems.append("IMP_MONITOR__ALERT_CHANNEL is set but IMP_SLACK__BOT_TOKEN is not")
            logging.getLogger(__name__).warning("drift alerts cannot reach %s: IMP_SLACK__BOT_TOKEN is not set",
                                                m.alert_channel)
        else:
            notifiers.append(SlackChannelNotifier(settings.slack.bot_token.get_secret_value(), m.alert_channel,
                                                  settings.slack.api_url))
    return Alerter(notifiers, problems=problems)


def build_drift_check(settings: Settings, engine: Engine):
    """The drift check (ops/monitor/check.py) over this engine's database, embedding questions with its
    served embedder; thresholds and alert destinations from IMP_MONITOR__*."""
    from ops.monitor.check import DriftCheck
    from ops.monitor.drift import DriftConfig

    m = settings.monitor
    config = DriftConfig(mmd_p_value=m.mmd_p_value, permutations=m.permutations, down_rate_rise=m.down_rate_rise,
                         abstain_rate_rise=m.abstain_rate_rise, best_similarity_drop=m.best_similarity_drop,
                         latency_p95_ms=m.latency_p95_ms, ingest_failure_rate=m.ingest_failure_rate)
    return DriftCheck(engine.database, engine.embed_questions, config, window=m.window,
                      alerter=build_alerter(settings), retrain_on_drift=m.retrain_on_drift)


# -- the database's schema (core/store/migrate.py) ------------------------------------


def upgrade_database(settings: Settings) -> tuple[str, str]:
    """Bring the database to the newest schema (as every process does on first use); returns the
    database's URL without its password, and what was done."""
    from core.store.migrate import upgrade

    with _sql_engine(settings) as engine:
        return engine.url.render_as_string(hide_password=True), upgrade(engine)


def database_revision(settings: Settings) -> tuple[str, str | None, str]:
    """The database's URL without its password, its schema revision (None: new or from before Alembic),
    and the newest revision this IMP knows. Changes nothing."""
    from core.store.migrate import current, head

    with _sql_engine(settings) as engine:
        return engine.url.render_as_string(hide_password=True), current(engine), head()


@contextmanager
def _sql_engine(settings: Settings):  # noqa: ANN202 - an SQLAlchemy Engine, disposed after the block
    from core.store.database import make_sql_engine

    engine = make_sql_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


# -- retention (core/store/retention.py, ops/retention.py) ----------------------------


def build_retention(settings: Settings, database: Database | None = None):
    """Legal holds and the purge over the engine's database and the data folder's stored uploads."""
    from bot.chat.state import ChatState
    from core.store.retention import Retention

    database = database or Database(settings.database_url)
    # The chat layer's message links and tasks point at answers and jobs: the purge asks it what it needs.
    return Retention(database, settings.data_dir / "files", participants=[ChatState(database)])


def build_purge(settings: Settings, engine: Engine, *, on_purged=None):  # noqa: ANN001 - ops.retention.OnPurged
    """The scheduled purge (IMP_RETENTION__CRON): a callable that removes what is older than
    IMP_RETENTION__DAYS and returns what it did as a dict, never raising (ops/retention.py).
    ``on_purged`` receives the counts per kind after each real purge."""
    from ops.retention import run_purge

    retention = build_retention(settings, engine.database)
    return lambda: run_purge(retention, days=settings.retention.days, on_purged=on_purged)


def build_registry_reader(settings: Settings):
    """What the dashboard shows of the model registry: a callable listing every registered version of the
    embedder and the answer adapter with its aliases, the gate's verdict and the metrics it compared."""
    from bot.dashboard.registry import RegistryVersion
    from training.registry import NAMES

    registry = None  # built on the first read, in the reader's thread: opening MLflow takes seconds

    def read() -> list[RegistryVersion]:
        nonlocal registry
        registry = registry or build_model_registry(settings)
        return [RegistryVersion(name=name, version=v.version, aliases=tuple(v.aliases), gate=v.tags.get("gate"),
                                created=_registered_at(v.created),
                                metrics={k: float(x) for k, x in v.metrics.items()
                                         if k.startswith(("candidate_", "champion_"))})
                for name in NAMES for v in registry.versions(name)]

    return read


def _registered_at(created: str) -> str:
    """MLflow's creation time (milliseconds since the epoch, as text) as "YYYY-MM-DD HH:MM" UTC."""
    try:
        return datetime.fromtimestamp(int(created) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _slug(model_id: str) -> str:
    return slug(model_id)


if __name__ == "__main__":  # pragma: no cover - `python -m app ...` runs the CLI
    from cli import cli

    cli()
