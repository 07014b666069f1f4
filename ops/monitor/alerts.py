"""Alerts: one incident per drifted signal, told to a webhook and/or a Slack channel once.

``settle`` walks a check's signals against the open incidents: a newly drifted signal opens
an incident and sends one message; a signal that keeps drifting sends nothing; a signal back
within its threshold resolves the incident and sends one "resolved" message. A signal with
too little data leaves its incident as it is. Where each message went, or why it did not,
is recorded on the incident; delivery never raises.

The webhook is Slack incoming-webhook compatible (POST ``{"text": ...}``). Its URL is a
secret (it alone lets anyone post to the channel): it is never logged or recorded, and is
sent with the standard library so no HTTP client library logs it either.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from core.errors import InvalidRequest
from core.store.monitor import Incident, MonitorStore
from ops.monitor.drift import (
    ABSTAIN_RATE,
    BEST_SIMILARITY,
    DOWN_RATE,
    INGEST_FAILURE_RATE,
    LATENCY_P95,
    QUERY_EMBEDDING,
    Signal,
)

log = logging.getLogger(__name__)

OPENED, RESOLVED = "opened", "resolved"
MAX_TEXT_CHARS = 3000  # Slack shows 4,000 characters of a message's text; leave room


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An incident opened or resolved by one check, and where its message went."""

    signal: str
    event: str  # "opened" or "resolved"
    score: float | None
    threshold: float
    message: str
    delivered: list[dict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"signal": self.signal, "event": self.event, "score": self.score, "threshold": self.threshold,
                "message": self.message, "delivered": self.delivered}


class Notifier(Protocol):
    """One place alerts go."""

    name: str

    def send(self, text: str) -> None:
        """Deliver ``text``; raise DeliveryFailed (or anything) when it did not arrive."""
        ...


class DeliveryFailed(Exception):
    """A message did not arrive; the text is safe to record (no URL, no token)."""


class _Transient(DeliveryFailed):
    """Worth another try: the connection failed, or the receiver was busy (429, 5xx)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a webhook that redirects is misconfigured
        return None


class WebhookNotifier:
    """POSTs ``{"text": ...}`` to a Slack incoming-webhook-compatible URL, retrying transient failures."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 5.0, attempts: int = 3, backoff_s: float = 0.5):
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidRequest("IMP_MONITOR__ALERT_WEBHOOK_URL must be an http(s) URL")
        self._url = url
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:  # never show the URL
        return "WebhookNotifier(url=<secret>)"

    def send(self, text: str) -> None:
        retrying = Retrying(stop=stop_after_attempt(self._attempts), reraise=True,
                            wait=wait_exponential(multiplier=self._backoff_s, max=10 * self._backoff_s),
                            retry=retry_if_exception_type(_Transient))
        try:
            retrying(self._post, text)
        except RetryError as e:  # pragma: no cover - reraise=True gives the last error instead
            raise DeliveryFailed("retries exhausted") from e

    def _post(self, text: str) -> None:
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(self._url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "imp-monitor"})
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(4096)
        except urllib.error.HTTPError as e:
            e.close()
            status = e.code
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status}") from None
            raise DeliveryFailed(f"HTTP {status}") from None
        except (urllib.error.URLError, OSError) as e:  # str(e) may hold the host: record the kind only
            reason = getattr(e, "reason", e)
            raise _Transient(f"connection failed ({type(reason).__name__})") from None


class SlackChannelNotifier:
    """Posts to a Slack channel as the bot (chat.postMessage), through slack_sdk's retrying WebClient."""

    name = "channel"

    def __init__(self, token: str, channel: str, api_url: str, *, timeout_s: float = 10.0, retries: int = 2):
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

        self._channel = channel
        self._client = WebClient(token=token, base_url=api_url, timeout=int(math.ceil(timeout_s)), retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=retries), ConnectionErrorRetryHandler(max_retry_count=retries)])

    def send(self, text: str) -> None:
        from slack_sdk.errors import SlackApiError

        try:
            self._client.chat_postMessage(channel=self._channel, text=text, unfurl_links=False, unfurl_media=False)
        except SlackApiError as e:
            raise DeliveryFailed(f"Slack refused: {str(e.response.get('error'))[:100]}") from None
        except OSError as e:
            raise DeliveryFailed(f"cannot reach Slack ({type(e).__name__})") from None


class Alerter:
    """Sends one text to every configured place; returns what happened at each, never raises."""

    def __init__(self, notifiers: Sequence[Notifier] = (), *, problems: Sequence[str] = ()):
        self.notifiers = list(notifiers)
        self._problems = list(problems)  # configured places that cannot work (a channel with no bot token)

    def send(self, text: str, event: str) -> list[dict]:
        at = datetime.now(UTC).isoformat(timespec="seconds")
        results = [{"event": event, "to": "config", "ok": False, "error": p, "at": at} for p in self._problems]
        for n in self.notifiers:
            entry: dict[str, Any] = {"event": event, "to": n.name, "ok": True, "at": at}
            try:
                n.send(text)
            except DeliveryFailed as e:
                entry |= {"ok": False, "error": str(e)[:200]}
            except Exception as e:  # a bug or a library surprise must not stop the check
                entry |= {"ok": False, "error": type(e).__name__}
                log.exception("alert delivery to %s failed unexpectedly", n.name)
            if not entry["ok"]:
                log.warning("alert (%s) not delivered to %s: %s", event, n.name, entry["error"])
            results.append(entry)
        return results


# -- messages --------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Slack mrkdwn control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "?"


def describe(signal: Signal) -> str:
    """One line a person understands: what moved, from what to what."""
    d, s, t = signal.detail, signal.score, signal.threshold
    if signal.name == QUERY_EMBEDDING:
        return (f"the questions people ask have shifted (MMD² {s} above the null's {t}, p = {signal.p_value}, "
                f"{d.get('n_recent')} newest vs {d.get('n_previous')} before)")
    if signal.name == BEST_SIMILARITY:
        return (f"the best search match got weaker: mean similarity {d.get('previous')} → {d.get('recent')} "
                f"(drop {s}, threshold {t}, p = {signal.p_value})")
    if signal.name in (ABSTAIN_RATE, DOWN_RATE):
        what = "abstentions" if signal.name == ABSTAIN_RATE else "👎 ratings"
        return (f"{what} rose from {_pct(d.get('previous'))} to {_pct(d.get('recent'))} "
                f"(rise threshold {_pct(t)}, p = {signal.p_value})")
    if signal.name == LATENCY_P95:
        return f"answer latency p95 is {s} ms (threshold {t} ms, {d.get('n_recent')} answers)"
    if signal.name == INGEST_FAILURE_RATE:
        return (f"{d.get('failed')} of the last {d.get('n_recent')} ingests failed ({_pct(s)}; "
                f"threshold {_pct(t)})")
    return f"score {s}, threshold {t}"


def opened_text(signal: Signal, *, retraining: bool) -> str:
    tail = " A retraining was requested." if retraining else ""
    return _escape(f":rotating_light: IMP drift: {signal.name}: {describe(signal)}.{tail}")[:MAX_TEXT_CHARS]


def resolved_text(signal: Signal, incident: Incident) -> str:
    since = incident.opened_at.strftime("%Y-%m-%d %H:%M UTC")
    return _escape(f":white_check_mark: IMP drift resolved: {signal.name} is back within its threshold "
                   f"(score {signal.score}, threshold {signal.threshold}); open since {since}.")[:MAX_TEXT_CHARS]


# -- incidents -----------------------------------------------------------------------


def settle(store: MonitorStore | None, signals: Sequence[Signal], alerter: Alerter | None, *,
           retraining: set[str] = frozenset(), dry_run: bool = False,
           open_now: dict[str, Incident] | None = None) -> list[AlertEvent]:
    """Open, keep or resolve each signal's incident and send the messages; with ``dry_run``, only say
    what would happen (nothing recorded, nothing sent). ``retraining``: signals whose opening asked
    for a retraining (the message says so)."""
    if open_now is None:
        open_now = store.open_incidents() if store is not None else {}
    events: list[AlertEvent] = []
    for signal in signals:
        current = open_now.get(signal.name)
        if signal.drifted and current is None:
            text = opened_text(signal, retraining=signal.name in retraining)
            if dry_run or store is None:
                events.append(AlertEvent(signal.name, OPENED, signal.score, signal.threshold, text))
                continue
            incident = store.open_incident(signal.name, signal.score or 0.0, signal.threshold, text)
            if incident is None:  # another check opened it a moment ago, and told people
                continue
            delivered = alerter.send(text, OPENED) if alerter else []
            store.record_delivery(incident.id, delivered)
            events.append(AlertEvent(signal.name, OPENED, signal.score, signal.threshold, text, delivered))
        elif current is not None and not signal.drifted and signal.score is not None:
            text = resolved_text(signal, current)
            if dry_run or store is None:
                events.append(AlertEvent(signal.name, RESOLVED, signal.score, signal.threshold, text))
                continue
            if not store.resolve_incident(current.id):
                continue
            delivered = alerter.send(text, RESOLVED) if alerter else []
            store.record_delivery(current.id, delivered)
            events.append(AlertEvent(signal.name, RESOLVED, signal.score, signal.threshold, text, delivered))
    return events
