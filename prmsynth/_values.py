"""Immutable value classes shared by every stage of the pipeline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs

VerdictStatus = Literal["correct", "incorrect", "unparseable"]


# attrs' own validators (NaN fails every comparison; inf is no count or size).
_check_probability = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))
_check_positive = attrs.validators.and_(attrs.validators.gt(0), attrs.validators.lt(math.inf))
_check_non_negative = attrs.validators.and_(attrs.validators.ge(0), attrs.validators.lt(math.inf))


@attrs.frozen(kw_only=True)
class Question:
    """A question with its reference answer.

    ``source`` says where the question came from (a seed file, an evolver);
    ``answer_source`` how the reference answer was obtained (``"seed"`` for a
    human-given answer).

    >>> question = Question(id="q1", text="What is 2 + 3?", reference_answer="5")
    >>> (question.source, question.answer_source)
    ('seed', 'seed')
    """

    id: str
    text: str
    reference_answer: str
    source: str = "seed"
    answer_source: str = "seed"
    metadata: dict = attrs.field(factory=dict, eq=False)


@attrs.frozen(kw_only=True)
class Step:
    """One solution step as the tree knows it: a read-only view of a node.

    ``mc_value`` is the fraction of completions sampled from the prefix that
    ends with this step which reached the reference answer (None when none
    was sampled); ``depth`` is 1 for a first step.  See
    [`step`][prmsynth.ReasoningTree.step].
    """

    node_id: int
    text: str
    depth: int
    mc_value: float | None
    n_correct: int
    n_rollouts: int
    visits: int = 0
    terminal: bool = False


@attrs.frozen(kw_only=True)
class Completion:
    """One sampled completion as an LLM backend returned it.

    ``n_tokens`` is the completion's length in tokens, or None when the
    backend did not report it.  ``finish_reason`` is ``"stop"``, ``"length"``
    (cut off at the token limit) or whatever the backend said.
    """

    text: str
    finish_reason: str | None = None
    n_tokens: int | None = None


@attrs.frozen(kw_only=True)
class LLMResponse:
    """The n completions of one request, with the request's token usage and cost.

    ``cost`` is in US dollars from litellm's offline price map (0.0 where the
    model has no price, as for local models).
    """

    completions: tuple[Completion, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


@attrs.frozen(kw_only=True)
class Usage:
    """What LLM requests spent: completions, tokens and cost in US dollars.

    One value wherever spend is carried (a search result, a run's tally, its
    budget ledger); ``+`` adds two.

    >>> Usage(n_completions=4, prompt_tokens=30, cost=0.5) + Usage(n_completions=2)
    Usage(n_completions=6, prompt_tokens=30, completion_tokens=0, cost=0.5)
    >>> Usage.from_record({"n_completions": 3, "cost": 0.25}).as_record()
    {'n_completions': 3, 'prompt_tokens': 0, 'completion_tokens': 0, 'cost': 0.25}
    """

    n_completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            n_completions=self.n_completions + other.n_completions,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=self.cost + other.cost,
        )

    @classmethod
    def of_response(cls, response: LLMResponse, n: int) -> Usage:
        """The spend of one request of ``n`` completions."""
        return cls(
            n_completions=n,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            cost=response.cost,
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Usage:
        """The spend a tree or skipped line records (its absent keys count 0)."""
        return cls(
            n_completions=record.get("n_completions", 0),
            prompt_tokens=record.get("prompt_tokens", 0),
            completion_tokens=record.get("completion_tokens", 0),
            cost=record.get("cost", 0.0),
        )

    def as_record(self) -> dict[str, Any]:
        """The keys a tree or skipped line carries, in their file order."""
        return {
            "n_completions": self.n_completions,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
        }


@attrs.frozen(kw_only=True)
class Verdict:
    """The outcome of checking one response against a reference answer.

    ``status`` is ``"correct"``, ``"incorrect"`` or ``"unparseable"`` (no
    answer could be extracted, the response was cut off, or the reference
    itself does not parse).  ``extracted_answer`` is what was read from the
    response, so data users can see why a label was given.

    >>> Verdict(status="correct", extracted_answer="5").correct
    True
    >>> Verdict(status="unparseable", reason="no answer found").correct
    False
    """

    status: VerdictStatus
    extracted_answer: str | None = None
    reason: str | None = None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


@attrs.frozen(kw_only=True)
class Critique:
    """A critic's reading of a whole solution: the index of its first wrong step.

    ``first_error`` is the 0-based index of the first step the critic judges
    wrong, -1 when it finds none, and None when it gave no usable verdict
    (then ``reason`` says why).  It is a second opinion, kept beside the
    Monte Carlo labels, never mixed into them.

    >>> Critique(first_error=2).has_verdict
    True
    >>> Critique(first_error=None, reason="no \\boxed{} index").has_verdict
    False
    """

    first_error: int | None
    reason: str | None = None

    @property
    def has_verdict(self) -> bool:
        return self.first_error is not None


@attrs.frozen(kw_only=True)
class Rollout:
    """A completion sampled from a step prefix, split into steps and checked.

    ``text`` is the continuation only (not the prefix it was sampled from).
    """

    text: str
    steps: tuple[str, ...]
    verdict: Verdict
    n_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def correct(self) -> bool:
        return self.verdict.correct

    @property
    def usable(self) -> bool:
        """Whether the rollout is evidence about its prefix: its answer was judged
        right or wrong (not cut off, not without an answer)."""
        return self.verdict.status != "unparseable"

    @property
    def extracted_answer(self) -> str | None:
        return self.verdict.extracted_answer

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "steps": list(self.steps),
            "correct": self.correct,
            "verdict": self.verdict.status,
            "extracted_answer": self.verdict.extracted_answer,
            "n_tokens": self.n_tokens,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Rollout:
        return cls(
            text=data["text"],
            steps=tuple(data["steps"]),
            verdict=Verdict(status=data["verdict"], extracted_answer=data.get("extracted_answer")),
            n_tokens=data.get("n_tokens"),
            finish_reason=data.get("finish_reason"),
        )


@attrs.frozen(kw_only=True)
class SamplingSettings:
    """How completions are sampled from the LLM.

    >>> SamplingSettings(temperature=0.7).top_p
    0.95
    """

    temperature: float = attrs.field(
        default=0.7, validator=_check_non_negative, metadata={"help": "sampling temperature"}
    )
    top_p: float = attrs.field(
        default=0.95, validator=_check_probability, metadata={"help": "nucleus sampling's top-p"}
    )
    max_tokens: int = attrs.field(
        default=512, validator=_check_positive, metadata={"help": "token limit of each completion"}
    )
    seed: int | None = None


@attrs.frozen(kw_only=True)
class SearchSettings:
    """Settings of the OmegaPRM-style search, with the seed script's defaults (but
    ``max_branches``, 96 where the script had 40: see its field).

    ``num_branches`` completions are sampled per Monte Carlo estimation;
    ``max_search`` bounds the number of candidate selections and
    ``max_branches`` the completions spent per question in total (screening
    included).  ``alpha``, ``beta``, ``length_scale`` (L) and ``exploration``
    (c) shape the selection priority
    ``alpha ** (1 - mc_value) * beta ** (len(rollout) / L)
    + c * sqrt(sum of visits) / (1 + visits)``.  ``first_error_threshold``
    is the first-error rule (see `is_error`); ``skip_uniform`` skips
    questions whose screening rollouts are all right or all wrong.

    >>> settings = SearchSettings()
    >>> (settings.num_branches, settings.max_search, settings.max_branches)
    (4, 4, 96)
    >>> SearchSettings(alpha=2.0)
    Traceback (most recent call last):
    ...
    ValueError: 'alpha' must be <= 1.0: 2.0
    """

    screen_rollouts: int = attrs.field(
        default=16,
        validator=_check_positive,
        metadata={"help": "solutions sampled to screen a question (kept only if mixed)"},
    )
    num_branches: int = attrs.field(
        default=4,
        validator=_check_positive,
        metadata={
            "help": "completions per estimated prefix (default {default}): Math-Shepherd's "
            "per-step estimation, or a threshold rule's binary search; the relative rule sizes "
            "its own samples, so it is refused there"
        },
    )
    max_search: int = attrs.field(
        default=4,
        validator=_check_non_negative,
        metadata={"help": "candidate selections per question (omegaprm only; default {default})"},
    )
    max_branches: int = attrs.field(
        # The default first-error rule's own ceiling for one long solution
        # (RelativeDrop.max_completions), so a question's budget does not cut
        # the rule short where its labels were measured.
        default=96,
        validator=_check_positive,
        metadata={"help": "completions per question in total, screening included"},
    )
    alpha: float = attrs.field(default=0.5, validator=_check_probability)
    beta: float = attrs.field(default=0.9, validator=_check_probability)
    length_scale: float = attrs.field(default=512.0, validator=_check_positive)
    exploration: float = attrs.field(default=0.125, validator=_check_non_negative)
    first_error_threshold: float = attrs.field(
        default=0.0,
        validator=_check_probability,
        metadata={
            "help": "MC value at or below which a step counts as wrong in the stored labels; "
            "above 0 and without --first-error-rule, also the search's rule (threshold:X)"
        },
    )
    skip_uniform: bool = True

    def is_error(self, mc_value: float | None) -> bool:
        """The first-error rule, the same for every policy: a step is wrong when
        its MC value is at most ``first_error_threshold`` (0.0: no completion
        from it reached the answer).  An unestimated step is never wrong.

        >>> SearchSettings().is_error(0.0), SearchSettings().is_error(0.25)
        (True, False)
        >>> SearchSettings(first_error_threshold=0.25).is_error(0.25)
        True
        """
        return mc_value is not None and mc_value <= self.first_error_threshold

    def to_dict(self) -> dict:
        return attrs.asdict(self)
