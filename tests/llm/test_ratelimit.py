"""RequestLimiter: concurrency slots, request and token buckets, cancellation, several loops."""

from __future__ import annotations

import asyncio

import pytest

from prmsynth import RequestLimiter
from prmsynth.llm._ratelimit import estimate_prompt_tokens
from prmsynth.testing import VirtualClock


def test_concurrency_is_bounded_and_first_come_first_served():
    limiter = RequestLimiter(max_concurrency=2)
    entered = []

    async def request(number):
        async with limiter.slot():
            entered.append(number)
            await asyncio.sleep(0.01)

    async def main():
        await asyncio.gather(*(request(number) for number in range(10)))

    asyncio.run(main())
    assert entered == list(range(10))
    assert limiter.max_in_flight == 2 and limiter.in_flight == 0 and limiter.n_requests == 10


def virtual_limiter(**limits):
    """A limiter on virtual time: its waits are exact and cost no wall-clock time."""
    clock = VirtualClock()
    return RequestLimiter(clock=clock.time, sleep=clock.sleep, **limits), clock


def test_no_limits_means_no_waiting():
    limiter, clock = virtual_limiter()

    async def main():
        for _ in range(1000):
            await limiter.acquire(100)
            limiter.release(100, 50)

    asyncio.run(main())
    assert clock.slept == []
    assert limiter.n_requests == 1000 and limiter.in_flight == 0


def test_requests_per_minute_paces_after_the_burst():
    # 1200 a minute is 20 a second; the bucket holds one second of it.
    limiter, clock = virtual_limiter(requests_per_minute=1200)

    async def main():
        for _ in range(30):
            await limiter.acquire()
            limiter.release()

    asyncio.run(main())
    # The first 20 pass at once, the other 10 at 20 a second.
    assert clock.time() == pytest.approx(0.5, abs=0.01)


def test_tokens_per_minute_charges_estimates_and_refunds_the_difference():
    # 60000 a minute: 1000 tokens a second, a bucket of 1000.
    limiter, clock = virtual_limiter(tokens_per_minute=60_000)
    assert limiter.counts_tokens

    async def main():
        await limiter.acquire(1000)  # empties the bucket
        limiter.release(1000, 100)  # used 100: 900 come back
        await limiter.acquire(800)  # fits in the refund: no wait
        limiter.release(800, None)  # usage unknown: the estimate stands
        quick = clock.time()
        await limiter.acquire(500)  # 100 left: waits 0.4 s for the rest
        limiter.release(500, 500)
        return quick, clock.time() - quick

    quick, slow = asyncio.run(main())
    assert quick == 0.0
    assert slow == pytest.approx(0.4, abs=0.01)


def test_a_request_larger_than_the_bucket_is_paced_not_refused():
    limiter = RequestLimiter(tokens_per_minute=600)  # 10 a second, a bucket of 10

    async def main():
        await asyncio.wait_for(limiter.acquire(50), timeout=1)  # a full bucket lets it go into debt
        limiter.release(50, 50)

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_keep_a_slot():
    limiter = RequestLimiter(max_concurrency=1)

    async def main():
        await limiter.acquire()
        waiting = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limiter.release()
        await asyncio.wait_for(limiter.acquire(), timeout=1)  # the slot was not lost
        limiter.release()

    asyncio.run(main())
    assert limiter.in_flight == 0


def test_a_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on():
    limiter = RequestLimiter(max_concurrency=1)

    async def main():
        await limiter.acquire()
        waiting = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)  # the waiter queues
        limiter.release()  # hands the slot to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(limiter.acquire(), timeout=1)
        limiter.release()

    asyncio.run(main())
    assert limiter.in_flight == 0


def test_a_waiter_cancelled_on_the_bucket_releases_its_slot():
    limiter = RequestLimiter(max_concurrency=1, requests_per_minute=60)

    async def main():
        await limiter.acquire()
        limiter.release()  # the slot is free, the request bucket (one request) is spent
        waiting = asyncio.ensure_future(limiter.acquire())  # takes the slot, waits on the bucket
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert limiter._slots is not None and not limiter._slots.busy

    asyncio.run(main())


def test_one_limiter_serves_several_event_loops_in_turn():
    limiter = RequestLimiter(max_concurrency=1)

    async def burst():
        async def one():
            async with limiter.slot():
                await asyncio.sleep(0.001)

        await asyncio.gather(*(one() for _ in range(5)))

    asyncio.run(burst())
    asyncio.run(burst())
    assert limiter.n_requests == 10 and limiter.in_flight == 0


def test_bad_limits_are_refused():
    for bad in ({"max_concurrency": 0}, {"requests_per_minute": -1}, {"tokens_per_minute": 0}):
        with pytest.raises(ValueError):
            RequestLimiter(**bad)
    with pytest.raises(ValueError):
        RequestLimiter(max_concurrency=2.5)


def test_prompt_estimate_grows_with_the_prompt():
    short = estimate_prompt_tokens([{"role": "user", "content": "hi"}])
    long = estimate_prompt_tokens([{"role": "user", "content": "hi " * 400}])
    assert 0 < short < long
