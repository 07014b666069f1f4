"""The words every chat front door answers a failure with: a short reason a person can act on.

Our own errors (``ImpError``) carry a detail written for the user; a platform's errors are worded by its
adapter (``platform_reason``); anything else stays in the log under a short reference the user can quote.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from core.errors import ImpError

log = logging.getLogger(__name__)

PlatformReason = Callable[[Exception], "str | None"]


def reason(e: Exception, platform_reason: PlatformReason | None = None, *, where: str = "chat") -> str:
    if isinstance(e, ImpError):
        return e.detail
    said = platform_reason(e) if platform_reason is not None else None
    if said:
        return said
    ref = uuid.uuid4().hex[:8]
    log.error("%s request failed (ref %s)", where, ref, exc_info=e)
    return f"something went wrong on my side (ref {ref}); please try again."
