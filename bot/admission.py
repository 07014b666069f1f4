"""Admission control: bound the CPU-bound work in flight and shed what cannot be served in time.

Searching, answering and ingesting are CPU-bound. Taking every request at once only makes
every request slow (50 clients on two cores: p95 of 9.6 s for a search and 17.8 s for an
answer), and an unbounded queue lets one client freeze the service for everyone. Each class of
work gets a ``Gate``: at most ``limit`` requests run, at most ``queue`` wait, and a waiter that
has not started within ``max_wait_s`` gives up. What is refused gets 503 with Retry-After at the
REST edge, so clients back off instead of piling up.

The gate is an ASGI middleware placed after authentication, so unauthenticated requests never
take a place in a queue. ``Gate.enter`` serves threads (the chat front doors) the same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send


class Overloaded(Exception):
    """No place to run or to wait: the caller should come back after ``retry_after`` seconds."""

    def __init__(self, gate: str, retry_after: int):
        super().__init__(gate)
        self.gate = gate
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class GateLimits:
    limit: int  # running at once; 0 means no gate at all
    queue: int  # waiting at most
    max_wait_s: float  # a waiter that has not started by then is refused


class _Waiter:
    """One queued request; ``wake`` is called (under the gate's lock) when a place is handed to it."""

    __slots__ = ("wake", "granted")

    def __init__(self, wake: Callable[[], None]):
        self.wake = wake
        self.granted = False


class Gate:
    """At most ``limit`` holders and ``queue`` waiters, served first come, first served.

    A place that frees is handed straight to the oldest waiter, so a newcomer never overtakes
    the queue. Usable from the event loop (``acquire``/``release``) and from threads (``enter``).
    """

    def __init__(self, name: str, limits: GateLimits, *, clock: Callable[[], float] = time.monotonic):
        if limits.limit < 1 or limits.queue < 0 or limits.max_wait_s <= 0:
            raise ValueError(f"gate {name}: limit >= 1, queue >= 0 and max_wait_s > 0 are required")
        self.name = name
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._queue: deque[_Waiter] = deque()
        self.served = 0
        self.shed = 0
        self._recent: deque[float] = deque(maxlen=64)  # recent service times, for an honest Retry-After

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, drained at the recent pace."""
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        return max(1, min(60, math.ceil(typical * (len(self._queue) + 1) / self.limits.limit)))

    def _join(self, wake: Callable[[], None]) -> _Waiter | None:
        """Under the lock: None when a place was free and is now ours, else our place in the queue."""
        if self._running < self.limits.limit and not self._queue:
            self._running += 1
            return None
        if len(self._queue) >= self.limits.queue:
            self.shed += 1
            raise Overloaded(self.name, self._retry_after())
        waiter = _Waiter(wake)
        self._queue.append(waiter)
        return waiter

    def _give_up(self, waiter: _Waiter, *, count: bool = True) -> bool:
        """Under the lock, after a wait ran out: True if we left the queue, False if a place came first."""
        if waiter.granted:
            return False
        self._queue.remove(waiter)
        self.shed += count
        return True

    def release(self, started: float) -> None:
        """Free a place taken at ``started``: it goes to the oldest waiter, if any."""
        with self._lock:
            self.served += 1
            self._recent.append(self._clock() - started)
            if self._queue:
                waiter = self._queue.popleft()
                waiter.granted = True  # the place passes on; _running does not change
                waiter.wake()
            else:
                self._running -= 1

    @contextmanager
    def enter(self):
        """Hold a place for the ``with`` block (threads), or raise Overloaded."""
        event = threading.Event()
        with self._lock:
            waiter = self._join(event.set)
        if waiter is not None and not event.wait(self.limits.max_wait_s):
            with self._lock:
                if self._give_up(waiter):
                    raise Overloaded(self.name, self._retry_after())
        started = self._clock()
        try:
            yield
        finally:
            self.release(started)

    async def acquire(self) -> float:
        """Take a place from the event loop; returns the time it was taken. Raises Overloaded."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        with self._lock:
            waiter = self._join(wake)
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(future), self.limits.max_wait_s)
            except TimeoutError:
                with self._lock:
                    if self._give_up(waiter):
                        raise Overloaded(self.name, self._retry_after()) from None
                # A place was handed to us just as the wait ran out: use it.
            except asyncio.CancelledError:  # the client went away while waiting
                with self._lock:
                    left = self._give_up(waiter, count=False)
                if not left:
                    self.release(self._clock())  # pass on the place we were just handed
                raise
        return self._clock()


class AdmissionMiddleware:
    """Routes requests through the gate of their class; a refused one gets 503 + Retry-After.

    ``classify`` maps (method, path, query string) to a gate name or None (not gated: cheap reads, health).
    """

    def __init__(self, app: ASGIApp, gates: dict[str, Gate], classify: Callable[[str, str, bytes], str | None],
                 on_shed: Callable[[str], None] | None = None):
        self.app = app
        self.gates = gates
        self.classify = classify
        self.on_shed = on_shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = self.classify(scope["method"], scope["path"], scope.get("query_string", b""))
        gate = self.gates.get(name) if name else None
        if gate is None:
            await self.app(scope, receive, send)
            return
        try:
            started = await gate.acquire()
        except Overloaded as e:
            if self.on_shed is not None:
                self.on_shed(gate.name)
            await _busy(send, gate.name, e.retry_after)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.release(started)


async def _busy(send: Send, gate: str, retry_after: int) -> None:
    body = json.dumps({"code": "overloaded",
                       "detail": f"the server is busy with other {gate} requests; try again in {retry_after} s"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": body})
