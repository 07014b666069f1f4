"""Writer leases: one writer at a time of a document's chunks and vectors, across threads and processes.

A lease is a token written on the document's row with an expiry (``writer``,
``writer_until``); the registry does the row updates, this module the protocol:
take a free or expired lease (or one whose holder is certainly gone: a process of
this host that no longer exists), wait with back-off while a live writer holds it,
renew during long writes, release at the end. Because only the holder writes,
cleaning up "every version but the visible one" never deletes the rows another
writer is about to commit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.errors import ImpError

log = logging.getLogger(__name__)

_HOST = socket.gethostname()
# Writer leases this process holds (any registry instance), and a condition that
# wakes this process's waiting writers as soon as one is released.
_HELD: set[str] = set()
_LEASES = threading.Condition()


class WriterBusy(ImpError):
    """Another ingest of the same document holds its writer lease (for too long, or took it over)."""

    code = "busy"


class LeaseRows(Protocol):
    """The registry side: renew and clear the token on the document's row."""

    def _renew(self, lease: WriterLease) -> bool: ...

    def _release(self, lease: WriterLease) -> None: ...


@dataclass(slots=True)
class WriterLease:
    """The right to change one document's chunks and vectors; renew it during long writes."""

    rows: LeaseRows
    doc_id: str
    token: str
    ttl_s: float
    renewed: float = field(default_factory=time.monotonic)

    def renew(self) -> None:
        """Extend the lease once a third of it has passed; WriterBusy if another writer took it over."""
        if time.monotonic() - self.renewed > self.ttl_s / 3:
            if not self.rows._renew(self):
                raise WriterBusy("indexing took too long and another upload of this document took over")
            self.renewed = time.monotonic()

    def release(self) -> None:
        try:
            self.rows._release(self)
        except Exception:  # what was written stands; the lease lapses after its ttl
            log.warning("could not release the writer lease of %s", self.doc_id, exc_info=True)
        finally:
            let_go(self.token)


# claim(token, until) -> True: the lease is ours; False: another live writer holds it; None: nothing to write.
Claim = Callable[[str, datetime], "bool | None"]


def owner_token() -> str:
    """A new token naming this process (host and pid) as the holder of something; see ``abandoned``."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex}"


def hold(token: str) -> None:
    """Mark ``token`` as held by a live owner in this process (until ``let_go``)."""
    with _LEASES:
        _HELD.add(token)


def let_go(token: str) -> None:
    """The owner of ``token`` in this process is done: its claims are abandoned from now on."""
    with _LEASES:
        _HELD.discard(token)
        _LEASES.notify_all()


def acquire(rows: LeaseRows, doc_id: str, claim: Claim, *, ttl_s: float, wait_s: float) -> WriterLease | None:
    """Take the document's lease through ``claim``, waiting (with back-off) while another live writer has it."""
    token = owner_token()
    deadline = time.monotonic() + wait_s
    delay = 0.01
    # Known as ours before it can appear on the row: another thread of this process that reads the
    # row in between must see a live writer, not a token of this pid it knows nothing of (abandoned).
    hold(token)
    try:
        while True:
            until = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=ttl_s)
            taken = claim(token, until)
            if taken is None:
                break
            if taken:
                return WriterLease(rows, doc_id, token, ttl_s)
            if time.monotonic() > deadline:
                raise WriterBusy("another upload of this document is still being indexed; try again later")
            with _LEASES:
                _LEASES.wait(delay)
            delay = min(delay * 2, 0.25)
    except BaseException:
        let_go(token)
        raise
    let_go(token)
    return None


def abandoned(token: str) -> bool:
    """Whether the writer that holds ``token`` is certainly gone (it ran on this host)."""
    host, pid_text, _ = token.rsplit(":", 2)
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine: only the lease's expiry tells
    pid = int(pid_text)
    if pid == os.getpid():  # ours, unless a crashed process had the same pid (containers reuse them)
        with _LEASES:
            return token not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
