"""Scheduled jobs: APScheduler 3.x in `imp worker`, or inside `imp serve` when enabled.

Three jobs, each claimed per window so that of several replicas exactly one runs it:
the retraining check on ``IMP_SCHEDULER__RETRAIN_CRON`` (described below), the drift check
(ops/monitor) every ``IMP_MONITOR__INTERVAL_S`` (intervals aligned to the epoch, so every
replica fires at the same moments and names the same window), and the retention purge on
``IMP_RETENTION__CRON``. The drift check and the purge are callables handed in by app.py;
a job whose callable is not given is not scheduled (and a stored one is removed).

On each fire of ``IMP_SCHEDULER__RETRAIN_CRON`` the job claims the fire's window
(``core.store.claims``: of several replicas exactly one runs it), decides whether a
retraining is due (enough new ratings since the last training, or a pending request
from the drift check), trains, and records the outcome on the claim. It never raises
into APScheduler: failures are logged and recorded, and the next window tries again.

The job store is the engine's database (``SQLAlchemyJobStore``), so a restarted
replica finds the job and its next run time, and runs a fire it missed while down
(within the misfire grace time). APScheduler pickles a stored job's callable as
"module:function" text, so the jobs are module-level functions (``scheduled_retrain``,
``scheduled_drift_check``, ``scheduled_purge``): what they need (claims, the training,
drift and purge callables, the rating counter) is the live context that the started
scheduler registered in this process, never pickled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import (
    EVENT_SCHEDULER_SHUTDOWN,
    EVENT_SCHEDULER_STARTED,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core.errors import InvalidRequest
from core.models import Feedback
from core.store.claims import ClaimStore
from core.store.database import make_sql_engine

log = logging.getLogger(__name__)

RETRAIN = "retrain"  # the claimed job's name, and the name the drift check requests
JOB_ID = "imp-retrain"  # the APScheduler job's id in the persisted job store
JOB_REF = "ops.scheduler:scheduled_retrain"
DEFAULT_MISFIRE_GRACE_S = 3600
DRIFT = "drift-check"  # claimed job names of the drift check and the retention purge
DRIFT_JOB_ID, DRIFT_JOB_REF = "imp-drift-check", "ops.scheduler:scheduled_drift_check"
PURGE = "retention-purge"
PURGE_JOB_ID, PURGE_JOB_REF = "imp-retention-purge", "ops.scheduler:scheduled_purge"
# Drift-check intervals count from here, so every replica's trigger fires at the same moments.
_INTERVAL_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)

CountNewRatings = Callable[[datetime | None], int]
Retrain = Callable[[str], dict]
Job = Callable[[], dict]


class ScheduleSettings(Protocol):
    """What the scheduler reads of ``core.config.SchedulerSettings``."""

    retrain_cron: str
    timezone: str


@dataclass(frozen=True, slots=True)
class RetrainPolicy:
    """When a scheduled check trains: at least ``min_new_feedback`` ratings since the last training."""

    min_new_feedback: int


class _Rated(Protocol):
    def feedback(self) -> list[Feedback]: ...


def ratings_counter(engine: _Rated) -> CountNewRatings:
    """Counts the engine's ratings in force that arrived after ``since`` (all of them when None)."""

    def count(since: datetime | None) -> int:
        if since is None:
            return len(engine.feedback())
        since = _utc(since)
        return sum(1 for f in engine.feedback() if _utc(f.created_at) > since)

    return count


def default_owner() -> str:
    """A name for this replica's claims: host, process and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- deciding and running one window ----------------------------------------------


def retrain_due(claims: ClaimStore, count_new_ratings: CountNewRatings, policy: RetrainPolicy) -> tuple[bool, str]:
    """Whether a retraining is due now, and why (or why not)."""
    requested = claims.pending_request(RETRAIN)
    if requested is not None:
        return True, f"requested: {requested}"
    last = claims.last(RETRAIN, status="trained")
    since = last.claimed_at if last else None
    new = count_new_ratings(since)
    when = f"since the last training ({since:%Y-%m-%d %H:%M} UTC)" if since else "so far (never trained)"
    if new >= policy.min_new_feedback:
        return True, f"{new} new ratings {when}, at least {policy.min_new_feedback} needed"
    return False, f"only {new} new ratings {when}; {policy.min_new_feedback} needed"


def run_retrain_window(claims: ClaimStore, owner: str, window: str, count_new_ratings: CountNewRatings,
                       retrain: Retrain, policy: RetrainPolicy) -> dict[str, Any]:
    """Run the retraining check of ``window`` if this replica claims it; never raises.

    Returns the outcome: ``status`` is "taken" (another replica has the window), "skipped"
    (not due), "trained" or "failed", with the ``reason``; all but "taken" are recorded
    on the claim.
    """
    base = {"job": RETRAIN, "window": window, "owner": owner}
    try:
        if not claims.claim(RETRAIN, window, owner):
            log.info("retraining window %s is another replica's", window)
            return {**base, "status": "taken", "reason": "another replica claimed this window"}
    except Exception as e:
        log.exception("could not claim retraining window %s", window)
        return {**base, "status": "failed", "reason": "could not claim the window", "error": _error(e)}
    outcome = {**base, **_run_claimed(claims, window, count_new_ratings, retrain, policy)}
    try:
        claims.finish(RETRAIN, window, json.dumps(outcome, default=str), owner=owner)
    except Exception:
        log.exception("could not record the outcome of retraining window %s: %s", window, outcome)
    return outcome


def _run_claimed(claims: ClaimStore, window: str, count_new_ratings: CountNewRatings, retrain: Retrain,
                 policy: RetrainPolicy) -> dict[str, Any]:
    started = datetime.now(UTC)
    try:
        due, why = retrain_due(claims, count_new_ratings, policy)
    except Exception as e:
        log.exception("could not tell whether retraining is due (window %s)", window)
        return {"status": "failed", "reason": "could not tell whether retraining is due", "error": _error(e)}
    if not due:
        log.info("retraining window %s skipped: %s", window, why)
        return {"status": "skipped", "reason": why}
    log.info("retraining (window %s): %s", window, why)
    try:
        result = retrain(why)
    except Exception as e:
        log.exception("retraining failed (window %s)", window)
        return {"status": "failed", "reason": why, "error": _error(e)}
    try:
        # A request made while training stays: the drift it saw may be newer than the training data.
        claims.clear_request(RETRAIN, up_to=started)
    except Exception:
        log.exception("trained, but could not clear the retraining request")
    log.info("retraining (window %s) done: %s", window, result)
    return {"status": "trained", "reason": why, "result": result}


def run_claimed_window(claims: ClaimStore, job: str, owner: str, window: str, run: Job) -> dict[str, Any]:
    """Run ``run`` for ``window`` of ``job`` if this replica claims it; never raises.

    Returns the outcome: ``status`` is "taken" (another replica has the window), "done" (with
    the ``result``) or "failed"; all but "taken" are recorded on the claim.
    """
    base = {"job": job, "window": window, "owner": owner}
    try:
        if not claims.claim(job, window, owner):
            log.info("%s window %s is another replica's", job, window)
            return {**base, "status": "taken", "reason": "another replica claimed this window"}
    except Exception as e:
        log.exception("could not claim %s window %s", job, window)
        return {**base, "status": "failed", "reason": "could not claim the window", "error": _error(e)}
    try:
        outcome = {**base, "status": "done", "result": run()}
    except Exception as e:
        log.exception("%s failed (window %s)", job, window)
        outcome = {**base, "status": "failed", "error": _error(e)}
    try:
        claims.finish(job, window, json.dumps(outcome, default=str), owner=owner)
    except Exception:
        log.exception("could not record the outcome of %s window %s: %s", job, window, outcome)
    return outcome


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _utc(value: datetime) -> datetime:
    """Aware UTC; naive values are UTC already (as the database holds them)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- the schedule -----------------------------------------------------------------

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_PART = re.compile(r"(\*|\d)(?:-(\d))?(?:/(\d+))?")


def _crontab_weekdays(field: str) -> str:
    """Crontab day-of-week numbers (0 or 7 = Sunday) as names: APScheduler 3.x counts 0 as Monday."""
    if field in ("*", "?") or re.search(r"[a-z]", field, re.IGNORECASE):
        return field
    days: list[int] = []
    for part in field.split(","):
        m = _DOW_PART.fullmatch(part)
        if m is None:
            raise ValueError(f"invalid day of week {part!r}")
        first, last, step = m.group(1), m.group(2), m.group(3)
        lo, hi = (0, 6) if first == "*" else (int(first), int(last) if last else (7 if step else int(first)))
        if hi < lo or hi > 7:
            raise ValueError(f"invalid day of week {part!r}")
        days += [d % 7 for d in range(lo, hi + 1, int(step or 1))]
    return ",".join(_WEEKDAYS[d] for d in sorted(set(days)))


def parse_schedule(cron: str, timezone: str, *, setting: str = "IMP_SCHEDULER__RETRAIN_CRON") -> CronTrigger:
    """The trigger of a standard 5-field crontab line in ``timezone``; InvalidRequest naming the setting."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InvalidRequest(f"IMP_SCHEDULER__TIMEZONE: unknown time zone {timezone!r}") from e
    fields = cron.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"{len(fields)} fields, expected 5 (minute hour day month weekday)")
        fields[4] = _crontab_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields), timezone=zone)
    except ValueError as e:
        raise InvalidRequest(f"{setting}: invalid cron expression {cron!r}: {e}") from e


def interval_trigger(interval_s: int) -> IntervalTrigger:
    """Every ``interval_s`` seconds, counted from a fixed moment (the same fire times on every replica)."""
    if interval_s < 1:
        raise InvalidRequest(f"IMP_MONITOR__INTERVAL_S: an interval of at least 1 second, not {interval_s}")
    return IntervalTrigger(seconds=interval_s, start_date=_INTERVAL_ANCHOR, timezone=UTC)


def interval_window(interval_s: int, now: datetime) -> str:
    """The interval a run at ``now`` serves: its start, in UTC (every replica computes the same text)."""
    elapsed = (_utc(now) - _INTERVAL_ANCHOR).total_seconds()
    start = _INTERVAL_ANCHOR + timedelta(seconds=(elapsed // interval_s) * interval_s)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def window_for(trigger: CronTrigger, now: datetime, lookback: timedelta) -> str:
    """The window a run at ``now`` serves: the newest fire time of ``trigger`` not after ``now``, in UTC.

    Every replica that runs the job for one fire computes the same text, whenever within
    ``lookback`` (the misfire grace time and some) it gets to run it. A run outside the
    schedule (no fire within ``lookback``) serves the minute it runs in.
    """
    now = _utc(now)
    fire = None
    t = trigger.get_next_fire_time(None, now - lookback)
    while t is not None and t <= now:
        fire = t
        t = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
    return _utc(fire or now).strftime("%Y-%m-%dT%H:%MZ")


# -- the live context and the stored job ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    claims: ClaimStore
    owner: str
    count_new_ratings: CountNewRatings
    retrain: Retrain
    policy: RetrainPolicy
    trigger: CronTrigger
    lookback: timedelta
    drift: Job | None = None
    drift_interval_s: int = 3600
    purge: Job | None = None
    purge_trigger: CronTrigger | None = None


_live: _Context | None = None
_live_lock = threading.Lock()


def scheduled_retrain() -> dict[str, Any] | None:
    """The stored job: the retraining check of the window that just fired, with the live context."""
    context = _live
    if context is None:
        log.error("the retraining job fired, but no scheduler of this process is running it")
        return None
    try:
        window = window_for(context.trigger, datetime.now(UTC), context.lookback)
        return run_retrain_window(context.claims, context.owner, window, context.count_new_ratings,
                                  context.retrain, context.policy)
    except Exception:
        log.exception("the scheduled retraining check failed")
        return None


def scheduled_drift_check() -> dict[str, Any] | None:
    """The stored job: the drift check of the interval that just began, with the live context."""
    context = _live
    if context is None or context.drift is None:
        log.error("the drift-check job fired, but no scheduler of this process runs drift checks")
        return None
    try:
        window = interval_window(context.drift_interval_s, datetime.now(UTC))
        return run_claimed_window(context.claims, DRIFT, context.owner, window, context.drift)
    except Exception:
        log.exception("the scheduled drift check failed")
        return None


def scheduled_purge() -> dict[str, Any] | None:
    """The stored job: the retention purge of the window that just fired, with the live context."""
    context = _live
    if context is None or context.purge is None or context.purge_trigger is None:
        log.error("the retention job fired, but no scheduler of this process runs the purge")
        return None
    try:
        window = window_for(context.purge_trigger, datetime.now(UTC), context.lookback)
        return run_claimed_window(context.claims, PURGE, context.owner, window, context.purge)
    except Exception:
        log.exception("the scheduled retention purge failed")
        return None


def build_scheduler(settings: ScheduleSettings, url: str, *, claims: ClaimStore, policy: RetrainPolicy,
                    retrain: Retrain, count_new_ratings: CountNewRatings, owner: str | None = None,
                    background: bool, misfire_grace_s: int = DEFAULT_MISFIRE_GRACE_S,
                    drift_check: Job | None = None, drift_interval_s: int = 3600,
                    purge: Job | None = None, purge_cron: str | None = None) -> BaseScheduler:
    """A scheduler (not started) that runs the retraining check on ``settings.retrain_cron``, and the
    ``drift_check`` every ``drift_interval_s`` and the retention ``purge`` on ``purge_cron`` (in
    ``settings.timezone``) when they are given.

    ``url`` is the engine's database, which keeps the job store. ``background``: a
    BackgroundScheduler (inside `imp serve`) rather than a BlockingScheduler (`imp worker`,
    whose ``start()`` returns only at shutdown). Raises InvalidRequest for a bad cron
    expression, time zone or interval.
    """
    trigger = parse_schedule(settings.retrain_cron, settings.timezone)
    purge_trigger = None
    if purge is not None:
        purge_trigger = parse_schedule(purge_cron or "30 3 * * *", settings.timezone, setting="IMP_RETENTION__CRON")
    drift_trigger = interval_trigger(drift_interval_s) if drift_check is not None else None
    context = _Context(claims=claims, owner=owner or default_owner(), count_new_ratings=count_new_ratings,
                       retrain=retrain, policy=policy, trigger=trigger,
                       lookback=timedelta(seconds=misfire_grace_s + 600), drift=drift_check,
                       drift_interval_s=drift_interval_s, purge=purge, purge_trigger=purge_trigger)
    cls = BackgroundScheduler if background else BlockingScheduler
    scheduler = cls(
        jobstores={"default": SQLAlchemyJobStore(engine=make_sql_engine(url))},
        # A thread per job: an hours-long training never holds up the drift check.
        executors={"default": ThreadPoolExecutor(max_workers=1 + (drift_check is not None) + (purge is not None))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": misfire_grace_s},
        timezone=trigger.timezone,
    )

    def on_event(event: SchedulerEvent) -> None:
        global _live
        if event.code == EVENT_SCHEDULER_SHUTDOWN:
            with _live_lock:
                if _live is context:
                    _live = None
            return
        with _live_lock:
            if _live is not None and _live is not context:
                log.warning("a second retraining scheduler started in this process; it replaces the first")
            _live = context
        _schedule(scheduler, JOB_ID, JOB_REF, "retrain when due", trigger, misfire_grace_s)
        _schedule(scheduler, DRIFT_JOB_ID, DRIFT_JOB_REF, "drift check", drift_trigger,
                  min(misfire_grace_s, drift_interval_s))
        _schedule(scheduler, PURGE_JOB_ID, PURGE_JOB_REF, "retention purge", purge_trigger, misfire_grace_s)

    scheduler.add_listener(on_event, EVENT_SCHEDULER_STARTED | EVENT_SCHEDULER_SHUTDOWN)
    return scheduler


def _schedule(scheduler: BaseScheduler, job_id: str, ref: str, name: str,
              trigger: CronTrigger | IntervalTrigger | None, misfire_grace_s: int) -> None:
    """Store a job (or, with no trigger, remove a stored one); a stored one with the same schedule keeps
    its next run time, so a missed fire runs."""
    try:
        stored = scheduler.get_job(job_id)
    except Exception:  # unreadable (another APScheduler's pickle): replaced below
        log.warning("the stored %s job could not be read; replacing it", name, exc_info=True)
        stored = None
    if trigger is None:
        if stored is not None:
            try:
                scheduler.remove_job(job_id)
                log.info("%s is not configured in this process: its stored job was removed", name)
            except Exception:
                log.exception("could not remove the stored %s job", name)
        return
    keep = {}
    if (stored is not None and stored.next_run_time is not None and str(stored.trigger) == str(trigger)
            and str(stored.trigger.timezone) == str(trigger.timezone)):
        keep["next_run_time"] = stored.next_run_time
    try:
        job = scheduler.add_job(ref, trigger=trigger, id=job_id, name=name, replace_existing=True, coalesce=True,
                                max_instances=1, misfire_grace_time=misfire_grace_s, **keep)
    except Exception:
        log.exception("could not schedule the %s job", name)
        return
    log.info("%s scheduled (%s, %s); next run %s%s", name, trigger, trigger.timezone,
             job.next_run_time, " (kept from the job store)" if keep else "")
