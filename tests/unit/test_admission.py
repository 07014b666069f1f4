"""Admission gates: a bounded number run, a bounded number wait in order, the rest are refused at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.admission import Gate, GateLimits, Overloaded


def _hold(gate: Gate, entered: threading.Event, leave: threading.Event) -> threading.Thread:
    def run() -> None:
        with gate.enter():
            entered.set()
            leave.wait(10)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert entered.wait(5)
    return t


def test_a_full_queue_refuses_at_once_and_a_freed_place_goes_to_the_oldest_waiter():
    gate = Gate("search", GateLimits(limit=1, queue=2, max_wait_s=10))
    leave = threading.Event()
    holder = _hold(gate, threading.Event(), leave)
    order: list[str] = []

    def wait(name: str) -> None:
        with gate.enter():
            order.append(name)

    first = threading.Thread(target=wait, args=("first",))
    first.start()
    while gate.waiting < 1:
        time.sleep(0.01)
    second = threading.Thread(target=wait, args=("second",))
    second.start()
    while gate.waiting < 2:
        time.sleep(0.01)

    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        with gate.enter():
            pass
    assert time.monotonic() - started < 1.0  # refused without waiting
    assert refused.value.retry_after >= 1

    leave.set()
    for t in (holder, first, second):
        t.join(5)
    assert order == ["first", "second"]
    assert (gate.running, gate.waiting, gate.shed, gate.served) == (0, 0, 1, 3)


def test_a_waiter_gives_up_after_its_longest_wait_and_leaves_the_queue():
    gate = Gate("answer", GateLimits(limit=1, queue=5, max_wait_s=0.2))
    leave = threading.Event()
    holder = _hold(gate, threading.Event(), leave)
    with pytest.raises(Overloaded):
        with gate.enter():
            pass
    assert gate.waiting == 0
    leave.set()
    holder.join(5)
    with gate.enter():  # the place is free again
        assert gate.running == 1


def test_the_event_loop_and_threads_share_one_gate():
    gate = Gate("search", GateLimits(limit=1, queue=1, max_wait_s=5))
    leave = threading.Event()
    holder = _hold(gate, threading.Event(), leave)

    async def scenario() -> list[str]:
        got: list[str] = []

        async def waiter() -> None:
            started = await gate.acquire()
            got.append("waited")
            gate.release(started)

        task = asyncio.create_task(waiter())
        while gate.waiting < 1:
            await asyncio.sleep(0.01)
        try:
            await gate.acquire()
        except Overloaded:
            got.append("refused")
        threading.Timer(0.1, leave.set).start()
        await task
        return got

    assert asyncio.run(scenario()) == ["refused", "waited"]
    holder.join(5)
    assert (gate.running, gate.waiting) == (0, 0)


def test_a_cancelled_waiter_frees_its_place_in_the_queue():
    gate = Gate("ask", GateLimits(limit=1, queue=1, max_wait_s=5))
    leave = threading.Event()
    holder = _hold(gate, threading.Event(), leave)

    async def scenario() -> None:
        task = asyncio.create_task(gate.acquire())
        while gate.waiting < 1:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert gate.waiting == 0
    leave.set()
    holder.join(5)
    assert gate.running == 0


def test_limits_that_cannot_work_are_refused():
    with pytest.raises(ValueError):
        Gate("x", GateLimits(limit=0, queue=1, max_wait_s=1))
