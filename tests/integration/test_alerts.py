"""Drift alerts reach people once per incident: a local webhook server, and a Slack channel on the fake Slack.

The check runs over a real engine's database (answers, 👍/👎) with the bundled embedder;
alerts go over real HTTP to servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from pydantic import SecretStr

from app import build_drift_check
from core.config import MonitorSettings, SlackSettings
from core.store.monitor import MonitorStore
from ops.monitor.drift import DOWN_RATE
from tests.fakes.net import QuietHTTPServer
from tests.fakes.slack_server import FakeSlack
from tests.support.drift_data import AnswerStream, questions, rate

WINDOW = 20
SECRET_PATH = "/services/T0000/B0000/s3cr3t-webhook-token"


class Webhook:
    """An incoming-webhook receiver: records every POSTed JSON body; ``fail`` answers 500 to the next n."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.requests = 0
        self.fail = 0
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook._lock:
                    hook.requests += 1
                    failing = hook.fail > 0
                    hook.fail -= failing
                    if not failing and self.path == SECRET_PATH:
                        hook.bodies.append(json.loads(body))
                self.send_response(500 if failing else 200 if self.path == SECRET_PATH else 404)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def texts(self) -> list[str]:
        with self._lock:
            return [b["text"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def _check(settings, engine, **monitor):
    monitor = settings.monitor.model_copy(update={"window": WINDOW, **monitor})
    return build_drift_check(settings.model_copy(update={"monitor": monitor}), engine)


def _answers(engine, stream: AnswerStream, seed: int, downs: int) -> None:
    """``WINDOW`` answers about one topic, ``downs`` of them rated 👎 and the rest 👍."""
    ids = stream.add(questions("policy", WINDOW, seed=seed))
    rate(engine, ids[:downs], -1)
    rate(engine, ids[downs:], 1)


def test_one_message_when_an_incident_opens_none_while_open_one_when_it_resolves(settings, engine, webhook):
    check = _check(settings, engine, alert_webhook_url=SecretStr(webhook.url))
    stream = AnswerStream(engine.database)
    _answers(engine, stream, seed=11, downs=2)
    _answers(engine, stream, seed=12, downs=10)  # 👎 rate 10 % → 50 %

    opened = check.run()
    assert [(a.signal, a.event) for a in opened.alerts] == [(DOWN_RATE, "opened")]
    texts = webhook.texts()
    assert len(texts) == 1 and "down_rate" in texts[0] and "10.0%" in texts[0] and "50.0%" in texts[0]
    assert "retraining was requested" in texts[0]

    check.run()  # still drifting: nothing new
    check.run()
    assert len(webhook.texts()) == 1

    _answers(engine, stream, seed=13, downs=1)  # back to 5 %
    resolved = check.run()
    assert [(a.signal, a.event) for a in resolved.alerts] == [(DOWN_RATE, "resolved")]
    texts = webhook.texts()
    assert len(texts) == 2 and "resolved" in texts[1] and "down_rate" in texts[1]
    check.run()
    assert len(webhook.texts()) == 2

    store = MonitorStore(engine.database)
    assert store.open_incidents() == {}
    [incident] = store.incidents()
    assert incident.signal == DOWN_RATE and incident.resolved_at is not None
    assert [(d["event"], d["to"], d["ok"]) for d in incident.delivered] == [
        ("opened", "webhook", True), ("resolved", "webhook", True)]

    # The next drift is a new incident, told again.
    _answers(engine, stream, seed=14, downs=12)
    assert [(a.signal, a.event) for a in check.run().alerts] == [(DOWN_RATE, "opened")]
    assert len(webhook.texts()) == 3 and store.incident_counts() == {DOWN_RATE: 2}


def test_a_failing_webhook_is_retried_recorded_and_never_raised_nor_logged(settings, engine, webhook, caplog):
    webhook.fail = 10  # more than the retries
    check = _check(settings, engine, alert_webhook_url=SecretStr(webhook.url))
    stream = AnswerStream(engine.database)
    _answers(engine, stream, seed=21, downs=1)
    _answers(engine, stream, seed=22, downs=11)

    with caplog.at_level(logging.DEBUG):
        report = check.run()
    [alert] = report.alerts
    assert alert.event == "opened" and webhook.requests == 3  # bounded retries
    [entry] = alert.delivered
    assert entry["to"] == "webhook" and entry["ok"] is False and entry["error"] == "HTTP 500"
    incident = MonitorStore(engine.database).open_incidents()[DOWN_RATE]
    assert incident.delivered == alert.delivered
    # The URL is a secret: not in the log, the record or the printed report.
    assert "s3cr3t" not in caplog.text and "127.0.0.1" not in caplog.text
    assert "s3cr3t" not in json.dumps(report.to_json()) and "s3cr3t" not in json.dumps(incident.delivered)


def test_an_unreachable_webhook_is_recorded(settings, engine, webhook):
    url = webhook.url
    webhook.close()  # nothing listens there any more
    check = _check(settings, engine, alert_webhook_url=SecretStr(url))
    stream = AnswerStream(engine.database)
    _answers(engine, stream, seed=31, downs=1)
    _answers(engine, stream, seed=32, downs=11)
    [alert] = check.run().alerts
    assert alert.delivered[0]["ok"] is False and alert.delivered[0]["error"].startswith("connection failed")


def test_alerts_reach_a_slack_channel_through_the_bot(settings, engine):
    with FakeSlack() as slack:
        slack.add_channel("C0ALERTS", "imp-alerts", members=[slack.bot_user_id])
        settings = settings.model_copy(update={"slack": SlackSettings(bot_token=SecretStr(slack.token),
                                                                      api_url=slack.api_url)})
        check = _check(settings, engine, alert_channel="C0ALERTS")
        stream = AnswerStream(engine.database)
        _answers(engine, stream, seed=41, downs=2)
        _answers(engine, stream, seed=42, downs=12)
        check.run()
        check.run()
        _answers(engine, stream, seed=43, downs=2)
        check.run()

        posts = slack.calls_to("chat.postMessage")
        assert [c.args["channel"] for c in posts] == ["C0ALERTS", "C0ALERTS"]
        assert "down_rate" in posts[0].args["text"] and "resolved" in posts[1].args["text"]
        assert [m["text"] for m in slack.messages("C0ALERTS")] == [c.args["text"] for c in posts]
        assert posts[0].headers.get("Authorization") == f"Bearer {slack.token}"


def test_a_channel_without_a_bot_token_is_reported_on_the_incident(settings, engine):
    check = _check(settings, engine, alert_channel="C0ALERTS")
    stream = AnswerStream(engine.database)
    _answers(engine, stream, seed=51, downs=1)
    _answers(engine, stream, seed=52, downs=11)
    [alert] = check.run().alerts
    assert alert.delivered[0]["ok"] is False and "IMP_SLACK__BOT_TOKEN" in alert.delivered[0]["error"]


def test_two_checks_at_once_open_one_incident_and_resolve_it_once(engine):
    stores = [MonitorStore(engine.database), MonitorStore(engine.database)]
    barrier = threading.Barrier(2)
    opened: list[object] = []

    def open_one(store: MonitorStore) -> None:
        barrier.wait(timeout=10)
        opened.append(store.open_incident(DOWN_RATE, 0.4, 0.1, "down_rate drifted"))

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [o for o in opened if o is not None]
    assert len(opened) == 2 and len(winners) == 1
    assert stores[0].open_incident(DOWN_RATE, 0.5, 0.1, "again") is None  # still open
    assert stores[0].resolve_incident(winners[0].id) and not stores[1].resolve_incident(winners[0].id)
    assert stores[1].open_incident(DOWN_RATE, 0.3, 0.1, "a new one") is not None


def test_settings_refuse_a_webhook_that_is_not_http(settings, engine):
    from core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="IMP_MONITOR__ALERT_WEBHOOK_URL") as e:
        _check(settings, engine, alert_webhook_url=SecretStr("file:///etc/passwd"))
    assert "passwd" not in str(e.value)
    assert isinstance(MonitorSettings().window, int)
