"""When and how long a failed request waits before it is tried again.

A [`RetryPolicy`][prmsynth.RetryPolicy] is a frozen value in the manner of
urllib3's ``Retry``: how many attempts, the exponential backoff with full
jitter, which errors are worth another attempt, and the ``sleep`` and ``clock``
it waits with, so that a test checks every wait on virtual time (see
`prmsynth.testing.VirtualClock`) instead of the machine's.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from attrs import validators as v


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a request that failed for a passing reason is tried again.

    ``max_attempts`` bounds the tries of one request.  The wait before try
    ``k + 1`` is ``min(max_backoff, initial_backoff * 2 ** (k - 1))``, or, with
    ``jitter`` (full jitter, the default), uniform between 0 and that ceiling,
    drawn from a ``random.Random(seed)`` of the client's own.  A ``Retry-After``
    hint of the server raises the wait up to at most ``max_backoff``.

    ``retry_on`` says which errors are retried; None keeps the client's rule
    (rate limits, timeouts, connection errors, 5xx; never a bad request or a bad
    key).  ``sleep`` is how the waits are spent (``asyncio.sleep``), ``clock``
    the wall-clock time a dated ``Retry-After`` is measured from (``time.time``).

    >>> policy = RetryPolicy(initial_backoff=1.0, max_backoff=4.0, jitter=False)
    >>> [policy.backoff(attempt) for attempt in range(1, 5)]
    [1.0, 2.0, 4.0, 4.0]
    >>> policy.backoff(1, hinted=3.0), policy.backoff(1, hinted=60.0)
    (3.0, 4.0)
    >>> RetryPolicy(max_attempts=0)
    Traceback (most recent call last):
    ...
    ValueError: 'max_attempts' must be >= 1: 0
    """

    max_attempts: int = attrs.field(default=5, validator=[v.instance_of(int), v.ge(1)])
    initial_backoff: float = attrs.field(default=1.0, validator=v.ge(0.0))
    max_backoff: float = attrs.field(default=60.0, validator=v.ge(0.0))
    jitter: bool = True
    seed: int = 0
    retry_on: Callable[[BaseException], bool] | None = attrs.field(default=None, eq=False)
    sleep: Callable[[float], Awaitable[Any]] = attrs.field(
        default=asyncio.sleep, repr=False, eq=False
    )
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False, eq=False)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed try ``attempt`` (1-based), before any hint."""
        if self.initial_backoff == 0.0:
            return 0.0
        # 2 ** attempt overflows a float long before any cap is this large.
        exponent = min(attempt - 1, 1023)
        return min(self.max_backoff, self.initial_backoff * math.ldexp(1.0, exponent))

    def backoff(
        self, attempt: int, *, hinted: float | None = None, rng: random.Random | None = None
    ) -> float:
        """The wait after failed try ``attempt`` (1-based): jittered under the ceiling
        (drawn from ``rng``, else a ``random.Random(seed)``), raised to the server's
        ``hinted`` wait, capped at ``max_backoff``."""
        ceiling = self.ceiling(attempt)
        if self.jitter:
            delay = (rng if rng is not None else random.Random(self.seed)).uniform(0.0, ceiling)
        else:
            delay = ceiling
        if hinted is not None:
            delay = max(delay, min(hinted, self.max_backoff))
        return delay

    def retry_after(self, error: BaseException) -> float | None:
        """The wait ``error``'s ``Retry-After`` (or ``retry-after-ms``) header asks
        for, if any; a date is measured from ``clock``.

        >>> class Throttled(Exception):
        ...     headers = {"Retry-After": "Thu, 01 Jan 1970 00:00:30 GMT"}
        >>> RetryPolicy(clock=lambda: 10.0).retry_after(Throttled())
        20.0
        """
        return retry_after_seconds(error, now=self.clock)


def retry_after_seconds(
    error: BaseException, *, now: Callable[[], float] = time.time
) -> float | None:
    """The wait a ``Retry-After`` (or ``retry-after-ms``) header asks for, if any.

    >>> class Throttled(Exception):
    ...     headers = {"Retry-After": "2.5"}
    >>> retry_after_seconds(Throttled())
    2.5
    >>> retry_after_seconds(ValueError()) is None
    True
    """
    for source in ("litellm_response_headers", "response", "headers"):
        try:
            headers = getattr(error, source, None)
            if source == "response":
                headers = getattr(headers, "headers", None)
            if not headers:
                continue
            values = {str(name).lower(): str(value) for name, value in headers.items()}
        except Exception:  # noqa: S112 (an exotic exception object gives no hint; not a crash)
            continue
        if "retry-after-ms" in values:
            try:
                return max(0.0, float(values["retry-after-ms"]) / 1000.0)
            except ValueError:
                pass
        if "retry-after" in values:
            value = values["retry-after"]
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            return max(0.0, moment.timestamp() - now())
    return None
