"""What chat front doors remember for a short while, in memory: deliveries seen (``RecentEvents``), so a
platform's retries and replays are handled once, and what a platform said about a key (``Remembered``).

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
from collections.abc import Callable
from typing import Any


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


MISSING = object()


class Remembered:
    """What a platform said about a key, for ``ttl_s`` seconds; at most ``size`` keys (the oldest go first)."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float]):
        self._ttl = ttl_s
        self._size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The value kept for ``key``, or ``MISSING`` when none is, or it is older than the ttl."""
        with self._lock:
            hit = self._items.get(key)
        return hit[1] if hit is not None and self._clock() - hit[0] < self._ttl else MISSING

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = (self._clock(), value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
