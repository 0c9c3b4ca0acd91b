"""The swappable parts of a pipeline.

The four stages of the design card are abstract base classes, so that a
user's subclass gets the shared behaviour (batch verification, step
splitting) for free; the LLM backend is a `typing.Protocol`, so any
object with a matching ``complete`` method plugs in without inheriting.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from prmsynth._errors import redact_secrets
from prmsynth._tree import ReasoningTree
from prmsynth._values import Critique, LLMResponse, Question, Usage, Verdict

Message = Mapping[str, str]


SearchStatus = Literal["kept", "skipped", "failed"]


def _usage_of(
    usage: Usage | None,
    n_completions: int | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost: float | None,
) -> Usage:
    """``usage``, or one made of the separate counts older callers pass."""
    legacy = (n_completions, prompt_tokens, completion_tokens, cost)
    if all(value is None for value in legacy):
        return Usage() if usage is None else usage
    if usage is not None:
        raise TypeError("pass usage or its separate counts, not both")
    return Usage(
        n_completions=n_completions or 0,
        prompt_tokens=prompt_tokens or 0,
        completion_tokens=completion_tokens or 0,
        cost=cost or 0.0,
    )


class _Spent:
    """Read-only views of ``usage`` under the names results had before `Usage`."""

    __slots__ = ()
    usage: Usage

    @property
    def n_completions(self) -> int:
        return self.usage.n_completions

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def cost(self) -> float:
        return self.usage.cost


@attrs.frozen(kw_only=True, init=False)
class SearchResult(_Spent):
    """The outcome of searching one question: the whole tree and what it cost.

    ``status`` is ``"kept"`` (the tree is training data), ``"skipped"`` (the
    question teaches a PRM nothing, ``reason`` says why) or ``"failed"`` (an
    error, ``reason`` holds it).  ``usage`` is what its requests spent (also
    read as ``n_completions``, ``prompt_tokens``, ``completion_tokens`` and
    ``cost``, which the constructor accepts in its place).
    """

    tree: ReasoningTree
    status: SearchStatus
    reason: str | None = None
    usage: Usage = attrs.Factory(Usage)
    n_selections: int = 0

    def __init__(
        self,
        *,
        tree: ReasoningTree,
        status: SearchStatus,
        reason: str | None = None,
        usage: Usage | None = None,
        n_selections: int = 0,
        n_completions: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cost: float | None = None,
    ) -> None:
        self.__attrs_init__(
            tree=tree,
            status=status,
            reason=reason,
            usage=_usage_of(usage, n_completions, prompt_tokens, completion_tokens, cost),
            n_selections=n_selections,
        )

    @property
    def question(self) -> Question:
        return self.tree.question


@attrs.frozen(kw_only=True, init=False)
class LabelResult(_Spent):
    """Step labels for one given solution.

    ``step_values[i]`` is the MC value of the prefix ending with step i (None
    where it was not estimated); ``first_error`` is the 0-based index of the
    first step judged wrong by the first-error rule, -1 if none.  A row the
    [`Pipeline`][prmsynth.Pipeline] could not label has ``status``
    ``"failed"``, the error in ``reason`` and no values (``first_error`` and
    ``final_verdict`` None).  ``critique`` is the pipeline critic's verdict on
    the whole solution, when it has one.  ``usage`` is what labelling spent
    (also read as ``n_completions``, ``prompt_tokens``, ``completion_tokens``
    and ``cost``; the constructor accepts the first three in its place).
    """

    tree: ReasoningTree
    step_values: list[float | None]
    first_error: int | None
    final_verdict: Verdict | None
    usage: Usage = attrs.Factory(Usage)
    status: Literal["labelled", "failed"] = "labelled"
    reason: str | None = None
    critique: Critique | None = None

    def __init__(
        self,
        *,
        tree: ReasoningTree,
        step_values: list[float | None],
        first_error: int | None,
        final_verdict: Verdict | None,
        usage: Usage | None = None,
        status: Literal["labelled", "failed"] = "labelled",
        reason: str | None = None,
        critique: Critique | None = None,
        n_completions: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        self.__attrs_init__(
            tree=tree,
            step_values=step_values,
            first_error=first_error,
            final_verdict=final_verdict,
            usage=_usage_of(usage, n_completions, prompt_tokens, completion_tokens, None),
            status=status,
            reason=reason,
            critique=critique,
        )


@runtime_checkable
class LLM(Protocol):
    """An LLM backend: one async call returning ``n`` sampled completions."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        n: int = 1,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_tokens: int = 512,
        seed: int | None = None,
    ) -> LLMResponse:
        """Sample ``n`` completions of the chat ``messages``."""
        ...


class StepGenerator(abc.ABC):
    """Writes step-by-step solutions, or continues a partial one."""

    @abc.abstractmethod
    async def generate(
        self,
        question: Question,
        prefix: Sequence[str],
        *,
        n: int,
        sample_offset: int = 0,
    ) -> LLMResponse:
        """Sample ``n`` continuations of the solution whose first steps are ``prefix``.

        Each completion's text is the continuation only; an empty ``prefix``
        asks for whole solutions.  ``sample_offset`` counts the completions
        already drawn for this question, so that seeded sampling gives fresh
        samples on every call yet the same samples on every run.
        """

    @abc.abstractmethod
    def split_steps(self, text: str) -> list[str]:
        """Split a solution text into its steps."""

    def join_steps(self, steps: Sequence[str]) -> str:
        """Join steps back into one solution text (the inverse of `split_steps`)."""
        return "\n\n".join(steps)


class StepVerifier(abc.ABC):
    """Decides whether a solution reached the reference answer."""

    @abc.abstractmethod
    def verify(self, response: str, reference: str, *, finish_reason: str | None = None) -> Verdict:
        """Check one ``response`` against ``reference``; never raises on model text."""

    async def averify_many(
        self,
        responses: Sequence[str],
        reference: str,
        *,
        finish_reasons: Sequence[str | None] | None = None,
    ) -> list[Verdict]:
        """Check several responses without blocking the event loop."""
        reasons = list(finish_reasons) if finish_reasons is not None else [None] * len(responses)

        def check_all() -> list[Verdict]:
            return [
                self.verify(response, reference, finish_reason=reason)
                for response, reason in zip(responses, reasons, strict=True)
            ]

        return await asyncio.to_thread(check_all)

    def close(self) -> None:  # noqa: B027 (optional hook, deliberately not abstract)
        """Release resources (worker processes); the verifier stays usable."""


class SearchPolicy(abc.ABC):
    """Builds a reasoning tree for one question by sampling and verifying."""

    @abc.abstractmethod
    async def search(
        self,
        question: Question,
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> SearchResult:
        """Search solutions of ``question`` and return the whole tree."""

    async def label(
        self,
        question: Question,
        steps: Sequence[str],
        *,
        generator: StepGenerator,
        verifier: StepVerifier,
    ) -> LabelResult:
        """Estimate step values for a given solution (``prmsynth label``).

        Optional: policies that cannot label existing solutions leave it out.
        """
        raise NotImplementedError(f"{type(self).__name__} does not label given solutions")


class StepCritic(abc.ABC):
    """Reads a whole solution and names its first wrong step.

    A second opinion beside the Monte Carlo labels: the run stores the
    critique next to them, and an export with ``consensus`` keeps only the
    solutions where the two agree (the consensus filtering of Zhang et al.,
    2025, "The Lessons of Developing Process Reward Models in Mathematical
    Reasoning").  Return ``Critique(first_error=None, reason=...)`` rather
    than raising when no verdict can be had.
    """

    @abc.abstractmethod
    async def critique(self, question: Question, steps: Sequence[str]) -> Critique:
        """The first wrong step of ``steps`` as a solution of ``question``."""


@attrs.frozen(kw_only=True)
class Rejection:
    """A candidate that did not become a question, and why.

    ``reason`` says why: for [`EvolveInstruct`][prmsynth.EvolveInstruct] one of its
    ``REJECTION_REASONS``, for another evolver its own word; ``detail`` says more (the
    matched question, the vote).  ``candidate_id`` is the id the question
    would have had; ``root_id`` the seed it descends from.
    """

    candidate_text: str
    parent_id: str
    mutation: str
    round: int
    reason: str
    detail: str = ""
    candidate_id: str | None = None
    root_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # The detail may quote a failed request's error, and errors may echo keys.
        return {**attrs.asdict(self), "detail": redact_secrets(self.detail)}


@attrs.frozen(kw_only=True)
class EvolutionReport:
    """What an evolution produced: the questions, every rejected candidate, and counts.

    Every [`QuestionEvolver`][prmsynth.QuestionEvolver] gives one
    (``evolve_with_report``); ``stats`` has at least ``seeds`` and ``questions``.
    For [`EvolveInstruct`][prmsynth.EvolveInstruct], ``questions`` holds the seeds
    first (when ``keep_seeds``), then the survivors in the order they were made.
    ``stats`` has ``seeds``,
    ``rounds``, ``attempted`` (candidates asked for), ``evolved`` (candidates
    that passed elimination and went to the vote), ``eliminated`` and
    ``eliminated_by_reason``, ``answered`` (kept with a majority answer),
    ``unsolvable``, ``errors`` (failed LLM calls), ``questions`` (returned),
    ``by_mutation`` and the LLM cost (``completions``, ``prompt_tokens``,
    ``completion_tokens``).  Every attempt ends exactly one way:
    ``attempted == eliminated + unsolvable + errors + answered``.
    """

    questions: list[Question]
    rejects: list[Rejection]
    stats: dict[str, Any]


class QuestionEvolver(abc.ABC):
    """Turns seed questions into the questions the search runs on.

    A subclass writes `evolve`; the run calls `evolve_with_report`, which
    streams each question to ``on_question`` and reports the rejected
    candidates (a run folder writes them to ``evolved.rejects.jsonl``).  Its
    default runs `evolve` and hands over the questions at its end, with no
    rejects; an evolver that can say more (questions as they are accepted,
    candidates it dropped and why) overrides it, and its `evolve` returns the
    report's questions.  An evolver is a value: what one call found is in that
    call's report, never kept on the evolver.

    >>> import asyncio
    >>> from prmsynth import Question
    >>> class Doubled(QuestionEvolver):
    ...     async def evolve(self, questions):
    ...         return [*questions, *(Question(id=q.id + ".2", text=q.text + " Twice.",
    ...                                        reference_answer=None) for q in questions)]
    >>> seen = []
    >>> seed = Question(id="q1", text="What is 2 + 3?", reference_answer="5")
    >>> report = asyncio.run(Doubled().evolve_with_report([seed], on_question=seen.append))
    >>> [q.id for q in seen], report.rejects, report.stats
    (['q1', 'q1.2'], [], {'seeds': 1, 'questions': 2})
    """

    @abc.abstractmethod
    async def evolve(self, questions: Sequence[Question]) -> list[Question]:
        """Return the questions to search (seeds, evolved ones, or both)."""

    async def evolve_with_report(
        self,
        questions: Sequence[Question],
        *,
        on_question: Callable[[Question], object] | None = None,
    ) -> EvolutionReport:
        """Evolve ``questions``: the questions to search, the rejected candidates
        and counts.  ``on_question`` receives each question once it is ready
        (here: all of them when `evolve` returns)."""
        evolved = list(await self.evolve(questions))
        if on_question is not None:
            for question in evolved:
                on_question(question)
        stats = {"seeds": len(questions), "questions": len(evolved)}
        return EvolutionReport(questions=evolved, rejects=[], stats=stats)


async def evolution_report(
    evolver: QuestionEvolver,
    questions: Sequence[Question],
    *,
    on_question: Callable[[Question], object] | None = None,
) -> EvolutionReport:
    """``evolver.evolve_with_report(questions, on_question=...)``; an evolver that
    only has `evolve` (duck-typed, not a `QuestionEvolver` subclass) gets the
    contract's default, as `Pipeline.run` takes it."""
    if getattr(evolver, "evolve_with_report", None) is None:
        return await QuestionEvolver.evolve_with_report(evolver, questions, on_question=on_question)
    return await evolver.evolve_with_report(questions, on_question=on_question)


class NoEvolution(QuestionEvolver):
    """The identity evolver: searches the seed questions as they are.

    >>> import asyncio
    >>> from prmsynth import Question
    >>> seeds = [Question(id="q1", text="What is 2 + 3?", reference_answer="5")]
    >>> asyncio.run(NoEvolution().evolve(seeds)) == seeds
    True
    """

    async def evolve(self, questions: Sequence[Question]) -> list[Question]:
        return list(questions)


async def gather_or_cancel(awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
    """``asyncio.gather`` of ``awaitables``, except that the first error
    cancels the others and waits until they have ended (their own errors
    dropped) before it is raised: a disk gone full ends the command at once,
    with nothing left running to fail again while it shuts down.

    >>> async def double(x):
    ...     return 2 * x
    >>> asyncio.run(gather_or_cancel([double(1), double(2)]))
    [2, 4]
    """
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        pending = {task for task in tasks if not task.done()}
        while pending:  # again and again: a library may lose a cancellation
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # seen: asyncio reports no "never retrieved"
        raise
