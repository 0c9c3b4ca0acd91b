"""Run-wide spending limits that hold: every request reserves its share first.

A limit checked only before a question starts lets the questions in flight
spend without bound (a run capped at 50 completions once spent 1,032).  Here
each request of the search reserves its completions, and an estimate of its
cost, before it is sent; a request the budget cannot cover is not sent and
raises [`BudgetExhausted`][prmsynth.BudgetExhausted].  A run therefore goes
over ``max_cost`` by at most what the requests already in flight cost beyond
their estimates, and never over ``max_completions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from prmsynth._errors import BudgetExhausted
from prmsynth._interfaces import StepGenerator
from prmsynth._values import LLMResponse, Question, Usage


@attrs.frozen(kw_only=True)
class Budget:
    """Run-wide limits on completions and on cost in US dollars (None: no limit)."""

    max_completions: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    max_cost: float | None = attrs.field(default=None)

    @max_cost.validator
    def _check_cost(self, attribute: attrs.Attribute, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"max_cost must be a finite number > 0, got {value!r}")

    @property
    def limited(self) -> bool:
        return self.max_completions is not None or self.max_cost is not None


@attrs.define(kw_only=True)
class Ledger:
    """What a run has spent and reserved against its `Budget`.

    Used from one event loop, so no lock: a reservation and its check happen
    without an ``await`` between them.  A request's cost is unknown until it
    returns, so a reservation counts the most any completion has cost so far
    for each of its completions.
    """

    budget: Budget
    #: What the run has spent (its completions and cost count against the budget).
    spent: Usage = attrs.Factory(Usage)
    reserved_completions: int = 0
    reserved_cost: float = 0.0
    cost_per_completion: float = 0.0
    exhausted: str | None = None

    price_known: bool = False
    _price_event: Any = attrs.field(default=None, init=False, repr=False)

    @property
    def spent_completions(self) -> int:
        return self.spent.n_completions

    @spent_completions.setter
    def spent_completions(self, value: int) -> None:
        self.spent = attrs.evolve(self.spent, n_completions=value)

    @property
    def spent_cost(self) -> float:
        return self.spent.cost

    @spent_cost.setter
    def spent_cost(self, value: float) -> None:
        self.spent = attrs.evolve(self.spent, cost=value)

    async def wait_for_price(self) -> None:
        """Under a cost limit, send one request at a time until one has returned:
        before that a reservation has no price to count."""
        if self.budget.max_cost is None:
            return
        import asyncio

        while not self.price_known and self.reserved_completions > 0:
            if self._price_event is None:
                self._price_event = asyncio.Event()
            await self._price_event.wait()

    def _notify(self) -> None:
        # Wake every request waiting for a price; each checks again.
        if self._price_event is not None:
            self._price_event.set()
            self._price_event = None

    def reserve(self, n: int) -> float:
        """Reserve ``n`` completions; returns the cost reserved.  Raises
        [`BudgetExhausted`][prmsynth.BudgetExhausted] when the budget cannot cover them."""
        limits = self.budget
        if limits.max_completions is not None and (
            self.spent_completions + self.reserved_completions + n > limits.max_completions
        ):
            self._exhaust("max_completions", f"{limits.max_completions} completions")
        cost = n * self.cost_per_completion
        if limits.max_cost is not None:
            committed = self.spent_cost + self.reserved_cost
            if committed >= limits.max_cost or committed + cost > limits.max_cost:
                self._exhaust("max_cost", f"${limits.max_cost:g}")
        self.reserved_completions += n
        self.reserved_cost += cost
        return cost

    def settle(self, n: int, reserved_cost: float, response: LLMResponse) -> None:
        """Turn a reservation into spending once its response is back."""
        self.release(n, reserved_cost)
        self.spent += Usage(n_completions=n, cost=response.cost)
        if n:
            self.cost_per_completion = max(self.cost_per_completion, response.cost / n)
        self.price_known = True
        self._notify()

    def release(self, n: int, reserved_cost: float) -> None:
        """Give back a reservation whose request failed (nothing was spent)."""
        self.reserved_completions -= n
        self.reserved_cost -= reserved_cost
        self._notify()

    def _exhaust(self, reason: str, limit: str) -> None:
        self.exhausted = self.exhausted or reason
        raise BudgetExhausted(f"the run's budget of {limit} is spent ({reason})")


@attrs.frozen(kw_only=True)
class BudgetedGenerator(StepGenerator):
    """A [`StepGenerator`][prmsynth.StepGenerator] whose every request is first
    reserved in ``ledger``; everything else is ``generator``'s."""

    generator: StepGenerator
    ledger: Ledger

    async def generate(
        self,
        question: Question,
        prefix: Sequence[str],
        *,
        n: int,
        sample_offset: int = 0,
    ) -> LLMResponse:
        await self.ledger.wait_for_price()
        reserved_cost = self.ledger.reserve(n)
        try:
            response = await self.generator.generate(
                question, prefix, n=n, sample_offset=sample_offset
            )
        except BaseException:
            self.ledger.release(n, reserved_cost)
            raise
        self.ledger.settle(n, reserved_cost, response)
        return response

    def split_steps(self, text: str) -> list[str]:
        return self.generator.split_steps(text)

    def join_steps(self, steps: Sequence[str]) -> str:
        return self.generator.join_steps(steps)

    async def resolved(self) -> StepGenerator:
        """The wrapped generator's prefix mode settled, still within the budget."""
        resolve = getattr(self.generator, "resolved", None)
        inner = await resolve() if callable(resolve) else self.generator
        return self if inner is self.generator else attrs.evolve(self, generator=inner)

    def __getattr__(self, name: str) -> Any:
        # system_prompt, sampling, messages(): the wrapped generator's.
        if name.startswith("__") or name in ("generator", "ledger"):
            raise AttributeError(name)
        return getattr(self.generator, name)
