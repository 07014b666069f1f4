"""What the engine reports as it works: stage timings, answers, ratings and ingested documents.

Core components call an ``Observer``; a front door turns the calls into metrics
(bot.metrics for Prometheus). Core never imports a metrics library. app.py builds
one ``Observers`` per engine and hands it to the components in their constructors;
a front door adds its own observer to it (``Engine.add_observer``), so the REST API
and Slack, which share one engine, are counted alike.

An observer is called from many threads and must be quick. Whatever it does wrong
is logged, never raised into the work it observes: a broken metric never fails an
answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol, get_args

from core.models import Answer

__all__ = ["NO_OBSERVER", "STAGES", "Observer", "Observers", "Stage", "guarded", "timed"]

log = logging.getLogger(__name__)

Stage = Literal["embed", "retrieve", "generate", "transcribe", "ingest", "minutes"]
STAGES: frozenset[str] = frozenset(get_args(Stage))


class Observer(Protocol):
    """Receives what the engine did. Label-like arguments are bounded values, never user text."""

    def stage(self, name: Stage, seconds: float) -> None:
        """A stage of work took ``seconds`` (one of ``STAGES``)."""

    def answered(self, answer: Answer) -> None:
        """A question was answered (or the documents did not answer it: ``answer.abstained``)."""

    def rated(self, rating: int, model: str) -> None:
        """Someone rated an answer of ``model``: 1 (👍) or -1 (👎)."""

    def ingested(self, status: str, kind: str) -> None:
        """A document was ingested: ``status`` indexed, unchanged or failed; ``kind`` what it was read as."""


class _Nothing:
    """The observer that ignores everything (an engine nobody watches)."""

    def stage(self, name: Stage, seconds: float) -> None:
        pass

    def answered(self, answer: Answer) -> None:
        pass

    def rated(self, rating: int, model: str) -> None:
        pass

    def ingested(self, status: str, kind: str) -> None:
        pass


NO_OBSERVER: Observer = _Nothing()


class Observers:
    """The observers of one engine: every call goes to each, and none of their errors escapes.

    Observers may be added and removed while the engine works (an app starting or
    stopping over a running engine); a call sees the set as it was when it began.
    """

    def __init__(self, *observers: Observer):
        self._lock = threading.Lock()
        self._observers: tuple[Observer, ...] = tuple(observers)

    def add(self, observer: Observer) -> None:
        with self._lock:
            if not any(o is observer for o in self._observers):
                self._observers += (observer,)

    def remove(self, observer: Observer) -> None:
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    def stage(self, name: Stage, seconds: float) -> None:
        if name not in STAGES:  # a label value outside the known set would grow the metrics without bound
            log.warning("ignoring the timing of an unknown stage %r", name)
            return
        self._each("stage", name, max(0.0, float(seconds)))

    def answered(self, answer: Answer) -> None:
        self._each("answered", answer)

    def rated(self, rating: int, model: str) -> None:
        self._each("rated", rating, model)

    def ingested(self, status: str, kind: str) -> None:
        self._each("ingested", status, kind)

    def _each(self, method: str, *args: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(*args)
            except Exception:  # observing must never fail the work observed
                log.warning("observer %s failed in %s", type(observer).__name__, method, exc_info=True)


def guarded(observer: Observer | None) -> Observers:
    """``observer`` as a component keeps it: never raising, and doing nothing when None."""
    if isinstance(observer, Observers):
        return observer
    return Observers() if observer is None else Observers(observer)


@contextmanager
def timed(observer: Observer, stage: Stage) -> Iterator[None]:
    """Report how long the block took as ``stage``, whether it succeeded or raised."""
    observer = guarded(observer)
    started = time.perf_counter()
    try:
        yield
    finally:
        observer.stage(stage, time.perf_counter() - started)
