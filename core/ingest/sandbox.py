"""Document loaders in worker processes, each under a memory cap and a time limit.

A hostile file (a decompression bomb, a pathological PDF, a parser bug) can make
a loader use gigabytes or run for minutes. Run in the service's own process,
that takes the service down; run here, it costs one worker. Each worker is a
fresh ``python -m core.ingest.sandbox`` (not a fork of the threaded service),
with its address space limited (RLIMIT_AS); a load that runs past the time
limit has its worker killed and replaced. The document then fails with a plain
reason naming the setting to change.

Workers are started on first use, up to ``workers`` at once, and reused: each
imports the loader of a format the first time it reads one. They exit when the
sandbox closes, after ``idle_s`` without work, when their parent goes away, or
when killed.

Messages are JSON, never pickles: a worker reads hostile files, and a parser
exploit that took it over must not be able to run code in the service by what it
sends back.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import site
import subprocess
import sys
import threading
import time
import traceback
import weakref
from multiprocessing.connection import Connection
from pathlib import Path

import core
from core.errors import (
    BackendError, CorruptDocument, DocumentTooLarge, EmptyDocument, ImpError, InvalidRequest, NotFound,
    UnsupportedFormat,
)
from core.models import LoadedDocument, Segment

log = logging.getLogger(__name__)

_TIMEOUT_SETTING = "IMP_INGEST__LOADER_TIMEOUT_S"
_MEMORY_SETTING = "IMP_INGEST__LOADER_MAX_MB"
_START_TIMEOUT_S = 120.0  # a worker that cannot even start (a broken install) is a backend failure
_IDLE_EXIT = 75  # a worker's exit status when it left for lack of work (EX_TEMPFAIL)


# The errors a loader raises on purpose, by code, as the parent rebuilds them from a reply.
_ERRORS: dict[str, type[ImpError]] = {cls.code: cls for cls in (
    UnsupportedFormat, CorruptDocument, EmptyDocument, DocumentTooLarge, NotFound, InvalidRequest)}
_SEGMENT_FIELDS = ("text", "page", "start", "end", "speaker", "section")


def _encode(message: object) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def _document(data: dict) -> LoadedDocument:
    """A loader's reply as a LoadedDocument, every field checked for its type (the worker is not trusted)."""
    try:
        segments = [Segment(**dict(zip(_SEGMENT_FIELDS, row, strict=True))) for row in data["segments"]]
        for seg in segments:
            if not isinstance(seg.text, str) or not all(
                    v is None or isinstance(v, (int, float, str)) for v in (seg.page, seg.start, seg.end, seg.speaker,
                                                                             seg.section)):
                raise TypeError("a segment field of the wrong type")
        kind, title = data["kind"], data.get("title")
        if not isinstance(kind, str) or not (title is None or isinstance(title, str)):
            raise TypeError("kind or title of the wrong type")
    except (KeyError, TypeError, ValueError) as e:
        raise RuntimeError(f"the loader process sent a malformed document ({e})") from e
    return LoadedDocument(kind=kind, segments=segments, title=title)


class _Retired(Exception):
    """The worker left for lack of work just as a document was sent to it: use another."""


class LoaderCrashed(ImpError):
    """The loader process died on a document (out of memory in native code, a crash)."""

    code = "too_large"


def _source_root() -> list[str]:
    """The folder holding ``core`` when the child needs it on PYTHONPATH (a checkout run in place).

    Never a site-packages folder (an installed IMP): PYTHONPATH goes before the standard library, where
    a distribution's stray module (PyPI's ``typing`` backport) would shadow the real one and kill the loader.
    """
    root = Path(core.__file__).resolve().parent.parent
    sites = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return [] if root in sites else [str(root)]


class _Worker:
    """One loader process and its two pipe ends."""

    def __init__(self, max_bytes: int, idle_s: float):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [*_source_root(),
                                                                        os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.ingest.sandbox", str(max_bytes), str(idle_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.send = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.recv = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False
        self.broken = False  # timed out, ran out of memory or died: never reused
        self.stopping = False  # killed by close(), not by the document

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.send.close()
        self.recv.close()

    def stop(self, wait_s: float = 2.0) -> None:
        """Ask the worker to exit (end of input); kill it if it does not."""
        self.send.close()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.recv.close()


def _stop_all(workers: set[_Worker]) -> None:
    for w in list(workers):
        w.stop() if w.ready else w.kill()
    workers.clear()


class LoaderSandbox:
    """A small pool of loader processes: ``load`` blocks until a worker is free."""

    def __init__(self, *, timeout_s: float = 300.0, max_mb: int = 2048, workers: int = 2, idle_s: float = 60.0):
        if workers < 1:
            raise ValueError("a sandbox needs at least one worker")
        self._idle_s = idle_s
        self._timeout_s = timeout_s
        self._max_mb = max_mb
        self._size = workers
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._cond = threading.Condition()
        # A sandbox dropped without close() (or at interpreter exit) still ends its workers.
        self._finalizer = weakref.finalize(self, _stop_all, self._all)

    def load(self, path: Path, kind: str, max_chars: int, pdf_text: str = "pdfium") -> LoadedDocument:
        """``load_file(path, kind=kind, max_chars=max_chars, pdf_text=pdf_text)`` in a worker, within the limits."""
        for _ in range(3):
            worker = self._acquire()
            try:
                return self._run(worker, str(Path(path).absolute()), kind, max_chars, pdf_text)
            except _Retired:
                continue
            finally:
                self._release(worker)
        raise BackendError("the document loader processes keep exiting (the service log has their errors)")

    def pids(self) -> list[int]:
        """Process ids of the running loader workers (for health checks and tests)."""
        with self._cond:
            return sorted(w.proc.pid for w in self._all if w.proc.poll() is None)

    def _run(self, worker: _Worker, path: str, kind: str, max_chars: int, pdf_text: str) -> LoadedDocument:
        if not worker.ready:
            self._wait_ready(worker)
        started = time.monotonic()
        try:
            worker.send.send_bytes(_encode([path, kind, max_chars, pdf_text]))
            if not worker.recv.poll(self._timeout_s):
                worker.broken = True
                raise DocumentTooLarge(f"reading the file took longer than {self._timeout_s:g} s, "
                                       f"the limit for one document ({_TIMEOUT_SETTING})")
            reply = json.loads(worker.recv.recv_bytes())
        except (EOFError, OSError) as e:
            worker.broken = True
            worker.kill()
            if worker.proc.returncode == _IDLE_EXIT:
                raise _Retired from e
            if worker.stopping:
                raise BackendError("reading the document was stopped: the service is shutting down") from e
            raise self._crash(worker, kind, time.monotonic() - started) from e
        outcome = reply[0] if isinstance(reply, list) and reply else None
        if outcome == "ok":
            return _document(reply[1])
        if outcome == "error":  # an ImpError the loader raised on purpose
            code, detail = str(reply[1]), str(reply[2])[:2000]
            raise _ERRORS.get(code, CorruptDocument)(detail)
        if outcome == "memory":
            worker.broken = True
            raise DocumentTooLarge(f"reading the file needed more than {self._max_mb} MB of memory, "
                                   f"the limit for one document ({_MEMORY_SETTING})")
        # A bug in a loader or library (or a reply of no known shape): the caller logs it with a reference.
        raise RuntimeError(f"{kind} loader failed: {str(reply)[:8000]}")

    @staticmethod
    def _wait_ready(worker: _Worker) -> None:
        """The worker's first message says it started (or its end says it could not)."""
        try:
            if worker.recv.poll(_START_TIMEOUT_S):
                worker.recv.recv_bytes()
                worker.ready = True
                return
        except (EOFError, OSError):
            pass
        worker.broken = True
        raise BackendError("the document loader process did not start (the service log has its error)")

    def _crash(self, worker: _Worker, kind: str, seconds: float) -> LoaderCrashed:
        code = worker.proc.returncode
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        log.error("the %s loader process died after %.1f s (%s)", kind, seconds, how)
        return LoaderCrashed(f"reading the file stopped the {kind} loader ({how}); the file may need more than "
                             f"{self._max_mb} MB of memory, the limit for one document ({_MEMORY_SETTING})")

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.proc.poll() is None:
                        return worker
                    self._all.discard(worker)  # left for lack of work: reap it below, outside the lock
                    threading.Thread(target=worker.kill, daemon=True).start()
                if len(self._all) < self._size:
                    try:
                        worker = _Worker(self._max_mb << 20, self._idle_s)
                    except OSError as e:  # out of processes or memory: not the document's fault
                        raise BackendError("cannot start a document loader process") from e
                    self._all.add(worker)
                    return worker
                self._cond.wait()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            reuse = not worker.broken and worker in self._all and worker.proc.poll() is None
            if reuse:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify()
        if not reuse:
            worker.kill()  # also reaps one that died, and closes its pipes

    def close(self) -> None:
        """End every worker (a load in progress fails); using the sandbox again starts new ones."""
        with self._cond:
            idle, self._idle = self._idle, []
            busy = self._all - set(idle)
            self._all.clear()
            self._cond.notify_all()
        for w in idle:
            w.stop()
        for w in busy:  # the thread waiting on it sees its pipe close, then reaps it
            w.stopping = True
            if w.proc.poll() is None:
                w.proc.kill()


# -- the worker side ---------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """Exit if the service that started this worker is gone (its pipe may outlive it in a fork)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _serve(max_bytes: int, idle_s: float) -> None:
    # The replies go to a private copy of stdout; fd 1 becomes stderr, so a library
    # that prints cannot corrupt the protocol.
    reply = Connection(os.dup(1), readable=False)
    requests = Connection(os.dup(0), writable=False)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the CLI is the parent's to handle
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s (loader): %(message)s")

    from core.ingest.loaders import load_file

    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    reply.send_bytes(_encode(["ready", os.getpid()]))
    while True:
        try:
            if not requests.poll(idle_s):
                os._exit(_IDLE_EXIT)
            path, kind, max_chars, pdf_text = json.loads(requests.recv_bytes())
        except EOFError:
            return
        try:
            loaded = load_file(Path(path), max_chars=max_chars, kind=kind, pdf_text=pdf_text)
            answer: list = ["ok", {"kind": loaded.kind, "title": loaded.title,
                                   "segments": [[getattr(seg, f) for f in _SEGMENT_FIELDS] for seg in loaded.segments]}]
        except MemoryError:
            answer = ["memory"]
        except ImpError as e:
            answer = ["error", e.code, e.detail]
        except Exception as e:  # noqa: BLE001 - reported to the parent, which logs it with a reference
            answer = ["bug", type(e).__name__, str(e)[:2000], traceback.format_exc()[-6000:]]
        try:
            reply.send_bytes(_encode(answer))
        except MemoryError:
            os._exit(3)  # the parent sees the pipe close and reports the memory limit
        if answer[0] == "memory":
            return  # a heap that ran out may be in any state: start afresh


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]))
