"""The model registry's versions and their gate metrics, for the dashboard, read in the background.

Opening MLflow costs seconds (importing it alone takes about 2 s on the reference CPU), so a page
never waits for it: ``RegistryView`` reads the registry in a daemon thread when the service starts
and again every ``refresh_s``, and the page shows the last reading with its age, "reading…" before
the first one, or the kind of error the last attempt met (never its text, which may hold a URI).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_VERSIONS = 200  # drawn on the page; a registry with more shows the newest


@dataclass(frozen=True, slots=True)
class RegistryVersion:
    """One registered version: its aliases, the gate's verdict and the metrics it was judged on."""

    name: str
    version: str
    aliases: tuple[str, ...] = ()
    gate: str | None = None
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. champion_hit_at_5, candidate_hit_at_5


@dataclass(frozen=True, slots=True)
class RegistryReading:
    """What the page shows: the versions (None before the first reading), their age, the last error's kind."""

    versions: tuple[RegistryVersion, ...] | None
    age_s: float | None
    error: str | None
    hidden: bool = False  # a viewer limited to some scopes: the registry spans them all

    @classmethod
    def withheld(cls) -> RegistryReading:
        return cls(None, None, None, hidden=True)


class RegistryView:
    """Keeps the last reading of ``read`` (the registry's versions), refreshed in a daemon thread."""

    def __init__(self, read: Callable[[], Sequence[RegistryVersion]], *, refresh_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        if refresh_s <= 0:
            raise ValueError("refresh_s must be positive")
        self._read = read
        self._refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._versions: tuple[RegistryVersion, ...] | None = None
        self._at: float | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="imp-dashboard-registry", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        """Read the registry now (the thread calls this); an error is kept by its kind and logged."""
        try:
            versions = tuple(self._read())[-MAX_VERSIONS:]
        except Exception as e:  # the registry is an outside service: any failure is shown, never raised
            log.warning("the dashboard could not read the model registry (%s)", type(e).__name__, exc_info=True)
            with self._lock:
                self._error = type(e).__name__
            return
        with self._lock:
            self._versions, self._at, self._error = versions, self._clock(), None

    def reading(self) -> RegistryReading:
        with self._lock:
            age = None if self._at is None else max(0.0, self._clock() - self._at)
            return RegistryReading(self._versions, age, self._error)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._refresh_s)
