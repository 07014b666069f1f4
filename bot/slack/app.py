"""The Slack front door: a slack-bolt App built by a factory from an Engine and chat state.

Everything it uses is handed in (engine, state, Web API client, options), so tests
drive the real App against a fake Slack on 127.0.0.1. Listeners ack at once and
do their work in bolt's lazy listeners, after the ack; long work (indexing a
shared recording, writing minutes) goes to the chat layer's follow-up worker
(bot.chat.tasks) over Slack's task host (bot.slack.followups), which survives
restarts. The same App serves HTTP (bot.slack.http) and Socket Mode (`imp slack`).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.chat.state import ChatState
from bot.chat.tasks import FollowUps
from bot.slack import commands, feedback, files, questions
from bot.slack.deps import SlackDeps
from bot.slack.followups import SlackTaskHost
from bot.chat.recent import RecentEvents
from bot.slack.scopes import ScopeResolver
from core.engine import Engine

log = logging.getLogger(__name__)

# Slack's signatures are accepted 5 minutes either side of their timestamp: remember them for longer.
REPLAY_WINDOW_S = 11 * 60


@dataclass(frozen=True)
class SlackOptions:
    bot_token: str
    signing_secret: str | None = None  # HTTP mode; Socket Mode needs none
    api_url: str = "https://slack.com/api/"
    company_scopes: list[str] = field(default_factory=lambda: ["default"])
    max_file_bytes: int = 1 << 30
    poll_s: float = 2.0
    rate_limit_retries: int = 3
    # Questions worked on at once. On CPU answers compete for the cores (more threads only slow the
    # acks); with a remote LLM they mostly wait, and more threads keep answers flowing.
    workers: int = 4
    # A question that waited this long for a worker (a flood of questions) is told to ask again
    # instead of being answered late: the backlog drains at the cost of a short reply each.
    max_wait_s: float = 120.0


def web_client(token: str, api_url: str, retries: int = 3) -> WebClient:
    """A Web API client that waits out 429s (Retry-After) and retries dropped connections."""
    return WebClient(token=token, base_url=api_url, timeout=30, retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=retries), ConnectionErrorRetryHandler(max_retry_count=2)])


class SlackBot:
    """The bolt App with IMP's listeners, and the worker that finishes long tasks."""

    def __init__(self, app: App, deps: SlackDeps, executor: ThreadPoolExecutor):
        self.app = app
        self.deps = deps
        self._executor = executor

    @property
    def waiting(self) -> int:
        """Listener runs (questions, commands) queued for a worker: the executor's backlog."""
        return self._executor._work_queue.qsize()  # noqa: SLF001 - ThreadPoolExecutor exposes no public count

    def start(self) -> None:
        """Begin the follow-up worker (resuming tasks a previous run left open)."""
        self.deps.followups.start()

    def close(self) -> None:
        self.deps.followups.stop()
        self._executor.shutdown(wait=True)


def create_slack_bot(engine: Engine, state: ChatState, options: SlackOptions, *,
                     client: WebClient | None = None) -> SlackBot:
    client = client or web_client(options.bot_token, options.api_url, options.rate_limit_retries)
    executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="imp-slack")
    app = App(
        client=client,
        signing_secret=options.signing_secret or "",
        # Cheap to build, even while Slack is unreachable: the bot's identity (auth.test) is
        # fetched on the first request and kept.
        token_verification_enabled=False,
        # Run the (trivial) ack functions in the request's own thread, so an ack never queues behind
        # answers being worked out on the executor; lazy listeners still run there, after the ack.
        process_before_response=True,
        listener_executor=executor,
        raise_error_for_unhandled_request=False,
    )
    resolver = ScopeResolver(client, options.company_scopes)
    recent = RecentEvents()  # event ids seen in the last hour, and when: retries, and how long a question waited
    host = SlackTaskHost(client, state, resolver, options.max_file_bytes)
    followups = FollowUps(engine, state, host, poll_s=options.poll_s)
    deps = SlackDeps(engine=engine, state=state, client=client, scopes=resolver, max_file_bytes=options.max_file_bytes,
                     followups=followups, received=recent, max_wait_s=options.max_wait_s)

    signed = RecentEvents(ttl_s=REPLAY_WINDOW_S, max_events=100_000)

    @app.middleware
    def once_per_signature(request: BoltRequest, next) -> BoltResponse | None:  # noqa: A002 - bolt's name
        """A signed request is valid for 5 minutes either side of its timestamp, so whoever captures one
        (a proxy log, a leaked HAR file) could send it again: a second /ask, a second share in the channel.
        Slack never sends the same signature twice (its retries of events are signed anew), so a signature
        seen before is a replay, answered without running anything. Runs after bolt checked the signature,
        so a forged request cannot use up a real one's. Socket Mode has no signatures and needs none: only
        Slack can write to that connection."""
        signature = (request.headers.get("x-slack-signature") or [""])[0]
        if request.mode == "http" and signature and not signed.first_delivery(signature):
            log.warning("ignoring a replayed Slack request (a signature already seen)")
            return BoltResponse(status=200, body="")
        return next()

    @app.middleware
    def once_per_event(body: dict, next) -> BoltResponse | None:  # noqa: A002 - bolt's argument name
        """Slack retries an event it thinks was lost (X-Slack-Retry-Num); handle each event_id once."""
        event_id = body.get("event_id")
        if event_id and not recent.first_delivery(str(event_id)):
            log.info("ignoring a repeated delivery of event %s", event_id)
            return BoltResponse(status=200, body="")
        return next()

    questions.register(app, deps)
    commands.register(app, deps)
    files.register(app, deps)
    feedback.register(app, deps)
    # Other message events (edits, joins, bots' posts) need an ack and nothing else.
    app.event("message")(lambda ack: ack())
    return SlackBot(app, deps, executor)
