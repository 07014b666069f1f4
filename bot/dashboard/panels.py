"""The dashboard's panels: each turns one part of the engine's DashboardData into escaped HTML and SVG.

A panel with nothing to draw says so ("no data yet") instead of showing an empty chart.
Times are UTC, as stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape

from bot.dashboard.svg import Bars, Series, bar_chart, legend, line_chart

MAX_TABLE_ROWS = 50
_STATUS_COLORS = {"indexed": "green", "failed": "red", "indexing": "grey"}
_MEDIA = frozenset({"audio", "video"})
_SCOPE_ROWS = 15


def _panel(title: str, body: str, note: str = "", wide: bool = False) -> str:
    cls = "panel wide" if wide else "panel"
    caption = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section class="{cls}"><h2>{escape(title)}</h2>{caption}{body}</section>'


def empty(message: str = "no data yet") -> str:
    return f'<p class="empty">{escape(message)}</p>'


def _when(t: datetime, bucket: str) -> str:
    return t.strftime("%H:%M") if bucket == "hour" else t.strftime("%b %d")


def _every(n: int, labels: int = 8) -> int:
    return max(1, -(-n // labels))


def _index_ticks(starts: Sequence[datetime], bucket: str) -> list[tuple[float, str]]:
    step = _every(len(starts), 7)
    return [(float(i), _when(t, bucket)) for i, t in enumerate(starts) if i % step == 0]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    head = "".join(f'<th{" class=num" if i >= numeric_from else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{escape(str(c))}</td>'
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows[:MAX_TABLE_ROWS])
    more = (f'<p class="note">{len(rows) - MAX_TABLE_ROWS} more rows not shown</p>'
            if len(rows) > MAX_TABLE_ROWS else "")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def tiles(data) -> str:  # noqa: ANN001 - core.store.stats.DashboardData, reached through the engine
    """The headline figures of the range."""
    asked = sum(p.questions for p in data.activity)
    abstained = sum(p.abstained for p in data.activity)
    up, down = sum(p.up for p in data.ratings), sum(p.down for p in data.ratings)
    docs = sum(d.documents for d in data.documents)
    failed = sum(d.documents for d in data.documents if d.status == "failed")
    p95 = f"{data.latency_overall.p95_ms:.0f} ms" if data.latency_overall else "–"
    open_alerts = sum(1 for a in data.alerts if a.resolved_at is None)
    cells = [("questions", f"{asked}"), ("abstained", _pct(abstained, asked)), ("rated up / down", f"{up} / {down}"),
             ("latency p95", p95), ("documents", f"{docs}"), ("failed ingests", f"{failed}")]
    if data.drift_shown:
        cells.append(("open alerts", f"{open_alerts}"))
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in cells) + "</div>"


def activity(data) -> str:  # noqa: ANN001
    points = data.activity
    asked = sum(p.questions for p in points)
    if not asked:
        return _panel("Questions, answers and abstentions", empty())
    labels = [_when(p.start, data.bucket) for p in points]
    chart = bar_chart(labels, [Bars("answered", [p.answered for p in points], "green"),
                               Bars("abstained", [p.abstained for p in points], "orange")],
                      title="questions per " + data.bucket, y_label="questions", stacked=True,
                      label_every=_every(len(points)))
    abstained = sum(p.abstained for p in points)
    note = f"{asked} questions per {data.bucket}: answered + abstained ({_pct(abstained, asked)} abstained)"
    return _panel("Questions, answers and abstentions", legend([("answered", "green", False),
                                                                ("abstained", "orange", False)]) + chart, note)


def latency(data) -> str:  # noqa: ANN001
    if not data.latency:
        return _panel("Answer latency", empty())
    first = data.activity[0].start if data.activity else data.since
    step = (data.activity[1].start - first) if len(data.activity) > 1 else None

    def x(t: datetime) -> float:
        return (t - first) / step if step else 0.0

    series = [Series(name, [(x(p.start), getattr(p, attr)) for p in data.latency], color)
              for name, attr, color in (("p50", "p50_ms", "green"), ("p95", "p95_ms", "orange"),
                                        ("p99", "p99_ms", "red"))]
    n = len(data.activity)
    chart = line_chart(series, title="answer latency percentiles", y_label="ms", x_range=(0, max(n - 1, 1)),
                       x_ticks=_index_ticks([p.start for p in data.activity], data.bucket))
    o = data.latency_overall
    note = f"whole range: p50 {o.p50_ms:.0f} ms, p95 {o.p95_ms:.0f} ms, p99 {o.p99_ms:.0f} ms over {o.n} answers"
    keys = legend([("p50", "green", False), ("p95", "orange", False), ("p99", "red", False)])
    return _panel("Answer latency", keys + chart, note)


def ratings(data) -> str:  # noqa: ANN001
    versions = data.ratings_by_version
    if not versions:
        return _panel("Ratings (up / down) by model version", empty())
    labels = [f"{v.model} {v.version}" for v in versions]
    chart = bar_chart(labels, [Bars("up", [v.up for v in versions], "green"),
                               Bars("down", [v.down for v in versions], "red")],
                      title="ratings by model version", y_label="ratings")
    n = len(data.ratings)
    over = line_chart([Series("up", [(i, p.up) for i, p in enumerate(data.ratings)], "green"),
                       Series("down", [(i, p.down) for i, p in enumerate(data.ratings)], "red")],
                      title="ratings per " + data.bucket, y_label="ratings", x_range=(0, max(n - 1, 1)),
                      x_ticks=_index_ticks([p.start for p in data.ratings], data.bucket), integers=True,
                      height=160)
    rows = [(v.model, v.version, v.up, v.down, _pct(v.down, v.up + v.down)) for v in versions]
    body = (legend([("rated up", "green", False), ("rated down", "red", False)]) + chart + over
            + _table(["model", "version", "up", "down", "down rate"], rows, numeric_from=2))
    return _panel("Ratings (up / down) by model version", body, "ratings given in the range that are still in force")


def drift(data) -> str:  # noqa: ANN001
    title = "Drift scores and thresholds"
    if not data.drift_shown:
        return _panel(title, empty("drift checks cover every scope, so a token limited to some scopes "
                                   "does not see them"), wide=True)
    if not data.drift:
        return _panel(title, empty("no data yet: no drift check ran in this range (imp drift check)"), wide=True)
    by_signal: dict[str, list] = defaultdict(list)
    for p in data.drift:
        by_signal[p.signal].append(p)
    # The checks' own time span, not the whole range: a monitor that started an hour ago still fills the chart.
    first = min(p.checked_at for p in data.drift)
    span = max((max(p.checked_at for p in data.drift) - first).total_seconds(), 3600.0)
    fmt = "%H:%M" if span <= 86400 else "%b %d" if span > 3 * 86400 else "%b %d %H:%M"
    ticks = [(span * i / 4, (first + timedelta(seconds=span * i / 4)).strftime(fmt)) for i in range(5)]
    charts = []
    for name, points in by_signal.items():
        xs = [(p.checked_at - first).total_seconds() for p in points]
        score = Series("score", list(zip(xs, [p.score for p in points], strict=True)), "blue",
                       alarms=[p.drifted for p in points])
        limit = Series("threshold", list(zip(xs, [p.threshold for p in points], strict=True)), "grey", dashed=True)
        drifted = sum(p.drifted for p in points)
        chart = line_chart([score, limit], title=f"drift: {name}", y_label="score", x_range=(0, span),
                           x_ticks=ticks, width=380, height=170)
        charts.append(f'<figure><figcaption>{escape(name)} · last {points[-1].score:.3g} '
                      f'(threshold {points[-1].threshold:.3g}) · drifted in {drifted} of {len(points)} checks'
                      f'</figcaption>{chart}</figure>')
    keys = legend([("score", "blue", False), ("threshold", "grey", True), ("drifted", "red", False)])
    return _panel(title, keys + '<div class="small-multiples">' + "".join(charts) + "</div>" + alerts(data),
                  wide=True)


def alerts(data) -> str:  # noqa: ANN001
    if not data.alerts:
        return '<p class="note">no alerts in this range</p>'
    rows = [(a.signal, a.opened_at.strftime("%Y-%m-%d %H:%M"),
             a.resolved_at.strftime("%Y-%m-%d %H:%M") if a.resolved_at else "open", f"{a.score:.3g}",
             f"{a.threshold:.3g}") for a in data.alerts]
    return "<h3>Alerts</h3>" + _table(["signal", "opened (UTC)", "resolved", "score", "threshold"], rows,
                                      numeric_from=3)


def documents(data) -> str:  # noqa: ANN001
    title = "Documents and recordings by type and scope"
    if not data.documents:
        return _panel(title, empty())
    kinds = sorted({d.kind for d in data.documents})
    statuses = sorted({d.status for d in data.documents}, key=lambda s: (s not in _STATUS_COLORS, s))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    per_scope: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0, 0])  # docs, recordings, s, failed, chunks
    for d in data.documents:
        counts[(d.kind, d.status)] += d.documents
        row = per_scope[d.scope]
        row[1 if d.kind in _MEDIA else 0] += d.documents
        row[2] += d.seconds
        row[3] += d.documents if d.status == "failed" else 0
        row[4] += d.chunks
    chart = bar_chart(kinds, [Bars(s, [counts[(k, s)] for k in kinds], _STATUS_COLORS.get(s, "purple"))
                              for s in statuses], title="documents by type and status", y_label="documents",
                      stacked=True)
    ranked = sorted(per_scope.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    rows = [(scope, int(r[0]), int(r[1]), f"{r[2] / 3600:.1f}", int(r[3]), int(r[4])) for scope, r in ranked]
    keys = legend([(s, _STATUS_COLORS.get(s, "purple"), False) for s in statuses])
    table = _table(["scope", "documents", "recordings", "hours recorded", "failed", "chunks"], rows[:_SCOPE_ROWS])
    more = f'<p class="note">{len(rows) - _SCOPE_ROWS} more scopes not shown</p>' if len(rows) > _SCOPE_ROWS else ""
    return _panel(title, keys + chart + table + more, "every document now, whatever its age; recordings are audio "
                                                      "and video")


def failures(data) -> str:  # noqa: ANN001
    title = "Ingestion failures"
    ingested = sum(p.ingested for p in data.ingests)
    failed = sum(p.failed for p in data.ingests)
    if not data.failures and not failed:
        return _panel(title, empty("no failed ingests"))
    body = ""
    if failed:
        body += bar_chart([_when(p.start, data.bucket) for p in data.ingests],
                          [Bars("failed", [p.failed for p in data.ingests], "red")],
                          title="failed ingests per " + data.bucket, y_label="failed",
                          label_every=_every(len(data.ingests)), height=160)
    if data.failures:
        by_code: dict[str, int] = defaultdict(int)
        for f in data.failures:
            by_code[f.error_code] += f.documents
        codes = sorted(by_code, key=lambda c: (-by_code[c], c))
        body += bar_chart(codes, [Bars("documents", [by_code[c] for c in codes], "red")],
                          title="failed documents by error code", y_label="documents", height=180)
        body += _table(["error code", "type", "documents"], [(f.error_code, f.kind, f.documents) for f in data.failures],
                       numeric_from=2)
    note = f"{failed} of {ingested} ingests that ended in this range failed ({_pct(failed, ingested)})"
    return _panel(title, body, note)


def models(data, registry=None) -> str:  # noqa: ANN001 - DashboardData, bot.dashboard.registry.RegistryReading
    title = "Models in service and in the registry"
    note = "versions served now (the registry's pointers); their ratings are in the ratings panel"
    if not data.models:
        body = empty("no served model recorded: the configured base models answer")
    else:
        rows = [(m.name, m.slot, m.version, m.model_id or "", m.since.strftime("%Y-%m-%d %H:%M") if m.since else "")
                for m in data.models]
        body = _table(["model", "slot", "version", "model id", "since (UTC)"], rows, numeric_from=9)
    return _panel(title, body + _registry(registry), note)


def _registry(reading) -> str:  # noqa: ANN001 - bot.dashboard.registry.RegistryReading
    """The MLflow registry's versions with the gate's verdict and the metrics it compared."""
    head = "<h3>Model registry (MLflow)</h3>"
    if reading is None:
        return head + empty("not connected to this page (`imp models` lists the registry)")
    if reading.hidden:
        return head + empty("shown to tokens that open every scope")
    if reading.versions is None:
        what = f"could not be read ({reading.error})" if reading.error else "being read…"
        return head + empty(f"the registry {what}")
    if not reading.versions:
        return head + empty("no version registered yet: the bundled base models serve")

    def metric(m: dict, key: str) -> str:
        a, b = m.get(f"champion_{key}"), m.get(f"candidate_{key}")
        return f"{a:.3f} → {b:.3f}" if isinstance(a, float) and isinstance(b, float) else ""

    rows = [(v.name, v.version, ", ".join(v.aliases), v.gate or "", metric(v.metrics, "hit_at_5"),
             metric(v.metrics, "mrr_at_10"), v.created) for v in reversed(reading.versions)][:MAX_TABLE_ROWS]
    age = f"read {reading.age_s:.0f} s ago" if reading.age_s is not None else ""
    stale = f"; the last refresh failed ({reading.error})" if reading.error else ""
    caption = f'<p class="note">{escape(age + stale)}; hit@5 and MRR@10 as the gate compared them (champion → candidate)</p>'
    return head + caption + _table(["model", "version", "aliases", "gate", "hit@5", "MRR@10", "registered"], rows,
                                   numeric_from=9)