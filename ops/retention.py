"""The scheduled retention purge (IMP_RETENTION__CRON): removes what is older than IMP_RETENTION__DAYS.

``run_purge`` is what the scheduler calls. It never raises into the scheduler: a failure
is logged (with a reference, the cause in the log only) and returned, and the next fire
tries again; what a failed run had already removed stays removed (each batch commits on its
own). ``on_purged`` receives the counts per kind after a real purge (each run is also recorded
in ``retention_runs``); a failing hook is logged and never stops the job.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import ImpError
from core.store.retention import KINDS, PurgeReport

log = logging.getLogger(__name__)

OnPurged = Callable[[dict[str, int]], None]


class Purger(Protocol):
    """What the job needs of ``core.store.retention.Retention``."""

    def purge(self, days: int, *, dry_run: bool = False) -> PurgeReport: ...


def run_purge(retention: Purger, *, days: int, dry_run: bool = False, on_purged: OnPurged | None = None
              ) -> dict[str, Any]:
    """Purge once; ``{"ok": True, ...the report}`` or ``{"ok": False, "error": reason}``, never an exception."""
    try:
        report = retention.purge(days, dry_run=dry_run)
    except ImpError as e:
        log.error("the retention purge failed (%s): %s", e.code, e.detail)
        return {"ok": False, "error": e.detail, "code": e.code}
    except Exception:  # a bug or an unexpected failure: the scheduler must keep its other jobs
        ref = secrets.token_hex(4)
        log.exception("the retention purge failed (ref %s)", ref)
        return {"ok": False, "error": f"internal error (ref {ref})", "code": "internal_error"}
    if on_purged is not None and not dry_run:
        try:
            on_purged({kind: int(report.purged.get(kind, 0)) for kind in KINDS})
        except Exception:
            log.exception("the retention purge's counter hook failed; the purge itself succeeded")
    return {"ok": True, **report.to_json()}
