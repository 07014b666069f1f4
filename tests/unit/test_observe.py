"""The engine's observers (core.observe): every call reaches each observer, none of their errors escapes,
stage names stay within the known set, and observers come and go safely while threads report."""

from __future__ import annotations

import threading

import pytest

from core.observe import STAGES, Observers, timed


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def _add(self, *call: object) -> None:
        with self._lock:
            self.calls.append(call)

    def stage(self, name, seconds):  # noqa: ANN001
        self._add("stage", name, seconds)

    def answered(self, answer):  # noqa: ANN001
        self._add("answered", answer)

    def rated(self, rating, model):  # noqa: ANN001
        self._add("rated", rating, model)

    def ingested(self, status, kind):  # noqa: ANN001
        self._add("ingested", status, kind)


class Failing(Recorder):
    def rated(self, rating, model):  # noqa: ANN001
        raise ValueError("a metrics bug")


def test_every_observer_hears_each_call_even_when_one_before_it_fails(caplog):
    first, second = Failing(), Recorder()
    hub = Observers(first, second)
    hub.rated(-1, "extractive:all-MiniLM-L6-v2")
    hub.ingested("failed", "pdf")
    assert second.calls == [("rated", -1, "extractive:all-MiniLM-L6-v2"), ("ingested", "failed", "pdf")]
    assert first.calls == [("ingested", "failed", "pdf")]
    assert "observer Failing failed in rated" in caplog.text


def test_only_known_stages_are_reported_and_never_with_negative_time():
    seen = Recorder()
    hub = Observers(seen)
    hub.stage("retrieve", -0.5)  # a clock step backwards
    hub.stage("what the user typed", 1.0)
    assert seen.calls == [("stage", "retrieve", 0.0)]
    assert STAGES == {"embed", "retrieve", "generate", "transcribe", "ingest", "minutes"}


def test_timed_reports_a_stage_that_raised_and_lets_the_error_through():
    seen = Recorder()
    with pytest.raises(KeyError), timed(Observers(seen), "minutes"):
        raise KeyError("draft failed")
    [(what, name, seconds)] = seen.calls
    assert (what, name) == ("stage", "minutes") and seconds >= 0
    with timed(Failing(), "ingest"):  # a bare observer is guarded too
        pass


def test_observers_added_and_removed_while_threads_report():
    hub, steady = Observers(), Recorder()
    hub.add(steady)
    hub.add(steady)  # once only
    hub.rated(1, "m")
    assert steady.calls == [("rated", 1, "m")]
    stop = threading.Event()

    def report() -> None:
        while not stop.is_set():
            hub.ingested("indexed", "text")

    threads = [threading.Thread(target=report) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        passing = Recorder()
        hub.add(passing)
        hub.remove(passing)
    stop.set()
    for t in threads:
        t.join(5)
    hub.remove(steady)
    before = len(steady.calls)
    hub.ingested("indexed", "text")
    assert before > 0 and len(steady.calls) == before  # removed: hears nothing more
    assert set(steady.calls) == {("rated", 1, "m"), ("ingested", "indexed", "text")}
