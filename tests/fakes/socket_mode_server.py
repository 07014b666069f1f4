"""A fake Slack Socket Mode endpoint: a real WebSocket server on 127.0.0.1.

The app fetches its URL from ``apps.connections.open`` (set ``FakeSlack.socket_url``
to ``FakeSocketMode.url``) and connects. As Slack does, the server greets each
connection with ``hello``, then pushes envelopes the test asks for::

    {"envelope_id", "type": "events_api" | "slash_commands" | "interactive",
     "payload": {...}, "accepts_response_payload": bool, "retry_attempt", "retry_reason"}

and records what the app sends back: acks (``{"envelope_id", "payload"?}``) go to
``acks``, anything else to ``other``. Envelopes go to the newest open connection;
``disconnect()`` sends Slack's ``{"type": "disconnect"}`` that makes the app reconnect.
Frames of the Web API (answers, reactions) still go to ``FakeSlack`` over HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes import slack_payloads as sp

_counter = itertools.count(1)


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None  # what the app answered with (a slash command's text), if anything
    at: float = field(default_factory=time.monotonic)


@dataclass
class Sent:
    envelope: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeSocketMode:
    """One Socket Mode endpoint. ``start()`` it (or use it as a context manager)."""

    def __init__(self, app_id: str = "A0IMP") -> None:
        self.app_id = app_id
        self.acks: list[Ack] = []
        self.other: list[str] = []  # frames that were not acks of an envelope we sent
        self.sent: dict[str, Sent] = {}
        self.opened = 0  # connections that got their hello
        self.closed = 0  # connections that ended, by either side
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._live: list[ServerConnection] = []
        self._server: Server | None = None

    # ----- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeSocketMode:
        # No server-side pings: the app pings us (slack_sdk's monitor), as with Slack.
        self._server = serve(self._handle, "127.0.0.1", 0, ping_interval=None, compression=None,
                             close_timeout=2)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """What ``apps.connections.open`` hands out (ws://, no TLS: a port other than 443)."""
        assert self._server is not None, "FakeSocketMode is not started"
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=fake-ticket-{uuid.uuid4().hex[:8]}&app_id={self.app_id}"

    # ----- one connection ----------------------------------------------------------------
    def _handle(self, conn: ServerConnection) -> None:
        conn.send(json.dumps({"type": "hello", "num_connections": 1,
                              "debug_info": {"host": "applink-fake", "build_number": 1,
                                             "approximate_connection_time": 18060},
                              "connection_info": {"app_id": self.app_id}}))
        with self._changed:
            self._live.append(conn)
            self.opened += 1
            self._changed.notify_all()
        try:
            for frame in conn:
                self._record(frame if isinstance(frame, str) else frame.decode(errors="replace"))
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                self._live.remove(conn)
                self.closed += 1
                self._changed.notify_all()

    def _record(self, frame: str) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        with self._changed:
            if isinstance(message, dict) and message.get("envelope_id") in self.sent:
                self.acks.append(Ack(str(message["envelope_id"]), message.get("payload")))
            else:
                self.other.append(frame)
            self._changed.notify_all()

    # ----- what the test does ----------------------------------------------------------
    def wait_connected(self, timeout: float = 60.0, alive: Any = None) -> None:
        """Until a connection is open; ``alive()`` returning False (the app died) fails early."""
        self._wait(lambda: self._live, timeout, "the app to connect", alive)

    def wait_disconnected(self, timeout: float = 30.0) -> None:
        self._wait(lambda: not self._live, timeout, "the app to close its connection")

    def wait_opened(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` connections in all have been opened (a reconnect opens one more)."""
        self._wait(lambda: self.opened >= count, timeout, f"connection number {count}")

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to move to a new connection, as Slack does every few hours."""
        with self._lock:
            if not self._live:
                raise AssertionError("no Socket Mode connection is open")
            conn = self._live[-1]
        conn.send(json.dumps({"type": "disconnect", "reason": reason,
                              "debug_info": {"host": "applink-fake"}}))

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        found = self._wait(lambda: next((a for a in self.acks if a.envelope_id == envelope_id), None),
                           timeout, f"the ack of envelope {envelope_id}")
        return found

    def acks_of(self, envelope_id: str) -> list[Ack]:
        with self._lock:
            return [a for a in self.acks if a.envelope_id == envelope_id]

    def send(self, type_: str, payload: dict[str, Any], *, accepts_response_payload: bool = False,
             retry_attempt: int | None = None, retry_reason: str | None = None) -> str:
        """Push one envelope to the app; returns its envelope_id."""
        envelope_id = f"env-{next(_counter):04d}-{uuid.uuid4().hex[:8]}"
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": type_, "payload": payload,
                                    "accepts_response_payload": accepts_response_payload}
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason or ""
        with self._lock:
            if not self._live:
                raise AssertionError("no Socket Mode connection is open")
            conn = self._live[-1]
            self.sent[envelope_id] = Sent(envelope)
        conn.send(json.dumps(envelope))
        return envelope_id

    def event(self, inner: dict, *, event_id: str | None = None, retry_attempt: int = 0,
              retry_reason: str = "") -> str:
        """An Events API envelope; Slack numbers redeliveries with ``retry_attempt`` (0 first)."""
        return self.send("events_api", sp.event(inner, event_id=event_id), retry_attempt=retry_attempt,
                         retry_reason=retry_reason)

    def command(self, command: str, text: str, **fields: Any) -> str:
        """A slash command envelope: the same fields Slack POSTs in HTTP mode (``response_url`` required)."""
        body, _ = sp.command_request(command, text, **fields)
        return self.send("slash_commands", dict(parse_qsl(body.decode(), keep_blank_values=True)),
                         accepts_response_payload=True)

    def interactive(self, payload: dict) -> str:
        """An interactivity envelope (a button click's ``block_actions`` payload)."""
        return self.send("interactive", payload, accepts_response_payload=False)

    def _wait(self, check: Any, timeout: float, what: str, alive: Any = None) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check()
                if value:
                    return value
                if alive is not None and not alive():
                    raise AssertionError(f"gave up waiting for {what}: the app is gone")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}; "
                                         f"acks so far: {[a.envelope_id for a in self.acks]}")
                self._changed.wait(min(left, 0.2))
