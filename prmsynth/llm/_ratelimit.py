"""Request limits shared by every LLM call of a run: concurrency, requests and tokens per minute.

One [`RequestLimiter`][prmsynth.RequestLimiter] is made per run and handed to every client that
should share its budget (several clients may share one).  A request first
takes a concurrency slot, then a request token and its estimated tokens from
the per-minute buckets; the slot is held until the answer is back, and the
token charge is corrected once the real usage is known.

Nothing here touches the event loop until a request has to wait, and a
waiter's future belongs to the loop it waits in, so one limiter works in
several ``asyncio.run`` calls one after the other (not in two loops at once:
it is not thread-safe).

>>> import asyncio
>>> limiter = RequestLimiter(max_concurrency=2)
>>> async def request(number):
...     async with limiter.slot():
...         await asyncio.sleep(0.01)
...         return number
>>> async def run_all():
...     return await asyncio.gather(*(request(number) for number in range(5)))
>>> asyncio.run(run_all())
[0, 1, 2, 3, 4]
>>> limiter.max_in_flight, limiter.in_flight, limiter.n_requests
(2, 0, 5)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import attrs

_logger = logging.getLogger(__name__)
#: A wait on a per-minute limit at least this long is logged at INFO (shorter: DEBUG).
NOTABLE_WAIT_SECONDS = 2.0


class _FifoSemaphore:
    """A first-come, first-served semaphore that hands a released slot straight to
    the oldest waiter (no barging), bound to no event loop."""

    def __init__(self, value: int) -> None:
        self._free = value
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def busy(self) -> bool:
        """True when a newcomer would have to wait."""
        return self._free <= 0 or bool(self._waiters)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                # The slot was handed over just as the waiter was cancelled: pass it on.
                self.release()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            # A waiter left behind by an event loop that has since closed can never run.
            if not future.done() and not future.get_loop().is_closed():
                future.set_result(None)
                return
        self._free += 1


class _TokenBucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding at most
    ``burst_seconds`` worth.  A charge larger than the bucket is allowed once the
    bucket is full, leaving it in debt, so big requests are paced, not refused."""

    def __init__(
        self,
        name: str,
        per_minute: float,
        burst_seconds: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._sleep = sleep
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()
        self._turn = _FifoSemaphore(1)

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def _try_take(self, amount: float) -> bool:
        self._refill()
        if self.level >= min(amount, self.capacity):
            self.level -= amount
            return True
        return False

    async def take(self, amount: float) -> None:
        if not self._turn.busy and self._try_take(amount):
            return
        # Waiters queue in order, so a large charge is not starved by small ones.
        await self._turn.acquire()
        try:
            logged = False
            while not self._try_take(amount):
                missing = min(amount, self.capacity) - self.level
                wait = max(missing / self.rate, 0.001)
                if not logged:
                    level = logging.INFO if wait >= NOTABLE_WAIT_SECONDS else logging.DEBUG
                    _logger.log(
                        level,
                        "rate limit: waiting %.1f s (%s: %g)",
                        wait,
                        self.name,
                        self.per_minute,
                    )
                    logged = True
                await self._sleep(wait)
        finally:
            self._turn.release()

    def give_back(self, amount: float) -> None:
        """Correct an earlier charge (a negative amount charges more)."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


# A limit is a positive, finite number (a rate of inf would be no limit: None says that).
_LIMIT = attrs.validators.optional(
    attrs.validators.and_(attrs.validators.gt(0), attrs.validators.lt(math.inf))
)


@attrs.define(kw_only=True, eq=False)
class RequestLimiter:
    """Bounds the requests of a run: at most ``max_concurrency`` in flight, at most
    ``requests_per_minute`` sent and ``tokens_per_minute`` (prompt + completion)
    spent; None lifts a limit.

    The per-minute limits are token buckets that hold ``burst_seconds`` of their
    rate, so requests are paced evenly instead of in a burst at the start of each
    minute.  ``max_in_flight`` and ``n_requests`` are kept for reports and tests.

    >>> RequestLimiter(max_concurrency=0)
    Traceback (most recent call last):
    ...
    ValueError: 'max_concurrency' must be > 0: 0
    """

    max_concurrency: int | None = attrs.field(default=None, validator=_LIMIT)
    requests_per_minute: float | None = attrs.field(default=None, validator=_LIMIT)
    tokens_per_minute: float | None = attrs.field(default=None, validator=_LIMIT)
    burst_seconds: float = attrs.field(default=1.0, validator=_LIMIT)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    #: How the limiter waits (``asyncio.sleep``); with ``clock``, a test's virtual time.
    sleep: Callable[[float], Awaitable[Any]] = attrs.field(default=asyncio.sleep, repr=False)
    in_flight: int = attrs.field(default=0, init=False)
    max_in_flight: int = attrs.field(default=0, init=False)
    n_requests: int = attrs.field(default=0, init=False)
    _slots: _FifoSemaphore | None = attrs.field(init=False, repr=False)
    _requests: _TokenBucket | None = attrs.field(init=False, repr=False)
    _tokens: _TokenBucket | None = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency != int(self.max_concurrency):
            raise ValueError(f"max_concurrency must be a whole number, got {self.max_concurrency}")
        self._slots = None if self.max_concurrency is None else _FifoSemaphore(self.max_concurrency)
        self._requests = (
            None
            if self.requests_per_minute is None
            else _TokenBucket(
                "requests per minute",
                self.requests_per_minute,
                self.burst_seconds,
                self.clock,
                self.sleep,
            )
        )
        self._tokens = (
            None
            if self.tokens_per_minute is None
            else _TokenBucket(
                "tokens per minute",
                self.tokens_per_minute,
                self.burst_seconds,
                self.clock,
                self.sleep,
            )
        )

    @property
    def counts_tokens(self) -> bool:
        """Whether callers need to estimate token use (only a tokens-per-minute limit reads it)."""
        return self._tokens is not None

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a slot and, where limited, a request and ``tokens`` tokens.

        Every successful ``acquire`` must be matched by one `release`.
        """
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self._requests is not None:
                await self._requests.take(1.0)
            if self._tokens is not None and tokens > 0:
                await self._tokens.take(float(tokens))
        except BaseException:
            # Cancelled while waiting on a bucket: the slot must not leak.
            if self._slots is not None:
                self._slots.release()
            raise
        self.n_requests += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def release(self, tokens_charged: int = 0, tokens_used: int | None = None) -> None:
        """Free the slot; when the real usage is known, refund or charge the difference."""
        self.in_flight -= 1
        if self._tokens is not None and tokens_used is not None and tokens_charged > 0:
            self._tokens.give_back(float(tokens_charged - tokens_used))
        if self._slots is not None:
            self._slots.release()

    def slot(self, tokens: int = 0) -> LimiterSlot:
        """``async with limiter.slot(tokens) as slot: ...; slot.used = actual_tokens``."""
        return LimiterSlot(limiter=self, tokens=tokens)


@attrs.define(kw_only=True, eq=False)
class LimiterSlot:
    """One request's hold on a [`RequestLimiter`][prmsynth.RequestLimiter]; set ``used`` to the
    real token count."""

    limiter: RequestLimiter
    tokens: int = 0
    used: int | None = None

    async def __aenter__(self) -> LimiterSlot:
        await self.limiter.acquire(self.tokens)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.limiter.release(self.tokens, self.used)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """A cheap upper-side guess of a chat prompt's tokens (about 4 characters a token).

    >>> estimate_prompt_tokens([{"role": "user", "content": "x" * 40}])
    14
    """
    total = 0
    for message in messages:
        total += 4 + len(str(message.get("content") or "")) // 4
    return total
