"""The Pipeline: evolve questions, then search each one, concurrently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

import attrs

from prmsynth._errors import RUN_FATAL, redact_secrets
from prmsynth._interfaces import (
    LLM,
    LabelResult,
    NoEvolution,
    QuestionEvolver,
    SearchPolicy,
    SearchResult,
    StepCritic,
    StepGenerator,
    StepVerifier,
)
from prmsynth._tree import ReasoningTree
from prmsynth._values import Question, SamplingSettings, SearchSettings
from prmsynth.search._generation import LLMStepGenerator
from prmsynth.search._policies import OmegaPRM

_logger = logging.getLogger(__name__)
#: How many of the questions in flight a stall message names.
_STALL_NAMES_SHOWN = 8


def _default_verifier() -> StepVerifier:
    from prmsynth.verify._math import MathAnswerVerifier

    return MathAnswerVerifier()


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _positive_or_none(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


def part_identity(part: object) -> dict[str, Any]:
    """A pipeline part as a run records it: its own ``identity()`` when it has
    one, else its class.  Give your own part an ``identity()`` returning what
    decides its output (JSON values), and a run resumed with other values is
    refused."""
    identity = getattr(part, "identity", None)
    if callable(identity):
        return {"name": type(part).__name__, **identity()}
    return {"name": type(part).__name__}


def _log_failure(what: str, error: Exception) -> str:
    """Log a failed question (its traceback too at DEBUG) and return its reason,
    without credentials."""
    reason = redact_secrets(f"{type(error).__name__}: {error}")
    _logger.warning("%s failed: %s", what, reason, exc_info=_logger.isEnabledFor(logging.DEBUG))
    return reason


@attrs.frozen(kw_only=True)
class Pipeline:
    """Evolver, generator, verifier and search policy, composed.

    Any of the four can be replaced by your own implementation.  An optional
    ``critic`` ([`StepCritic`][prmsynth.StepCritic]) reads every solution of
    each kept tree and stores where it sees the first error beside the Monte
    Carlo labels, for exports with ``consensus``.  When no question finishes
    for ``stall_seconds`` while some are searched, the questions in flight are
    logged (a warning, again every ``stall_seconds``; None: never).  Build one
    around a litellm model string with `from_model`, or pass parts:

    >>> from prmsynth import LLMStepGenerator, OmegaPRM, SearchSettings
    >>> from prmsynth.testing import ScriptedLLM
    >>> llm = ScriptedLLM(lambda request: "2 + 3 = 5.\\n\\nThe answer is \\\\boxed{5}.")
    >>> pipeline = Pipeline(
    ...     generator=LLMStepGenerator(llm=llm),
    ...     policy=OmegaPRM(settings=SearchSettings(screen_rollouts=4)),
    ... )
    >>> [result] = pipeline.run([Question(id="q1", text="What is 2 + 3?", reference_answer="5")])
    >>> (result.status, result.reason, result.n_completions)
    ('skipped', 'all_correct', 4)
    >>> pipeline.verifier.close()
    """

    generator: StepGenerator
    verifier: StepVerifier = attrs.field(factory=_default_verifier)
    policy: SearchPolicy = attrs.field(factory=OmegaPRM)
    evolver: QuestionEvolver = attrs.field(factory=NoEvolution)
    critic: StepCritic | None = None
    concurrency: int = attrs.field(default=4, validator=_positive)
    stall_seconds: float | None = attrs.field(default=300.0, validator=_positive_or_none)

    @classmethod
    def from_model(
        cls,
        model: str | None = None,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        sampling: SamplingSettings | None = None,
        search: SearchSettings | None = None,
        llm_options: Mapping[str, Any] | None = None,
        **parts: Any,
    ) -> Pipeline:
        """A pipeline whose LLM is any litellm model string.

        ``model`` defaults to the embedded SmolLM2-135M-Instruct (needs the
        ``local`` extra).  ``llm_options`` are passed to every
        ``litellm.acompletion`` call; ``parts`` override the verifier, policy,
        evolver or concurrency.
        """
        from prmsynth.llm._client import DEFAULT_MODEL, LiteLLMClient

        llm: LLM = LiteLLMClient(
            model=model or DEFAULT_MODEL,
            api_base=api_base,
            api_key=api_key,
            options=dict(llm_options or {}),
        )
        generator = LLMStepGenerator.for_model(llm, model, sampling=sampling)
        if search is not None:
            parts.setdefault("policy", OmegaPRM(settings=search))
        return cls(generator=generator, **parts)

    async def prepared(self) -> Pipeline:
        """This pipeline with its generator's prefix mode settled (``auto`` becomes
        ``continue`` or ``quote``, see [`LLMStepGenerator`][prmsynth.LLMStepGenerator]),
        as a run does before its first question and records in ``run.json``."""
        resolve = getattr(self.generator, "resolved", None)
        if not callable(resolve):
            return self
        generator = await resolve()
        return self if generator is self.generator else attrs.evolve(self, generator=generator)

    def identity(self) -> dict[str, Any]:
        """What decides this pipeline's labels, as a run records it and compares
        on resume: the generator (model, server and options without secrets,
        sampling, prefix mode, prompts), the policy with its rule and the
        settings it uses, the verifier, the critic and the evolver.

        >>> from prmsynth.testing import ScriptedLLM
        >>> pipeline = Pipeline(generator=LLMStepGenerator(llm=ScriptedLLM(lambda r: "")))
        >>> identity = pipeline.identity()
        >>> sorted(identity), identity["policy"]["name"]
        (['critic', 'evolver', 'generator', 'policy', 'verifier'], 'OmegaPRM')
        >>> pipeline.verifier.close()
        """
        return {
            "generator": part_identity(self.generator),
            "policy": part_identity(self.policy),
            "verifier": part_identity(self.verifier),
            "critic": None if self.critic is None else part_identity(self.critic),
            "evolver": None
            if isinstance(self.evolver, NoEvolution)
            else part_identity(self.evolver),
        }

    async def search_question(self, question: Question) -> SearchResult:
        """Search one question; an error becomes a ``failed`` result, not a crash.

        Only [`BackendUnavailable`][prmsynth.BackendUnavailable] (the model cannot serve at
        all) is raised: it would fail every later question the same way.
        """
        try:
            result = await self.policy.search(
                question, generator=self.generator, verifier=self.verifier
            )
            if self.critic is not None and result.status == "kept":
                from prmsynth.verify._critic import critique_tree

                await critique_tree(self.critic, result.tree)
            return result
        except RUN_FATAL:  # a backend gone, a disk full
            raise  # the model is gone: every later call would fail too
        except Exception as error:  # one bad question must not end a long run
            reason = _log_failure(f"question {question.id}", error)
            return SearchResult(tree=ReasoningTree(question), status="failed", reason=reason)

    async def label_solution(self, question: Question, steps: Sequence[str]) -> LabelResult:
        """Label one given solution (``prmsynth label``): the policy's step
        values and first error, and the critic's verdict when there is a critic.

        An error becomes a ``failed`` result with its reason, as in
        [`search_question`][prmsynth.Pipeline.search_question]; only
        [`BackendUnavailable`][prmsynth.BackendUnavailable] is raised.
        """
        try:
            result = await self.policy.label(
                question, steps, generator=self.generator, verifier=self.verifier
            )
            if self.critic is not None:
                result = attrs.evolve(result, critique=await self.critic.critique(question, steps))
            return result
        except RUN_FATAL:  # a backend gone, a disk full
            raise
        except Exception as error:  # one bad row must not end a long labelling run
            reason = _log_failure(f"solution {question.id}", error)
            return LabelResult(
                tree=ReasoningTree(question),
                step_values=[None] * len(steps),
                first_error=None,
                final_verdict=None,
                status="failed",
                reason=reason,
            )

    async def astream(
        self,
        questions: Iterable[Question] | AsyncIterable[Question],
        *,
        stop_when: Callable[[], bool] | None = None,
        evolve: bool = True,
    ) -> AsyncIterator[SearchResult]:
        """Evolve, then search up to ``concurrency`` questions at once; yield
        each result as soon as its question is done.

        ``stop_when`` is asked before each question starts; once it says
        True no further question starts (those running finish and are yielded).
        ``evolve=False``: the questions were evolved already (a run folder
        evolves once and keeps the result).  Without evolution the questions
        are taken one at a time as workers free up, so an iterator over a
        million of them never sits in memory.  ``questions`` may also be an
        async iterable (evolved questions as evolution accepts them): each is
        searched as soon as it arrives, and it is never evolved again.
        """
        pipeline = await self.prepared()
        if isinstance(questions, AsyncIterable):
            source: AsyncIterator[Question] = aiter(questions)
        elif evolve and not isinstance(self.evolver, NoEvolution):
            source = _as_async_iterator(await self.evolver.evolve(list(questions)))
        else:
            source = _as_async_iterator(questions)
        taking = asyncio.Lock()  # one worker at a time takes the next question

        async def next_question() -> Question | None:
            async with taking:
                return await anext(source, None)

        # A fixed set of workers pulls questions and hands results over one
        # at a time, so memory holds the questions in flight, not every
        # finished result of a long run.
        results: asyncio.Queue[SearchResult | BaseException | None] = asyncio.Queue(
            maxsize=self.concurrency
        )
        watch = _StallWatch(self.stall_seconds)

        workers: list[asyncio.Future[None]] = []
        closing = False  # the consumer is gone: no question starts, no result waits
        waiting = [0]  # workers waiting for their next question

        async def worker() -> None:
            try:
                while not closing and not (stop_when is not None and stop_when()):
                    waiting[0] += 1
                    try:
                        question = await next_question()
                    finally:
                        waiting[0] -= 1
                    if question is None:
                        break
                    # Another worker only when every one is busy: tasks (and
                    # memory) grow with the questions in flight, never with a
                    # concurrency larger than there is work for.
                    if waiting[0] == 0 and len(workers) < self.concurrency:
                        workers.append(asyncio.ensure_future(worker()))
                    # search_question turns errors into results, except a
                    # backend that is gone or a disk that is full: those end the run.
                    with watch.searching(question.id):
                        result = await pipeline.search_question(question)
                    if closing:
                        return
                    await results.put(result)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # a backend gone, a disk full, the source failing
                # Handed to the consumer, never lost with its task: a worker that
                # ended without a word would leave the run waiting for it forever.
                if not closing:
                    await results.put(error)
                return
            if not closing:
                await results.put(None)

        workers.append(asyncio.ensure_future(worker()))
        watcher = asyncio.ensure_future(watch.run())
        try:
            finished = 0
            while finished < len(workers):  # a worker starts another before it ends
                result = await results.get()
                if result is None:
                    finished += 1
                elif isinstance(result, BaseException):
                    raise result
                else:
                    yield result
        finally:
            closing = True
            await _cancel_all([*workers, watcher], results)

    def run(self, questions: Sequence[Question]) -> list[SearchResult]:
        """Search every question and return the results in input order."""

        async def collect() -> list[SearchResult]:
            return [result async for result in self.astream(questions)]

        results = asyncio.run(collect())
        order = {question.id: index for index, question in enumerate(questions)}
        return sorted(results, key=lambda result: order.get(result.question.id, len(order)))


async def _cancel_all(tasks: Sequence[asyncio.Task], results: asyncio.Queue) -> None:
    """Cancel ``tasks`` and wait until every one has ended.

    A cancellation can be lost inside a library (a timeout firing at the
    same moment turns it into a ``TimeoutError``, which the question then
    reports as its failure), and a worker that lost it would wait forever to
    hand over its result: so the results are drained and the stragglers
    cancelled again until none is left, and the run always ends.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        while not results.empty():
            results.get_nowait()
        _, pending = await asyncio.wait(pending, timeout=0.5)


async def _as_async_iterator(questions: Iterable[Question]) -> AsyncIterator[Question]:
    for question in questions:
        yield question


class _StallWatch:
    """Which questions are being searched since when, and a task that logs
    them when none has finished for ``seconds``."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started: dict[str, float] = {}
        self.last_finished = time.monotonic()

    @contextlib.contextmanager
    def searching(self, question_id: str) -> Iterator[None]:
        self.started[question_id] = time.monotonic()
        try:
            yield
        finally:
            self.started.pop(question_id, None)
            self.last_finished = time.monotonic()

    def describe(self, now: float) -> str:
        if not self.started:
            return "no question is being searched (the next one is not there yet)"
        oldest = sorted(self.started.items(), key=lambda item: item[1])
        named = ", ".join(
            f"{question_id} ({now - since:.0f} s)"
            for question_id, since in oldest[:_STALL_NAMES_SHOWN]
        )
        more = len(oldest) - _STALL_NAMES_SHOWN
        return f"{len(oldest)} being searched: {named}" + (f" and {more} more" if more > 0 else "")

    async def run(self) -> None:
        if self.seconds is None:
            return
        while True:
            await asyncio.sleep(self.seconds)
            now = time.monotonic()
            idle = now - self.last_finished
            if idle >= self.seconds:
                _logger.warning(
                    "stall: no question finished in the last %.0f s; %s", idle, self.describe(now)
                )
