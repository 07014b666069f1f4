"""The Engine facade: the one object the front doors (CLI, REST, Slack) talk to."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from core.answer.answering import Answerer, StreamEvent
from core.errors import BackendError, DocumentTooLarge, InvalidRequest, NotFound
from core.formats.minutes import to_dict as minutes_dict
from core.index.hybrid import HybridRetriever, Mode
from core.index.serving import ServingSet, SyncProgress
from core.ingest.chunking import document_id
from core.ingest.pipeline import IngestPipeline, Progress, StepProgress, walk
from core.ingest.prepare import Preparer
from core.minutes.base import MinutesDrafter
from core.minutes.base import Progress as MinutesProgress
from core.minutes.inputs import load_meeting, meeting_from_transcript
from core.models import (
    DEFAULT_SCOPE, SCOPE_PATTERN, Answer, DocumentRecord, Feedback, Hit, IngestResult, IngestStatus, Job, Meeting,
    Message, Minutes, RatedAnswer, ServedModel, SwitchReport, Transcript,
)
from core.speech.transcriber import Progress as TranscribeProgress
from core.speech.transcriber import Transcriber
from core.jobs import JobRunner, Outcome, Reporter
from core.observe import Observer, Observers, timed
from core.store.feedback import FeedbackStore
from core.store.jobs import JobStore
from core.store.monitor_read import DriftSummary, drift_summary
from core.store.served import ADAPTER, BASE, CHALLENGER, CHAMPION, EMBEDDER, SLOTS, ServedModels
from core.store.stats import DashboardData, DashboardStats
from core.store.database import Database
from core.store.registry import DocumentRegistry
from core.store.transcripts import TranscriptStore
from core.uploads import UploadStore, check_upload_name

__all__ = ["Engine", "check_scope", "check_upload_name"]

log = logging.getLogger(__name__)

# Prepares files elsewhere and commits them through the pipeline (core.ingest.distributed.RayIngest).
FanOut = Callable[[IngestPipeline, list[Path], str, Progress | None, StepProgress | None], list[IngestResult]]
_SCOPE_RE = re.compile(SCOPE_PATTERN)
# Failures whose detail may hold server paths, SQL or library text: shown as a log reference instead.
_INTERNAL_CODES = frozenset({"internal_error", "backend_error", "imp_error"})


def check_scope(scope: str) -> str:
    if not isinstance(scope, str) or not _SCOPE_RE.fullmatch(scope):  # fullmatch: "$" lets a final "\n" through
        raise InvalidRequest(f"invalid scope {scope!r}: use letters, digits and _ . : @ - (at most 200)")
    return scope


def _unseen(what: str, ident: str) -> NotFound:
    """The one answer for an id that does not exist and for one outside the caller's scopes."""
    return NotFound(f"no {what} with id {ident!r}")


def _question(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidRequest("the question is empty")
    if len(text) > 4000:
        raise InvalidRequest("the question is longer than 4000 characters")
    return text


class Engine:
    """Ingest, search and manage documents. Built by app.py from Settings."""

    def __init__(self, registry: DocumentRegistry, pipeline: IngestPipeline, retriever: HybridRetriever,
                 answerer: Answerer, *, files_dir: Path, default_k: int = 5,
                 transcriber: Transcriber | None = None, transcripts: TranscriptStore | None = None,
                 jobs: JobStore | None = None, minutes: MinutesDrafter | None = None,
                 feedback: FeedbackStore | None = None, closers: Sequence[Callable[[], None]] = (),
                 max_file_bytes: int = 200 << 20, max_media_bytes: int = 4 << 30,
                 max_queued_jobs: int | None = None, job_lease_s: float = 60.0, serving: ServingSet | None = None,
                 served: ServedModels | None = None, observers: Observers | None = None):
        """``observers``: the one the components were built with (core.observe), which front doors
        add their metrics to; without it, only what the engine itself does is reported."""
        self.registry = registry
        self.database: Database = registry.database  # every store's database, for what front doors keep in it
        self._observers = observers if observers is not None else Observers()
        self._serving = serving  # the served embedders (core.index.serving)
        self._served = served  # the pointer table, also of models served by a restart (the answer adapter)
        self._pipeline = pipeline
        self._retriever = retriever
        self._answerer = answerer
        self._uploads = UploadStore(files_dir, registry, max_file_bytes=max_file_bytes,
                                    max_media_bytes=max_media_bytes)
        self._default_k = default_k
        self._transcriber = transcriber
        self._transcripts = transcripts
        self._drafter = minutes
        self._feedback = feedback
        self._closers = list(closers)
        handlers = {"ingest": self._ingest_job, "minutes": self._minutes_job}
        self._jobs = JobRunner(jobs, handlers, max_queued=max_queued_jobs, lease_s=job_lease_s) if jobs else None

    def warm_up(self) -> None:
        """Load models and indexes now rather than on the first request."""
        _ = self._pipeline.chunker  # loads the embedder and its tokenizer
        self._retriever.search("warm up", 1, [DEFAULT_SCOPE])
        self._answerer.warm_up()

    # -- ingestion -------------------------------------------------------------

    def ingest(self, paths: Iterable[Path], scope: str = DEFAULT_SCOPE,
               on_result: Progress | None = None, on_step: StepProgress | None = None,
               fan_out: FanOut | None = None) -> list[IngestResult]:
        """Ingest files and folders (walked recursively); recordings are transcribed.

        ``fan_out`` prepares the files elsewhere and commits them here (core.ingest.distributed.RayIngest)."""
        check_scope(scope)
        files = list(walk(Path(p) for p in paths))
        if fan_out is not None:
            return fan_out(self._pipeline, files, scope, on_result, on_step)
        return self._pipeline.ingest_many(files, scope, on_result, on_step)

    @property
    def preparer(self) -> Preparer:
        """The per-file half of ingestion (read, transcribe, chunk, embed), for a worker process to run."""
        return self._pipeline.preparer

    def files_under(self, paths: Iterable[Path]) -> list[Path]:
        return list(walk(Path(p) for p in paths))

    @property
    def max_upload_bytes(self) -> int:
        """The largest file any upload may be (a recording; documents have a lower limit)."""
        return self._uploads.max_bytes

    def ingest_upload(self, filename: str, stream: BinaryIO, scope: str = DEFAULT_SCOPE,
                      on_step: StepProgress | None = None, *, source: str | None = None) -> IngestResult:
        """Keep an uploaded file under the data folder and ingest it.

        The same name (or ``source``, such as a chat file's id) uploaded again into
        the same scope is a new version of the same document. Nothing of an upload
        that fails is kept; the file of the version still visible stays.
        """
        check_scope(scope)
        source = source or f"upload:{filename}"
        try:
            staged = self._uploads.stage(filename, stream, document_id(scope, source))
        except (InvalidRequest, DocumentTooLarge) as e:
            shown = filename if isinstance(e, InvalidRequest) else source  # an unsafe name is not a source
            self._observers.ingested(IngestStatus.FAILED.value, "unknown")  # refused before it was read
            return IngestResult(document_id(scope, source), shown, IngestStatus.FAILED, error=e.detail,
                                error_code=e.code)
        return self._ingest_staged(staged, scope, source, on_step)

    def submit_upload(self, filename: str, stream: BinaryIO, scope: str = DEFAULT_SCOPE, *,
                      source: str | None = None) -> Job:
        """Store an upload and ingest it in the background; follow it with ``job``.

        For recordings, which take minutes: the job reports the transcription's
        progress in seconds of audio. The job survives a restart of the service.
        An upload refused at once (unsafe name, too large) is a job that failed.
        """
        check_scope(scope)
        source = source or f"upload:{filename}"
        doc_id = document_id(scope, source)
        self._runner().check_room()  # Busy before a byte is stored
        try:
            staged = self._uploads.stage(filename, stream, doc_id)
        except (InvalidRequest, DocumentTooLarge) as e:
            result = {"doc_id": doc_id, "source": source, "status": IngestStatus.FAILED.value, "chunks": 0,
                      "error": e.detail, "error_code": e.code}
            self._observers.ingested(IngestStatus.FAILED.value, "unknown")  # refused before it was read
            return self._runner().failed("ingest", scope, source, error=e.detail, result=result, doc_id=doc_id)
        try:
            return self._runner().submit("ingest", scope, source, doc_id=doc_id,
                                         params={"path": str(staged), "source": source})
        except BaseException:  # the queue filled meanwhile: nothing stays on disk
            self._uploads.discard(staged)
            raise

    def check_job_room(self, jobs: int = 1) -> None:
        """Busy when ``jobs`` more background jobs would not fit in the queue."""
        self._runner().check_room(jobs)

    @property
    def pending_jobs(self) -> int:
        """Background jobs waiting or running in this process."""
        return self._jobs.pending if self._jobs is not None else 0

    def job(self, job_id: str, *, scopes: list[str] | None = None) -> Job:
        """A job; with ``scopes``, one outside them is reported as not found."""
        if self._jobs is None:
            raise _unseen("job", job_id)
        try:
            job = self._jobs.store.get(job_id)
        except NotFound:
            raise _unseen("job", job_id) from None
        if scopes is not None and job.scope not in scopes:
            raise _unseen("job", job_id)
        return self._without_removed_source(job)

    def _without_removed_source(self, job: Job) -> Job:
        """Minutes of an indexed document quote it: once the document is gone, so are its quotes."""
        source = job.params.get("doc_id") if job.kind == "minutes" else None
        if source is None or job.result is None or self.registry.find(source) is not None:
            return job
        return replace(job, result=None,
                       error="the document these minutes were written from has been deleted since, so they are no "
                             "longer shown")

    def recover_jobs(self) -> int:
        """At service start: resume the jobs a previous run of the service left unfinished,
        and remove uploads a crash left behind that no job will read."""
        if self._jobs is None:
            return 0
        waiting = {str(Path(j.params["path"]).parent) for j in self._jobs.store.unfinished() if j.params.get("path")}
        resumed = self._jobs.resume()
        self._uploads.sweep(waiting)
        return resumed

    def _runner(self) -> JobRunner:
        if self._jobs is None:
            raise BackendError("background jobs are not available in this engine")
        return self._jobs

    def _ingest_job(self, job: Job, report: Reporter) -> Outcome:
        path = self._uploads.waiting(Path(job.params["path"]))
        if path is None:
            return Outcome(None, "the uploaded file is gone (its document was deleted?); upload it again")
        result = self._ingest_staged(path, job.scope, job.params["source"],
                                     lambda what, done, total: report(what, done, total))
        data = {"doc_id": result.doc_id, "source": result.source, "status": result.status.value,
                "chunks": result.chunks, "error": result.error, "error_code": result.error_code}
        return Outcome(data, result.error if result.status == IngestStatus.FAILED else None, result.doc_id)

    def _ingest_staged(self, staged: Path, scope: str, source: str,
                       on_step: StepProgress | None) -> IngestResult:
        with self._uploads.settle(document_id(scope, source), staged) as target:
            result = self._pipeline.ingest(target, scope, source=source, stored_path=target, on_step=on_step)
        if result.status == IngestStatus.INDEXED:
            self._pipeline.refresh_keywords()
        if (result.error is not None and result.error_code in _INTERNAL_CODES
                and "(ref " not in result.error):  # already logged with a reference
            ref = secrets.token_hex(4)
            log.error("ingesting %s failed (ref %s): %s", source, ref, result.error)
            result = replace(result, error=f"internal error (ref {ref})")
        return result

    def close(self) -> None:
        """Finish background jobs and release workers, files and connections.

        Using the engine afterwards opens what it needs again.
        """
        if self._jobs is not None:
            self._jobs.close()
        for close in self._closers:
            close()

    def documents_from(self, source_prefix: str) -> list[DocumentRecord]:
        """Documents whose source starts with ``source_prefix`` (a chat file's id), in any scope."""
        if not source_prefix:
            raise InvalidRequest("an empty source prefix would match every document")
        return self.registry.with_source_prefix(source_prefix)

    def delete(self, doc_id: str, *, scopes: list[str] | None = None) -> DocumentRecord:
        """Remove a document and its stored files; with ``scopes``, one outside them is not found."""
        self.document(doc_id, scopes=scopes)
        try:
            record = self._pipeline.delete(doc_id)
        except NotFound:
            raise _unseen("document", doc_id) from None
        self._uploads.remove_document(doc_id)
        return record

    # -- recordings ------------------------------------------------------------

    def transcribe(self, path: Path, progress: TranscribeProgress | None = None) -> Transcript:
        """Transcribe a recording without indexing it."""
        if self._transcriber is None:
            raise BackendError("speech recognition is not configured")
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"no such file: {path}")
        return self._transcriber.transcribe(path, progress)

    def transcript(self, doc_id: str, *, scopes: list[str] | None = None) -> Transcript:
        """The stored transcript of an indexed recording; with ``scopes``, one outside them is not found."""
        if self._transcripts is None:
            raise NotFound("transcripts are not kept by this engine")
        self.document(doc_id, scopes=scopes)
        return self._transcripts.get(doc_id)

    # -- minutes -----------------------------------------------------------------

    def meeting(self, source: str | Path, scopes: list[str] | None = None,
                progress: TranscribeProgress | None = None) -> Meeting:
        """The meeting to write minutes of: a file, or the id of an ingested recording or transcript.

        With ``scopes``, a document outside them is reported as not found. ``progress``
        follows the transcription of a recording that has none stored yet.
        """
        path = Path(source)
        if path.is_file():
            return load_meeting(path, transcribe=lambda p: self._transcribe_dated(p, progress))
        if self.registry.find(str(source)) is None:
            raise NotFound(f"{source} is neither a file nor the id of a document you can see")
        return self._meeting_of(str(source), scopes, progress)

    def _meeting_of(self, doc_id: str, scopes: list[str] | None, progress: TranscribeProgress | None) -> Meeting:
        """The meeting in an ingested document (never a path: ids come from clients)."""
        record = self.document(doc_id, scopes=scopes)
        name = Path(record.source.removeprefix("upload:")).name
        if record.kind in ("audio", "video"):
            return meeting_from_transcript(self.transcript(record.doc_id), title=Path(name).stem, source=name)
        stored = Path(record.extra.get("stored_path") or record.source)
        if not stored.is_file():
            raise NotFound(f"the file of document {record.doc_id} ({name}) is no longer available")
        return load_meeting(stored, transcribe=lambda p: self._transcribe_dated(p, progress))

    def minutes(self, source: str | Path, scopes: list[str] | None = None,
                progress: MinutesProgress | None = None,
                transcribing: TranscribeProgress | None = None) -> Minutes:
        """Minutes of a recording or transcript (a path or a document id), every item with evidence."""
        return self._draft(self.meeting(source, scopes, transcribing), progress)

    def _draft(self, meeting: Meeting, progress: MinutesProgress | None) -> Minutes:
        if self._drafter is None:
            raise BackendError("minutes are not configured in this engine")
        with timed(self._observers, "minutes"):
            return self._drafter.draft(meeting, progress)

    def submit_minutes(self, *, filename: str | None = None, stream: BinaryIO | None = None,
                       doc_id: str | None = None, scope: str = DEFAULT_SCOPE) -> Job:
        """Write minutes in the background, of an uploaded file or an ingested document in ``scope``.

        An uploaded file is kept only until the job ends.
        """
        check_scope(scope)
        if (filename is None) == (doc_id is None):
            raise InvalidRequest("give either a file or a doc_id")
        if doc_id is not None:
            self.document(doc_id, scopes=[scope])
            return self._runner().submit("minutes", scope, doc_id, params={"doc_id": doc_id})
        assert stream is not None
        self._runner().check_room()
        target = self._uploads.stage(filename or "", stream, "minutes")
        try:
            return self._runner().submit("minutes", scope, f"upload:{filename}", params={"path": str(target)})
        except BaseException:
            self._uploads.discard(target)
            raise

    def _minutes_job(self, job: Job, report: Reporter) -> Outcome:
        path = job.params.get("path")
        drafting = lambda done, total: report("writing minutes", done, total)  # noqa: E731
        transcribing = lambda done, total: report("transcribing", done, total)  # noqa: E731
        try:
            if path is None:
                meeting = self._meeting_of(job.params["doc_id"], [job.scope], transcribing)
            elif Path(path).is_file():
                meeting = load_meeting(Path(path), transcribe=lambda p: self._transcribe_dated(p, transcribing))
            else:
                return Outcome(None, "the uploaded file is gone; upload it again")
            return Outcome(minutes_dict(self._draft(meeting, drafting)))
        finally:
            if path is not None:  # the upload was only for this job, whatever its outcome
                self._uploads.discard(Path(path))

    def _transcribe_dated(self, path: Path, progress: TranscribeProgress | None = None
                          ) -> tuple[Transcript, str | None]:
        if self._transcriber is None:
            raise BackendError("speech recognition is not configured")
        info = self._transcriber.probe(path)
        return self._transcriber.transcribe(path, progress, info=info), info.created

    # -- reading ---------------------------------------------------------------

    def search(self, query: str, k: int | None = None, scopes: list[str] | None = None,
               mode: Mode = "hybrid", *, slot: str = CHAMPION) -> list[Hit]:
        """Search with the champion embedder, or with the challenger's (``slot``) when one is served."""
        if slot not in SLOTS:
            raise InvalidRequest(f"slot is one of {', '.join(SLOTS)}")
        return self._retriever.search(query, k or self._default_k, self._scopes(scopes), mode=mode,
                                      challenger=slot == CHALLENGER)

    def ask(self, question: str, scopes: list[str] | None = None, history: list[Message] | None = None) -> Answer:
        """Answer from the documents in ``scopes``, with valid citations, or say they do not answer it."""
        return self._answerer.ask(_question(question), self._scopes(scopes), history)

    def ask_stream(self, question: str, scopes: list[str] | None = None,
                   history: list[Message] | None = None) -> Iterator[StreamEvent]:
        """Like ``ask``, yielding text as it is generated and then the validated answer."""
        return self._answerer.stream(_question(question), self._scopes(scopes), history)

    def answer(self, answer_id: str, *, scopes: list[str] | None = None) -> Answer:
        """A stored answer; with ``scopes``, it is found only if every scope it was asked in is among them."""
        try:
            answer = self._answerer.read(answer_id)
        except NotFound:
            raise _unseen("answer", answer_id) from None
        if scopes is not None and not set(answer.scopes) <= set(scopes):
            raise _unseen("answer", answer_id)
        return answer

    # -- feedback ----------------------------------------------------------------

    def record_feedback(self, feedback: Feedback) -> bool:
        """Store a 👍 (1) or 👎 (-1) on an answer; False when that person's same rating is already there."""
        if self._feedback is None:
            raise BackendError("feedback is not kept by this engine")
        rated = self.answer(feedback.answer_id)  # NotFound for an answer IMP never gave
        recorded = self._feedback.record(feedback)
        if recorded:
            self._observers.rated(feedback.rating, rated.model)
        return recorded

    def retract_feedback(self, answer_id: str, user: str, rating: int, source: str = "slack") -> bool:
        if self._feedback is None:
            raise BackendError("feedback is not kept by this engine")
        return self._feedback.retract(answer_id, user, rating, source)

    def feedback(self, answer_id: str | None = None, *, scopes: list[str] | None = None) -> list[Feedback]:
        """Ratings in force, oldest first (retracted ones left out); with ``scopes``, only those
        of answers readable in them (see ``answer``)."""
        rated = self._feedback.list(answer_id) if self._feedback is not None else []
        if scopes is None:
            return rated
        readable: dict[str, bool] = {}
        for aid in dict.fromkeys(f.answer_id for f in rated):
            try:
                readable[aid] = bool(self.answer(aid, scopes=scopes))
            except NotFound:
                readable[aid] = False
        return [f for f in rated if readable[f.answer_id]]

    def rated_answers(self, since: datetime | None = None) -> list[RatedAnswer]:
        """Rated answers for training, each with only the passages that may still be shown
        (``Answerer.read``): a document deleted, unshared or replaced since gives no training data."""
        if self._feedback is None:
            return []
        usable: list[RatedAnswer] = []
        for rated in self._feedback.rated_answers(since):
            try:
                shown = self._answerer.read(rated.answer_id)
            except NotFound:
                continue
            passages = tuple(dict.fromkeys(c.chunk.text for c in shown.citations))
            if passages and not shown.abstained:
                usable.append(replace(rated, passages=passages))
        return usable

    @property
    def model_id(self) -> str:
        return self._answerer.model_id

    def embed_questions(self, questions: Sequence[str]) -> Sequence[Sequence[float]]:
        """Vectors of ``questions`` by the champion embedder, as search embeds them (a numpy array of
        L2-normalised rows): the drift check (ops/monitor) compares windows of questions with them."""
        if self._serving is None:
            raise BackendError("this engine has no served embedder")
        return self._serving.snapshot().champion.embedder.embed(list(questions))

    # -- monitoring ----------------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        """Tell ``observer`` (metrics of a front door) what this engine does from now on (core.observe)."""
        self._observers.add(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def drift_summary(self) -> DriftSummary:
        """The latest drift check's score per signal and the alerts raised per signal (ops/monitor writes them)."""
        return drift_summary(self.database)

    @staticmethod
    def _scopes(scopes: list[str] | None) -> list[str]:
        return [check_scope(s) for s in (scopes or [DEFAULT_SCOPE])]

    def documents(self, scopes: list[str] | None = None) -> list[DocumentRecord]:
        return self.registry.list(scopes)

    def document(self, doc_id: str, *, scopes: list[str] | None = None) -> DocumentRecord:
        """A document; with ``scopes``, one outside them is reported as not found."""
        record = self.registry.find(doc_id)
        if record is None or (scopes is not None and record.scope not in scopes):
            raise _unseen("document", doc_id)
        return record

    # -- models (the learning loop's champion and challenger) ----------------------

    def served_models(self) -> list[ServedModel]:
        """The embedders this engine answers with now, and the recorded answer-adapter pointers."""
        models: list[ServedModel] = []
        if self._serving is not None:
            snap = self._serving.snapshot()
            for slot, s in ((CHAMPION, snap.champion), (CHALLENGER, snap.challenger)):
                if s is not None:
                    models.append(ServedModel(EMBEDDER, slot, s.version, str(s.path) if s.path else None,
                                              s.embedder.model_id, s.since, s.collection or None))
        if self._served is not None:
            models += self._served.list(ADAPTER)
        return models

    def serve_model(self, name: str, version: str, path: Path | None, *, slot: str = CHAMPION,
                    progress: SyncProgress | None = None) -> SwitchReport:
        """Serve ``version`` of ``name`` in ``slot``; version "base" with no path is the configured model.

        An embedder's collection is brought up to date (a full re-index the first time, a delta
        when it was served before) while search answers from the current one, then switched to
        at once. The answer adapter is only recorded: the generator loads it at its next start.
        """
        if slot not in SLOTS:
            raise InvalidRequest(f"slot is one of {', '.join(SLOTS)}")
        version = str(version).strip()
        if not version:
            raise InvalidRequest("the version is empty")
        path = Path(path) if path is not None else None
        if name == EMBEDDER:
            if self._serving is None or not self._serving.switchable:
                raise BackendError("this engine cannot switch embedders")
            return self._serving.serve(version, path, slot, progress)
        if name != ADAPTER:
            raise InvalidRequest(f"unknown model {name!r}: {EMBEDDER} or {ADAPTER}")
        if self._served is None:
            raise BackendError("this engine keeps no record of served models")
        if path is None and version != BASE:
            raise InvalidRequest(f"version {version} needs the folder of its adapter")
        if path is not None and not path.is_dir():
            raise NotFound(f"no adapter folder at {path}")
        previous = self._served.get(ADAPTER, slot)
        challenger = self._served.get(ADAPTER, CHALLENGER)
        promoted = slot == CHAMPION and challenger is not None and challenger.version == version
        self._served.put(ADAPTER, slot, version, path=str(path) if path else None, model_id=None, collection=None,
                         clear=[CHALLENGER] if promoted else [])
        log.warning("answer adapter %s is now version %s: restart the service to apply it", slot, version)
        return SwitchReport(ADAPTER, slot, version, previous.version if previous else None, 0, 0, 0.0, None,
                            restart_required=True)

    def retire(self, name: str, slot: str = CHALLENGER) -> bool:
        """Stop serving the challenger of ``name`` (an embedder's collection is kept); False if none was."""
        if slot != CHALLENGER:
            raise InvalidRequest("the champion cannot be retired; serve another version as champion instead")
        if name == EMBEDDER:
            return self._serving.retire(slot) if self._serving is not None else False
        if name != ADAPTER:
            raise InvalidRequest(f"unknown model {name!r}: {EMBEDDER} or {ADAPTER}")
        if self._served is None or self._served.get(ADAPTER, CHALLENGER) is None:
            return False
        self._served.remove(ADAPTER, CHALLENGER)
        return True

    def feedback_by_version(self, name: str) -> dict[str, tuple[int, int]]:
        """(👍, 👎) counts of the ratings in force, per version of ``name`` that produced the rated answers
        (every served version is listed, with (0, 0) when it has none yet)."""
        field = {EMBEDDER: "embedder", ADAPTER: "adapter"}.get(name)
        if field is None:
            raise InvalidRequest(f"unknown model {name!r}: {EMBEDDER} or {ADAPTER}")
        counts = self._answerer.answers.ratings_by_version(field)
        for m in self.served_models():
            if m.name == name:
                counts.setdefault(m.version, (0, 0))
        return counts

    # -- the dashboard -------------------------------------------------------------

    def dashboard(self, since: datetime, until: datetime, *, scopes: list[str] | None = None) -> DashboardData:
        """What the dashboard shows for [since, until): activity, latency, ratings, drift, documents, models.

        With ``scopes``, only what belongs to them: documents in them, answers asked in any of them
        and the ratings of those; drift checks and alerts span every scope, so they are left out.
        """
        data = DashboardStats(self.database).collect(since, until, scopes=scopes)
        return replace(data, models=self.served_models())
