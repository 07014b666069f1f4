"""Read-only aggregates for the dashboard: activity, latency, ratings, drift, documents, failures.

Everything is bucketed (per hour for short ranges, per day otherwise) and bounded, so the
page is the same size whether a day or a year of answers is behind it. Scope filtering is
done here, where the rows are: documents by their scope, answers (and the ratings of them)
whose scopes intersect the caller's. Drift checks and alerts span every scope, so they are
given only to callers who may see everything.

JSON columns (an answer's scopes and timings) are read in Python rather than with a
dialect's JSON functions, so the same code runs on SQLite and Postgres.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, literal, or_, select

from core.models import ServedModel
from core.store.database import Database
from core.store.schema import AlertRow, AnswerRow, DocumentRow, FeedbackRow, MonitorCheckRow

# Rows read per query at most (newest first): beyond this a range is summarised from its newest part.
MAX_ROWS = 250_000
MAX_CHECKS = 500  # drift checks drawn
MAX_SIGNALS = 12  # distinct drift signals drawn
MAX_VERSIONS = 8  # versions per model in the ratings chart
MAX_GROUPS = 200  # (kind, scope, status) groups of documents
MAX_FAILURE_CODES = 20
MAX_ALERTS = 20
MAX_LABEL = 64  # characters of a version, signal or error code kept
HOURLY_UP_TO = timedelta(days=2)  # ranges up to this long are bucketed per hour, longer ones per day


@dataclass(frozen=True, slots=True)
class ActivityPoint:
    """Questions in one bucket: every question gets an answer or an abstention."""

    start: datetime
    questions: int
    answered: int
    abstained: int


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    """Answer latency percentiles (``timings_ms["total"]``) over ``n`` answers."""

    start: datetime
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class RatingPoint:
    """👍 and 👎 given in one bucket (ratings in force)."""

    start: datetime
    up: int
    down: int


@dataclass(frozen=True, slots=True)
class VersionRatings:
    """👍/👎 of answers one version produced; ``model`` is "answer model", "embedder" or "adapter"."""

    model: str
    version: str
    up: int
    down: int


@dataclass(frozen=True, slots=True)
class DriftPoint:
    """One signal of one drift check (ops/monitor)."""

    checked_at: datetime
    signal: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """An incident: open while ``resolved_at`` is None."""

    signal: str
    opened_at: datetime
    resolved_at: datetime | None
    score: float
    threshold: float


@dataclass(frozen=True, slots=True)
class DocumentCount:
    """Documents of one kind, scope and status now, with their chunks and (recordings) seconds."""

    kind: str
    scope: str
    status: str
    documents: int
    chunks: int
    seconds: float


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Documents whose latest ingest failed, by error code and kind."""

    error_code: str
    kind: str
    documents: int


@dataclass(frozen=True, slots=True)
class IngestPoint:
    """Ingest attempts that ended in one bucket (by the document's last update), and how many failed."""

    start: datetime
    ingested: int
    failed: int


@dataclass(frozen=True, slots=True)
class DashboardData:
    """What the dashboard shows for [since, until) (naive UTC), seen with ``scopes`` (None: all)."""

    since: datetime
    until: datetime
    bucket: str  # "hour" or "day"
    scopes: tuple[str, ...] | None
    activity: list[ActivityPoint]
    latency: list[LatencyPoint]  # buckets with answers only
    latency_overall: LatencyPoint | None
    ratings: list[RatingPoint]
    ratings_by_version: list[VersionRatings]
    drift: list[DriftPoint]
    drift_shown: bool  # False: the caller's scopes are limited, and drift spans every scope
    alerts: list[AlertInfo]
    documents: list[DocumentCount]
    failures: list[FailureCount]
    ingests: list[IngestPoint]
    truncated: bool = False  # a query hit MAX_ROWS: the oldest part of the range is left out
    models: list[ServedModel] = field(default_factory=list)  # filled in by the engine


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _label(value: object, default: str = "unknown") -> str:
    text = str(value).strip() if value is not None else ""
    return (text or default)[:MAX_LABEL]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100) of sorted values, interpolating between closest ranks."""
    pos = (len(sorted_values) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _latency(start: datetime, values: list[float]) -> LatencyPoint:
    xs = sorted(values)
    return LatencyPoint(start, len(xs), round(percentile(xs, 50), 1), round(percentile(xs, 95), 1),
                        round(percentile(xs, 99), 1))


class Buckets:
    """Equal time buckets from ``since`` (floored to the hour or day) up to ``until``."""

    def __init__(self, since: datetime, until: datetime):
        self.kind = "hour" if until - since <= HOURLY_UP_TO else "day"
        self.step = timedelta(hours=1) if self.kind == "hour" else timedelta(days=1)
        floor = {"minute": 0, "second": 0, "microsecond": 0}
        self.first = since.replace(**floor) if self.kind == "hour" else since.replace(hour=0, **floor)
        self.count = max(1, math.ceil((until - self.first) / self.step))

    def index(self, when: datetime) -> int | None:
        i = int((when - self.first) / self.step)
        return i if 0 <= i < self.count else None

    def start(self, i: int) -> datetime:
        return self.first + i * self.step


class DashboardStats:
    """Reads the shared database; never writes."""

    def __init__(self, database: Database):
        self._db = database

    def collect(self, since: datetime, until: datetime, *, scopes: Iterable[str] | None = None) -> DashboardData:
        since, until = _naive_utc(since), _naive_utc(until)
        if until <= since:
            until = since + timedelta(hours=1)
        wanted = None if scopes is None else frozenset(scopes)
        buckets = Buckets(since, until)
        with self._db.session() as s:
            activity, latency, overall, cut_a = self._answers(s, since, until, wanted, buckets)
            ratings, by_version, cut_f = self._ratings(s, since, until, wanted, buckets)
            ingests, cut_i = self._ingests(s, since, until, wanted, buckets)
            drift = self._drift(s, since, until) if wanted is None else []
            alerts = self._alerts(s, since) if wanted is None else []
            documents = self._documents(s, wanted)
            failures = self._failures(s, wanted)
        return DashboardData(
            since=since, until=until, bucket=buckets.kind, scopes=None if wanted is None else tuple(sorted(wanted)),
            activity=activity, latency=latency, latency_overall=overall, ratings=ratings,
            ratings_by_version=by_version, drift=drift, drift_shown=wanted is None, alerts=alerts,
            documents=documents, failures=failures, ingests=ingests, truncated=cut_a or cut_f or cut_i)

    @staticmethod
    def _answers(s, since, until, wanted, buckets: Buckets):  # noqa: ANN001, ANN205 - session, query values
        # The total is read by the database (json_extract and the like): decoding 10k JSON documents in
        # Python costs more than the rest of the page. An answer's scopes are read only when filtering by them.
        total_ms = AnswerRow.timings_ms["total"].as_float()
        scopes_col = AnswerRow.scopes if wanted is not None else literal(None)
        q = (select(AnswerRow.created_at, AnswerRow.abstained, scopes_col, total_ms)
             .where(AnswerRow.created_at >= since, AnswerRow.created_at < until)
             .order_by(AnswerRow.created_at.desc()).limit(MAX_ROWS + 1))
        asked, abstained = [0] * buckets.count, [0] * buckets.count
        totals: dict[int, list[float]] = defaultdict(list)
        seen = 0
        for created, abstain, row_scopes, total in _rows(s, q):
            seen += 1
            if seen > MAX_ROWS:
                break
            if wanted is not None and not wanted.intersection(row_scopes or ()):
                continue
            i = buckets.index(created)
            if i is None:
                continue
            asked[i] += 1
            abstained[i] += bool(abstain)
            total = _number(total)
            if total is not None and total >= 0:
                totals[i].append(total)
        activity = [ActivityPoint(buckets.start(i), asked[i], asked[i] - abstained[i], abstained[i])
                    for i in range(buckets.count)]
        latency = [_latency(buckets.start(i), totals[i]) for i in sorted(totals)]
        every = [t for i in sorted(totals) for t in totals[i]]
        overall = _latency(since, every) if every else None
        return activity, latency, overall, seen > MAX_ROWS

    @staticmethod
    def _ratings(s, since, until, wanted, buckets: Buckets):  # noqa: ANN001, ANN205
        q = (select(FeedbackRow.created_at, FeedbackRow.rating,
                    AnswerRow.scopes if wanted is not None else literal(None), AnswerRow.model,
                    AnswerRow.embedder, AnswerRow.adapter)
             .join(AnswerRow, AnswerRow.answer_id == FeedbackRow.answer_id)
             .where(FeedbackRow.retracted_at.is_(None), FeedbackRow.created_at >= since,
                    FeedbackRow.created_at < until)
             .order_by(FeedbackRow.created_at.desc()).limit(MAX_ROWS + 1))
        up, down = [0] * buckets.count, [0] * buckets.count
        versions: Counter[tuple[str, str, int]] = Counter()
        seen = 0
        for created, rating, row_scopes, model, embedder, adapter in _rows(s, q):
            seen += 1
            if seen > MAX_ROWS:
                break
            if wanted is not None and not wanted.intersection(row_scopes or ()):
                continue
            i = buckets.index(created)
            if i is None or rating not in (1, -1):
                continue
            (up if rating > 0 else down)[i] += 1
            for name, version in (("answer model", model), ("embedder", embedder), ("adapter", adapter)):
                if version:
                    versions[(name, _label(version), rating)] += 1
        points = [RatingPoint(buckets.start(i), up[i], down[i]) for i in range(buckets.count)]
        return points, _top_versions(versions), seen > MAX_ROWS

    @staticmethod
    def _ingests(s, since, until, wanted, buckets: Buckets):  # noqa: ANN001, ANN205
        q = (select(DocumentRow.updated_at, DocumentRow.status)
             .where(DocumentRow.updated_at >= since, DocumentRow.updated_at < until)
             .order_by(DocumentRow.updated_at.desc()).limit(MAX_ROWS + 1))
        if wanted is not None:
            q = q.where(DocumentRow.scope.in_(sorted(wanted)))
        done, failed = [0] * buckets.count, [0] * buckets.count
        seen = 0
        for updated, status in _rows(s, q):
            seen += 1
            if seen > MAX_ROWS:
                break
            i = buckets.index(updated)
            if i is None or status == "indexing":
                continue
            done[i] += 1
            failed[i] += status == "failed"
        return [IngestPoint(buckets.start(i), done[i], failed[i]) for i in range(buckets.count)], seen > MAX_ROWS

    @staticmethod
    def _drift(s, since, until) -> list[DriftPoint]:  # noqa: ANN001
        q = (select(MonitorCheckRow.checked_at, MonitorCheckRow.signals)
             .where(MonitorCheckRow.checked_at >= since, MonitorCheckRow.checked_at < until)
             .order_by(MonitorCheckRow.checked_at.desc()).limit(MAX_CHECKS))
        points: list[DriftPoint] = []
        names: set[str] = set()
        for checked, signals in reversed(s.execute(q).all()):
            for sig in signals if isinstance(signals, list) else ():
                point = _drift_point(checked, sig)
                if point is None or (point.signal not in names and len(names) >= MAX_SIGNALS):
                    continue
                names.add(point.signal)
                points.append(point)
        return points

    @staticmethod
    def _alerts(s, since) -> list[AlertInfo]:  # noqa: ANN001
        q = (select(AlertRow).where(or_(AlertRow.opened_at >= since, AlertRow.resolved_at.is_(None)))
             .order_by(AlertRow.opened_at.desc()).limit(MAX_ALERTS))
        return [AlertInfo(_label(r.signal), r.opened_at, r.resolved_at, r.score, r.threshold) for r in s.scalars(q)]

    @staticmethod
    def _documents(s, wanted) -> list[DocumentCount]:  # noqa: ANN001
        n = func.count(DocumentRow.doc_id)
        q = (select(DocumentRow.kind, DocumentRow.scope, DocumentRow.status, n, func.sum(DocumentRow.chunks),
                    func.sum(DocumentRow.duration))
             .group_by(DocumentRow.kind, DocumentRow.scope, DocumentRow.status)
             .order_by(n.desc(), DocumentRow.scope).limit(MAX_GROUPS))
        if wanted is not None:
            q = q.where(DocumentRow.scope.in_(sorted(wanted)))
        return [DocumentCount(_label(kind), scope, _label(status), int(count), int(chunks or 0),
                              round(float(seconds or 0.0), 1))
                for kind, scope, status, count, chunks, seconds in s.execute(q)]

    @staticmethod
    def _failures(s, wanted) -> list[FailureCount]:  # noqa: ANN001
        n = func.count(DocumentRow.doc_id)
        q = (select(DocumentRow.error_code, DocumentRow.kind, n).where(DocumentRow.status == "failed")
             .group_by(DocumentRow.error_code, DocumentRow.kind).order_by(n.desc()).limit(MAX_FAILURE_CODES))
        if wanted is not None:
            q = q.where(DocumentRow.scope.in_(sorted(wanted)))
        return [FailureCount(_label(code), _label(kind), int(count)) for code, kind, count in s.execute(q)]


def _rows(s, q):  # noqa: ANN001, ANN202 - session, select
    """Rows of ``q`` through the session's connection, streamed: plain tuples, no ORM bookkeeping per row."""
    return s.connection().execute(q.execution_options(yield_per=5000))


def _top_versions(counts: Counter[tuple[str, str, int]]) -> list[VersionRatings]:
    """Per model, the MAX_VERSIONS versions with the most ratings, in the order of the most rated."""
    per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (name, version, rating), n in counts.items():
        per[(name, version)][0 if rating > 0 else 1] += n
    out: list[VersionRatings] = []
    for model in ("answer model", "embedder", "adapter"):
        mine = sorted(((v, ud) for (m, v), ud in per.items() if m == model), key=lambda x: (-sum(x[1]), x[0]))
        out += [VersionRatings(model, v, ud[0], ud[1]) for v, ud in mine[:MAX_VERSIONS]]
    return out


def _drift_point(checked: datetime, sig: object) -> DriftPoint | None:
    """One stored signal, or None when it is malformed (rows are written by ops/, read defensively)."""
    if not isinstance(sig, dict):
        return None
    score, threshold = _number(sig.get("score")), _number(sig.get("threshold"))
    name = sig.get("name")
    if score is None or threshold is None or not isinstance(name, str) or not name.strip():
        return None
    return DriftPoint(checked, _label(name), score, threshold, sig.get("drifted") is True)
