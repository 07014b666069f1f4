"""Reading the drift monitor's state for metrics: the latest check's scores, and alerts raised per signal.

Read-only, through ``MonitorStore``: the drift check (ops/monitor) writes ``monitor_checks`` and ``alerts``.
Signal names become metric labels, so only short identifier-like names are
returned, and at most ``MAX_SIGNALS`` of them: a malformed row never grows the
metrics without bound.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from core.store.database import Database
from core.store.monitor import MonitorStore

MAX_SIGNALS = 32
_SIGNAL = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")


class DriftSummary(NamedTuple):
    """``scores``: the latest check's score per signal; ``alerts``: incidents opened per signal, ever."""

    scores: dict[str, float]
    alerts: dict[str, int]


def drift_summary(database: Database) -> DriftSummary:
    """The latest drift check's scores and the alert counts; empty before the first check."""
    store = MonitorStore(database)
    latest = store.latest_check()
    alerts = [(name, n) for name, n in sorted(store.incident_counts().items()) if _named(name)][:MAX_SIGNALS]
    return DriftSummary(_scores(latest.signals if latest else None), dict(alerts))


def _scores(signals: object) -> dict[str, float]:
    """Each well-formed signal's score ({"name", "score", ...}); anything else in the row is skipped."""
    scores: dict[str, float] = {}
    for item in signals if isinstance(signals, list) else []:
        if len(scores) >= MAX_SIGNALS:
            break
        name = item.get("name") if isinstance(item, dict) else None
        score = item.get("score") if isinstance(item, dict) else None
        if (_named(name) and isinstance(score, int | float) and not isinstance(score, bool)
                and math.isfinite(score)):
            scores[name] = float(score)
    return scores


def _named(name: object) -> bool:
    return isinstance(name, str) and _SIGNAL.fullmatch(name) is not None
