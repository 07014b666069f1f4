"""One drift check, end to end: read the windows, score every signal, record, alert, ask for retraining.

Run by the scheduler every ``IMP_MONITOR__INTERVAL_S`` (one replica per interval) and by
`imp drift check`. With ``dry_run`` it only computes: nothing is recorded, sent or requested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InvalidRequest
from core.store.claims import ClaimStore
from core.store.database import Database
from core.store.monitor import MonitorStore
from ops.monitor import signals as gather
from ops.monitor.alerts import Alerter, AlertEvent, settle
from ops.monitor.drift import (
    ABSTAIN_RATE,
    BEST_SIMILARITY,
    DOWN_RATE,
    MAX_MMD_SAMPLES,
    MIN_SAMPLES,
    QUERY_EMBEDDING,
    RETRAINABLE,
    DriftConfig,
    Signal,
    drop_signal,
    embedding_signal,
    ingest_signal,
    latency_signal,
    rate_signal,
    subsample,
)

log = logging.getLogger(__name__)

RETRAIN = "retrain"  # ops.scheduler's job name: the scheduled retraining honours this request
MIN_WINDOW, MAX_WINDOW = 10, 100_000  # as core.config.MonitorSettings.window allows

Embed = Callable[[list[str]], Any]  # texts -> (n, d) array of L2-normalised vectors


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What one check found and did."""

    window: int
    signals: list[Signal]
    alerts: list[AlertEvent] = field(default_factory=list)
    seconds: float = 0.0
    retrain_requested: str | None = None
    dry_run: bool = False

    @property
    def drifted(self) -> list[str]:
        return [s.name for s in self.signals if s.drifted]

    def to_json(self) -> dict[str, Any]:
        """The stable shape `imp drift check --json` prints."""
        return {"signals": [s.to_json() for s in self.signals], "alerts": [a.to_json() for a in self.alerts]}


class DriftCheck:
    """Compares the newest ``window`` questions with the ``window`` before them, on every signal."""

    def __init__(self, database: Database, embed: Embed, config: DriftConfig, *, window: int,
                 alerter: Alerter | None = None, retrain_on_drift: bool = True):
        self._db = database
        self._embed = embed
        self.config = config
        self.window = _checked_window(window)
        self._alerter = alerter
        self._retrain_on_drift = retrain_on_drift
        self.store = MonitorStore(database)
        self._claims = ClaimStore(database)

    def signals(self, window: int) -> list[Signal]:
        """Every signal over the two newest windows of ``window`` answers (and ingests)."""
        c = self.config
        recent, previous = gather.answer_windows(self._db, window)
        out = [self._embedding(recent.questions, previous.questions),
               drop_signal(BEST_SIMILARITY, np.asarray(recent.best_similarity), np.asarray(previous.best_similarity),
                           min_drop=c.best_similarity_drop, alpha=c.alpha, what="answers with a best hit"),
               rate_signal(ABSTAIN_RATE, sum(recent.abstained), len(recent), sum(previous.abstained), len(previous),
                           min_rise=c.abstain_rate_rise, alpha=c.alpha, what="answers")]
        up_down_recent = gather.ratings(self._db, recent.answer_ids)
        up_down_previous = gather.ratings(self._db, previous.answer_ids)
        out.append(rate_signal(DOWN_RATE, up_down_recent.down, up_down_recent.total, up_down_previous.down,
                               up_down_previous.total, min_rise=c.down_rate_rise, alpha=c.alpha, what="ratings"))
        out.append(latency_signal(np.asarray(recent.total_ms), c))
        ingests_recent, ingests_previous = gather.ingest_windows(self._db, window)
        out.append(ingest_signal(ingests_recent.failed, ingests_recent.total, ingests_previous.failed,
                                 ingests_previous.total, c))
        return out

    def _embedding(self, recent: Sequence[str], previous: Sequence[str]) -> Signal:
        """The query-embedding signal; only the questions compared are embedded (at most MAX_MMD_SAMPLES each)."""
        counts = (len(recent), len(previous))
        if min(counts) < MIN_SAMPLES:  # nothing to embed; the statistic says there is too little
            return embedding_signal(np.zeros((counts[0], 1)), np.zeros((counts[1], 1)), self.config)
        seed = self.config.seed
        recent, previous = subsample(recent, MAX_MMD_SAMPLES, seed), subsample(previous, MAX_MMD_SAMPLES, seed + 1)
        try:
            vectors = np.asarray(self._embed([*recent, *previous]), dtype=np.float32)
        except Exception as e:  # the other signals still count; this one says why it has no score
            log.exception("the drift check could not embed the questions")
            return Signal(QUERY_EMBEDDING, None, self.config.mmd_p_value, None, False,
                          {"n_recent": counts[0], "n_previous": counts[1],
                           "note": f"could not embed the questions ({type(e).__name__})"})
        return embedding_signal(vectors[:len(recent)], vectors[len(recent):], self.config, counts=counts)

    def run(self, window: int | None = None, *, dry_run: bool = False) -> CheckReport:
        """Score every signal; unless ``dry_run``, record the check, settle incidents (alerts) and, when a
        retrainable signal newly drifted, ask the scheduled retraining to run."""
        window = self.window if window is None else _checked_window(window)
        started = time.perf_counter()
        found = self.signals(window)
        seconds = round(time.perf_counter() - started, 3)
        if dry_run:
            return CheckReport(window, found, settle(self.store, found, None, dry_run=True), seconds, dry_run=True)
        self.store.save_check(window, [s.to_json() for s in found], seconds)
        already_open = self.store.open_incidents()
        newly = [s for s in found if s.drifted and s.name not in already_open]
        reason = self._request_retraining(newly)
        retraining = {s.name for s in newly if s.name in RETRAINABLE} if reason else set()
        events = settle(self.store, found, self._alerter, retraining=retraining, open_now=already_open)
        log.info("drift check over %d answers took %.2fs; drifted: %s", window, seconds,
                 ", ".join(s.name for s in found if s.drifted) or "nothing")
        return CheckReport(window, found, events, seconds, reason)

    def _request_retraining(self, newly: Sequence[Signal]) -> str | None:
        """Ask for a retraining when a signal a new model can answer has just drifted (once per incident)."""
        wanted = [s for s in newly if s.name in RETRAINABLE]
        if not wanted or not self._retrain_on_drift:
            return None
        reason = "drift: " + "; ".join(f"{s.name} (score {s.score}, threshold {s.threshold}, p {s.p_value})"
                                       for s in wanted)
        try:
            self._claims.request(RETRAIN, reason)
        except Exception:  # the alert still goes out; the next incident asks again
            log.exception("could not request a retraining after drift")
            return None
        return reason


def _checked_window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or not MIN_WINDOW <= window <= MAX_WINDOW:
        raise InvalidRequest(f"the window is a number of questions from {MIN_WINDOW} to {MAX_WINDOW}")
    return window
