"""Deliveries seen lately, in memory: a chat platform's retries and replays are handled once.

Slack delivers an event again with the same event_id when it thinks one was lost, and Bot Framework may
deliver an activity again; a captured signed request could be sent again too (a replay). The ids seen are
kept for ``ttl_s`` (an hour: retries come within minutes), so the check costs no database write on the
ack path. After a restart a retry is handled again, which is what should happen: the first delivery's
work died with the process. ``age`` says how long ago a delivery arrived (how long a question waited).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RecentEvents:
    def __init__(self, ttl_s: float = 3600.0, max_events: int = 100_000):
        self._ttl = ttl_s
        self._max = max_events
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_delivery(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen; False for every retry of it within ``ttl_s``."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (len(self._seen) >= self._max or next(iter(self._seen.values())) < now - self._ttl):
                self._seen.popitem(last=False)
            if event_id in self._seen:
                return False
            self._seen[event_id] = now
            return True

    def age(self, event_id: str) -> float | None:
        """Seconds since ``event_id`` was first seen (None: not remembered)."""
        with self._lock:
            seen = self._seen.get(event_id)
        return None if seen is None else time.monotonic() - seen
