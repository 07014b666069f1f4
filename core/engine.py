"""The Engine facade: the one object the front doors (CLI, REST, Slack) talk to."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from core.errors import BackendError, InvalidRequest, NotFound
from core.generate.answering import Answerer, StreamEvent
from core.generate.minutes.base import MinutesDrafter
from core.generate.minutes.base import Progress as MinutesProgress
from core.generate.minutes.inputs import load_meeting, meeting_from_transcript
from core.generate.minutes.render import to_dict as minutes_dict
from core.index.hybrid import HybridRetriever, Mode
from core.ingest.chunking import document_id
from core.ingest.pipeline import IngestPipeline, Progress, StepProgress, walk
from core.models import (
    DEFAULT_SCOPE, Answer, DocumentRecord, Feedback, Hit, IngestResult, IngestStatus, Job, Meeting, Message, Minutes,
    Transcript,
)
from core.speech.transcriber import Progress as TranscribeProgress
from core.speech.transcriber import Transcriber
from core.jobs import JobRunner, Outcome, Reporter
from core.store.feedback import FeedbackStore
from core.store.jobs import JobStore
from core.store.registry import DocumentRegistry
from core.store.transcripts import TranscriptStore

log = logging.getLogger(__name__)

_SCOPE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def check_scope(scope: str) -> str:
    if not _SCOPE_RE.match(scope or ""):
        raise InvalidRequest(f"invalid scope {scope!r}: use letters, digits and _ . : @ - (at most 200)")
    return scope


def check_upload_name(name: str) -> str:
    """An uploaded file's name, refused when it could escape the upload folder."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or _UNSAFE_NAME.search(name):
        raise InvalidRequest(f"unsafe file name {name!r}: a plain file name without folders is required")
    if len(name.encode()) > 255:
        raise InvalidRequest("file name is longer than 255 bytes")
    return name


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
                 feedback: FeedbackStore | None = None, closers: Sequence[Callable[[], None]] = ()):
        self.registry = registry
        self._pipeline = pipeline
        self._retriever = retriever
        self._answerer = answerer
        self._files_dir = files_dir
        self._default_k = default_k
        self._transcriber = transcriber
        self._transcripts = transcripts
        self._drafter = minutes
        self._feedback = feedback
        self._closers = list(closers)
        self._jobs = JobRunner(jobs, {"ingest": self._ingest_job, "minutes": self._minutes_job}) if jobs else None

    def warm_up(self) -> None:
        """Load models and indexes now rather than on the first request."""
        _ = self._pipeline.chunker  # loads the embedder and its tokenizer
        self._retriever.search("warm up", 1, [DEFAULT_SCOPE])
        self._answerer.warm_up()

    # -- ingestion -------------------------------------------------------------

    def ingest(self, paths: Iterable[Path], scope: str = DEFAULT_SCOPE,
               on_result: Progress | None = None, on_step: StepProgress | None = None) -> list[IngestResult]:
        """Ingest files and folders (walked recursively); recordings are transcribed."""
        check_scope(scope)
        files = list(walk(Path(p) for p in paths))
        return self._pipeline.ingest_many(files, scope, on_result, on_step)

    def files_under(self, paths: Iterable[Path]) -> list[Path]:
        return list(walk(Path(p) for p in paths))

    def ingest_upload(self, filename: str, stream: BinaryIO, scope: str = DEFAULT_SCOPE,
                      on_step: StepProgress | None = None, *, source: str | None = None) -> IngestResult:
        """Keep an uploaded file under the data folder and ingest it.

        The same name (or ``source``, such as a chat file's id) uploaded again into
        the same scope is a new version of the same document.
        """
        check_scope(scope)
        source = source or f"upload:{filename}"
        try:
            target = self._store_upload(filename, stream, scope, source=source)
        except InvalidRequest as e:
            return IngestResult(document_id(scope, source), filename, IngestStatus.FAILED,
                                error=e.detail, error_code=e.code)
        return self._ingest_stored(target, scope, source, on_step)

    def submit_upload(self, filename: str, stream: BinaryIO, scope: str = DEFAULT_SCOPE, *,
                      source: str | None = None) -> Job:
        """Store an upload and ingest it in the background; follow it with ``job``.

        For recordings, which take minutes: the job reports the transcription's
        progress in seconds of audio. The job survives a restart of the service.
        """
        check_scope(scope)
        source = source or f"upload:{filename}"
        target = self._store_upload(filename, stream, scope, source=source)
        return self._runner().submit("ingest", scope, source, doc_id=document_id(scope, source),
                                     params={"path": str(target), "source": source})

    def job(self, job_id: str) -> Job:
        if self._jobs is None:
            raise NotFound(f"no job with id {job_id!r}")
        return self._jobs.store.get(job_id)

    def recover_jobs(self) -> int:
        """At service start: resume the jobs a previous run of the service left unfinished."""
        return self._jobs.resume() if self._jobs is not None else 0

    def _runner(self) -> JobRunner:
        if self._jobs is None:
            raise BackendError("background jobs are not available in this engine")
        return self._jobs

    def _ingest_job(self, job: Job, report: Reporter) -> Outcome:
        path = Path(job.params["path"])
        if not path.is_file():
            return Outcome(None, f"the uploaded file is gone from {path.parent.name}; upload it again")
        result = self._ingest_stored(path, job.scope, job.params["source"],
                                     lambda what, done, total: report(what, done, total))
        data = {"doc_id": result.doc_id, "source": result.source, "status": result.status.value,
                "chunks": result.chunks, "error": result.error, "error_code": result.error_code}
        return Outcome(data, result.error if result.status == IngestStatus.FAILED else None, result.doc_id)

    def _store_upload(self, filename: str, stream: BinaryIO, scope: str, area: str | None = None, *,
                      source: str | None = None) -> Path:
        name = check_upload_name(filename)
        if area is None:
            folder = self._files_dir / document_id(scope, source or f"upload:{filename}")
        else:  # a file only read by a job (minutes of an upload): its own folder, never a document's
            folder = self._files_dir / area / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
        with open(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        target = folder / name
        Path(tmp).replace(target)
        return target

    def _ingest_stored(self, target: Path, scope: str, source: str,
                       on_step: StepProgress | None) -> IngestResult:
        result = self._pipeline.ingest(target, scope, source=source, stored_path=target, on_step=on_step)
        if result.status == IngestStatus.INDEXED:
            self._pipeline.refresh_keywords()
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

    def delete(self, doc_id: str) -> DocumentRecord:
        record = self._pipeline.delete(doc_id)
        shutil.rmtree(self._files_dir / doc_id, ignore_errors=True)
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

    def transcript(self, doc_id: str) -> Transcript:
        """The stored transcript of an indexed recording."""
        if self._transcripts is None:
            raise NotFound("transcripts are not kept by this engine")
        return self._transcripts.get(doc_id)

    # -- minutes -----------------------------------------------------------------

    def meeting(self, source: str | Path, scopes: list[str] | None = None,
                progress: TranscribeProgress | None = None) -> Meeting:
        """The meeting to write minutes of: a file, or the id of an ingested recording or transcript.

        With ``scopes``, a document outside them is reported as not found. ``progress``
        follows the transcription of a recording that has none stored yet.
        """
        path = Path(source)
        transcribe = lambda p: self._transcribe_dated(p, progress)  # noqa: E731
        if path.is_file():
            return load_meeting(path, transcribe=transcribe)
        record = self.registry.find(str(source))
        if record is None or (scopes is not None and record.scope not in scopes):
            raise NotFound(f"{source} is neither a file nor the id of a document you can see")
        name = Path(record.source.removeprefix("upload:")).name
        if record.kind in ("audio", "video"):
            return meeting_from_transcript(self.transcript(record.doc_id), title=Path(name).stem, source=name)
        stored = Path(record.extra.get("stored_path") or record.source)
        if not stored.is_file():
            raise NotFound(f"the file of document {record.doc_id} ({name}) is no longer available")
        return load_meeting(stored, transcribe=transcribe)

    def minutes(self, source: str | Path, scopes: list[str] | None = None,
                progress: MinutesProgress | None = None,
                transcribing: TranscribeProgress | None = None) -> Minutes:
        """Minutes of a recording or transcript (a path or a document id), every item with evidence."""
        if self._drafter is None:
            raise BackendError("minutes are not configured in this engine")
        return self._drafter.draft(self.meeting(source, scopes, transcribing), progress)

    def submit_minutes(self, *, filename: str | None = None, stream: BinaryIO | None = None,
                       doc_id: str | None = None, scope: str = DEFAULT_SCOPE) -> Job:
        """Write minutes in the background, of an uploaded file or an ingested document in ``scope``."""
        check_scope(scope)
        if (filename is None) == (doc_id is None):
            raise InvalidRequest("give either a file or a doc_id")
        if doc_id is not None:
            self._check_in_scope(doc_id, scope)
            return self._runner().submit("minutes", scope, doc_id, params={"doc_id": doc_id})
        assert stream is not None
        target = self._store_upload(filename or "", stream, scope, area="minutes")
        return self._runner().submit("minutes", scope, f"upload:{filename}", params={"path": str(target)})

    def _check_in_scope(self, doc_id: str, scope: str) -> None:
        record = self.registry.find(doc_id)
        if record is None or record.scope != scope:
            raise NotFound(f"no document with id {doc_id!r} in scope {scope!r}")

    def _minutes_job(self, job: Job, report: Reporter) -> Outcome:
        source = job.params.get("path") or job.params["doc_id"]
        scopes = None if "path" in job.params else [job.scope]
        minutes = self.minutes(source, scopes, lambda done, total: report("writing minutes", done, total),
                               lambda done, total: report("transcribing", done, total))
        return Outcome(minutes_dict(minutes))

    def _transcribe_dated(self, path: Path, progress: TranscribeProgress | None = None
                          ) -> tuple[Transcript, str | None]:
        if self._transcriber is None:
            raise BackendError("speech recognition is not configured")
        info = self._transcriber.probe(path)
        return self._transcriber.transcribe(path, progress, info=info), info.created

    # -- reading ---------------------------------------------------------------

    def search(self, query: str, k: int | None = None, scopes: list[str] | None = None,
               mode: Mode = "hybrid") -> list[Hit]:
        return self._retriever.search(query, k or self._default_k, self._scopes(scopes), mode=mode)

    def ask(self, question: str, scopes: list[str] | None = None, history: list[Message] | None = None) -> Answer:
        """Answer from the documents in ``scopes``, with valid citations, or say they do not answer it."""
        return self._answerer.ask(_question(question), self._scopes(scopes), history)

    def ask_stream(self, question: str, scopes: list[str] | None = None,
                   history: list[Message] | None = None) -> Iterator[StreamEvent]:
        """Like ``ask``, yielding text as it is generated and then the validated answer."""
        return self._answerer.stream(_question(question), self._scopes(scopes), history)

    def answer(self, answer_id: str) -> Answer:
        return self._answerer.answers.get(answer_id)

    # -- feedback ----------------------------------------------------------------

    def record_feedback(self, feedback: Feedback) -> bool:
        """Store a 👍 (1) or 👎 (-1) on an answer; False when that person's same rating is already there."""
        if self._feedback is None:
            raise BackendError("feedback is not kept by this engine")
        self.answer(feedback.answer_id)  # NotFound for an answer IMP never gave
        return self._feedback.record(feedback)

    def retract_feedback(self, answer_id: str, user: str, rating: int, source: str = "slack") -> bool:
        if self._feedback is None:
            raise BackendError("feedback is not kept by this engine")
        return self._feedback.retract(answer_id, user, rating, source)

    def feedback(self, answer_id: str | None = None) -> list[Feedback]:
        """Ratings in force, oldest first (retracted ones left out)."""
        return self._feedback.list(answer_id) if self._feedback is not None else []

    @property
    def model_id(self) -> str:
        return self._answerer.model_id

    @staticmethod
    def _scopes(scopes: list[str] | None) -> list[str]:
        return [check_scope(s) for s in (scopes or [DEFAULT_SCOPE])]

    def documents(self, scopes: list[str] | None = None) -> list[DocumentRecord]:
        return self.registry.list(scopes)

    def document(self, doc_id: str) -> DocumentRecord:
        return self.registry.get(doc_id)
