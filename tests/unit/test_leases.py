"""Writer leases: a token of this process is known as held before any other thread can read it on a row."""

from __future__ import annotations

import os

import pytest

from core.store.leases import WriterBusy, WriterLease, abandoned, acquire


class Rows:
    """The registry side of a lease, in memory: renew and release are recorded."""

    def __init__(self) -> None:
        self.released: list[str] = []

    def _renew(self, lease: WriterLease) -> bool:
        return True

    def _release(self, lease: WriterLease) -> None:
        self.released.append(lease.token)


def test_a_token_being_claimed_is_never_taken_for_one_whose_writer_is_gone():
    """The race this guards: thread A writes its token on the row; thread B reads it before A had
    recorded it as held, judges it abandoned (same pid, unknown token) and takes the lease over."""
    seen: list[bool] = []

    def claim(token: str, until) -> bool:  # noqa: ANN001 - a datetime
        seen.append(abandoned(token))  # what another thread would conclude on reading the row now
        return True

    lease = acquire(Rows(), "d1", claim, ttl_s=30, wait_s=1)
    assert seen == [False]
    assert not abandoned(lease.token)
    lease.release()
    assert abandoned(lease.token)  # released: a token of this process no longer held


def test_a_claim_that_finds_nothing_to_write_or_waits_too_long_holds_nothing():
    tokens: list[str] = []

    def nothing(token: str, until) -> None:  # noqa: ANN001
        tokens.append(token)
        return None

    assert acquire(Rows(), "d1", nothing, ttl_s=30, wait_s=1) is None
    assert abandoned(tokens[-1])

    def busy(token: str, until) -> bool:  # noqa: ANN001
        tokens.append(token)
        return False

    with pytest.raises(WriterBusy):
        acquire(Rows(), "d1", busy, ttl_s=30, wait_s=0.05)
    assert abandoned(tokens[-1])


def test_a_token_of_another_live_process_or_host_is_not_abandoned():
    assert not abandoned(f"some-other-host:{os.getpid()}:abc")
    assert not abandoned(f"{_host()}:1:abc")  # pid 1 is alive (and not ours)


def _host() -> str:
    import socket

    return socket.gethostname()
